"""The Python API: ``alm.load()`` gives an :class:`AudioLanguageModel` that does every task in one call::

    import alm
    model = alm.load()                                     # the shipped default, or alm.load("path/to/ckpt")
    model.transcribe("hello.wav").text
    model.synthesize("good morning", language="en", voice="speaker.wav").save("out.wav")
    model.translate_speech("hola.wav", target_language="en")          # SpeechResult, .text = the English text
    model.understand("play jazz.wav")                      # UnderstandingResult(intent, slots, text)
    model.continue_speech("prompt.wav", seconds=3)         # SpeechResult, same voice
    model.generate(prompt_ids, task="asr")                 # raw: a task prompt is just token ids

Each task runs in three stages, which the Hugging Face pipelines (:mod:`alm.pipelines`) call one by one:
:meth:`AudioLanguageModel.prepare` (audio/text in -> prompt ids), :meth:`AudioLanguageModel.run` (constrained
generation) and :meth:`AudioLanguageModel.finish` (ids -> a result dataclass; codec tokens -> waveform).

Audio arguments are a path, encoded bytes, or a waveform (``np.ndarray`` / ``torch.Tensor``) at 16 kHz unless
``sample_rate=`` says otherwise. Every waveform the API generates passes through the watermark hook
(:func:`set_watermark_hook`) before it is returned.

Long inputs (:mod:`alm.longform`): ``transcribe``, ``understand`` and ``translate_speech`` take audio of any length;
audio longer than one chunk (``model.longform.max_chunk_s``, at most what the context holds) is streamed, cut at
pauses by a voice-activity detector and decoded chunk by chunk, and ``result.segments`` gives each chunk's
``(start, end, text)``. ``synthesize`` splits text of several sentences and speaks them one by one in one voice.
The stage methods (``prepare`` / ``run`` / ``finish``) take one chunk-sized input each.

Hallucination guards (:mod:`alm.guards`, ``model.guards``): audio that is clearly not speech (silence, noise,
steady tones, clicks) gives the empty result without generating; an output that loops ("thank you thank you
thank you") is decoded again with fallback settings (:meth:`AudioLanguageModel.guard_output`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from alm.generation import MAX_AUDIO_SECONDS, STRATEGIES, generate_for_task, model_budget, source_length
from alm.guards import (
    FALLBACKS,
    GuardConfig,
    SpeechCheck,
    collapse_repetition,
    is_repetitive,
    repetition_score,
    speech_presence,
)
from alm.longform import (
    MIN_CHUNK_S,
    LongformConfig,
    Segment,
    max_chunk_seconds,
    run_long_audio,
    source_duration,
    split_sentences,
    synthesize_long,
)
from alm.model import AlmForCausalLM
from alm.prompts import (
    asr_prompt,
    continue_prompt,
    parse_output,
    s2st_prompt,
    slu_prompt,
    tts_prompt,
    with_speech_input,
)
from alm.textnorm import normalize_text
from alm.vocab import LANGUAGES, TASKS, Vocabulary, VocabularyError
from codec import AudioInputError, load_audio, save_audio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz, every waveform in and out
SILENCE_DBFS = -60.0
SILENCE_PEAK = 10 ** (SILENCE_DBFS / 20)  # 0.001: audio whose peak stays below -60 dBFS holds no speech
SAMPLING_STRATEGIES = ("sample", "top_k", "top_p")

AudioInput = str | os.PathLike | bytes | np.ndarray | torch.Tensor


# --- results -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TranscriptionResult:
    """ASR output.

    Attributes:
        text: the transcript in spoken form (``""`` for silent audio).
        language: the language transcribed (given or detected); ``None`` for silent audio of unknown language.
        tokens: the transcript's ids in the shared vocabulary (text range).
        segments: ``(start, end, text, language)`` per stretch of speech, times in seconds of the input (one
            segment for short audio; one per chunk for long audio; none when nothing was said).
    """

    text: str
    language: str | None
    tokens: list[int]
    segments: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class SpeechResult:
    """A generated waveform.

    Attributes:
        audio: ``[T]`` float32 in ``[-1, 1]``, watermarked.
        sample_rate: Hz (16000).
        text: for speech translation, the target-language text when the model wrote it; else ``None``.
        segments: where each sentence (synthesis) or translated chunk (translation) lies in ``audio``, in
            seconds, with its text (``""`` for a translated chunk whose text the model did not write).
    """

    audio: np.ndarray
    sample_rate: int
    text: str | None = None
    segments: tuple[Segment, ...] = ()

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.audio) / self.sample_rate

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.wav`` / ``.flac`` / ``.ogg`` file (atomically)."""
        return save_audio(path, self.audio, self.sample_rate)


