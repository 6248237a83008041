"""Task prompts and targets as token ids, and the grammar of what each task may write.

One decoder does every task; the task is nothing but the prompt (DESIGN.md, task table)::

    asr       <asr> <lang> [<text> context </text>] <units> u… </units> -> <text> text </text> <eos>
    tts       <tts> <lang> <text> text </text> <voice> c… </voice>  -> <audio> c… </audio> <eos>
    s2st      <s2st> <src> <tgt> <units> u… </units> <voice> c… </voice>
                            -> [<text> L2 text </text>] <audio> c… </audio> <eos>
    slu       <slu> <lang> <units> u… </units>                      -> <text> intent | slot = value </text> <eos>
    continue  <continue> <audio> c…                                 -> c… </audio> <eos>

A model trained with ``AlmConfig.asr_word_phones`` writes its ASR text "copied, then spelled": each word's
phones (unit ids) before the word (:func:`spelled_text`); :func:`parse_output` keeps the text ids only.

A model trained with ``AlmConfig.tts_word_phones`` reads its TTS text spelled the same way (the phones are what
to say, the text ids how it is written), as classic TTS front ends hand the acoustic model phonemes.

A model trained with ``AlmConfig.slu_transcript`` writes its SLU output as transcript first (as its ASR, spelled or
not), then the ``<slu>`` token, then the understanding: ``<text> transcript <slu> intent | slot = value </text>``
(a chain of thought: the intent is read off words the model has just written, not off the units);
:func:`parse_output` returns the understanding as ``text`` and the words as ``transcript``.

A model trained with ``AlmConfig.audio_units`` writes every audio frame of its outputs (and reads the frames of a
continuation prompt) as the frame's unit followed by its ``K`` codec ids, ``u c_1 … c_K`` (:func:`audio_ids`):
the units are a semantic stream in front of the acoustic one, as Moshi's semantic first codebook and the
semantic-then-acoustic stages of AudioLM / SPEAR-TTS. Voice prompts stay codec only; :func:`parse_output` keeps
the codec ids.

``u`` are unit ids, ``c`` codec ids flattened frame-major (see :mod:`alm.vocab`). The SLU target text is
what ``training.data.slu.format_target`` writes (the caller formats it; ``alm`` does not import ``training``).

The optional ASR context is earlier text of the same recording (the previous chunk's transcript in long-form
decoding, as Whisper's prompt); only a model trained with it (``AlmConfig.asr_context``) should be given one, and
it is cut to its last :data:`MAX_CONTEXT_TOKENS` text tokens.

``*_example`` functions give training pairs (:class:`Example`: labels ``-100`` on the prompt), ``*_prompt``
functions the prompt alone for inference, and :func:`allowed_next` the ids a task may emit next, which
constrained decoding (:mod:`alm.generation`) enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from alm.vocab import TASKS, TokenIds, TokenRange, Vocabulary, VocabularyError

IGNORE_INDEX = -100  # label of positions without loss (torch cross_entropy's ignore_index)
FRAME_RATE = 50  # codec frames per second (codec.base.AudioTokenizer at 16 kHz, hop 320)
VOICE_PROMPT_SECONDS = 3.0
VOICE_PROMPT_FRAMES = int(VOICE_PROMPT_SECONDS * FRAME_RATE)  # 150 frames in a 3-second voice prompt
AUDIO_TASKS = ("tts", "s2st", "continue")
TEXT_TASKS = ("asr", "slu")
MAX_CONTEXT_TOKENS = 32  # text tokens of ASR context kept (the last ones)

Codes = torch.Tensor | np.ndarray  # [K, F] integer codec codes


@dataclass(frozen=True)
class Example:
    """One training sequence.

    Attributes:
        input_ids: ``[L]`` prompt followed by target.
        labels: ``[L]``; ``-100`` on the prompt (no loss) unless built with ``prompt_weight > 0``.
        prompt_len: number of prompt ids at the front.
        loss_weights: ``[L]`` per-position weights (``prompt_weight`` on the prompt, 1 on the target), or
            ``None`` when only the target is scored.
        ctc_targets: text ids of what the prompt's speech says (its transcript), the targets of the auxiliary CTC
            loss on the speech positions (:mod:`training.speech_ctc`); ``None`` when the prompt has no speech input
            or the loss is not used.
    """

    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    loss_weights: list[float] | None = None
    ctc_targets: list[int] | None = None


# --- segments ------------------------------------------------------------------------------------------------
def _wrap(vocab: Vocabulary, name: str, ids: list[int]) -> list[int]:
    return [vocab.token_id(f"<{name}>"), *ids, vocab.token_id(f"</{name}>")]


def _units(vocab: Vocabulary, units: TokenIds) -> list[int]:
    return _wrap(vocab, "units", vocab.units_to_ids(units))


def audio_ids(vocab: Vocabulary, codes: Codes, units: TokenIds | None = None) -> list[int]:
    """An audio stream's ids: codes ``[K, F]`` frame-major (:meth:`Vocabulary.codes_to_ids`), or with ``units``
    ``[F]`` (the same frames' units, uncollapsed) each frame as ``u c_1 … c_K``: ids ``[F * (K + 1)]``."""
    ids = vocab.codes_to_ids(codes)
    if units is None:
        return ids
    u = vocab.units_to_ids(units)
    k, f = int(np.shape(codes)[0]), int(np.shape(codes)[1])
    if len(u) != f:
        raise VocabularyError(f"{len(u)} units for {f} codec frames: the audio stream needs one unit per frame")
    frames = torch.tensor(ids, dtype=torch.long).reshape(f, k)
    return torch.cat([torch.tensor(u, dtype=torch.long)[:, None], frames], 1).reshape(-1).tolist()


def _voice(vocab: Vocabulary, voice_codes: Codes | None, max_frames: int | None) -> list[int]:
    """``<voice> c… </voice>`` from the first ``max_frames`` frames; empty when no voice is given."""
    if voice_codes is None:
        return _wrap(vocab, "voice", [])
    codes = torch.as_tensor(voice_codes)
    if max_frames is not None:
        codes = codes[:, :max_frames]
    return _wrap(vocab, "voice", vocab.codes_to_ids(codes))


def _example(prompt: list[int], target: list[int], prompt_weight: float) -> Example:
    if prompt_weight < 0:
        raise ValueError(f"prompt_weight must be >= 0, got {prompt_weight}")
    ids = prompt + target
    if prompt_weight == 0:
        return Example(ids, [IGNORE_INDEX] * len(prompt) + target, len(prompt))
    weights = [float(prompt_weight)] * len(prompt) + [1.0] * len(target)
    return Example(ids, list(ids), len(prompt), weights)


def _check_k(voice_codes: Codes | None, target_codes: Codes) -> None:
    if voice_codes is not None and np.shape(voice_codes)[0] != np.shape(target_codes)[0]:
        raise VocabularyError(f"voice prompt has {np.shape(voice_codes)[0]} codebooks, target "
                              f"{np.shape(target_codes)[0]}: use the same K for both")


# --- prompts (inference) -------------------------------------------------------------------------------------
def _context(vocab: Vocabulary, context: str | None) -> list[int]:
    """``<text> t… </text>`` of the last :data:`MAX_CONTEXT_TOKENS` tokens of ``context`` (nothing when empty)."""
    ids = vocab.encode_text(context.strip())[-MAX_CONTEXT_TOKENS:] if context and context.strip() else []
    return _wrap(vocab, "text", ids) if ids else []


def asr_prompt(vocab: Vocabulary, lang: str, units: TokenIds, context: str | None = None) -> list[int]:
    """``<asr> <lang> [<text> context </text>] <units> u… </units>`` for units ``[F]`` (context: earlier text)."""
    return [vocab.task_id("asr"), vocab.lang_id(lang), *_context(vocab, context), *_units(vocab, units)]


def tts_prompt(vocab: Vocabulary, lang: str, text: str, voice_codes: Codes | None = None,
               max_voice_frames: int | None = VOICE_PROMPT_FRAMES,
               word_phones: list[TokenIds] | None = None) -> list[int]:
    """``<tts> <lang> <text> text </text> <voice> c… </voice>``; voice codes ``[K, F]`` cut to ~3 s.

    With ``word_phones`` (one unit-id sequence per word of ``text.split()``; a model with
    ``AlmConfig.tts_word_phones``) the text is spelled, each word's phones before it (:func:`spelled_text`).
    """
    body = vocab.encode_text(text) if word_phones is None else spelled_text(vocab, text, word_phones)
    return [vocab.task_id("tts"), vocab.lang_id(lang), *_wrap(vocab, "text", body),
            *_voice(vocab, voice_codes, max_voice_frames)]


def s2st_prompt(vocab: Vocabulary, src: str, tgt: str, units: TokenIds, voice_codes: Codes | None = None,
                max_voice_frames: int | None = VOICE_PROMPT_FRAMES) -> list[int]:
    """``<s2st> <src> <tgt> <units> u… </units> <voice> c… </voice>``."""
    return [vocab.task_id("s2st"), vocab.lang_id(src), vocab.lang_id(tgt), *_units(vocab, units),
            *_voice(vocab, voice_codes, max_voice_frames)]


def slu_prompt(vocab: Vocabulary, lang: str, units: TokenIds) -> list[int]:
    """``<slu> <lang> <units> u… </units>``."""
    return [vocab.task_id("slu"), vocab.lang_id(lang), *_units(vocab, units)]


def continue_prompt(vocab: Vocabulary, prompt_codes: Codes, prompt_units: TokenIds | None = None) -> list[int]:
    """``<continue> <audio> c…`` for prompt codes ``[K, F]`` (the audio segment is left open); with
    ``prompt_units`` ``[F]`` (a model with ``AlmConfig.audio_units``) each frame is ``u c…`` (:func:`audio_ids`)."""
    return [vocab.task_id("continue"), vocab.token_id("<audio>"), *audio_ids(vocab, prompt_codes, prompt_units)]


def with_speech_input(vocab: Vocabulary, prompt: list[int], mode: str, codes: Codes | None = None) -> list[int]:
    """An ASR / SLU / S2ST prompt with its speech in the model's ``input_speech`` form: ``"units"`` leaves the
    ``<units> u… </units>`` segment, ``"codec"`` replaces it by ``<audio> c… </audio>`` of ``codes [K, F]`` (the
    same audio), ``"both"`` follows it with that segment."""
    if mode == "units":
        return list(prompt)
    if mode not in ("codec", "both"):
        raise ValueError(f"input_speech must be units, codec or both, got {mode!r}")
    if codes is None:
        raise ValueError(f"input_speech={mode!r} needs the speech's codec codes")
    i = prompt.index(vocab.token_id("<units>"))
    j = prompt.index(vocab.token_id("</units>"), i) + 1
    audio = _wrap(vocab, "audio", vocab.codes_to_ids(codes))
    return [*prompt[:i], *(audio if mode == "codec" else [*prompt[i:j], *audio]), *prompt[j:]]


# --- examples (training) -------------------------------------------------------------------------------------
def asr_example(vocab: Vocabulary, lang: str, units: TokenIds, text: str, prompt_weight: float = 0.0,
                context: str | None = None, word_phones: list[TokenIds] | None = None) -> Example:
    """ASR pair: :func:`asr_prompt` -> ``<text> text </text> <eos>`` (text as given: normalize it first).

    With ``word_phones`` (one unit-id sequence per whitespace-separated word of ``text``) the target is "copy,
    then spell": ``<text> p… w… p… w… </text> <eos>``, each word's phones as unit ids before its text ids
    (:func:`spelled_text`; for models with ``AlmConfig.asr_word_phones``).
    """
    body = vocab.encode_text(text) if word_phones is None else spelled_text(vocab, text, word_phones)
    target = [*_wrap(vocab, "text", body), vocab.eos_id]
    return _example(asr_prompt(vocab, lang, units, context), target, prompt_weight)


def spelled_text(vocab: Vocabulary, text: str, word_phones: list[TokenIds]) -> list[int]:
    """Text ids of ``text`` with each word's phones (unit ids) in front of the word: ``[p… w… p… w…]``.

    The words are ``text.split()``; the byte-level BPE splits at spaces, so the text ids alone are those of
    ``" ".join(text.split())`` and :func:`parse_output` reads the text back unchanged. A word may have no phones
    (punctuation alone); ``word_phones`` must have one entry per word.
    """
    words = text.split()
    if len(word_phones) != len(words):
        raise VocabularyError(f"{len(word_phones)} phone sequences for {len(words)} words of {text!r}")
    out: list[int] = []
    for i, (word, phones) in enumerate(zip(words, word_phones)):
        out += vocab.units_to_ids(phones) if len(phones) else []
        out += vocab.encode_text(word if i == 0 else " " + word)
    return out


def tts_example(vocab: Vocabulary, lang: str, text: str, voice_codes: Codes | None, target_codes: Codes,
                prompt_weight: float = 0.0, max_voice_frames: int | None = VOICE_PROMPT_FRAMES,
                target_units: TokenIds | None = None, word_phones: list[TokenIds] | None = None) -> Example:
    """TTS pair: :func:`tts_prompt` -> ``<audio> c… </audio> <eos>``; both code arrays ``[K, F]``, same K; with
    ``target_units`` ``[F]`` the audio frames are ``u c…`` (:func:`audio_ids`); ``word_phones`` spell the
    prompt's text (:func:`tts_prompt`)."""
    _check_k(voice_codes, target_codes)
    target = [*_wrap(vocab, "audio", audio_ids(vocab, target_codes, target_units)), vocab.eos_id]
    return _example(tts_prompt(vocab, lang, text, voice_codes, max_voice_frames, word_phones), target, prompt_weight)


def s2st_example(vocab: Vocabulary, src: str, tgt: str, units: TokenIds, voice_codes: Codes | None,
                 target_text: str, target_codes: Codes, with_text: bool = True, prompt_weight: float = 0.0,
                 max_voice_frames: int | None = VOICE_PROMPT_FRAMES, target_units: TokenIds | None = None) -> Example:
    """S2ST pair: :func:`s2st_prompt` -> ``[<text> L2 text </text>] <audio> c… </audio> <eos>`` (with
    ``target_units`` ``[F]`` the audio frames are ``u c…``)."""
    _check_k(voice_codes, target_codes)
    text = _wrap(vocab, "text", vocab.encode_text(target_text)) if with_text else []
    target = [*text, *_wrap(vocab, "audio", audio_ids(vocab, target_codes, target_units)), vocab.eos_id]
    return _example(s2st_prompt(vocab, src, tgt, units, voice_codes, max_voice_frames), target, prompt_weight)


def slu_example(vocab: Vocabulary, lang: str, units: TokenIds, target_text: str,
                prompt_weight: float = 0.0, transcript: str | None = None,
                word_phones: list[TokenIds] | None = None) -> Example:
    """SLU pair: :func:`slu_prompt` -> ``<text> set_alarm | time = seven </text> <eos>``.

    With ``transcript`` (a model with ``AlmConfig.slu_transcript``) the words come first:
    ``<text> wake me at seven <slu> set_alarm | time = seven </text> <eos>``, the words spelled with their phones
    when ``word_phones`` is given (one unit-id sequence per word of ``transcript``, as :func:`asr_example`).
    """
    body = vocab.encode_text(target_text)
    if transcript is not None:
        words = vocab.encode_text(transcript) if word_phones is None else spelled_text(vocab, transcript, word_phones)
        body = [*words, vocab.token_id("<slu>"), *body]
    elif word_phones is not None:
        raise VocabularyError("word_phones spell the transcript: give the transcript too")
    target = [*_wrap(vocab, "text", body), vocab.eos_id]
    return _example(slu_prompt(vocab, lang, units), target, prompt_weight)


def continue_example(vocab: Vocabulary, prompt_codes: Codes, target_codes: Codes,
                     prompt_weight: float = 0.0, prompt_units: TokenIds | None = None,
                     target_units: TokenIds | None = None) -> Example:
    """Continuation pair: :func:`continue_prompt` -> ``c… </audio> <eos>``; codes ``[K, F]``, same K (with
    ``prompt_units`` / ``target_units`` ``[F]``, both or neither, the frames are ``u c…``)."""
    _check_k(prompt_codes, target_codes)
    if (prompt_units is None) != (target_units is None):
        raise VocabularyError("give units for both the prompt and the target frames, or for neither")
    target = [*audio_ids(vocab, target_codes, target_units), vocab.token_id("</audio>"), vocab.eos_id]
    return _example(continue_prompt(vocab, prompt_codes, prompt_units), target, prompt_weight)


def task_of(vocab: Vocabulary, input_ids: TokenIds) -> str:
    """The task a prompt asks for: its first id after any left padding / ``<bos>`` is a task token."""
    for i in torch.as_tensor(input_ids).reshape(-1).tolist():
        if i in (vocab.pad_id, vocab.bos_id):
            continue
        for task in TASKS:
            if i == vocab.task_id(task):
                return task
        break
    raise VocabularyError("the prompt does not start with a task token (<asr> <tts> <s2st> <slu> <continue>)")


# --- output grammar ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputState:
    """Where a task's output stands, read from the ids generated so far (which must follow the grammar)."""

    done: bool  # <eos> written
    text_open: bool
    text_closed: bool
    audio_open: bool  # <audio> written (always true for continuation: the prompt opens it)
    audio_closed: bool
    n_codec: int  # codec ids written
    n_units: int = 0  # unit ids written (spelled ASR text; audio frames of an audio_units model)
    slu_sep: bool = False  # SLU: the <slu> between transcript and understanding written (slu_transcript models)


def output_state(vocab: Vocabulary, task: str, generated: TokenIds) -> OutputState:
    """Summarize generated ids ``[G]`` into an :class:`OutputState` (vectorized: cheap at every step)."""
    g = torch.as_tensor(generated).reshape(-1)

    def seen(name: str) -> bool:
        return bool((g == vocab.token_id(name)).any())

    return OutputState(
        done=bool((g == vocab.eos_id).any()),
        text_open=seen("<text>"), text_closed=seen("</text>"),
        audio_open=task == "continue" or seen("<audio>"), audio_closed=seen("</audio>"),
        n_codec=int(((g >= vocab.codec.start) & (g < vocab.codec.end)).sum()),
        n_units=int(((g >= vocab.units.start) & (g < vocab.units.end)).sum()),
        slu_sep=task == "slu" and seen("<slu>"),
    )


def allowed_next(vocab: Vocabulary, task: str, generated: TokenIds, *, num_codebooks: int | None = None,
                 remaining: int | None = None, min_frames: int = 1, s2st_text: bool | None = None,
                 asr_units: bool = False, audio_units: bool = False,
                 slu_transcript: bool = False) -> list[TokenRange]:
    """Id ranges the task may emit after ``generated`` (the output so far, prompt excluded).

    Text tasks: ``<text>``, then text ids or ``</text>``, then ``<eos>``. Audio: the codec range of the
    codebook whose turn it is in frame order; ``</audio>`` only at a frame boundary after ``min_frames``
    frames; then ``<eos>``. S2ST may write ``<text> … </text>`` before its audio (``s2st_text``: ``None``
    either way, ``True`` required, ``False`` never). After ``<eos>`` only ``<eos>`` (batch padding).

    With ``remaining`` (ids that may still be written, this one included) a move is allowed only if the
    output can still be closed properly afterwards, so a budget cut never leaves half a frame. If the
    budget is too small for any proper ending the budget is ignored.

    Args:
        num_codebooks: K of the audio stream (defaults to ``vocab.num_codebooks``).
        asr_units: ASR's text segment may also hold unit ids (a model with ``AlmConfig.asr_word_phones``).
        audio_units: every audio frame starts with a unit id, then its ``K`` codec ids (a model with
            ``AlmConfig.audio_units``).
        slu_transcript: SLU's text segment holds the transcript (unit ids too, with ``asr_units``), then one
            ``<slu>``, then the understanding (a model with ``AlmConfig.slu_transcript``).
    """
    if task not in TASKS:
        raise VocabularyError(f"unknown task {task!r}; known: {TASKS}")
    k = vocab.num_codebooks if num_codebooks is None else num_codebooks
    s = output_state(vocab, task, generated)
    one = {name: TokenRange(vocab.token_id(name), vocab.token_id(name) + 1)
           for name in ("<eos>", "<text>", "</text>", "<audio>", "</audio>")}
    stride = k + 1 if audio_units else k  # ids per audio frame
    audio_min = min_frames * stride  # audio ids in the shortest proper audio
    n_audio = s.n_codec + (s.n_units if audio_units else 0)  # audio ids written (no units outside audio here)

    def audio_cost(n: int) -> int:  # ids still needed after n audio ids: finish the frame(s), </audio>, <eos>
        return max(math.ceil(n / stride) * stride, audio_min) - n + 2

    # (ranges, ids still needed to finish after taking this move)
    moves: list[tuple[TokenRange, int]]
    if s.done or s.audio_closed or (task in TEXT_TASKS and s.text_closed):
        moves = [(one["<eos>"], 0)]
    elif task in TEXT_TASKS and not s.text_open:
        moves = [(one["<text>"], 2)]
    elif task == "slu" and slu_transcript and not s.slu_sep:  # the transcript, then <slu>
        sep = TokenRange(vocab.token_id("<slu>"), vocab.token_id("<slu>") + 1)
        moves = [(vocab.text, 3), (sep, 2)]
        if asr_units:
            moves.insert(1, (vocab.units, 3))
    elif task in TEXT_TASKS:
        moves = [(vocab.text, 2), (one["</text>"], 1)]
        if asr_units and task == "asr":
            moves.insert(1, (vocab.units, 2))
    elif s.audio_open:
        phase = n_audio % stride
        turn = (vocab.units if phase == 0 else vocab.codebook(phase - 1)) if audio_units else vocab.codebook(phase)
        moves = [(turn, audio_cost(n_audio + 1))]
        if phase == 0 and n_audio >= audio_min:
            moves.append((one["</audio>"], 1))
    elif task == "s2st" and s.text_open and not s.text_closed:
        moves = [(vocab.text, audio_min + 4), (one["</text>"], audio_min + 3)]
    elif task == "s2st" and not s.text_closed and s2st_text is not False:
        moves = [(one["<text>"], audio_min + 4)]
        if s2st_text is None:
            moves.append((one["<audio>"], audio_min + 2))
    else:  # tts before its audio; s2st after its text or without one
        moves = [(one["<audio>"], audio_min + 2)]

    if remaining is not None:
        affordable = [r for r, cost in moves if 1 + cost <= remaining]
        if affordable:
            return affordable
    return [r for r, _ in moves]


@dataclass(frozen=True)
class TaskOutput:
    """A task's generated ids, read back.

    Attributes:
        text: the ``<text>`` segment decoded (``None`` when there is none).
        codes: ``[K, F]`` codes of the audio segment (``None`` when there is none).
        complete: the output ended with ``<eos>`` after closing its segments.
        transcript: SLU of a model with ``AlmConfig.slu_transcript``: the words written before ``<slu>`` (``text``
            is then what follows it; constrained decoding with a budget always writes the ``<slu>``).
    """

    text: str | None
    codes: torch.Tensor | None
    complete: bool
    transcript: str | None = None


def parse_output(vocab: Vocabulary, task: str, generated: TokenIds, num_codebooks: int | None = None) -> TaskOutput:
    """Split generated ids ``[G]`` into text and codes ``[K, F]`` (an unfinished trailing frame is dropped)."""
    ids = torch.as_tensor(generated).reshape(-1).tolist()
    s = output_state(vocab, task, ids)
    text, transcript = None, None
    if s.text_open:
        start = ids.index(vocab.token_id("<text>")) + 1
        end = ids.index(vocab.token_id("</text>")) if s.text_closed else len(ids)
        body = ids[start:end]
        if task == "slu" and vocab.token_id("<slu>") in body:  # transcript <slu> understanding
            sep = body.index(vocab.token_id("<slu>"))
            transcript = vocab.decode_text([i for i in body[:sep] if i in vocab.text])
            body = body[sep + 1:]
        text = vocab.decode_text([i for i in body if i in vocab.text])  # unit ids of spelled ASR out
    codes = None
    if s.audio_open and task in AUDIO_TASKS:
        codec_ids = [i for i in ids if i in vocab.codec]
        codes = vocab.ids_to_codes(codec_ids, num_codebooks)
    closed = s.audio_closed if task in AUDIO_TASKS else s.text_closed
    return TaskOutput(text, codes, s.done and closed, transcript)
