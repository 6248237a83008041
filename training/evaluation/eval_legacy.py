"""The classic baselines side by side with the ALM, on the same held-out test utterances as ``alm eval``.

    python -m training.evaluation.eval_legacy --corpus /tmp/corpus-3h --runs runs --out runs/eval-legacy

Each baseline is read from ``RUNS/legacy-<model>/final`` (``--<model> DIR`` overrides; a missing one is reported
as absent). The utterances are :func:`training.evaluation.eval_alm.select`'s with the same seed, so the ALM's rows
of ``--alm-results`` (an ``alm eval`` results.json) are measured on the same audio and text.

- **ASR** (CTC, RNN-T, LAS; greedy, and LAS also with its beam search, length normalization 1.0 and coverage
  penalty 0.2): WER/CER per language, real-time factor.
  The RNN-T is the streaming (chunked causal) transducer: its audio is also fed as it would arrive, one chunk at a
  time, through :class:`legacy_seq2seq.rnnt_decoding.StreamingRNNT`: the algorithmic latency (one encoder chunk),
  the compute per chunk, the latency after the end of the audio, and whether the streamed transcript equals the
  whole-utterance one.
- **TTS** (Tacotron 2 and FastSpeech 2, each + the HiFi-GAN; and the ALM with a voice prompt of the same held-out
  speaker): intelligibility WER by pocketsphinx on English (a listener independent of every model here),
  mel-cepstral distortion against the real recording (:mod:`training.evaluation.mcd`), real-time factor (and that of
  the acoustic model alone, the vocoder being shared).
- **S2ST** Spanish -> English (Translatotron + HiFi-GAN; and the ALM): ASR-BLEU with pocketsphinx as the English
  listener, real-time factor.
- Parameter counts and training time (``final/training.json``).

Written to ``OUT``: ``results.json``, ``results.md`` (the README's table) and ``legacy_vs_alm.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from codec.audio import load_audio
from training.data.corpus import read_manifest
from training.evaluation.eval_alm import select, voice_of
from training.evaluation.mcd import mel_cepstral_distortion
from training.evaluation.metrics import bleu, char_error_rate, word_error_rate
from training.plots import png_figure

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ASR = ("ctc", "rnnt", "las")
TTS = ("tacotron2", "fastspeech2")
ALL = (*ASR, *TTS, "hifigan", "translatotron")


def _info(directory: Path) -> dict[str, Any]:
    """Parameters and training time of a baseline directory."""
    from legacy_seq2seq.inference import load_legacy

    loaded = load_legacy(directory)
    info: dict[str, Any] = {"params_m": sum(p.numel() for p in loaded.model.parameters()) / 1e6}
    meta = directory / "training.json"
    if meta.is_file():
        t = json.loads(meta.read_text())
        info.update(train_steps=t.get("step"), train_minutes=round(float(t.get("elapsed_s", 0)) / 60, 1))
    return info


class Timer:
    """Accumulates processing seconds against audio seconds: ``rtf`` = processing / audio."""

    def __init__(self) -> None:
        self.spent = self.audio = 0.0

    def __call__(self, fn: Any, audio_seconds: float | None = None) -> Any:
        t = time.perf_counter()
        out = fn()
        self.spent += time.perf_counter() - t
        self.audio += audio_seconds if audio_seconds is not None else len(out) / SAMPLE_RATE
        return out

    @property
    def rtf(self) -> float:
        return self.spent / max(self.audio, 1e-9)


def _asr_scores(rows: list[dict[str, Any]]) -> dict[str, float]:
    m: dict[str, float] = {}
    for lang in sorted({r["lang"] for r in rows}):
        sub = [r for r in rows if r["lang"] == lang]
        refs, hyps = [r["reference"] for r in sub], [r["hypothesis"] for r in sub]
        m[f"wer_{lang}"], m[f"cer_{lang}"] = word_error_rate(refs, hyps, lang), char_error_rate(refs, hyps, lang)
    return m


# --- ASR ----------------------------------------------------------------------------------------------------------
def eval_asr(kind: str, directory: Path, chosen: list[dict[str, Any]], wav: Any, beam: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """WER/CER and RTF of a CTC, RNN-T or LAS directory (greedy; ``beam`` > 1: beam search)."""
    from legacy_seq2seq.inference import load_legacy, transcribe

    loaded = load_legacy(directory)
    timer, rows = Timer(), []
    for r in tqdm(chosen, desc=f"{kind}{' beam' if beam else ''}", disable=not progress):
        audio = wav(r)

        def run(audio: np.ndarray = audio) -> str:
            return transcribe(loaded, audio, beam=max(beam, 1))

        rows.append({"id": r["id"], "lang": r["lang"], "reference": r["text"],
                     "hypothesis": timer(run, r["duration"])})
    return {"metrics": {**_asr_scores(rows), "rtf": timer.rtf}, "outputs": rows}


def eval_streaming(directory: Path, chosen: list[dict[str, Any]], wav: Any, progress: bool = True
                   ) -> dict[str, float]:
    """Feed each utterance to the streaming RNN-T one encoder chunk of audio at a time (as it would arrive)."""
    from legacy_seq2seq.inference import features_of, load_legacy
    from legacy_seq2seq.rnnt_decoding import StreamingRNNT

    loaded = load_legacy(directory)
    model = loaded.model
    if not model.config.causal:
        return {}
    hop_s = loaded.features.hop_length / loaded.features.sample_rate
    chunk_frames = model.config.chunk_size * 4  # the Conformer's subsampling is 4x
    per_chunk, tails, same, first = [], [], 0, []
    for r in tqdm(chosen, desc="rnnt streaming", disable=not progress):
        feats = features_of(wav(r), loaded.features)  # [F, n_mels]
        stream = StreamingRNNT(model)
        emitted_at = None
        for start in range(0, feats.shape[0], chunk_frames):
            t = time.perf_counter()
            new = stream.accept(feats[start: start + chunk_frames])
            per_chunk.append(time.perf_counter() - t)
            if new and emitted_at is None:
                emitted_at = min(feats.shape[0], start + chunk_frames) * hop_s
        t = time.perf_counter()
        stream.finish()
        tails.append(time.perf_counter() - t)
        same += stream.tokens == model.greedy_decode(feats[None], torch.tensor([feats.shape[0]]))[0]
        if emitted_at is not None:
            first.append(emitted_at)
    chunk_s = chunk_frames * hop_s
    return {"chunk_ms": 1000 * chunk_s, "compute_per_chunk_ms": 1000 * float(np.mean(per_chunk)),
            "streaming_rtf": float(np.mean(per_chunk)) / chunk_s,
            "latency_after_end_ms": 1000 * float(np.mean(tails)),
            "first_label_at_s": float(np.mean(first)) if first else float("nan"),
            "streamed_equals_whole": same / max(1, len(chosen))}


# --- TTS and S2ST -------------------------------------------------------------------------------------------------
def _listen(peer: Any, rows: list[dict[str, Any]], audio: dict[str, np.ndarray]) -> None:
    for r in rows:
        if r.get("listen_lang") == "en":
            r["pocketsphinx_hypothesis"] = peer(audio[r["id"]]) if len(audio[r["id"]]) else ""


def eval_tts(name: str, speak: Any, chosen: list[dict[str, Any]], wav: Any, peer: Any, progress: bool = True
             ) -> dict[str, Any]:
    """``speak(record) -> [T] waveform``: pocketsphinx WER (English), MCD against the real recording, RTF."""
    timer, rows, audio = Timer(), [], {}
    for r in tqdm(chosen, desc=name, disable=not progress):
        out = np.asarray(timer(lambda r=r: speak(r)), dtype=np.float32)
        audio[r["id"]] = out
        mcd = mel_cepstral_distortion(out, wav(r)) if len(out) >= 800 else float("nan")
        rows.append({"id": r["id"], "lang": r["lang"], "listen_lang": r["lang"], "reference": r["text"],
                     "seconds": len(out) / SAMPLE_RATE, "mcd": mcd})
    _listen(peer, rows, audio)
    heard = [r for r in rows if "pocketsphinx_hypothesis" in r]
    measured = [r["mcd"] for r in rows if np.isfinite(r["mcd"])]  # outputs under 50 ms have no MCD
    m = {"mcd_db": float(np.mean(measured)) if measured else float("nan"), "rtf": timer.rtf,
         "mean_seconds": float(np.mean([r["seconds"] for r in rows]))}
    if heard:
        m["pocketsphinx_wer_en"] = word_error_rate([r["reference"] for r in heard],
                                                   [r["pocketsphinx_hypothesis"] for r in heard], "en")
    return {"metrics": m, "outputs": rows}


def eval_s2st(name: str, translate: Any, chosen: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], wav: Any,
              peer: Any, progress: bool = True) -> dict[str, Any]:
    """``translate(record) -> [T] English waveform`` for Spanish sources: pocketsphinx ASR-BLEU, RTF."""
    timer, rows, audio = Timer(), [], {}
    for r in tqdm(chosen, desc=name, disable=not progress):
        out = np.asarray(timer(lambda r=r: translate(r), r["duration"]), dtype=np.float32)
        audio[r["id"]] = out
        rows.append({"id": r["id"], "lang": r["lang"], "listen_lang": "en",
                     "reference": by_id[r["translation_id"]]["text"], "seconds": len(out) / SAMPLE_RATE})
    _listen(peer, rows, audio)
    hyps = [r["pocketsphinx_hypothesis"] for r in rows]
    return {"metrics": {"asr_bleu_pocketsphinx": bleu([r["reference"] for r in rows], hyps, "en"),
                        "rtf": timer.rtf, "mean_seconds": float(np.mean([r["seconds"] for r in rows]))},
            "outputs": rows}


def training_voices(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """``(speaker, lang)`` of every train-split record: which voice speaks which language."""
    return {(r["speaker"], r["lang"]) for r in records if r.get("split") == "train"}


def stand_in_voice(speakers: tuple[str, ...], speaker: str, lang: str, speaks: set[tuple[str, str]]) -> int | None:
    """The voice id a multi-speaker model speaks a held-out ``speaker``'s ``lang`` text in (``None`` for a
    single-voice model): the first of its voices of the same engine (the name before the first ``-``) that speaks
    ``lang`` in the corpus's train split (``speaks``: :func:`training_voices`), else the first that speaks ``lang``,
    else voice 0."""
    if not speakers:
        return None
    fluent = [k for k, name in enumerate(speakers) if (name, lang) in speaks]
    engine = speaker.split("-")[0]
    same = [k for k in fluent if speakers[k].split("-")[0] == engine]
    return (same or fluent or [0])[0]


@torch.no_grad()
def _two_stage(acoustic: Any, vocoder: Any, rec: dict[str, Any], spent: list[float],
               speaks: set[tuple[str, str]] = frozenset()) -> np.ndarray:
    """:func:`legacy_seq2seq.inference.synthesize` in its two stages, adding the acoustic model's time to ``spent``
    (the vocoder is the same for both TTS models, so their own speed is the acoustic stage's). A multi-speaker
    model speaks in :func:`stand_in_voice`'s voice for the record's held-out speaker."""
    from legacy_seq2seq.inference import encode_input

    t = time.perf_counter()
    voice = stand_in_voice(acoustic.model.config.speakers, rec["speaker"], rec["lang"], speaks)
    ids = None if voice is None else torch.tensor([voice])
    mel = acoustic.model.infer(torch.tensor(encode_input(acoustic, rec["text"], rec["lang"]))[None],
                               speaker_ids=ids).mel  # [1, T, n_mels]
    spent[0] += time.perf_counter() - t
    return vocoder.model(mel.transpose(1, 2))[0].float().clamp(-1.0, 1.0).numpy()


# --- the run ------------------------------------------------------------------------------------------------------
def evaluate(corpus: str | os.PathLike, out: str | os.PathLike, dirs: dict[str, Path | None], *,
             alm_checkpoint: str | None = None, with_alm: bool = True, alm_results: str | None = None,
             max_per_task: int = 60, las_beam: int = 4, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Measure every baseline present in ``dirs`` (and the ALM on the TTS and S2ST rows); writes ``out``."""
    from legacy_seq2seq.inference import features_of, load_legacy, set_output_hook
    from legacy_seq2seq.inference import translate as legacy_translate
    from training.evaluation.pocketsphinx_peer import PocketSphinx

    corpus, out = Path(corpus), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = read_manifest(corpus)
    by_id = {r["id"]: r for r in records}
    cache: dict[str, np.ndarray] = {}

    def wav(r: dict[str, Any]) -> np.ndarray:
        if r["id"] not in cache:
            cache[r["id"]] = load_audio(corpus / r["path"], SAMPLE_RATE).numpy()
        return cache[r["id"]]

    present = {k: d for k, d in dirs.items() if d is not None and (d / "config.json").is_file()}
    report: dict[str, Any] = {"corpus": str(corpus), "max_per_task": max_per_task, "seed": seed,
                              "absent": sorted(set(ALL) - set(present)), "models": {}, "metrics": {}, "outputs": {}}
    for k, d in present.items():
        report["models"][k] = {"dir": str(d), **_info(d)}
    previous = set_output_hook(None)  # measure the models' own audio (the watermark is measured elsewhere)
    try:
        asr_rows = select(records, "test", "asr", max_per_task, seed)
        for kind in ASR:
            if kind in present:
                r = eval_asr(kind, present[kind], asr_rows, wav, progress=progress)
                report["metrics"][kind], report["outputs"][kind] = r["metrics"], r["outputs"]
        if "las" in present and las_beam:
            r = eval_asr("las", present["las"], asr_rows, wav, beam=las_beam, progress=progress)
            report["metrics"][f"las_beam{las_beam}"], report["outputs"][f"las_beam{las_beam}"] = (r["metrics"],
                                                                                                 r["outputs"])
        if "rnnt" in present:
            report["metrics"]["rnnt_streaming"] = eval_streaming(present["rnnt"], asr_rows[:20], wav, progress)
        peer = PocketSphinx()
        tts_rows = select(records, "test", "tts", max_per_task, seed)
        s2st_rows = [r for r in select(records, "test", "s2st", 2 * max_per_task, seed) if r["lang"] == "es"
                     and by_id[r["translation_id"]]["lang"] == "en"][: max_per_task // 2]
        if "hifigan" in present and tts_rows:
            vocoder, speaks = load_legacy(present["hifigan"]), training_voices(records)
            for kind in TTS:
                if kind in present:
                    acoustic, spent = load_legacy(present[kind]), [0.0]
                    r = eval_tts(f"{kind}+hifigan",
                                 lambda rec, a=acoustic, t=spent: _two_stage(a, vocoder, rec, t, speaks),
                                 tts_rows, wav, peer, progress)
                    audio_s = sum(row["seconds"] for row in r["outputs"])
                    r["metrics"]["acoustic_rtf"] = spent[0] / max(audio_s, 1e-9)  # the acoustic model alone
                    report["metrics"][f"{kind}+hifigan"], report["outputs"][f"{kind}+hifigan"] = (r["metrics"],
                                                                                                  r["outputs"])
            r = eval_tts("hifigan resynthesis", lambda rec: vocoder.model(
                features_of(wav(rec), vocoder.features).T[None])[0].detach().clamp(-1, 1).numpy(),
                tts_rows, wav, peer, progress)
            report["metrics"]["hifigan_resynthesis"] = r["metrics"]
            if "translatotron" in present and s2st_rows:
                s2st = load_legacy(present["translatotron"])
                r = eval_s2st("translatotron+hifigan", lambda rec: legacy_translate(s2st, wav(rec), vocoder),
                              s2st_rows, by_id, wav, peer, progress)
                report["metrics"]["translatotron+hifigan"] = r["metrics"]
                report["outputs"]["translatotron+hifigan"] = r["outputs"]
    finally:
        set_output_hook(previous)
    if with_alm:
        import alm

        model = alm.load(alm_checkpoint, watermark=False)

        def alm_tts(rec: dict[str, Any]) -> np.ndarray:
            v = voice_of(records, rec["speaker"], rec["split"], rec["id"], seed)
            return model.synthesize(rec["text"], rec["lang"], voice=wav(v) if v else None).audio

        def alm_s2st(rec: dict[str, Any]) -> np.ndarray:
            t = by_id[rec["translation_id"]]
            v = voice_of(records, t["speaker"], t["split"], t["id"], seed)
            return model.translate_speech(wav(rec), "en", source_language="es",
                                          voice=wav(v) if v else None).audio

        if tts_rows:
            r = eval_tts("alm tts", alm_tts, tts_rows, wav, peer, progress)
            report["metrics"]["alm_tts"], report["outputs"]["alm_tts"] = r["metrics"], r["outputs"]
        if s2st_rows:
            r = eval_s2st("alm s2st", alm_s2st, s2st_rows, by_id, wav, peer, progress)
            report["metrics"]["alm_s2st"], report["outputs"]["alm_s2st"] = r["metrics"], r["outputs"]
        report["models"]["alm"] = {"dir": str(model.path),
                                   "params_m": sum(p.numel() for p in model.model.parameters()) / 1e6}
    if alm_results and Path(alm_results).is_file():
        alm_eval = json.loads(Path(alm_results).read_text())
        same = alm_eval["config"].get("seed") == seed and alm_eval["config"].get("max_per_task") == max_per_task
        report["metrics"]["alm_asr"] = {**alm_eval["metrics"]["asr"], "same_utterances": float(same)}
    _write(report, out)
    return report


# --- report -------------------------------------------------------------------------------------------------------
def _pct(x: Any) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _num(x: Any, fmt: str = "{:.2f}") -> str:
    return "n/a" if x is None or not np.isfinite(x) else fmt.format(x)


def markdown(report: dict[str, Any]) -> str:
    """The comparison tables the README quotes."""
    m, models = report["metrics"], report["models"]

    def size(kind: str) -> str:
        info = models.get(kind, {})
        train = (f"{info['train_steps']} steps, {info['train_minutes']} min" if info.get("train_steps") else "")
        return f"{_num(info.get('params_m'), '{:.1f}')} M | {train}"

    lines = [f"Corpus `{report['corpus']}`, test split (held-out speakers), up to {report['max_per_task']} utterances "
             "per task chosen as `alm eval` chooses them (seed "
             f"{report['seed']}). Absent baselines: {', '.join(report['absent']) or 'none'}.", "",
             "**ASR** (greedy unless stated)", "",
             "| model | params | training | WER en | WER es | CER en | CER es | RTF |", "|---" * 8 + "|"]
    beams = [(k, "las") for k in m if k.startswith("las_beam")]
    for key, kind in [(k, k) for k in ASR] + beams + [("alm_asr", "alm")]:
        if key in m:
            x = m[key]
            lines.append(f"| {key} | {size(kind)} | {_pct(x.get('wer_en'))} | {_pct(x.get('wer_es'))} | "
                         f"{_pct(x.get('cer_en'))} | {_pct(x.get('cer_es'))} | {_num(x.get('rtf'), '{:.3f}')} |")
    s = m.get("rnnt_streaming")
    if s:
        lines += ["", f"**RNN-T streaming** (chunked causal encoder, audio fed one {s['chunk_ms']:.0f} ms chunk at a "
                  f"time): compute {s['compute_per_chunk_ms']:.1f} ms per chunk (streaming RTF "
                  f"{s['streaming_rtf']:.3f}), so a label is out at most {s['chunk_ms']:.0f} ms + "
                  f"{s['compute_per_chunk_ms']:.0f} ms after its audio arrives; {s['latency_after_end_ms']:.1f} ms "
                  f"from the end of the audio to the final transcript; streamed transcript = whole-utterance "
                  f"transcript on {_pct(s['streamed_equals_whole'])} of utterances."]
    lines += ["", "**TTS** (pocketsphinx WER on English output; MCD against the held-out speaker's real recording)", "",
              "| system | params | training | WER en (pocketsphinx) | MCD dB | RTF | acoustic model RTF | mean s |",
              "|---" * 8 + "|"]
    for key, kind in (("tacotron2+hifigan", "tacotron2"), ("fastspeech2+hifigan", "fastspeech2"),
                      ("alm_tts", "alm"), ("hifigan_resynthesis", "hifigan")):
        if key in m:
            x = m[key]
            lines.append(f"| {key} | {size(kind)} | {_pct(x.get('pocketsphinx_wer_en'))} | {_num(x.get('mcd_db'))} | "
                         f"{_num(x.get('rtf'), '{:.3f}')} | {_num(x.get('acoustic_rtf'), '{:.4f}')} | "
                         f"{_num(x.get('mean_seconds'))} |")
    if "tacotron2+hifigan" in m and "fastspeech2+hifigan" in m:
        t2, fs2 = m["tacotron2+hifigan"], m["fastspeech2+hifigan"]
        speedup = t2["acoustic_rtf"] / max(fs2["acoustic_rtf"], 1e-9)
        lines += ["", f"Per second of speech, FastSpeech 2's acoustic model is {speedup:.0f}x faster than Tacotron "
                  f"2's; with the shared HiFi-GAN the whole chain is {t2['rtf'] / max(fs2['rtf'], 1e-9):.1f}x faster."]
    lines += ["", "**S2ST** Spanish -> English (ASR-BLEU with pocketsphinx as the English listener)", "",
              "| system | params | training | ASR-BLEU | RTF | mean s |", "|---|---|---|---|---|---|"]
    for key, kind in (("translatotron+hifigan", "translatotron"), ("alm_s2st", "alm")):
        if key in m:
            x = m[key]
            lines.append(f"| {key} | {size(kind)} | {_num(x.get('asr_bleu_pocketsphinx'), '{:.1f}')} | "
                         f"{_num(x.get('rtf'), '{:.3f}')} | {_num(x.get('mean_seconds'))} |")
    return "\n".join(lines) + "\n"


def _write(report: dict[str, Any], out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=float) + "\n")
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(markdown(report))
    m = report["metrics"]
    try:
        with png_figure(out / "legacy_vs_alm.png", 1, 3, figsize=(15, 4)) as (_, ax):
            asr = {k: v.get("wer_en", np.nan) for k, v in m.items() if "wer_en" in v}
            ax[0].bar(list(asr), [100 * v for v in asr.values()])
            ax[0].set_title("ASR WER en (%)")
            tts = {k: v["mcd_db"] for k, v in m.items() if "mcd_db" in v}
            ax[1].bar(list(tts), list(tts.values()))
            ax[1].set_title("TTS mel-cepstral distortion (dB)")
            rtf = {k: v["rtf"] for k, v in m.items() if "rtf" in v}
            ax[2].bar(list(rtf), list(rtf.values()))
            ax[2].set_yscale("log")
            ax[2].set_title("real-time factor (log)")
            for a in ax:
                a.tick_params(axis="x", labelrotation=45, labelsize=7)
    except Exception as e:  # a plot must never cost the numbers
        log.warning("could not draw legacy_vs_alm.png: %s", e)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus directory (manifest form) with a test split")
    p.add_argument("--out", required=True, help="where results.json / results.md / the PNG go")
    p.add_argument("--runs", default="runs", help="directory holding legacy-<model>/final run directories")
    for kind in ALL:
        p.add_argument(f"--{kind}", type=Path, default=None,
                       help=f"{kind} directory (default RUNS/legacy-{kind}/final)")
    p.add_argument("--alm", default=None, help="ALM checkpoint for the TTS and S2ST rows (default: the shipped one)")
    p.add_argument("--no-alm", action="store_true", help="leave the ALM rows out")
    p.add_argument("--alm-results", default="benchmarks/results/alm_eval.json", help="an `alm eval` results.json")
    p.add_argument("--max-per-task", type=int, default=60)
    p.add_argument("--las-beam", type=int, default=4, help="LAS beam width for the extra beam row (0: none)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    dirs = {k: getattr(a, k) or Path(a.runs) / f"legacy-{k}" / "final" for k in ALL}
    report = evaluate(a.corpus, a.out, dirs, alm_checkpoint=a.alm, with_alm=not a.no_alm,
                      alm_results=a.alm_results, max_per_task=a.max_per_task, las_beam=a.las_beam, seed=a.seed)
    print(markdown(report))  # noqa: T201 - the command's output
    return report


if __name__ == "__main__":
    main()
