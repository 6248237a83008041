"""The deepfake detector's benchmark: EER per generator and with each generator held out of training.

    OMP_NUM_THREADS=1 python -m benchmarks.deepfake --corpus /tmp/corpus-3h --threads 1 \\
        [--legacy-tts runs/legacy-fs2 --legacy-tts runs/legacy-hifigan]

Bona fide speech is the corpus audio: the ``train`` split trains the detector, the ``test`` split's held-out speakers
(voices no model of the project trained on) evaluate it. Generated ("spoof") speech comes from the project's own
generators, each its own class in the report, all run with the watermark OFF (``alm.load(watermark=False)``, the
legacy output hook set to None, codec resynthesis undecorated), so that the detector cannot learn the watermark:

- ``codec``: corpus utterances encoded and decoded by the ALM's codec (``alm/pretrained/default/codec``, with the
  model's number of codebooks);
- ``alm-tts``: ``model.synthesize(text, language, voice=...)`` with a corpus sentence and a voice prompt from another
  utterance of the same split (top-k sampling, a seed per clip, at most ``--max-seconds`` of audio);
- ``alm-continue``: ``model.continue_speech(prompt, seconds=...)`` on the first seconds of a corpus utterance (only
  the continuation is kept);
- ``legacy-tts``: Tacotron 2 / FastSpeech 2 + HiFi-GAN directories given with ``--legacy-tts`` (absent otherwise, and
  the report says so).

For every generator, ``--per-generator`` clips are made, ``--test-share`` of them from test-split utterances (held-out
speakers, for evaluation) and the rest from train-split utterances (for training). Clips are cached under ``--work``,
so a re-run regenerates nothing. Then: one detector trained on all generators (EER of the test bona fide clips
against each generator's test clips, and pooled; error rates at its stored threshold), which is saved to
``--ship`` (the detector ``safety.deepfake.score`` loads by default), and one detector per generator trained without
it (leave-one-generator-out: EER against the generator it never saw). Writes ``OUT/deepfake.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

# Run as a file, this script's folder comes first on sys.path, where benchmarks/codec.py would shadow `codec`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from codec import AudioInputError, load_audio, save_audio  # noqa: E402
from safety.deepfake import (  # noqa: E402
    DEFAULT_DIR,
    DeepfakeConfig,
    DeepfakeDetector,
    equal_error_rate,
    prepare,
    train_detector,
)
from training.data.corpus import read_manifest  # noqa: E402
from training.plots import png_figure  # noqa: E402

log = logging.getLogger("benchmarks.deepfake")

SR = 16000
GENERATORS = ("codec", "alm-tts", "alm-continue", "legacy-tts")
MIN_SOURCE_S = 1.5  # corpus utterances shorter than this are not used (too short to continue or to judge)
MAX_BONA_S = 8.0  # bona fide clips and codec sources are cut to this many seconds
CONTINUE_PROMPT_S = 3.0  # seconds of the source the continuation is prompted with


# --- corpus ----------------------------------------------------------------------------------------------------
def corpus_rows(corpus: Path) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """``(train rows, held-out-speaker test rows, facts)`` of utterances of at least ``MIN_SOURCE_S``."""
    rows = [r for r in read_manifest(corpus) if (r.get("duration") or 0) >= MIN_SOURCE_S]
    train = [r for r in rows if r["split"] == "train"]
    train_speakers = {r["speaker"] for r in train}
    test_all = [r for r in rows if r["split"] == "test"]
    test = [r for r in test_all if r["speaker"] not in train_speakers]
    if not train or not test:
        raise SystemExit(f"{corpus}: need train utterances and test utterances of held-out speakers "
                         f"(got {len(train)} and {len(test)})")
    facts = {"train_utterances": len(train), "test_utterances": len(test), "train_speakers": len(train_speakers),
             "test_speakers": sorted({r["speaker"] for r in test}),
             "test_dropped_seen_speakers": len(test_all) - len(test)}
    return train, test, facts


def read_wav(row: dict, max_s: float = MAX_BONA_S) -> np.ndarray:
    return load_audio(row["path"], SR).numpy()[: int(max_s * SR)]


def pick(rows: list[dict], n: int, rng: np.random.Generator) -> list[dict]:
    return [rows[i] for i in rng.choice(len(rows), size=min(n, len(rows)), replace=False)]


# --- generators ------------------------------------------------------------------------------------------------
class Generators:
    """The project's speech generators, loaded on first use, watermark off."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._alm: Any = None
        self._legacy: tuple[list[Any], Any] | None = None

    @property
    def alm(self) -> Any:
        if self._alm is None:
            import alm

            self._alm = alm.load(watermark=False)  # explicitly unmarked: the detector must not learn the watermark
        return self._alm

    def legacy_dirs(self) -> tuple[list[Path], Path | None, str]:
        """``(acoustic model dirs, vocoder dir, why absent)`` from ``--legacy-tts`` (a run dir or its ``final``)."""
        acoustic, vocoder = [], None
        for d in self.args.legacy_tts:
            d = Path(d)
            d = d / "final" if (d / "final" / "config.json").is_file() else d
            try:
                kind = json.loads((d / "config.json").read_text()).get("model_class")
            except (OSError, json.JSONDecodeError) as e:
                return [], None, f"{d}: no readable config.json ({e})"
            if kind in ("Tacotron2", "FastSpeech2"):
                acoustic.append(d)
            elif kind == "HiFiGANGenerator":
                vocoder = d
            else:
                return [], None, f"{d} holds a {kind}, not Tacotron 2 / FastSpeech 2 / HiFi-GAN"
        if not self.args.legacy_tts:
            return [], None, "no --legacy-tts directories given (no trained Tacotron 2 / FastSpeech 2 + HiFi-GAN)"
        if not acoustic or vocoder is None:
            return [], None, "--legacy-tts needs an acoustic model (Tacotron 2 / FastSpeech 2) and a HiFi-GAN vocoder"
        return acoustic, vocoder, ""

    def make(self, name: str, row: dict, voice_row: dict, i: int) -> np.ndarray:
        """One clip ``[T]`` float32 at 16 kHz from corpus ``row`` (``voice_row``: the voice prompt for TTS)."""
        a = self.args
        if name == "codec":
            m = self.alm
            wav = torch.from_numpy(read_wav(row))
            with torch.no_grad():
                out = m.codec.decode(m.codec.encode(wav))[0, : wav.numel()]  # K = the model's codebooks
            return out.clamp(-1, 1).numpy().astype(np.float32)
        if name == "alm-tts":
            m = self.alm
            budget = int(a.max_seconds * m.codec.frame_rate) * m.num_codebooks + 2  # frames, </audio>, <eos>
            r = m.synthesize(row["text"], language=row["lang"], voice=read_wav(voice_row), strategy="top_k", seed=i,
                             max_new_tokens=budget)
            return r.audio
        if name == "alm-continue":
            r = self.alm.continue_speech(read_wav(row, CONTINUE_PROMPT_S), seconds=a.continue_seconds,
                                         strategy="top_k", seed=i)
            return r.audio
        if name == "legacy-tts":
            from legacy_seq2seq.inference import load_legacy, set_output_hook, synthesize

            if self._legacy is None:
                acoustic, vocoder, _ = self.legacy_dirs()
                set_output_hook(None)  # explicitly unmarked, as above
                self._legacy = ([load_legacy(d) for d in acoustic], load_legacy(vocoder))
            models, voc = self._legacy
            return synthesize(models[i % len(models)], row["text"], voc, language=row["lang"])
        raise ValueError(f"unknown generator {name!r}")


