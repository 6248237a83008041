"""Task-aware decoding on top of ``transformers``' ``generate``.

- :class:`TaskConstraintLogitsProcessor` masks, at every step, each id the task's grammar
  (:func:`alm.prompts.allowed_next`) forbids, so an ASR model can only write text and a TTS model only whole
  codec frames in codebook order, and a length budget never cuts a frame in half.
- :func:`generation_config_for` gives a ``GenerationConfig`` for a strategy (greedy, beam, sampling, top-k,
  top-p) with ``max_new_tokens`` derived from the source length, so no task runs away.
- :func:`generate_for_task` ties both together for one prompt.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, PreTrainedModel

from alm.prompts import FRAME_RATE, allowed_next, task_of
from alm.vocab import TASKS, TokenIds, TokenRange, Vocabulary

log = logging.getLogger(__name__)

# Length budgets, from the source length (see source_length):
TEXT_TOKENS_PER_UNIT = 1.0  # one text id per 20 ms unit frame is 50 ids/s, ~10x fast speech's BPE rate
MAX_TEXT_TOKENS = 512
FRAMES_PER_TEXT_TOKEN = 20  # 0.4 s of speech per BPE token, ~2x a slow speaker
FRAMES_PER_UNIT = 2  # a translation may last at most twice its source
SLACK_FRAMES = FRAME_RATE // 2  # 0.5 s on top of every audio budget
MAX_AUDIO_SECONDS = 30.0
MAX_AUDIO_FRAMES = int(MAX_AUDIO_SECONDS * FRAME_RATE)  # 1500 frames in 30 s
MARKERS = 4  # at most <text> </text> / <audio> </audio> / <eos> around a segment

STRATEGIES: dict[str, dict[str, Any]] = {
    "greedy": dict(do_sample=False, num_beams=1),
    "beam": dict(do_sample=False, num_beams=4, early_stopping=True, length_penalty=1.0),
    "sample": dict(do_sample=True, num_beams=1, top_k=0, top_p=1.0),
    "top_k": dict(do_sample=True, num_beams=1, top_k=50, top_p=1.0),
    "top_p": dict(do_sample=True, num_beams=1, top_k=0, top_p=0.9),
}


class TaskConstraintLogitsProcessor(LogitsProcessor):
    """Sets to ``-inf`` the score of every id the task may not emit next.

    Runs before temperature / top-k / top-p (transformers applies custom processors first), so sampling
    only ever chooses among allowed ids. Works for any batch (beams included): each row is read on its own.

    Args:
        vocab: the vocabulary the model was trained with.
        task: one of ``asr tts s2st slu continue``.
        prompt_len: length of the (left-padded) prompt; ids after it are the output so far.
        num_codebooks: K of the model's audio stream.
        max_new_tokens: the generation budget; when given, the output is always closed properly within it.
        min_frames: shortest audio (frames) before ``</audio>`` is allowed.
        s2st_text: S2ST only: ``True`` forces a text segment first, ``False`` forbids it, ``None`` lets the model
            choose.
        asr_units: ASR only: unit ids are allowed inside the text segment (a model with
            ``AlmConfig.asr_word_phones`` spells each word's phones before it).
        audio_units: every audio frame is a unit id, then the K codec ids (a model with ``AlmConfig.audio_units``).
        slu_transcript: SLU only: the transcript, ``<slu>``, then the understanding (a model with
            ``AlmConfig.slu_transcript``).
    """

    def __init__(self, vocab: Vocabulary, task: str, prompt_len: int, *, num_codebooks: int | None = None,
                 max_new_tokens: int | None = None, min_frames: int = 1, s2st_text: bool | None = None,
                 asr_units: bool = False, audio_units: bool = False, slu_transcript: bool = False) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {TASKS}")
        self.vocab = vocab
        self.task = task
        self.prompt_len = prompt_len
        self.num_codebooks = num_codebooks
        self.max_new_tokens = max_new_tokens
        self.min_frames = min_frames
        self.s2st_text = s2st_text
        self.asr_units = asr_units
        self.audio_units = audio_units
        self.slu_transcript = slu_transcript
        self._masks: dict[tuple[TokenRange, ...], torch.Tensor] = {}

    def allowed(self, generated: TokenIds) -> list[TokenRange]:
        """Allowed id ranges after one row's output so far ``[G]``."""
        remaining = None if self.max_new_tokens is None else self.max_new_tokens - len(generated)
        return allowed_next(self.vocab, self.task, generated, num_codebooks=self.num_codebooks,
                            remaining=remaining, min_frames=self.min_frames, s2st_text=self.s2st_text,
                            asr_units=self.asr_units, audio_units=self.audio_units,
                            slu_transcript=self.slu_transcript)

    def _mask(self, ranges: list[TokenRange], width: int, device: torch.device) -> torch.Tensor:
        key = tuple(ranges)
        mask = self._masks.get(key)
        if mask is None or mask.shape[0] != width or mask.device != device:
            mask = torch.ones(width, dtype=torch.bool, device=device)  # True = forbidden
            for r in ranges:
                mask[r.start:r.end] = False
            self._masks[key] = mask
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """``input_ids`` ``[B, prompt_len + G]``, ``scores`` ``[B, V]`` -> masked scores ``[B, V]``."""
        generated = input_ids[:, self.prompt_len:]
        masks = torch.stack([self._mask(self.allowed(row), scores.shape[-1], scores.device) for row in generated])
        return scores.masked_fill(masks, float("-inf"))


def source_length(vocab: Vocabulary, task: str, prompt_ids: TokenIds, num_codebooks: int | None = None) -> int:
    """Length of what a prompt asks to transform: unit ids (ASR, SLU, S2ST; codec frames of the speech's
    ``<audio>`` segment when the prompt carries no units), text ids (TTS), or codec frames (continuation)."""
    ids = torch.as_tensor(prompt_ids).reshape(-1)
    k = vocab.num_codebooks if num_codebooks is None else num_codebooks
    is_codec = (ids >= vocab.codec.start) & (ids < vocab.codec.end)
    if task == "continue":
        return int(is_codec.sum()) // k
    r = vocab.text if task == "tts" else vocab.units
    n = int(((ids >= r.start) & (ids < r.end)).sum())
    if n or task == "tts":
        return n
    opened = (ids == vocab.token_id("<audio>")).nonzero()
    closed = (ids == vocab.token_id("</audio>")).nonzero()
    if not len(opened) or not len(closed):
        return 0
    return int(is_codec[int(opened[0]) + 1: int(closed[0])].sum()) // k


def max_new_tokens_for(task: str, input_len: int, num_codebooks: int = 1, asr_phones: bool = False,
                       audio_units: bool = False, slu_transcript: bool = False) -> int:
    """Budget of new ids for a task whose source has ``input_len`` items (see :func:`source_length`).

    ASR / SLU: ``TEXT_TOKENS_PER_UNIT`` text ids per unit, at most ``MAX_TEXT_TOKENS``; twice that for the ASR of a
    model that spells each word's phones before it (``asr_phones``: ``AlmConfig.asr_word_phones``). SLU that
    writes the transcript first (``slu_transcript``) gets the ASR budget on top of its own. TTS:
    ``FRAMES_PER_TEXT_TOKEN`` frames per text id. S2ST: text as ASR plus ``FRAMES_PER_UNIT`` frames per unit.
    Continuation: as many frames as the prompt. Audio gets ``SLACK_FRAMES`` more and at most
    ``MAX_AUDIO_SECONDS``; every frame costs ``num_codebooks`` ids, one more with ``audio_units`` (the frame's unit:
    ``AlmConfig.audio_units``).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")
    if input_len < 0 or num_codebooks < 1:
        raise ValueError(f"need input_len >= 0 and num_codebooks >= 1, got {input_len}, {num_codebooks}")
    scale = 2 if asr_phones and task == "asr" else 1
    text = scale * min(MAX_TEXT_TOKENS, math.ceil(TEXT_TOKENS_PER_UNIT * input_len))

    def audio(frames: float) -> int:
        return min(MAX_AUDIO_FRAMES, math.ceil(frames) + SLACK_FRAMES) * (num_codebooks + int(audio_units))

    if task == "slu" and slu_transcript:
        words = min(MAX_TEXT_TOKENS, math.ceil(TEXT_TOKENS_PER_UNIT * input_len)) * (2 if asr_phones else 1)
        return words + text + MARKERS + 1  # + the <slu> between them
    if task in ("asr", "slu"):
        return text + MARKERS
    if task == "tts":
        return audio(FRAMES_PER_TEXT_TOKEN * input_len) + MARKERS
    if task == "s2st":
        return text + audio(FRAMES_PER_UNIT * input_len) + 2 * MARKERS
    return audio(input_len) + MARKERS  # continue


def model_budget(config: Any, task: str, input_len: int, num_codebooks: int) -> int:
    """:func:`max_new_tokens_for` with the output format a model was trained on read from its ``config``
    (``asr_word_phones``, ``audio_units``, ``slu_transcript`` of :class:`alm.config.AlmConfig`)."""
    return max_new_tokens_for(task, input_len, num_codebooks, bool(getattr(config, "asr_word_phones", False)),
                              bool(getattr(config, "audio_units", False)),
                              bool(getattr(config, "slu_transcript", False)))


def generation_config_for(vocab: Vocabulary, task: str, input_len: int, *, num_codebooks: int = 1,
                          strategy: str = "greedy", asr_phones: bool = False, audio_units: bool = False,
                          slu_transcript: bool = False, **overrides: Any) -> GenerationConfig:
    """A ``GenerationConfig`` for one task.

    Args:
        vocab: gives ``eos`` / ``pad`` / ``bos`` ids.
        task: one of ``asr tts s2st slu continue``.
        input_len: source length (:func:`source_length`), from which ``max_new_tokens`` follows.
        num_codebooks: K of the model's audio stream.
        asr_phones: the model spells each word's phones in its ASR output (a larger budget).
        audio_units: each audio frame of the output starts with its unit (one more id per frame).
        slu_transcript: SLU output writes the transcript before the understanding (a larger budget).
        strategy: ``greedy``, ``beam`` (4 beams), ``sample`` (plain), ``top_k`` (50) or ``top_p`` (0.9).
        **overrides: any ``GenerationConfig`` field, e.g. ``temperature=0.8``, ``repetition_penalty=1.1``,
            ``num_beams=8``, ``max_new_tokens=100``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {sorted(STRATEGIES)}")
    fields: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens_for(task, input_len, num_codebooks, asr_phones, audio_units, slu_transcript),
        eos_token_id=vocab.eos_id, pad_token_id=vocab.pad_id, bos_token_id=vocab.bos_id, use_cache=True,
        temperature=1.0, repetition_penalty=1.0,
    )
    fields.update(STRATEGIES[strategy])
    fields.update(overrides)
    config = GenerationConfig(**fields)
    config.validate(strict=True)
    return config


