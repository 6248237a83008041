"""Long inputs: audio of any length for ASR, SLU and speech translation, and text of any length for TTS.

Audio (:func:`run_long_audio`)::

    file --(soundfile blocks, soxr stream resampling)--> 16 kHz blocks --(alm.vad)--> speech spans
         --> chunks of span audio + pad_s each side, each within the model's context (max_chunk_seconds)
         --> prepare / run / finish per chunk (guards included) --> one result with per-chunk ``segments``

A file is read in ``block_s`` blocks and only the open speech span is buffered, so memory stays flat however
long the input is (measured in ``benchmarks/longform.py``). Files soundfile cannot read (M4A, ...) are decoded
whole by :func:`codec.load_audio` first, and arrays are already in memory; both are still cut the same way.

**Previous-chunk prompt.** As in Whisper, each ASR chunk after the first is given the previous chunk's transcript
as context (``<asr> <lang> <text> … </text> <units> …``, :mod:`alm.prompts`) when the model was trained with
that slot (``config.asr_context``) and ``LongformConfig.condition_on_previous_text`` is on; a chunk that came
out empty passes nothing on. Older models (no slot) decode every chunk on its own. Chunks end at pauses, so few
words are cut in two.

Text (:func:`synthesize_long`): split into sentences by ``sentencex`` (over-long sentences further at commas, then
every ``max_sentence_words`` words), each normalized to spoken form and generated with the same
voice prompt (with no ``voice`` given, the first sentence's voice is reused for the rest), joined with
``pause_s`` of silence and watermarked once.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import soxr
import torch
from tqdm.auto import tqdm

from alm.generation import model_budget
from alm.prompts import MAX_CONTEXT_TOKENS, parse_output
from alm.textnorm import normalize_text
from alm.vad import SAMPLE_RATE, SpeechSegmenter, VadConfig
from codec import AudioInputError, load_audio
from codec.audio import audio_info

if TYPE_CHECKING:
    from alm.api import AudioLanguageModel, GenerationOptions, Result

log = logging.getLogger(__name__)

UNIT_RATE = 50  # unit (and codec) frames per second: the most a prompt can carry per second of speech
MIN_CHUNK_S = 1.0  # a model whose context holds less speech than this is not given long-form audio
LANGUAGE_VOTES = 3  # with no language given, the first 3 chunks with speech vote on it; the rest use the winner


@dataclass(frozen=True)
class Segment:
    """One piece of a result: ``text`` spoken from ``start`` to ``end`` seconds.

    For transcription, understanding and translation the times are in the *input* audio (the speech the VAD
    found, without the context pad); for synthesis and translation audio they are in the *output*: for
    :class:`alm.api.SpeechResult` segments always locate ``text`` in ``.audio``.
    """

    start: float
    end: float
    text: str
    language: str | None = None


@dataclass(frozen=True)
class LongformConfig:
    """How long inputs are cut and joined.

    Attributes:
        max_chunk_s: longest chunk of speech decoded at once (also capped by the model's context).
        block_s: seconds read from a file at a time.
        vad: speech-span detection (its ``max_span_s`` is set from the chunk limit).
        pause_s: silence between joined pieces of generated speech.
        max_sentence_words: longer sentences are split for synthesis.
        chain_voice: with no voice given, synthesize sentences after the first in the first one's voice.
        condition_on_previous_text: give each ASR chunk the previous chunk's transcript as context (models
            trained with it only, ``config.asr_context``).
    """

    max_chunk_s: float = 20.0
    block_s: float = 10.0
    vad: VadConfig = field(default_factory=VadConfig)
    pause_s: float = 0.3
    max_sentence_words: int = 25
    chain_voice: bool = True
    condition_on_previous_text: bool = True


@dataclass(frozen=True)
class Chunk:
    """Speech to decode: ``audio`` ``[T]`` float32 at 16 kHz (the span plus context); the span itself runs from
    ``start`` to ``end`` seconds of the stream."""

    start: float
    end: float
    audio: np.ndarray


# --- reading -------------------------------------------------------------------------------------------------
def source_duration(source: Any, sample_rate: int | None = None) -> float | None:
    """Seconds of audio in a path, encoded bytes or array, read from the header or shape (``None``: unknown)."""
    if isinstance(source, (np.ndarray, torch.Tensor)):
        if source.ndim not in (1, 2) or min(source.shape, default=0) == 0:
            return None
        return max(source.shape) / (sample_rate or SAMPLE_RATE)
    if isinstance(source, (str, os.PathLike)):
        duration = audio_info(source)["duration"]  # AudioInputError for a missing or unreadable file
        return None if math.isnan(duration) else float(duration)
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            info = sf.info(io.BytesIO(bytes(source)))
        except (sf.SoundFileError, RuntimeError):
            return None
        return info.frames / info.samplerate
    return None


def read_blocks(source: Any, sample_rate: int | None = None, block_s: float = 10.0) -> Iterator[np.ndarray]:
    """Yield ``[T]`` float32 mono blocks at 16 kHz from a path, encoded bytes or an array.

    Paths and bytes that soundfile reads are streamed (only one block in memory, resampled by a soxr stream);
    other formats go through :func:`codec.load_audio` whole.

    Raises:
        AudioInputError: missing, unreadable or empty audio, NaN/Inf samples (as :func:`codec.load_audio`).
    """
    size = max(1, int(block_s * SAMPLE_RATE))
    f = _open_soundfile(source)
    if f is None:
        rate = sample_rate if isinstance(source, (np.ndarray, torch.Tensor)) else None
        wav = load_audio(source, SAMPLE_RATE, source_rate=rate, max_seconds=None).numpy()
        for i in range(0, wav.size, size):
            yield wav[i: i + size]
        return
    name = str(source) if isinstance(source, (str, os.PathLike)) else f"<{len(source)} bytes>"
    with f:
        resampler = None if f.samplerate == SAMPLE_RATE else soxr.ResampleStream(f.samplerate, SAMPLE_RATE, 1,
                                                                                   dtype="float32")
        total = 0
        for block in f.blocks(blocksize=max(1, int(block_s * f.samplerate)), dtype="float32", always_2d=True):
            total += len(block)
            mono = block.mean(axis=1, dtype=np.float32)  # [T]
            if not np.isfinite(mono).all():
                raise AudioInputError(f"{name} contains NaN/Inf samples")
            out = mono if resampler is None else resampler.resample_chunk(mono)
            yield np.clip(out, -1.0, 1.0)
        if resampler is not None:
            yield np.clip(resampler.resample_chunk(np.zeros(0, np.float32), last=True), -1.0, 1.0)
        if total == 0:
            raise AudioInputError(f"{name} is empty: it holds zero samples")


def _open_soundfile(source: Any) -> sf.SoundFile | None:
    if isinstance(source, (str, os.PathLike)):
        audio_info(source)  # AudioInputError naming a missing, empty or unreadable file
        try:
            return sf.SoundFile(str(Path(source)))
        except (sf.SoundFileError, RuntimeError):
            return None
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            return sf.SoundFile(io.BytesIO(bytes(source)))
        except (sf.SoundFileError, RuntimeError):
            return None
    return None


def iter_chunks(blocks: Iterator[np.ndarray], vad: VadConfig | None = None) -> Iterator[Chunk]:
    """Cut a 16 kHz block stream into speech chunks (see the module docstring); audio outside speech and its
    pads is dropped as it streams past, so at most one span (``vad.max_span_s``) plus a block is held."""
    cfg = vad or VadConfig()
    pad = int(cfg.pad_s * SAMPLE_RATE)
    segmenter = SpeechSegmenter(cfg)
    buf, buf_start = np.zeros(0, np.float32), 0  # audio from sample buf_start of the stream

    def cut(spans: list) -> Iterator[Chunk]:
        for span in spans:
            lo, hi = max(buf_start, span.start - pad), min(buf_start + buf.size, span.end + pad)
            yield Chunk(span.start / SAMPLE_RATE, span.end / SAMPLE_RATE, buf[lo - buf_start: hi - buf_start].copy())

    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, np.float32)])
        yield from cut(segmenter.feed(block))
        keep = segmenter.open_start if segmenter.open_start is not None else segmenter.position
        drop = max(0, keep - pad - buf_start)
        buf, buf_start = buf[drop:], buf_start + drop
    yield from cut(segmenter.flush())


def max_chunk_seconds(model: AudioLanguageModel, task: str, limit: float = 30.0) -> float:
    """Longest speech (seconds, 0.1 s steps, at most ``limit``) whose ``task`` prompt and output budget fit
    the model's context in the worst case (one unit per 20 ms frame: no repeats to collapse); 0.0 when not
    even a tenth of a second does."""
    cfg, k = model.model.config, model.num_codebooks
    context, voice = cfg.max_position_embeddings, model._voice_frames() * k + 2

    def fits(seconds: float) -> bool:
        frames = math.ceil(seconds * UNIT_RATE)
        speech = {"units": frames + 2, "codec": frames * k + 2, "both": frames * (k + 1) + 4}[cfg.input_speech]
        source = frames  # units, or codec frames when the prompt carries no units
        head = {"asr": 2 + (MAX_CONTEXT_TOKENS + 2 if cfg.asr_context else 0), "slu": 2, "s2st": 3 + voice}[task]
        return head + speech + model_budget(cfg, task, source, k) <= context

    lo, hi = 0, int(limit * 10)
    while lo < hi:  # the largest tenth of a second that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid / 10) else (lo, mid - 1)
    return lo / 10


# --- long audio ----------------------------------------------------------------------------------------------
def run_long_audio(model: AudioLanguageModel, task: str, source: Any, options: GenerationOptions, *,
                   sample_rate: int | None = None, config: LongformConfig | None = None,
                   **task_options: Any) -> Result:
    """Transcribe (``asr``), understand (``slu``) or translate (``s2st``) audio of any length chunk by chunk.

    Args:
        model: the :class:`alm.api.AudioLanguageModel`.
        source: a path, encoded bytes or a waveform (at ``sample_rate``, default 16 kHz).
        options: decoding options, the same for every chunk.
        task_options: the task method's keyword arguments (``language``; ``target_language``,
            ``source_language``, ``voice`` for ``s2st``).

    Returns:
        The task's result for the whole input with ``segments`` (times in the input; in the output audio for
        ``s2st``), as described in :mod:`alm.api`.
    """
    cfg = config or LongformConfig()
    limit = min(cfg.max_chunk_s, max_chunk_seconds(model, task))
    if limit < MIN_CHUNK_S:
        raise ValueError(f"this model's context ({model.model.config.max_position_embeddings} positions) holds "
                         f"less than {MIN_CHUNK_S:g} s of speech for {task}: long audio cannot be cut to fit it")
    vad = replace(cfg.vad, max_span_s=max(1.0, limit - 2 * cfg.vad.pad_s))
    if task_options.get("voice") is not None:  # decode a voice prompt once, not once per chunk
        task_options["voice"] = model._load_wav(task_options["voice"], sample_rate, "voice")
    chain_text = task == "asr" and cfg.condition_on_previous_text and bool(model.model.config.asr_context)
    lang_key = "source_language" if task == "s2st" else "language"
    detect = task_options.get(lang_key) is None
    votes: Counter[str] = Counter()
    pieces: list[tuple[tuple[float, float], str | None, Any]] = []  # (span times, language, result): no audio
    duration = source_duration(source, sample_rate)
    bar = tqdm(total=None if duration is None else round(duration), unit="s", desc=f"{task} (long-form)",
               disable=None)
    for chunk in iter_chunks(read_blocks(source, sample_rate, cfg.block_s), vad):
        bar.update(round(chunk.end) - bar.n)
        try:
            job = model.prepare(task, chunk.audio, **task_options)
        except AudioInputError as e:  # s2st refuses a chunk without speech: nothing to translate there
            log.debug("chunk %.1f-%.1f s skipped: %s", chunk.start, chunk.end, e)
            continue
        language, ids = model.run(job, options)
        result = model._finish(job, language, ids, mark=False)
        pieces.append(((chunk.start, chunk.end), language, result))  # the chunk's audio is not kept
        if chain_text:
            task_options["context"] = result.text or None
        if detect and language is not None and _has_content(task, result):
            votes[language] += 1
            if sum(votes.values()) >= LANGUAGE_VOTES:  # settle the language, as Whisper does after 30 s
                task_options[lang_key], detect = votes.most_common(1)[0][0], False
                log.info("long-form %s: language settled to %s (%s)", task, task_options[lang_key], dict(votes))
    bar.close()
    log.info("long-form %s: %d chunks with speech", task, len(pieces))
    return _combine(model, task, pieces, task_options.get(lang_key), cfg.pause_s)


def _has_content(task: str, result: Any) -> bool:
    return bool(result.text) if task != "s2st" else len(result.audio) > 0


def _combine(model: AudioLanguageModel, task: str, pieces: list[tuple[tuple[float, float], str | None, Any]],
             language: str | None, pause_s: float) -> Result:
    from alm.api import SpeechResult, TranscriptionResult, UnderstandingResult  # alm.api imports this module

    if task in ("asr", "slu"):
        segments = tuple(Segment(a, b, r.text, lang) for (a, b), lang, r in pieces if r.text)
        if task == "slu":
            first = next((r for _, _, r in pieces if r.intent), None)
            words = " ".join(r.transcript for _, _, r in pieces if r.transcript)
            if first is None:
                return UnderstandingResult("", {}, "", segments, words)
            return UnderstandingResult(first.intent, first.slots, first.text, segments, words)
        spoken: Counter[str] = Counter()
        for s in segments:
            spoken[s.language] += s.end - s.start
        text = " ".join(s.text for s in segments)
        lang = spoken.most_common(1)[0][0] if spoken else language
        return TranscriptionResult(text, lang, model.vocab.encode_text(text) if text else [], segments)
    kept = [(lang, r) for _, lang, r in pieces if len(r.audio)]
    if not kept:
        raise AudioInputError("no speech found in the audio: there is nothing to translate")
    audio, times = join_audio([r.audio for _, r in kept], pause_s)
    segments = tuple(Segment(a, b, r.text or "", None) for (a, b), (_, r) in zip(times, kept))
    texts = [r.text for _, r in kept if r.text]
    return SpeechResult(model._mark(audio), SAMPLE_RATE, " ".join(texts) if texts else None, segments)


def join_audio(pieces: list[np.ndarray], pause_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenate ``[T_i]`` waveforms with ``pause_s`` of silence between them; returns the ``[T]`` audio and
    each piece's ``(start, end)`` seconds in it."""
    pause = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    out, times, pos = [], [], 0
    for i, p in enumerate(pieces):
        if i:
            out.append(pause)
            pos += pause.size
        out.append(p.astype(np.float32))
        times.append((pos / SAMPLE_RATE, (pos + p.size) / SAMPLE_RATE))
        pos += p.size
    return (np.concatenate(out) if out else np.zeros(0, np.float32)), times