def generate(gens: Generators, name: str, train_rows: list[dict], test_rows: list[dict], work: Path,
             seed: int) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    """Make (or read from the cache) one generator's clips: ``({"train": [...], "test": [...]}, facts)``."""
    a = gens.args
    rng = np.random.default_rng([seed, GENERATORS.index(name)])
    n_test = round(a.per_generator * a.test_share)
    plan = [("train", r, v) for r, v in zip(pick(train_rows, a.per_generator - n_test, rng),
                                            pick(train_rows, a.per_generator - n_test, rng))]
    plan += [("test", r, v) for r, v in zip(pick(test_rows, n_test, rng), pick(test_rows, n_test, rng))]
    out_dir = work / name
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "meta.json"  # failures, and each clip's generation time (so cached runs report it too)
    meta: dict[str, dict] = json.loads(meta_path.read_text()) if meta_path.is_file() else {"failed": {}, "made": {}}
    clips: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    made, gen_s, audio_s = 0, 0.0, 0.0
    for i, (part, row, voice) in enumerate(tqdm(plan, desc=name, leave=False)):
        stem = f"{part}-{i:03d}-{row['id']}"
        path = out_dir / f"{stem}.wav"
        if stem in meta["failed"]:
            continue
        if path.is_file():
            wav = load_audio(path, SR).numpy()
        else:
            t0 = time.perf_counter()
            try:
                wav = gens.make(name, row, voice, i)
                prepare(wav, DeepfakeConfig())  # judgeable: not empty, silent or too short
            except (AudioInputError, ValueError) as e:
                meta["failed"][stem] = str(e)
                meta_path.write_text(json.dumps(meta, indent=2))
                log.warning("%s: %s gave no usable clip: %s", name, stem, e)
                continue
            meta["made"][stem] = [round(time.perf_counter() - t0, 3), round(len(wav) / SR, 3)]
            save_audio(path, wav, SR)
            meta_path.write_text(json.dumps(meta, indent=2))
            made += 1
        if stem in meta["made"]:
            gen_s, audio_s = gen_s + meta["made"][stem][0], audio_s + meta["made"][stem][1]
        clips[part].append(wav)
    facts = {"train_clips": len(clips["train"]), "test_clips": len(clips["test"]), "generated_now": made,
             "failed": len(meta["failed"]), "audio_seconds": round(audio_s, 1), "generation_seconds": round(gen_s, 1),
             "generation_real_time_factor": round(gen_s / max(audio_s, 1e-9), 3)}
    return clips, facts


