"""``alm eval``: every task of a checkpoint, measured on a corpus split of held-out speakers, through the public API.

    alm eval --corpus corpus --split test --out runs/eval          # the shipped default model
    alm eval CHECKPOINT --corpus corpus --max-per-task 100 --out runs/eval

What is measured (each task runs through :class:`alm.api.AudioLanguageModel`, i.e. what a user gets; greedy
decoding unless ``--strategy`` says otherwise; the language is given, as a user who knows it would):

- **asr**: WER and CER per language (:mod:`training.evaluation.metrics`); the English audio also through the
  pocketsphinx peer (:mod:`training.evaluation.pocketsphinx_peer`).
- **tts**: intelligibility = WER of the synthesized speech transcribed by the same checkpoint's ASR, next to the
  same ASR's WER on the codec resynthesis of the real recording (the ceiling the codec allows); for English also
  both through pocketsphinx (a listener independent of the model under test); speaker similarity
  of the output to the voice prompt (another utterance of the same held-out speaker) with
  :class:`training.evaluation.speaker.SpeakerSimilarity`.
- **s2st**: ASR-BLEU (target-language ASR of the output speech vs the reference translation), BLEU of the text the
  model writes first (the text chain), speaker similarity to the target voice prompt.
- **slu**: intent accuracy and slot F1.
- **continue**: speaker similarity of the continuation to its prompt.
- **speed**: real-time factor per task (processing seconds / seconds of audio in for asr/slu/s2st, out for
  tts/continue) and generated tokens/s with and without the KV cache.

Written to ``OUT``: ``results.json`` (every number and per-utterance outputs), ``results.md`` (the table the README
quotes), ``eval.png`` (metric bars, RTF, a synthesized vs real spectrogram) and a few ``samples/*.wav``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from alm.prompts import tts_prompt
from codec.audio import load_audio, save_audio
from training.data.corpus import read_manifest
from training.evaluation.metrics import bleu, char_error_rate, intent_accuracy, slot_f1, word_error_rate
from training.evaluation.speaker import SpeakerSimilarity
from training.plots import png_figure

log = logging.getLogger(__name__)

TASKS = ("asr", "tts", "s2st", "slu", "continue")
SAMPLE_RATE = 16000


@dataclass
class EvalConfig:
    """What ``alm eval`` measures and how."""

    split: str = "test"
    tasks: tuple[str, ...] = TASKS
    max_per_task: int = 60  # utterances per task, balanced over languages
    strategy: str = "greedy"
    max_new_tokens: int | None = None  # cap on generated ids per call (None: the task's input-derived budget)
    peer: bool = True  # pocketsphinx on the English ASR audio
    speaker_fit_utterances: int = 1500  # train-split utterances the speaker-similarity scorer is fitted on
    speed_tokens: int = 200  # tokens generated for the tokens/s figures
    save_samples: int = 3  # WAVs written per generating task
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"unknown or no tasks {unknown or list(self.tasks)}; known: {', '.join(TASKS)}")
        if self.max_per_task < 1:
            raise ValueError(f"max_per_task must be >= 1, got {self.max_per_task}")


@dataclass
class EvalReport:
    """``metrics``: ``{task: {name: value}}``; ``outputs``: per-utterance records; ``reference``: scorer baselines."""

    checkpoint: str
    corpus: str
    config: dict[str, Any]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# --- selection ----------------------------------------------------------------------------------------------------
def select(records: list[dict[str, Any]], split: str, task: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``n`` records of ``split`` serving ``task``, alternating languages, in a seeded order. TTS and S2ST
    needs a voice prompt from another utterance of the speaker, so speakers with one utterance are skipped (S2ST
    falls back to the source speaker's own voice then, the API's default)."""
    by_id = {r["id"]: r for r in records}
    per_speaker = Counter((r["speaker"], r.get("split", "train")) for r in records)
    pool = [r for r in records if r.get("split", "train") == split and task in r.get("tasks", ())]
    if task == "tts":
        pool = [r for r in pool if per_speaker[r["speaker"], split] > 1]
    if task == "s2st":
        pool = [r for r in pool if r.get("translation_id") in by_id]
    if task == "slu":
        pool = [r for r in pool if r.get("intent")]
    if task == "continue":
        pool = [r for r in pool if r.get("continue_at") and r["duration"] - r["continue_at"] > 0.5]
    rng = np.random.default_rng(seed)
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in rng.permutation(len(pool)):
        by_lang[pool[i]["lang"]].append(pool[i])
    out, queues = [], [by_lang[k] for k in sorted(by_lang)]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def voice_of(records: list[dict[str, Any]], speaker: str, split: str, exclude: str, seed: int
             ) -> dict[str, Any] | None:
    """Another utterance of ``speaker`` in ``split`` (seeded choice) for a voice prompt; ``None`` if there is none."""
    others = sorted((r for r in records if r["speaker"] == speaker and r.get("split", "train") == split
                     and r["id"] != exclude), key=lambda r: r["id"])
    if not others:
        return None
    return others[int(np.random.default_rng([seed, len(exclude)]).integers(len(others)))]