@torch.no_grad()
def generate_for_task(model: PreTrainedModel, vocab: Vocabulary, task: str | None, prompt_ids: TokenIds, *,
                      strategy: str = "greedy", s2st_text: bool | None = None, min_frames: int = 1,
                      generator_seed: int | None = None, **overrides: Any) -> list[int]:
    """Generate a task's output for one prompt, under the task's constraints.

    Args:
        model: an :class:`alm.model.AlmForCausalLM` (any causal LM over ``vocab`` works).
        vocab: its vocabulary.
        task: the task, or ``None`` to read it from the prompt's task token.
        prompt_ids: ``[P]`` prompt ids (a ``*_prompt`` function's output).
        strategy, **overrides: see :func:`generation_config_for`.
        s2st_text, min_frames: see :class:`TaskConstraintLogitsProcessor`.
        generator_seed: seed torch's global RNG first (reproducible sampling).

    Returns:
        The new ids ``[G]``, ending with ``<eos>`` unless the budget ran out.
    """
    task = task or task_of(vocab, prompt_ids)
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1).to(model.device)
    k = getattr(model.config, "num_codebooks", None) or vocab.num_codebooks
    spelled = bool(getattr(model.config, "asr_word_phones", False))
    audio_units = bool(getattr(model.config, "audio_units", False))
    slu_words = bool(getattr(model.config, "slu_transcript", False))
    config = generation_config_for(vocab, task, source_length(vocab, task, prompt, k), num_codebooks=k,
                                   strategy=strategy, asr_phones=spelled, audio_units=audio_units,
                                   slu_transcript=slu_words, **overrides)
    constraint = TaskConstraintLogitsProcessor(vocab, task, prompt.shape[1], num_codebooks=k,
                                               max_new_tokens=config.max_new_tokens, min_frames=min_frames,
                                               s2st_text=s2st_text, asr_units=spelled, audio_units=audio_units,
                                               slu_transcript=slu_words)
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config,
                         logits_processor=LogitsProcessorList([constraint]))
    new = out[0, prompt.shape[1]:].tolist()
    if vocab.eos_id in new:
        new = new[: new.index(vocab.eos_id) + 1]
    log.debug("%s: %d prompt ids -> %d new ids", task, prompt.shape[1], len(new))
    return new