# --- long text -----------------------------------------------------------------------------------------------
_CLAUSE = re.compile(r"(?<=[,;:])\s+")


def split_sentences(text: str, language: str, max_words: int = 25) -> list[str]:
    """``text`` in spoken form (:func:`alm.textnorm.normalize_text`), one sentence per item.

    Sentences come from ``sentencex`` (rule-based, with each language's abbreviations: "Dr.", "Sr.", "U.S.",
    initials), found in the written text and then normalized; those over ``max_words`` words are split at
    commas, semicolons and colons, then every ``max_words`` words. Pieces without a letter or digit go.
    """
    from sentencex import segment

    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    out: list[str] = []
    for written in segment(language, text):
        sentence = normalize_text(written.strip(), language)
        pieces = [sentence] if len(sentence.split()) <= max_words else _CLAUSE.split(sentence)
        for piece in pieces:
            words = piece.split()
            for i in range(0, len(words), max_words):
                part = " ".join(words[i: i + max_words])
                if any(ch.isalnum() for ch in part):
                    out.append(part)
    return out


def synthesize_long(model: AudioLanguageModel, sentences: list[str], language: str, voice: Any,
                    options: GenerationOptions, *, sample_rate: int | None = None,
                    config: LongformConfig | None = None) -> Result:
    """Speak ``sentences`` (spoken form, from :func:`split_sentences`) one by one in one voice, joined with
    pauses; ``segments`` give each sentence's place in the audio."""
    from alm.api import SpeechResult  # alm.api imports this module

    cfg = config or LongformConfig()
    voice_codes = None if voice is None else model._voice_codes(model._load_wav(voice, sample_rate, "voice"))
    frames = model._voice_frames()
    waves = []
    for sentence in tqdm(sentences, desc="tts (long-form)", unit="sentence", disable=None):
        job = model._tts_job(sentence, language, voice_codes)
        lang, ids = model.run(job, options)
        waves.append(model._finish(job, lang, ids, mark=False).audio)
        if voice_codes is None and cfg.chain_voice:
            codes = parse_output(model.vocab, "tts", ids, model.num_codebooks).codes
            if codes is not None and codes.shape[1] >= frames:  # a whole voice prompt's worth of speech
                voice_codes = codes[:, :frames]
    audio, times = join_audio(waves, cfg.pause_s)
    segments = tuple(Segment(a, b, s, language) for (a, b), s in zip(times, sentences))
    return SpeechResult(model._mark(audio), SAMPLE_RATE, None, segments)