# --- the run ------------------------------------------------------------------------------------------------------
def evaluate(checkpoint: str | os.PathLike | None, corpus: str | os.PathLike, out: str | os.PathLike,
             cfg: EvalConfig | None = None, progress: bool = True) -> EvalReport:
    """Measure a checkpoint (``None``: the shipped default) on ``corpus``'s ``cfg.split``; writes ``out``."""
    import alm

    cfg = cfg or EvalConfig()
    corpus, out = Path(corpus), Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    model = alm.load(checkpoint)
    records = read_manifest(corpus)
    wav_cache: dict[str, np.ndarray] = {}

    def wav(r: dict[str, Any]) -> np.ndarray:
        if r["id"] not in wav_cache:
            wav_cache[r["id"]] = load_audio(corpus / r["path"], SAMPLE_RATE).numpy()
        return wav_cache[r["id"]]

    report = EvalReport(str(model.path), str(corpus), asdict(cfg))
    opts: dict[str, Any] = {"strategy": cfg.strategy}
    if cfg.max_new_tokens:
        opts["max_new_tokens"] = cfg.max_new_tokens
    speaker = None
    if any(t in cfg.tasks for t in ("tts", "s2st", "continue")):
        speaker = _fit_speaker_scorer(records, cfg, wav, report, progress)

    def asr_text(audio: np.ndarray, lang: str) -> str:
        return model.transcribe(audio, language=lang, **opts).text

    peer = None  # pocketsphinx: the ASR peer, and a listener for English synthesized speech independent of ours
    if cfg.peer and ("asr" in cfg.tasks or "tts" in cfg.tasks):
        from training.evaluation.pocketsphinx_peer import PocketSphinx

        peer = PocketSphinx()
    by_id = {r["id"]: r for r in records}

    timing: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # task -> [seconds spent, seconds of audio]
    for task in cfg.tasks:
        chosen = select(records, cfg.split, task, cfg.max_per_task, cfg.seed)
        if not chosen:
            log.warning("%s: the %s split has no utterances for this task; skipped", task, cfg.split)
            continue
        rows = []
        for n, r in enumerate(tqdm(chosen, desc=f"eval {task}", disable=not progress)):
            rows.append(_run_one(task, r, records, by_id, model, wav, asr_text, speaker, cfg, opts, timing, out,
                                 n < cfg.save_samples, peer))
        report.outputs[task] = rows
        report.metrics[task] = _score(task, rows)
        spent, audio_s = timing[task]
        report.metrics[task]["rtf"] = spent / max(audio_s, 1e-9)
        log.info("%s: %s", task, report.metrics[task])
    if peer is not None and "asr" in report.outputs:
        report.metrics.setdefault("peer", {}).update(_pocketsphinx(peer, report.outputs["asr"], by_id, wav, progress))
    report.metrics["speed"] = _speed(model, cfg)
    _write(report, out)
    return report