@dataclass(frozen=True)
class UnderstandingResult:
    """SLU output: ``intent`` (``""`` when none could be read), ``slots`` name -> spoken value, and the raw
    ``text`` the model wrote (``intent | slot = value | ...``). For long audio, these are the first chunk's
    with an intent, and ``segments`` holds every chunk's raw text with its times in the input. ``transcript``:
    the words a model with ``AlmConfig.slu_transcript`` wrote before its understanding (``""`` otherwise)."""

    intent: str
    slots: dict[str, str]
    text: str
    segments: tuple[Segment, ...] = ()
    transcript: str = ""


# --- generation options --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationOptions:
    """How to decode, validated up front.

    Attributes:
        strategy: ``greedy``, ``beam``, ``sample``, ``top_k`` (50) or ``top_p`` (0.9).
        temperature, top_k, top_p: sampling only (a sampling strategy is required).
        repetition_penalty: > 0; 1 is none.
        num_beams: beam search only (>= 2).
        max_new_tokens: cap on generated ids (default: derived from the input length).
        seed: seeds torch's RNG before generating (reproducible sampling).
    """

    strategy: str = "greedy"
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    num_beams: int | None = None
    max_new_tokens: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; known: {', '.join(STRATEGIES)}")
        for name in ("temperature", "top_k", "top_p"):
            if getattr(self, name) is not None and self.strategy not in SAMPLING_STRATEGIES:
                raise ValueError(f"{name} applies to sampling only: pass strategy='sample' (or 'top_k', 'top_p'), "
                                 f"not {self.strategy!r}")
        checks = [
            ("temperature", lambda v: v > 0, "> 0"), ("top_k", lambda v: v >= 0, ">= 0"),
            ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"), ("repetition_penalty", lambda v: v > 0, "> 0"),
            ("num_beams", lambda v: v >= 2, ">= 2"), ("max_new_tokens", lambda v: v >= 1, ">= 1"),
        ]
        for name, ok, rule in checks:
            value = getattr(self, name)
            if value is not None and not ok(value):
                raise ValueError(f"{name} must be {rule}, got {value!r}")
        if self.num_beams is not None and self.strategy != "beam":
            raise ValueError(f"num_beams applies to beam search only: pass strategy='beam', not {self.strategy!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def generate_kwargs(self) -> dict[str, Any]:
        """The ``GenerationConfig`` overrides these options set (strategy and seed are passed separately)."""
        return {k: v for k, v in asdict(self).items() if v is not None and k not in ("strategy", "seed")}


# --- the watermark hook --------------------------------------------------------------------------------------
WatermarkHook = Callable[[np.ndarray, int], np.ndarray]


def _no_watermark(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    return audio


def keyed_watermark(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The default hook: :func:`safety.watermark.watermark_hook` (the keyed watermark with the project's payload;
    key from ``ALM_WATERMARK_KEY`` / ``ALM_WATERMARK_KEY_FILE``, else the marked development key)."""
    from safety.watermark import watermark_hook  # lazily: only when audio is generated

    return watermark_hook(audio, sample_rate)


_watermark_hook: WatermarkHook = keyed_watermark


def set_watermark_hook(fn: WatermarkHook | None) -> WatermarkHook:
    """Install the function every waveform this API generates passes through before it is returned.

    By default the hook is :func:`keyed_watermark` (the safety package's keyed watermark), so that synthesized,
    translated and continued speech all carry it. ``set_watermark_hook(None)`` turns watermarking off (logged as
    a warning); so does ``alm.load(..., watermark=False)`` for one model.

    Args:
        fn: ``fn(audio, sample_rate) -> audio``: ``audio`` is ``[T]`` float32 in ``[-1, 1]``; it must return a
            finite array of the same shape.

    Returns:
        The hook it replaces (to restore it later).
    """
    global _watermark_hook
    previous = _watermark_hook
    if fn is None:
        log.warning("watermarking is turned off: audio generated from now on carries no watermark")
    _watermark_hook = _no_watermark if fn is None else fn
    return previous


def apply_watermark(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Pass ``[T]`` float32 audio through the installed hook and check what comes back."""
    out = np.asarray(_watermark_hook(audio, sample_rate), dtype=np.float32)
    if out.shape != audio.shape or not np.isfinite(out).all():
        raise RuntimeError(f"the watermark hook {getattr(_watermark_hook, '__name__', _watermark_hook)!r} returned "
                           f"shape {out.shape} (finite: {bool(np.isfinite(out).all())}) for audio {audio.shape}")
    return out


# --- SLU output ----------------------------------------------------------------------------------------------
_INTENT = re.compile(r"\w+")
_SLOT = re.compile(r"(\w+)\s*=\s*(.*?)")


def parse_slu(text: str) -> tuple[str, dict[str, str]]:
    """Read ``intent | slot = value | ...`` leniently: ``("", {})`` when the intent is not one word; malformed
    or repeated slots are dropped. (The format is ``training.data.slu.format_target``'s; ``alm`` does not
    import ``training``, and the intent inventory is whatever the model learned, so it is not checked here.)"""
    parts = [p.strip() for p in text.split("|")]
    if not _INTENT.fullmatch(parts[0]):
        return "", {}
    slots: dict[str, str] = {}
    for part in parts[1:]:
        m = _SLOT.fullmatch(part)
        if m and m.group(2) and m.group(1) not in slots:
            slots[m.group(1)] = m.group(2)
    return parts[0], slots


# --- the model -----------------------------------------------------------------------------------------------
@dataclass
class TaskJob:
    """A prepared task: one prompt per candidate language (several when the language is to be detected; none
    when there is nothing to generate, e.g. silent audio for ASR) and the decoding constraints."""

    task: str
    candidates: dict[str | None, list[int]]
    language: str | None = None
    min_frames: int = 1
    s2st_text: bool | None = None
    max_new_tokens: int | None = None
    prompt_codes: torch.Tensor | None = None  # [K, F] continuation prompt, to prepend to the output
    duration: float | None = None  # seconds of input speech (ASR / SLU / S2ST), for the result's segment
    text: str | None = None  # TTS: the text in spoken form, for the result's segment


Result = TranscriptionResult | SpeechResult | UnderstandingResult


class AudioLanguageModel:
    """One decoder with its vocabulary, codec and unit tokenizer: ASR, TTS, S2ST, SLU and continuation.

    Build with :func:`load`; see the module docstring for the tasks. Every task method takes the generation
    options of :class:`GenerationOptions` as keyword arguments (``strategy="beam"``, ``temperature=0.8`` ...).
    """

    def __init__(self, model: AlmForCausalLM, vocab: Vocabulary, codec: Any, units: Any,
                 path: str | os.PathLike | None = None) -> None:
        self.model, self.vocab, self.codec, self.units = model.eval(), vocab, codec, units
        self.path = None if path is None else Path(path)
        self.guards = GuardConfig()  # hallucination guards; GuardConfig(enabled=False) turns them off
        self.longform = LongformConfig()  # how long audio is chunked and long text split
        self._lexicon: Any = None  # word -> phones, for a model with tts_word_phones (codec.word_phones.WordPhones)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu", *,
                        watermark: bool = True) -> AudioLanguageModel:
        """Load a checkpoint directory (``None``: the shipped default, ``alm/pretrained/default``).
        ``watermark=False`` leaves this model's generated audio unmarked (logged as a warning)."""
        path = DEFAULT_CHECKPOINT if path is None else Path(path)
        model = cls(*load_checkpoint(path, device), path=path)
        model.watermark = watermark
        return model

    @classmethod
    def from_decoder(cls, model: AlmForCausalLM) -> AudioLanguageModel:
        """Wrap a decoder loaded from a checkpoint directory, loading the rest of that directory beside it."""
        path = getattr(model, "name_or_path", "") or ""
        if not path or not Path(path).is_dir():
            raise CheckpointError(f"this AlmForCausalLM was not loaded from a checkpoint directory (name_or_path="
                                  f"{path!r}): pass the checkpoint directory or an AudioLanguageModel instead")
        return cls(*load_checkpoint(path, model.device, model=model), path=path)

    # --- properties ----------------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def num_codebooks(self) -> int:
        """K, the codebooks per codec frame the model reads and writes."""
        return int(self.model.config.num_codebooks)

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> AudioLanguageModel:
        """Move the decoder, codec and unit tokenizer to ``device``."""
        self.model.to(device)
        self.codec.to(device)
        self.units.to(device)
        return self

    def __repr__(self) -> str:
        return (f"AudioLanguageModel(path={str(self.path) if self.path else None!r}, vocab={self.vocab.size}, "
                f"codebooks={self.num_codebooks}, languages={LANGUAGES}, device={self.device})")

    # --- tasks ---------------------------------------------------------------------------------------------
    def transcribe(self, audio: AudioInput, language: str | None = None, *, sample_rate: int | None = None,
                   context: str | None = None, **options: Any) -> TranscriptionResult:
        """Speech -> text. ``language=None`` transcribes in every language and keeps the likeliest.

        ``context``: earlier text of the same recording (as Whisper's prompt), for a model trained with it
        (``config.asr_context``); long-form decoding passes each chunk the previous chunk's transcript itself.
        """
        return self.run_task("asr", audio, options, language=language, sample_rate=sample_rate, context=context)

    def synthesize(self, text: str, language: str = "en", voice: AudioInput | None = None, *,
                   sample_rate: int | None = None, **options: Any) -> SpeechResult:
        """Text -> speech, in the voice of the first ``config.voice_seconds`` of ``voice`` (``None``: any voice
        the model picks).
        ``text`` is normalized to spoken form first ("$5" -> "five dollars")."""
        return self.run_task("tts", text, options, language=language, voice=voice, sample_rate=sample_rate)

    def translate_speech(self, audio: AudioInput, target_language: str, source_language: str | None = None,
                         voice: AudioInput | None = None, *, sample_rate: int | None = None,
                         **options: Any) -> SpeechResult:
        """Speech in one language -> speech in another (``.text``: the target text, when the model writes it).

        ``source_language=None`` tries every other language and keeps the likeliest; ``voice=None`` keeps the
        speaker's own voice (the first ``config.voice_seconds`` of ``audio`` are the voice prompt).
        """
        return self.run_task("s2st", audio, options, target_language=target_language, source_language=source_language,
                        voice=voice, sample_rate=sample_rate)

    def understand(self, audio: AudioInput, language: str = "en", *, sample_rate: int | None = None,
                   **options: Any) -> UnderstandingResult:
        """Spoken command -> intent and slots (empty for silent audio)."""
        return self.run_task("slu", audio, options, language=language, sample_rate=sample_rate)

    def continue_speech(self, audio: AudioInput, seconds: float = 3.0, *, include_prompt: bool = False,
                        sample_rate: int | None = None, **options: Any) -> SpeechResult:
        """``seconds`` more speech in the voice of ``audio`` (with ``include_prompt``: prompt + continuation)."""
        return self.run_task("continue", audio, options, seconds=seconds, include_prompt=include_prompt,
                        sample_rate=sample_rate)

    def generate(self, prompt_ids: Any, task: str | None = None, *, s2st_text: bool | None = None,
                 min_frames: int = 1, **generation_kwargs: Any) -> list[int]:
        """Raw access: generate after any task prompt ``[P]`` (a ``*_prompt`` function's output), under the
        task's output grammar. ``task=None`` reads it from the prompt's first token.

        Args:
            s2st_text, min_frames: see :class:`alm.generation.TaskConstraintLogitsProcessor`.
            **generation_kwargs: :class:`GenerationOptions` fields, and any other ``GenerationConfig`` field.

        Returns:
            The new ids ``[G]`` (read them with :func:`alm.prompts.parse_output`).
        """
        ids = torch.as_tensor(prompt_ids).reshape(-1).tolist()
        if not ids:
            raise ValueError("prompt_ids is empty: a prompt starts with a task token")
        bad = [i for i in ids if not 0 <= i < self.vocab.size]
        if bad:
            raise VocabularyError(f"prompt ids outside the vocabulary [0, {self.vocab.size}): {bad[:5]}")
        opts = GenerationOptions(**{k: generation_kwargs.pop(k) for k in GenerationOptions.names()
                                    if k in generation_kwargs})
        return generate_for_task(self.model, self.vocab, task, ids, strategy=opts.strategy, s2st_text=s2st_text,
                                 min_frames=min_frames, generator_seed=opts.seed,
                                 **opts.generate_kwargs(), **generation_kwargs)

    def run_task(self, task: str, source: Any, options: dict[str, Any] | None = None, **task_options: Any) -> Any:
        """One task on one input, whatever its length: what the task methods (``transcribe`` ...) call.

        ``options`` are :class:`GenerationOptions` fields; ``task_options`` the task method's keyword arguments.
        Audio longer than one chunk goes through :func:`alm.longform.run_long_audio`, text of several sentences
        through :func:`alm.longform.synthesize_long`; anything else through prepare -> run -> finish.
        """
        opts = GenerationOptions(**(options or {}))  # validate before any work
        if task in ("asr", "slu", "s2st") and self._is_long(task, source, task_options):
            return run_long_audio(self, task, source, opts, config=self.longform, **task_options)
        sentences = self._sentences(task, source, task_options)
        if sentences is not None:
            return synthesize_long(self, sentences, task_options.get("language", "en"), task_options.get("voice"),
                                   opts, sample_rate=task_options.get("sample_rate"), config=self.longform)
        job = self.prepare(task, source, **task_options)
        return self.finish(job, *self.run(job, opts))

    def is_long_input(self, task: str, source: Any, **task_options: Any) -> bool:
        """Whether :meth:`run_task` takes the long-form path for ``source``: audio longer than one chunk
        (``asr``, ``slu``, ``s2st``) or text of more than one sentence (``tts``)."""
        if task in ("asr", "slu", "s2st"):
            return self._is_long(task, source, task_options)
        return self._sentences(task, source, task_options) is not None

    def _sentences(self, task: str, source: Any, task_options: dict[str, Any]) -> list[str] | None:
        """The sentences of a TTS text of more than one (spoken one by one), else ``None``."""
        language = task_options.get("language", "en")
        if task != "tts" or not isinstance(source, str) or language not in LANGUAGES:
            return None
        sentences = split_sentences(source, language, self.longform.max_sentence_words)
        return sentences if len(sentences) > 1 else None

    def _is_long(self, task: str, source: Any, task_options: dict[str, Any]) -> bool:
        """Whether ``source`` is longer than one chunk: then it goes through :mod:`alm.longform`. Arguments
        the one-chunk path would refuse (unknown languages) are checked first, so the error is the same."""
        for key in ("language", "source_language", "target_language"):
            if task_options.get(key) is not None or key == "target_language" and task == "s2st":
                _check_language(task_options.get(key), key)
        duration = source_duration(source, task_options.get("sample_rate"))
        limit = min(self.longform.max_chunk_s, max_chunk_seconds(self, task))
        return duration is not None and limit >= MIN_CHUNK_S and duration > limit

    # --- stages --------------------------------------------------------------------------------------------
    def prepare(self, task: str, source: Any, **task_options: Any) -> TaskJob:
        """Stage 1: audio or text -> prompt(s). ``task_options`` are the task method's keyword arguments."""
        prepare = {"asr": self._prepare_asr, "tts": self._prepare_tts, "s2st": self._prepare_s2st,
                   "slu": self._prepare_slu, "continue": self._prepare_continue}.get(task)
        if prepare is None:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        return prepare(source, **task_options)

    def run(self, job: TaskJob, options: GenerationOptions | None = None) -> tuple[str | None, list[int]]:
        """Stage 2: generate for each candidate prompt; with several (language detection) keep the output the
        model finds likeliest (mean log-probability per generated id). Returns ``(language, new ids)``."""
        options = options or GenerationOptions()
        if not job.candidates:
            return job.language, []
        outputs = {lang: self._generate(job, prompt, options) for lang, prompt in job.candidates.items()}
        if len(outputs) == 1:
            best = next(iter(outputs))
        else:
            scores = {lang: self._mean_logprob(job.candidates[lang], ids) for lang, ids in outputs.items()}
            best = max(scores, key=lambda lang: scores[lang])
            log.debug("%s language scores %s -> %s", job.task, scores, best)
        return best, self.guard_output(job, best, outputs[best], options)

    def guard_output(self, job: TaskJob, language: str | None, generated: list[int],
                     options: GenerationOptions | None = None) -> list[int]:
        """The repetition guard, part of :meth:`run` (batched decoders call it on each job's output).

        When the text of ``generated`` loops (:func:`alm.guards.is_repetitive`), the candidate prompt of
        ``language`` is decoded again with each of :data:`alm.guards.FALLBACKS` in turn (sampling seeded with
        ``options.seed`` or 0, without touching the caller's RNG state); the first output that does not loop is
        returned. When all loop, the least repetitive one is kept, its loops cut to one copy (text tasks).

        Returns:
            The new ids ``[G]`` to pass to :meth:`finish`.
        """
        text = parse_output(self.vocab, job.task, generated, self.num_codebooks).text
        if not self.guards.enabled or not text or not is_repetitive(text, self.guards):
            return generated
        options = options or GenerationOptions()
        prompt = job.candidates[language]
        log.info("%s output loops (%r): decoding again with fallbacks", job.task, text[:80])
        tried = [(repetition_score(text, self.guards), generated)]
        for settings, extra in FALLBACKS:
            fallback = GenerationOptions(**settings, max_new_tokens=options.max_new_tokens,
                                         seed=options.seed if options.seed is not None else 0)
            with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
                ids = self._generate(job, prompt, fallback, **extra)
            text = parse_output(self.vocab, job.task, ids, self.num_codebooks).text or ""
            if not is_repetitive(text, self.guards):
                log.info("fallback %s gave %r", settings, text[:80])
                return ids
            tried.append((repetition_score(text, self.guards), ids))
        ids = min(tried, key=lambda t: t[0])[1]
        if job.task not in ("asr", "slu"):
            return ids
        text = collapse_repetition(parse_output(self.vocab, job.task, ids).text or "", self.guards)
        log.info("every fallback loops: kept %r with its loops cut", text[:80])
        return [self.vocab.token_id("<text>"), *self.vocab.encode_text(text), self.vocab.token_id("</text>"),
                self.vocab.eos_id]

    def finish(self, job: TaskJob, language: str | None, generated: list[int]) -> Result:
        """Stage 3: generated ids -> the task's result (waveforms decoded and watermarked)."""
        return self._finish(job, language, generated)

    def _finish(self, job: TaskJob, language: str | None, generated: list[int], mark: bool = True) -> Result:
        """:meth:`finish`; ``mark=False`` leaves a waveform unmarked, for :mod:`alm.longform` to join pieces and
        mark the whole once (never returned to a caller unmarked)."""
        out = parse_output(self.vocab, job.task, generated, self.num_codebooks)
        if job.task in ("asr", "slu"):
            text = (out.text or "").strip()
            segments = (Segment(0.0, job.duration, text, language),) if text and job.duration else ()
            if job.task == "slu":
                return UnderstandingResult(*parse_slu(text), text, segments, (out.transcript or "").strip())
            return TranscriptionResult(text, language, [i for i in generated if i in self.vocab.text], segments)
        codes = out.codes
        if job.prompt_codes is not None:
            codes = job.prompt_codes if codes is None else torch.cat([job.prompt_codes, codes], dim=1)
        text = out.text.strip() if job.task == "s2st" and out.text is not None else None
        wav = self._decode(codes)
        seconds = len(wav) / self.sample_rate
        segments = () if job.task == "continue" or not len(wav) else (
            (Segment(0.0, seconds, job.text or "", language),) if job.task == "tts" else
            (Segment(0.0, seconds, text or "", None),))
        return SpeechResult(self._mark(wav) if mark else wav, self.sample_rate, text, segments)

    # --- preparation per task ------------------------------------------------------------------------------
    def _prepare_asr(self, audio: AudioInput, language: str | None = None, sample_rate: int | None = None,
                     context: str | None = None) -> TaskJob:
        langs = LANGUAGES if language is None else (_check_language(language),)
        if context is not None and context.strip() and not self.model.config.asr_context:
            raise ValueError("this model was not trained with ASR context (config.asr_context is false): "
                             "transcribe without context=")
        wav = self._load_wav(audio, sample_rate)
        if not self._has_speech(wav):
            return TaskJob("asr", {}, language)
        units, codes = self._units(wav), self._input_codes(wav)
        return TaskJob("asr", {lang: self._speech(asr_prompt(self.vocab, lang, units, context), codes)
                               for lang in langs}, language, duration=len(wav) / SAMPLE_RATE)

    def _prepare_slu(self, audio: AudioInput, language: str | None = "en", sample_rate: int | None = None
                     ) -> TaskJob:
        langs = LANGUAGES if language is None else (_check_language(language),)
        wav = self._load_wav(audio, sample_rate)
        if not self._has_speech(wav):
            return TaskJob("slu", {}, language)
        units, codes = self._units(wav), self._input_codes(wav)
        return TaskJob("slu", {lang: self._speech(slu_prompt(self.vocab, lang, units), codes) for lang in langs},
                       language, duration=len(wav) / SAMPLE_RATE)

    def _prepare_tts(self, text: str, language: str = "en", voice: AudioInput | None = None,
                     sample_rate: int | None = None) -> TaskJob:
        _check_language(language)
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("text is empty: there is nothing to synthesize")
        spoken = normalize_text(text, language)
        if not any(ch.isalnum() for ch in spoken):
            raise ValueError(f"text {text!r} has no letters or digits: there is nothing to say")
        voice_codes = None if voice is None else self._voice_codes(self._load_wav(voice, sample_rate, "voice"))
        return self._tts_job(spoken, language, voice_codes)

    def _tts_job(self, spoken: str, language: str, voice_codes: torch.Tensor | None) -> TaskJob:
        """A TTS job for text already in spoken form and voice codes ``[K, F]`` (or ``None``)."""
        phones = self._word_phones(language, spoken) if self.model.config.tts_word_phones else None
        return TaskJob("tts", {language: tts_prompt(self.vocab, language, spoken, voice_codes, self._voice_frames(),
                                                    phones)}, language, text=spoken)

    def _word_phones(self, language: str, text: str) -> list[list[int]]:
        """Each word's espeak-ng phones as unit ids (the prompt of a model with ``AlmConfig.tts_word_phones``)."""
        from codec.word_phones import WordPhones

        if self._lexicon is None:
            self._lexicon = WordPhones(self.units)  # in memory: a word costs one espeak-ng call the first time
        try:
            self._lexicon.add([(language, text)], progress=False)
        except FileNotFoundError as e:
            raise RuntimeError("this model reads phonemized text and needs the espeak-ng program "
                               "(apt-get install espeak-ng)") from e
        return self._lexicon(language, text)

    def _prepare_s2st(self, audio: AudioInput, target_language: str | None = None, source_language: str | None = None,
                      voice: AudioInput | None = None, sample_rate: int | None = None) -> TaskJob:
        tgt = _check_language(target_language, "target_language")
        if source_language is None:
            sources = tuple(lang for lang in LANGUAGES if lang != tgt)
        else:
            sources = (_check_language(source_language, "source_language"),)
            if sources[0] == tgt:
                raise ValueError(f"source_language and target_language are both {tgt!r}: translation needs two "
                                 "different languages")
        wav = self._load_wav(audio, sample_rate)
        if _is_silent(wav):
            raise AudioInputError("the audio is silent: there is no speech to translate")
        check = self._speech_check(wav)
        if not check:
            raise AudioInputError(f"the audio holds no speech ({check.reason}): there is nothing to translate")
        units, codes = self._units(wav), self._input_codes(wav)
        voice_wav = wav if voice is None else self._load_wav(voice, sample_rate, "voice")
        voice_codes = self._voice_codes(voice_wav)
        frames = self._voice_frames()
        return TaskJob("s2st", {src: self._speech(s2st_prompt(self.vocab, src, tgt, units, voice_codes, frames), codes)
                                for src in sources}, source_language, duration=len(wav) / SAMPLE_RATE)

    def _prepare_continue(self, audio: AudioInput, seconds: float = 3.0, include_prompt: bool = False,
                          sample_rate: int | None = None) -> TaskJob:
        if not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_AUDIO_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_AUDIO_SECONDS:g}], got {seconds!r}")
        wav = self._load_wav(audio, sample_rate)
        if _is_silent(wav):
            raise AudioInputError("the audio is silent: there is no voice to continue")
        codes = self.codec.encode(wav)[0].cpu()  # [K, F]
        units = None
        if self.model.config.audio_units:  # each prompt frame is its unit, then its codes (uncollapsed units)
            units = self.units.encode(wav, collapse=False)
            n = min(len(units), codes.shape[1])  # the two frame counts may differ by the last partial frame
            units, codes = units[:n], codes[:, :n]
        stride = self.num_codebooks + int(self.model.config.audio_units)  # ids per frame
        frames = math.ceil(seconds * self.codec.frame_rate)
        budget = frames * stride + 2  # the frames, </audio>, <eos>
        room = (self.model.config.max_position_embeddings - budget - 2) // stride  # prompt frames after the markers
        if room < 1:
            raise ValueError(f"seconds={seconds} is more than this model's context holds; ask for less")
        if codes.shape[1] > room:
            log.info("continuation prompt cut to its last %d of %d frames (the model's context)", room, codes.shape[1])
            codes = codes[:, -room:]
            units = None if units is None else units[-room:]
        return TaskJob("continue", {None: continue_prompt(self.vocab, codes, units)}, None, min_frames=frames,
                       max_new_tokens=budget, prompt_codes=codes if include_prompt else None)

    # --- helpers -------------------------------------------------------------------------------------------
    def _load_wav(self, audio: AudioInput, sample_rate: int | None, what: str = "audio") -> torch.Tensor:
        if audio is None:
            raise AudioInputError(f"no {what} given")
        is_array = isinstance(audio, (np.ndarray, torch.Tensor))
        wav = load_audio(audio, SAMPLE_RATE, source_rate=sample_rate if is_array else None)
        if what == "voice" and _is_silent(wav):
            raise AudioInputError("the voice prompt is silent: give a recording of the voice to imitate, or none")
        return wav

    def _speech_check(self, wav: torch.Tensor) -> SpeechCheck:
        """Silent, or (with the guards on) clearly not speech: :func:`alm.guards.speech_presence`."""
        if _is_silent(wav):
            return SpeechCheck(False, "silence", {})
        if not self.guards.enabled:
            return SpeechCheck(True, "not checked", {})
        check = speech_presence(wav, self.guards)
        if not check:
            log.info("no speech in %.2f s of audio (%s): nothing to decode", len(wav) / SAMPLE_RATE, check.reason)
        return check

    def _has_speech(self, wav: torch.Tensor) -> bool:
        return self._speech_check(wav).is_speech

    def _units(self, wav: torch.Tensor) -> list[int]:
        """Prompt units of ``wav``; none for a model that reads speech as codec tokens only (the units segment is
        replaced by :meth:`_speech`, so encoding them would be wasted)."""
        if self.model.config.input_speech == "codec":
            return []
        return self.units.encode(wav, collapse=self.model.config.collapse_units,
                                 drop_blanks=self.model.config.drop_unit_blanks).tolist()

    def _input_codes(self, wav: torch.Tensor) -> torch.Tensor | None:
        """``[K, F]`` codes of speech the prompt carries as audio (``input_speech`` codec / both), else ``None``."""
        if self.model.config.input_speech == "units":
            return None
        return self.codec.encode(wav)[0, : self.num_codebooks].cpu()

    def _speech(self, prompt: list[int], codes: torch.Tensor | None) -> list[int]:
        return with_speech_input(self.vocab, prompt, self.model.config.input_speech, codes)

    def _voice_frames(self) -> int:
        return max(1, round(self.model.config.voice_seconds * self.codec.frame_rate))

    def _voice_codes(self, wav: torch.Tensor) -> torch.Tensor:
        """``[K, F]`` codes of the first ``config.voice_seconds`` of ``wav`` (the length the model was trained on)."""
        return self.codec.encode(wav[: int(self.model.config.voice_seconds * SAMPLE_RATE)])[0].cpu()

    def _generate(self, job: TaskJob, prompt: list[int], options: GenerationOptions, **extra: Any) -> list[int]:
        k = self.num_codebooks
        budget = (options.max_new_tokens or job.max_new_tokens
                  or model_budget(self.model.config, job.task, source_length(self.vocab, job.task, prompt, k), k))
        context = self.model.config.max_position_embeddings
        if len(prompt) + budget > context:
            raise ValueError(f"the input is too long for this model: its prompt takes {len(prompt)} tokens and the "
                             f"output up to {budget} more, beyond the model's {context} positions; use shorter "
                             "audio or text")
        kwargs = {**options.generate_kwargs(), **extra, "max_new_tokens": budget}
        return generate_for_task(self.model, self.vocab, job.task, prompt, strategy=options.strategy,
                                 s2st_text=job.s2st_text, min_frames=job.min_frames, generator_seed=options.seed,
                                 **kwargs)

    @torch.no_grad()
    def _mean_logprob(self, prompt: list[int], generated: list[int]) -> float:
        if not generated:
            return -math.inf
        ids = torch.tensor([prompt + generated], device=self.device)  # [1, P + G]
        logits = self.model(ids).logits[0, len(prompt) - 1:-1].float()  # [G, V]: position t predicts t + 1
        return float(logits.log_softmax(-1).gather(1, ids[0, len(prompt):, None]).mean())

    def _decode(self, codes: torch.Tensor | None) -> np.ndarray:
        """Codes ``[K, F]`` -> ``[320 F]`` float32, not yet watermarked (empty when there is no whole frame)."""
        if codes is None or codes.shape[-1] == 0:
            log.warning("the model wrote no complete audio frame (is max_new_tokens too small?)")
            return np.zeros(0, dtype=np.float32)
        wav = self.codec.decode(codes[None].to(self.codec.device))[0].clamp(-1, 1).cpu().numpy()  # [320 F]
        return wav.astype(np.float32)

    def _mark(self, wav: np.ndarray) -> np.ndarray:
        """``[T]`` float32 through the watermark hook (unless this model's watermark is off; empty stays empty)."""
        return apply_watermark(wav, self.sample_rate) if self.watermark and len(wav) else wav

    @property
    def watermark(self) -> bool:
        """Whether generated audio passes through the watermark hook (default ``True``)."""
        return getattr(self, "_watermark", True)

    @watermark.setter
    def watermark(self, on: bool) -> None:
        if not on:
            log.warning("watermarking is off for this model: the audio it generates carries no watermark")
        self._watermark = bool(on)


def load(path: str | os.PathLike | None = None, device: str | torch.device = "cpu", *,
         watermark: bool = True) -> AudioLanguageModel:
    """Load a checkpoint directory, or (``None``) the shipped default model. Generated audio carries the keyed
    watermark unless ``watermark=False`` (an explicit opt-out, logged as a warning).

    Raises:
        CheckpointError: the directory is missing, incomplete or inconsistent (the message says which).
    """
    return AudioLanguageModel.from_pretrained(path, device, watermark=watermark)


def _check_language(language: object, what: str = "language") -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported {what} {language!r}; supported: {', '.join(LANGUAGES)}")
    return str(language)


def _is_silent(wav: torch.Tensor) -> bool:
    return wav.numel() == 0 or float(wav.abs().max()) < SILENCE_PEAK