# --- evaluation ------------------------------------------------------------------------------------------------
def scores_of(det: DeepfakeDetector, clips: list[np.ndarray]) -> list[float]:
    return [det.score(w) for w in clips]


def rates(det: DeepfakeDetector, bona: list[float], spoof: list[float]) -> dict[str, float]:
    """EER, and at the detector's stored threshold: false-alarm rate (bona fide judged generated) and miss rate."""
    t = det.threshold
    return {"eer": round(equal_error_rate(bona, spoof), 4),
            "false_alarm_rate": round(float(np.mean(np.asarray(bona) >= t)), 4),
            "miss_rate": round(float(np.mean(np.asarray(spoof) < t)), 4)}


def plot(path: Path, main_scores: dict[str, list[float]], logo_scores: dict[str, dict[str, list[float]]],
         threshold: float) -> None:
    from sklearn.metrics import roc_curve

    with png_figure(path, 1, 2, figsize=(12, 4.5)) as (_, (ax_h, ax_d)):
        bins = np.linspace(0, 1, 41)
        for name, s in main_scores.items():
            ax_h.hist(s, bins=bins, histtype="step", density=True, lw=1.5, label=f"{name} ({len(s)} clips)")
        ax_h.axvline(threshold, color="k", ls=":", label=f"threshold {threshold:.3f}")
        ax_h.set(xlabel="score (probability of generated)", ylabel="density", yscale="log",
                 title="detector trained on all generators: held-out-speaker test clips")
        ax_h.legend(fontsize=8)
        colors = dict(zip([n for n in main_scores if n != "bona fide"], ["C1", "C2", "C3", "C4"]))
        for name, color in colors.items():
            for scores, style, what in ((main_scores, "-", "all"), (logo_scores.get(name), "--", "held out")):
                if not scores:
                    continue
                y = np.r_[np.zeros(len(scores["bona fide"])), np.ones(len(scores[name]))]
                fpr, tpr, _ = roc_curve(y, np.r_[scores["bona fide"], scores[name]])
                ax_d.plot(fpr, 1 - tpr, style, color=color, label=f"{name} ({what})")
        ax_d.plot([0, 1], [0, 1], color="0.8", lw=0.8)
        ax_d.set(xlabel="false alarm rate (bona fide judged generated)",
                 ylabel="miss rate (generated judged bona fide)", xlim=(0, 1), ylim=(0, 1),
                 title="error trade-off: trained on all (solid) vs generator held out (dashed)")
        ax_d.legend(fontsize=8)


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Deepfake detector (LFCC-LCNN): equal error rates", "",
             f"Command: `{res['command']}`", "",
             f"Detector: {res['detector']['parameters']:,} parameters, {res['detector']['crop_seconds']} s crops, "
             f"{res['train']['steps']} steps x {res['train']['batch_size']} crops per training run; decision threshold "
             f"{res['main']['threshold']:.4f} (EER point of its validation split). Bona fide test: "
             f"{res['bona_fide']['test_clips']} clips of {len(res['corpus']['test_speakers'])} held-out speakers; "
             f"bona fide train: {res['bona_fide']['train_clips']} clips. All generated audio was made with the "
             "watermark OFF, so the detector cannot rely on it.", "",
             "| generator | train clips | test clips | EER, trained on all | false alarms / misses at threshold | "
             "EER, generator held out of training |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in GENERATORS:
        g = res["generators"][name]
        if "absent" in g:
            lines.append(f"| {name} | - | - | absent: {g['absent']} | | |")
            continue
        m, lo = res["main"]["per_generator"][name], res["leave_one_out"].get(name, {})
        lo_txt = f"{100 * lo['eer']:.1f}%" if "eer" in lo else lo.get("note", "n/a")
        lines.append(f"| {name} | {g['train_clips']} | {g['test_clips']} | {100 * m['eer']:.1f}% | "
                     f"{100 * m['false_alarm_rate']:.1f}% / {100 * m['miss_rate']:.1f}% | {lo_txt} |")
    p = res["main"]["pooled"]
    lines += [f"| **all generators** | | {res['main']['spoof_test_clips']} | **{100 * p['eer']:.1f}%** | "
              f"{100 * p['false_alarm_rate']:.1f}% / {100 * p['miss_rate']:.1f}% | |", "",
              "EER: the rate at which false alarms equal misses (0% separable, 50% chance); with N test clips of a "
              "class one clip moves it by 100/N points. \"Held out\": a detector trained on bona fide speech and the "
              "other generators only, scored on the held-out generator's test clips and the same bona fide test clips "
              "(the generalization case ASVspoof cares about). codec, alm-tts and alm-continue all end in the same "
              "codec decoder (the ALM writes codec tokens), so holding one of them out still leaves that decoder in "
              "training; legacy-tts (HiFi-GAN) is the generator that tests a vocoder the detector never heard.", "",
              f"Timing ({res['threads']} thread(s), shared machine): generation {res['timing']['generation_s']:.0f} s "
              "(measured when the clips were made; they are cached), "
              f"training {res['timing']['training_s']:.0f} s for {1 + len(res['leave_one_out'])} detectors, scoring "
              f"{res['timing']['scoring_x_real_time']:.0f}x real time.", "",
              "Bona fide test clips by held-out speaker (detector trained on all; where its false alarms come from):",
              "", "| speaker | clips | mean score | max score | false alarms at threshold |",
              "|---|---:|---:|---:|---:|",
              *[f"| {spk} | {v['clips']} | {v['mean_score']:.3f} | {v['max_score']:.3f} | "
                f"{100 * v['false_alarm_rate']:.0f}% |" for spk, v in res["main"]["bona_fide_by_speaker"].items()],
              "",
              "Caveats: the bona fide class is the project's synthetic corpus (eSpeak NG, MBROLA, Flite, Pico and a "
              "few real recordings), not real recordings in the wild, so a low EER here says the detector tells the "
              "project's generators from that corpus; false alarms on other real speech are unmeasured.", "",
              "![scores](deepfake.png)", ""]
    return "\n".join(lines)