def _fit_speaker_scorer(records: list[dict[str, Any]], cfg: EvalConfig, wav: Any, report: EvalReport,
                        progress: bool) -> SpeakerSimilarity:
    rng = np.random.default_rng(cfg.seed)
    train = [r for r in records if r.get("split", "train") == "train"]
    train = [train[i] for i in rng.permutation(len(train))[: cfg.speaker_fit_utterances]]
    wavs = [load_audio(Path(report.corpus) / r["path"], SAMPLE_RATE).numpy()
            for r in tqdm(train, desc="speaker scorer", disable=not progress)]
    scorer = SpeakerSimilarity().fit(wavs, [r["speaker"] for r in train])
    test = [r for r in records if r.get("split", "train") == cfg.split][:300]
    report.reference["speaker_similarity_real"] = scorer.reference_scores([wav(r) for r in test],
                                                                          [r["speaker"] for r in test])
    log.info("speaker similarity of real %s audio: %s", cfg.split, report.reference["speaker_similarity_real"])
    return scorer


def _timed(timing: dict[str, list[float]], task: str, audio_seconds: float, fn: Any) -> Any:
    t = time.perf_counter()
    result = fn()
    spent = time.perf_counter() - t
    seconds = audio_seconds if audio_seconds else getattr(result, "duration", 0.0)
    timing[task][0] += spent
    timing[task][1] += seconds
    return result


def _run_one(task: str, r: dict[str, Any], records: list[dict[str, Any]], by_id: dict[str, dict[str, Any]],
             model: Any, wav: Any, asr_text: Any,
             speaker: SpeakerSimilarity | None, cfg: EvalConfig, opts: dict[str, Any],
             timing: dict[str, list[float]], out: Path, keep_sample: bool, peer: Any = None
             ) -> dict[str, Any]:
    audio, lang = wav(r), r["lang"]
    row: dict[str, Any] = {"id": r["id"], "lang": lang, "speaker": r["speaker"]}
    if task == "asr":
        res = _timed(timing, task, r["duration"], lambda: model.transcribe(audio, language=lang, **opts))
        row.update(reference=r["text"], hypothesis=res.text)
    elif task == "slu":
        res = _timed(timing, task, r["duration"], lambda: model.understand(audio, language=lang, **opts))
        slots = r.get("slots") or {}
        row.update(reference_intent=r["intent"], intent=res.intent,
                   reference_slots=json.loads(slots) if isinstance(slots, str) else slots, slots=res.slots,
                   output=res.text, transcript=res.transcript)
    elif task == "tts":
        v = voice_of(records, r["speaker"], r["split"], r["id"], cfg.seed)
        assert v is not None  # select() keeps only speakers with another utterance
        res = _timed(timing, task, 0.0, lambda: model.synthesize(r["text"], lang, voice=wav(v), **opts))
        resynth = model.codec.decode(model.codec.encode(audio)[:, : model.num_codebooks])[0].cpu().numpy()
        row.update(reference=r["text"], hypothesis=asr_text(res.audio, lang) if res.duration else "",
                   resynth_hypothesis=asr_text(resynth, lang), seconds=res.duration,
                   speaker_similarity=_similar(speaker, res.audio, wav(v)))
        if peer is not None and lang == "en":
            row.update(pocketsphinx_hypothesis=peer(res.audio) if res.duration else "",
                       resynth_pocketsphinx_hypothesis=peer(resynth))
    elif task == "s2st":
        t = by_id[r["translation_id"]]
        v = voice_of(records, t["speaker"], t["split"], t["id"], cfg.seed)
        voice = wav(v) if v is not None else None  # None: the source speaker's own voice
        res = _timed(timing, task, r["duration"], lambda: model.translate_speech(
            audio, t["lang"], source_language=lang, voice=voice, **opts))
        row.update(target_lang=t["lang"], reference=t["text"], text=res.text or "",
                   hypothesis=asr_text(res.audio, t["lang"]) if res.duration else "", seconds=res.duration,
                   voice="target speaker" if v is not None else "own voice",
                   speaker_similarity=_similar(speaker, res.audio, voice if voice is not None else audio))
    else:  # continue
        cut = int(r["continue_at"] * SAMPLE_RATE)
        seconds = r["duration"] - r["continue_at"]
        res = _timed(timing, task, 0.0, lambda: model.continue_speech(audio[:cut], seconds=seconds, **opts))
        row.update(seconds=res.duration, speaker_similarity=_similar(speaker, res.audio, audio[:cut]),
                   real_continuation_similarity=_similar(speaker, audio[cut:], audio[:cut]))
    if keep_sample and task in ("tts", "s2st", "continue") and res.duration:
        save_audio(out / "samples" / f"{task}-{r['id']}.wav", res.audio, res.sample_rate)
    return row