def model_card(res: dict[str, Any]) -> str:
    rows = "\n".join(f"| {n} | {100 * res['main']['per_generator'][n]['eer']:.1f}% | "
                     + (f"{100 * res['leave_one_out'][n]['eer']:.1f}% |" if "eer" in res["leave_one_out"].get(n, {})
                        else "n/a |")
                     for n in res["main"]["per_generator"])
    absent = [f"{n} ({g['absent']})" for n, g in res["generators"].items() if "absent" in g]
    alarms = [f"{spk} {100 * v['false_alarm_rate']:.0f}% of {v['clips']} clips"
              for spk, v in res["main"]["bona_fide_by_speaker"].items() if v["false_alarm_rate"] > 0]
    return f"""# Shipped deepfake detector

What `safety.deepfake.score(wav)` and `alm detect-fake FILE` load by default.

- **Model**: LFCC (20 coefficients + deltas + delta-deltas, 40 linear filters, 20 ms / 10 ms) into a light CNN with
  max-feature-map units (`safety/deepfake_model.py`), {res['detector']['parameters']:,} parameters; scores
  {res['detector']['crop_seconds']} s windows and averages them. Decision threshold {res['main']['threshold']:.4f}
  (the equal-error-rate point on its validation split), stored in `config.json`.
- **Trained on**: bona fide = {res['bona_fide']['train_clips']} train-split utterances of the synthetic corpus;
  generated = {', '.join(res['main']['per_generator'])} (watermark off), {res['train']['steps']} steps.
  Absent generators: {', '.join(absent) or 'none'}.
- **Measured** (`benchmarks/results/deepfake.md`; test clips of held-out speakers):

| generator | EER (trained on all) | EER (generator held out of training) |
|---|---:|---:|
{rows}

- **False alarms** at the threshold on held-out bona fide speakers:
  {100 * res['main']['pooled']['false_alarm_rate']:.1f}% overall ({'; '.join(alarms) or 'none'}).
- **Limits**: it knows only the generators it was trained on (the held-out column says how far it generalizes); the
  bona fide class is a synthetic corpus, so false alarms on real recordings of other kinds are unmeasured. Retrain
  with `{res['command']}`.
"""


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="corpus directory with manifest.jsonl")
    p.add_argument("--legacy-tts", action="append", default=[], type=Path,
                   help="a trained Tacotron 2 / FastSpeech 2 or HiFi-GAN directory (repeat; both kinds needed)")
    p.add_argument("--work", type=Path, default=Path("/tmp/deepfake-work"), help="cache of generated clips")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--ship", type=Path, default=DEFAULT_DIR, help="where to save the all-generator detector")
    p.add_argument("--no-ship", action="store_true", help="do not save the detector")
    p.add_argument("--per-generator", type=int, default=60, help="clips per generator (train + test)")
    p.add_argument("--test-share", type=float, default=0.5, help="share of each generator's clips for testing")
    p.add_argument("--bona-train", type=int, default=300, help="bona fide training clips (train split)")
    p.add_argument("--bona-test", type=int, default=150, help="bona fide test clips (held-out speakers)")
    p.add_argument("--max-seconds", type=float, default=3.0, help="longest ALM TTS output")
    p.add_argument("--continue-seconds", type=float, default=2.0, help="seconds of ALM continuation")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--generators", default=",".join(GENERATORS), help="comma-separated subset to run")
    p.add_argument("--generate-only", action="store_true", help="fill the --work cache and stop")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    how = "-m benchmarks.deepfake" if __spec__ is not None else "benchmarks/deepfake.py"  # as a module or a file
    command = f"OMP_NUM_THREADS=1 python {how} " + " ".join(sys.argv[1:] if argv is None else argv)

    train_rows, test_rows, corpus_facts = corpus_rows(args.corpus)
    rng = np.random.default_rng(args.seed)
    bona_train = [read_wav(r) for r in pick(train_rows, args.bona_train, rng)]
    bona_test_rows = pick(test_rows, args.bona_test, rng)
    bona_test = [read_wav(r) for r in bona_test_rows]
    log.info("bona fide: %d train clips, %d test clips (%d held-out speakers)", len(bona_train), len(bona_test),
             len(corpus_facts["test_speakers"]))

    gens = Generators(args)
    wanted = [g.strip() for g in args.generators.split(",") if g.strip()]
    unknown = sorted(set(wanted) - set(GENERATORS))
    if unknown:
        raise SystemExit(f"unknown generator(s) {unknown}; known: {', '.join(GENERATORS)}")
    clips: dict[str, dict[str, list[np.ndarray]]] = {}
    gen_facts: dict[str, dict[str, Any]] = {}
    for name in GENERATORS:
        if name not in wanted:
            gen_facts[name] = {"absent": "not requested (--generators)"}
            continue
        if name == "legacy-tts":
            why = gens.legacy_dirs()[2]
            if why:
                gen_facts[name] = {"absent": why}
                log.info("legacy-tts absent: %s", why)
                continue
        clips[name], gen_facts[name] = generate(gens, name, train_rows, test_rows, args.work, args.seed)
        log.info("%s: %s", name, gen_facts[name])
    generation_s = sum(f.get("generation_seconds", 0.0) for f in gen_facts.values())  # cached clips included
    if args.generate_only:
        log.info("clips generated under %s (%.0f s of generation)", args.work, generation_s)
        return {"generators": gen_facts}
    present = [n for n in clips if clips[n]["train"] and clips[n]["test"]]
    if not present:
        raise SystemExit("no generator produced clips")

    config = DeepfakeConfig()
    train_kw = {"config": config, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}
    t0 = time.perf_counter()
    info = {"corpus": str(args.corpus), "generators": present, "watermark": "off for all generated training audio"}
    main_det = train_detector(bona_train, [w for n in present for w in clips[n]["train"]], info=info, **train_kw)
    training_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    main_scores = {"bona fide": scores_of(main_det, bona_test)}
    main_scores |= {n: scores_of(main_det, clips[n]["test"]) for n in present}
    scored_s = sum(len(w) for w in bona_test) / SR + sum(len(w) for n in present for w in clips[n]["test"]) / SR
    scoring_x = scored_s / (time.perf_counter() - t0)
    spoof_all = [s for n in present for s in main_scores[n]]
    main_res = {"threshold": main_det.threshold, "training": main_det.info["training"],
                "per_generator": {n: rates(main_det, main_scores["bona fide"], main_scores[n]) for n in present},
                "pooled": rates(main_det, main_scores["bona fide"], spoof_all), "spoof_test_clips": len(spoof_all)}
    by_speaker: dict[str, list[float]] = {}
    for row, sc in zip(bona_test_rows, main_scores["bona fide"]):
        by_speaker.setdefault(row["speaker"], []).append(sc)
    main_res["bona_fide_by_speaker"] = {
        spk: {"clips": len(v), "mean_score": round(float(np.mean(v)), 4), "max_score": round(float(np.max(v)), 4),
              "false_alarm_rate": round(float(np.mean(np.asarray(v) >= main_det.threshold)), 4)}
        for spk, v in sorted(by_speaker.items())}
    log.info("trained on all: %s", main_res["per_generator"])

    logo: dict[str, dict[str, Any]] = {}
    logo_scores: dict[str, dict[str, list[float]]] = {}
    for held in present:
        others = [n for n in present if n != held]
        if not others:
            logo[held] = {"note": "no other generator to train on"}
            continue
        t0 = time.perf_counter()
        det = train_detector(bona_train, [w for n in others for w in clips[n]["train"]], progress=False, **train_kw)
        training_s += time.perf_counter() - t0
        s = {"bona fide": scores_of(det, bona_test), held: scores_of(det, clips[held]["test"])}
        logo_scores[held] = s
        logo[held] = {"trained_on": others, **rates(det, s["bona fide"], s[held])}
        log.info("held out %s: %s", held, logo[held])

    res = {"command": command, "threads": args.threads, "corpus": {"dir": str(args.corpus), **corpus_facts},
           "detector": {"parameters": main_det.model.num_parameters(), "crop_seconds": config.crop_seconds,
                        "config": config.to_dict()},
           "train": {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed},
           "bona_fide": {"train_clips": len(bona_train), "test_clips": len(bona_test)},
           "generators": gen_facts, "main": main_res, "leave_one_out": logo,
           "watermark": "off: alm.load(watermark=False), legacy output hook None, codec resynthesis unmarked",
           "timing": {"generation_s": round(generation_s, 1), "training_s": round(training_s, 1),
                      "scoring_x_real_time": round(scoring_x, 1),
                      "total_s": round(time.perf_counter() - t_start, 1)}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "deepfake.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "deepfake.md").write_text(markdown(res))
    plot(args.out / "deepfake.png", main_scores, logo_scores, main_det.threshold)
    if not args.no_ship:
        main_det.info["benchmark"] = {"per_generator_eer": {n: v["eer"] for n, v in main_res["per_generator"].items()},
                                      "leave_one_out_eer": {n: v.get("eer") for n, v in logo.items()},
                                      "command": command}
        main_det.save(args.ship)
        (args.ship / "README.md").write_text(model_card(res))
        log.info("shipped detector saved to %s", args.ship)
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