def _similar(scorer: SpeakerSimilarity | None, a: np.ndarray, b: np.ndarray) -> float | None:
    if scorer is None or len(a) < SAMPLE_RATE // 10 or len(b) < SAMPLE_RATE // 10:
        return None  # nothing (or too little) generated to compare
    return scorer.score(a, b)


def _mean(values: list[float | None]) -> float:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else float("nan")


def _score(task: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    m: dict[str, float] = {"n": float(len(rows))}
    langs = sorted({r.get("target_lang", r["lang"]) for r in rows})
    if task in ("asr", "tts"):
        for lang in langs:
            sub = [r for r in rows if r["lang"] == lang]
            m[f"wer_{lang}"] = word_error_rate([r["reference"] for r in sub], [r["hypothesis"] for r in sub], lang)
            m[f"cer_{lang}"] = char_error_rate([r["reference"] for r in sub], [r["hypothesis"] for r in sub], lang)
            if task == "tts":
                m[f"resynth_wer_{lang}"] = word_error_rate([r["reference"] for r in sub],
                                                           [r["resynth_hypothesis"] for r in sub], lang)
        m["wer"] = _mean([m[f"wer_{lang}"] for lang in langs])
        heard = [r for r in rows if "pocketsphinx_hypothesis" in r]
        if task == "tts" and heard:  # intelligibility to an ASR that is not ours
            refs = [r["reference"] for r in heard]
            m["pocketsphinx_wer_en"] = word_error_rate(refs, [r["pocketsphinx_hypothesis"] for r in heard], "en")
            m["resynth_pocketsphinx_wer_en"] = word_error_rate(
                refs, [r["resynth_pocketsphinx_hypothesis"] for r in heard], "en")
    if task == "s2st":
        for lang in langs:
            sub = [r for r in rows if r["target_lang"] == lang]
            m[f"asr_bleu_to_{lang}"] = bleu([r["reference"] for r in sub], [r["hypothesis"] for r in sub], lang)
            written = [r for r in sub if r["text"]]
            if written:
                m[f"text_bleu_to_{lang}"] = bleu([r["reference"] for r in written], [r["text"] for r in written],
                                                 lang)
        m["asr_bleu"] = _mean([m[f"asr_bleu_to_{lang}"] for lang in langs])
    if task == "slu":
        m["intent_accuracy"] = intent_accuracy([r["reference_intent"] for r in rows], [r["intent"] for r in rows])
        m["slot_f1"] = _mean([slot_f1([r["reference_slots"] for r in rows if r["lang"] == lang],
                                      [r["slots"] for r in rows if r["lang"] == lang], lang) for lang in langs])
    if task in ("tts", "s2st", "continue"):
        m["speaker_similarity"] = _mean([r["speaker_similarity"] for r in rows])
        m["mean_seconds"] = _mean([r["seconds"] for r in rows])
    if task == "continue":
        m["real_continuation_similarity"] = _mean([r["real_continuation_similarity"] for r in rows])
    return m


def _pocketsphinx(peer: Any, rows: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], wav: Any,
                  progress: bool) -> dict[str, float]:
    english = [r for r in rows if r["lang"] == "en"]
    if not english:
        return {}
    hyps = [peer(wav(by_id[r["id"]])) for r in tqdm(english, desc="pocketsphinx", disable=not progress)]
    for r, h in zip(english, hyps):
        r["pocketsphinx"] = h
    refs = [r["reference"] for r in english]
    return {"pocketsphinx_wer_en": word_error_rate(refs, hyps, "en"),
            "pocketsphinx_cer_en": char_error_rate(refs, hyps, "en"),
            "alm_wer_en_same_audio": word_error_rate(refs, [r["hypothesis"] for r in english], "en")}


def _speed(model: Any, cfg: EvalConfig) -> dict[str, float]:
    """Generated tokens/s of a TTS prompt forced to ``cfg.speed_tokens`` new ids, with and without the KV cache."""
    k = model.num_codebooks
    prompt = tts_prompt(model.vocab, "en", "the quick brown fox jumps over the lazy dog")
    frames = cfg.speed_tokens // k
    out = {}
    for name, cache in (("tokens_per_s_kv_cache", True), ("tokens_per_s_no_cache", False)):
        t = time.perf_counter()
        ids = model.generate(prompt, "tts", min_frames=frames, max_new_tokens=frames * k + 4, use_cache=cache)
        out[name] = len(ids) / (time.perf_counter() - t)
    return out


# --- report -------------------------------------------------------------------------------------------------------
def markdown(report: EvalReport) -> str:
    """The Markdown table of a report (what the README quotes)."""
    m, ref = report.metrics, report.reference
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    held_out = ", held-out speakers" if report.config["split"] == "test" else ""
    lines = [f"Checkpoint `{report.checkpoint}`, corpus `{report.corpus}` ({report.config['split']} split{held_out}), "
             f"up to {report.config['max_per_task']} utterances per task, {report.config['strategy']} "
             "decoding.", "", "| task | metric | value |", "|---|---|---|"]
    for task, ms in m.items():
        for name, v in ms.items():
            if name == "n":
                continue
            shown = (pct(v) if any(s in name for s in ("wer", "cer", "accuracy", "f1")) else
                     f"{v:.1f}" if "bleu" in name or "tokens_per_s" in name else f"{v:.3f}")
            lines.append(f"| {task} | {name} | {shown} |")
    if "speaker_similarity_real" in ref:
        s = ref["speaker_similarity_real"]
        lines += ["", f"Speaker similarity scale (real {report.config['split']} audio): same speaker "
                  f"{s['same_speaker']:.3f}, different speakers {s['different_speaker']:.3f}, EER {pct(s['eer'])}."]
    return "\n".join(lines) + "\n"


def _write(report: EvalReport, out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False, default=float) + "\n")
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(markdown(report))
    try:
        _plot(report, out / "eval.png")
    except Exception as e:  # a plot must never cost the numbers
        log.warning("could not draw eval.png: %s", e)


def _plot(report: EvalReport, path: Path) -> None:
    with png_figure(path, 1, 3, figsize=(15, 4)) as (_, ax):
        _draw(report.metrics, ax, path)


def _draw(m: dict[str, dict[str, float]], ax: Any, path: Path) -> None:
    """Metric bars, RTF bars, and the log-mel spectrogram of the first synthesized sample."""
    from codec.features import log_mel

    bars = {f"{t} {k}": v for t, ms in m.items() for k, v in ms.items()
            if any(s in k for s in ("wer", "accuracy", "f1", "similarity")) and "_" in k or k == "wer"}
    bars = {k: v for k, v in bars.items() if np.isfinite(v)}
    ax[0].barh(list(bars), list(bars.values()))
    ax[0].set_title("error rates, accuracies, similarities")
    ax[0].tick_params(axis="y", labelsize=6)
    rtf = {t: ms["rtf"] for t, ms in m.items() if "rtf" in ms}
    ax[1].bar(list(rtf), list(rtf.values()))
    ax[1].axhline(1.0, color="k", lw=0.5)
    ax[1].set_title("real-time factor (< 1: faster than real time)")
    samples = sorted((path.parent / "samples").glob("tts-*.wav"))
    if samples:
        mel = log_mel(load_audio(samples[0], SAMPLE_RATE)).numpy()
        ax[2].imshow(mel, origin="lower", aspect="auto")
        ax[2].set_title(f"log-mel of {samples[0].name}")
    else:
        ax[2].axis("off")  # no synthesized sample in this run
