"""Use a trained baseline directory on its own: load it, transcribe speech, synthesize speech.

A directory written by ``python -m training.train_legacy`` (its ``OUT/final``) holds::

    final/
      config.json          {"model_class": "CTCModel" | "RNNTModel" | "LASModel" | "Tacotron2" | "FastSpeech2"
                            | "HiFiGANGenerator", ...the config's fields}
      model.safetensors    the weights
      vocab.json           the CharVocab (text models only)
      features.json        the log-mel parameters (codec.features.FeatureConfig fields) the model was trained on

Three calls::

    loaded = load_legacy("runs/legacy-ctc/final")            # LegacyModel(model, vocab, features, kind)
    transcribe("runs/legacy-ctc/final", "hello.wav")          # "hello world" (CTC, RNN-T or LAS; greedy)
    synthesize("runs/legacy-fs2/final", "hello", "runs/legacy-hifigan/final")   # [T] float32 at 16 kHz

Every waveform :func:`synthesize` returns has passed through the **output hook** (:func:`set_output_hook`),
by default the project's keyed watermark (:func:`safety.watermark.watermark_hook`), so baseline speech carries it
like the ALM's own output; ``set_output_hook(None)`` turns it off (logged as a warning).

Text goes through :func:`normalize_text` (Unicode NFC, lower case, single spaces) in training and here alike;
characters outside the model's vocabulary are dropped with a warning. A TTS model trained with ``phonemes`` (its
config says so) reads the espeak-ng IPA phones of that text instead (:func:`phonemes_of`; ``synthesize``'s
``language`` picks the espeak-ng voice). LAS output ids extend the CharVocab:
``0`` padding (the blank), ``1 .. N - 1`` characters, ``N`` start, ``N + 1`` end (:func:`las_token_ids`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec.audio import load_audio
from codec.features import FeatureConfig, log_mel
from legacy_seq2seq.checkpoint import CONFIG_NAME, CheckpointError
from legacy_seq2seq.ctc import CTCModel
from legacy_seq2seq.fastspeech2 import FastSpeech2
from legacy_seq2seq.hifigan import HiFiGANGenerator
from legacy_seq2seq.las import LASModel
from legacy_seq2seq.las_decoding import LASDecodingOptions
from legacy_seq2seq.las_decoding import beam_search as las_beam_search
from legacy_seq2seq.las_decoding import greedy_decode as las_greedy_decode
from legacy_seq2seq.rnnt import RNNTModel
from legacy_seq2seq.tacotron2 import Tacotron2
from legacy_seq2seq.text import CharVocab
from legacy_seq2seq.translatotron import Translatotron

logger = logging.getLogger(__name__)

VOCAB_NAME = "vocab.json"
FEATURES_NAME = "features.json"
MODEL_CLASSES: dict[str, type[torch.nn.Module]] = {
    cls.__name__: cls for cls in (CTCModel, RNNTModel, LASModel, Tacotron2, FastSpeech2, HiFiGANGenerator,
                                  Translatotron)}
ASR_CLASSES = (CTCModel, RNNTModel, LASModel)
TTS_CLASSES = (Tacotron2, FastSpeech2)
MIN_FRAMES = 16  # shortest feature input: LAS reduces time 8x, the Conformer 4x (and needs 7 frames)

OutputHook = Callable[[np.ndarray, int], np.ndarray]


def _identity(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    return audio


def _watermark(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    from safety.watermark import watermark_hook  # lazily: only when speech is generated

    return watermark_hook(audio, sample_rate)


_output_hook: OutputHook = _watermark


def set_output_hook(fn: OutputHook | None) -> OutputHook:
    """Install the function every waveform :func:`synthesize` generates passes through before it is returned.

    Args:
        fn: ``fn(audio, sample_rate) -> audio`` on ``[T]`` float32 in ``[-1, 1]``, returning a finite array of the
            same shape (default: the keyed watermark); ``None`` turns the hook off (the identity).

    Returns:
        The hook it replaces (to restore it later).
    """
    global _output_hook
    previous = _output_hook
    if fn is None:
        logger.warning("the output hook is off: baseline speech generated from now on carries no watermark")
    _output_hook = _identity if fn is None else fn
    return previous


def apply_output_hook(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``audio`` ``[T]`` through the installed hook, checked: float32, same shape, finite."""
    out = np.asarray(_output_hook(audio, sample_rate), dtype=np.float32)
    if out.shape != audio.shape or not np.isfinite(out).all():
        raise RuntimeError(f"the output hook returned shape {out.shape} for audio {audio.shape} (or non-finite "
                           "samples)")
    return out


# --- text -----------------------------------------------------------------------------------------------------
def normalize_text(text: str) -> str:
    """The text form every baseline reads and writes: NFC, lower case, whitespace collapsed to single spaces."""
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def encode_text(vocab: CharVocab, text: str) -> list[int]:
    """Ids of :func:`normalize_text` ``(text)``; characters outside ``vocab`` are dropped (logged once per call).

    Raises:
        ValueError: no character of the text is in the vocabulary.
    """
    return _known_ids(vocab, normalize_text(text), text)


def phonemes_of(text: str, language: str) -> str:
    """The phone string a ``phonemes`` model reads for ``text`` in ``language`` (``"en"``/``"es"``): the espeak-ng
    IPA phones of :func:`normalize_text` ``(text)``, one character each, ``|`` between words
    (:func:`codec.word_phones.phonemize`, the phone recognizer's symbols).

    Raises:
        ValueError: the text is empty or ``language`` has no espeak-ng voice.
        RuntimeError: the ``espeak-ng`` program is not installed.
    """
    from codec.word_phones import phonemize

    norm = normalize_text(text)
    if not norm:
        raise ValueError("the text is empty: there is nothing to phonemize")
    try:
        return "".join(phonemize(norm, language))
    except FileNotFoundError as e:
        raise RuntimeError("this model reads phonemes and needs the espeak-ng program (apt-get install espeak-ng)"
                           ) from e


def encode_input(loaded: LegacyModel, text: str, language: str = "en") -> list[int]:
    """The symbol ids a TTS model reads for ``text``: its letters (:func:`encode_text`) or, for a model trained
    with ``phonemes``, the phones of ``text`` in ``language`` (:func:`phonemes_of`); symbols outside the
    vocabulary are dropped with a warning.

    Raises:
        ValueError: nothing of the text is in the vocabulary, or (phonemes) the text is empty or the language unknown.
    """
    if loaded.vocab is None:
        raise ValueError(f"a {loaded.kind} reads no text")
    if getattr(loaded.model.config, "phonemes", False):
        return _known_ids(loaded.vocab, phonemes_of(text, language), text)
    return encode_text(loaded.vocab, text)


def _known_ids(vocab: CharVocab, symbols: str, text: str) -> list[int]:
    known = set(vocab.chars)
    unknown = sorted({c for c in symbols if c not in known})
    if unknown:
        logger.warning("dropping symbols outside the vocabulary: %r", "".join(unknown))
    ids = vocab.encode("".join(c for c in symbols if c in known))
    if not ids:
        raise ValueError(f"no character of {text!r} is in the model's vocabulary")
    return ids


def las_token_ids(vocab: CharVocab | int) -> tuple[int, int, int, int]:
    """``(vocab_size, sos_id, eos_id, pad_id)`` of a LAS model over ``vocab`` (or its size ``len(vocab)``);
    characters keep their ids."""
    n = vocab if isinstance(vocab, int) else len(vocab)
    return n + 2, n, n + 1, 0


# --- loading --------------------------------------------------------------------------------------------------
@dataclass
class LegacyModel:
    """A loaded baseline directory.

    Attributes:
        model: the model, in eval mode.
        vocab: its character vocabulary (``None`` for the vocoder).
        features: the log-mel parameters it was trained on.
        kind: the model class name (``config.json``'s ``model_class``).
    """

    model: torch.nn.Module
    vocab: CharVocab | None
    features: FeatureConfig
    kind: str


def save_extras(directory: str | os.PathLike, vocab: CharVocab | None, features: FeatureConfig) -> None:
    """Write ``vocab.json`` (when given) and ``features.json`` next to a saved model."""
    d = Path(directory)
    if vocab is not None:
        vocab.save(d / VOCAB_NAME)
    tmp = d / f".{FEATURES_NAME}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(dataclasses.asdict(features), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, d / FEATURES_NAME)


def load_features(directory: str | os.PathLike) -> FeatureConfig:
    """The ``features.json`` of a model directory (the project's defaults when the file is absent)."""
    path = Path(directory) / FEATURES_NAME
    if not path.is_file():
        return FeatureConfig()
    try:
        return FeatureConfig(**json.loads(path.read_text(encoding="utf-8")))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a feature configuration: {e}") from e


def load_legacy(directory: str | os.PathLike, device: str | torch.device = "cpu") -> LegacyModel:
    """Rebuild whichever baseline a directory holds, from its ``config.json``'s ``model_class``.

    Raises:
        CheckpointError: no such directory, an unknown model class, a missing vocabulary, or inconsistent files.
    """
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d} is not a directory: give a model directory written by training.train_legacy "
                              "(its OUT/final)")
    try:
        name = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8")).get("model_class")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"{d} has no readable {CONFIG_NAME}: not a saved baseline ({e})") from e
    if name not in MODEL_CLASSES:
        raise CheckpointError(f"{d} holds a {name!r} model; known: {', '.join(MODEL_CLASSES)}")
    cls = MODEL_CLASSES[name]
    model = cls.from_pretrained(d, device=device)
    vocab = None
    if cls is not HiFiGANGenerator:
        if not (d / VOCAB_NAME).is_file():
            raise CheckpointError(f"{d} has no {VOCAB_NAME}: a {name} needs its character vocabulary")
        vocab = CharVocab.load(d / VOCAB_NAME)
    features = model.config.features if cls is HiFiGANGenerator else load_features(d)
    return LegacyModel(model, vocab, features, name)


def _loaded(model: str | os.PathLike | LegacyModel, device: str | torch.device) -> LegacyModel:
    return model if isinstance(model, LegacyModel) else load_legacy(model, device)


# --- speech recognition ---------------------------------------------------------------------------------------
def features_of(wav: Any, features: FeatureConfig) -> torch.Tensor:
    """Log-mel ``[F, n_mels]`` of a path or a ``[T]`` waveform at ``features.sample_rate`` (padded to 16 frames)."""
    audio = load_audio(wav, features.sample_rate, max_seconds=None)
    short = (MIN_FRAMES - 1) * features.hop_length - audio.numel()
    if short > 0:  # too short for the encoders' time reduction: pad with silence
        audio = torch.cat([audio, audio.new_zeros(short)])
    return log_mel(audio, **dataclasses.asdict(features)).T.contiguous()


@torch.no_grad()
def transcribe(model: str | os.PathLike | LegacyModel, wav: Any, device: str | torch.device = "cpu",
               beam: int = 1) -> str:
    """Transcript of one utterance by a CTC, RNN-T or LAS directory (greedy, or beam search with ``beam`` > 1).

    Args:
        model: the model directory (or a :class:`LegacyModel` from :func:`load_legacy`).
        wav: an audio file path, or a ``[T]`` waveform at the model's sample rate (16 kHz).
        device: where to run.
        beam: hypotheses kept; 1 is greedy. CTC: prefix beam search; RNN-T: its beam search; LAS: beam search
            with length normalization 1.0 and coverage penalty 0.2 (the README's measured setting).

    Returns:
        The transcript in :func:`normalize_text` form.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    loaded = _loaded(model, device)
    m = loaded.model
    if not isinstance(m, ASR_CLASSES):
        raise ValueError(f"{loaded.kind} is not a speech recognizer (CTC, RNN-T or LAS)")
    feats = features_of(wav, loaded.features)[None].to(next(m.parameters()).device)  # [1, F, n_mels]
    lengths = torch.tensor([feats.shape[1]], device=feats.device)
    if isinstance(m, LASModel):
        if beam == 1:
            ids = las_greedy_decode(m, feats, lengths)[0].tokens
        else:
            options = LASDecodingOptions(beam_size=beam, length_penalty=1.0, coverage_penalty=0.2)
            ids = las_beam_search(m, feats, lengths, options)[0].tokens
        ids = [i for i in ids if 0 < i < len(loaded.vocab)]  # a stray start/end id is not a character
    elif beam == 1:
        ids = m.greedy_decode(feats, lengths)[0]
    else:
        ids = m.beam_search(feats, lengths, beam_size=beam)[0]
    return loaded.vocab.decode(ids)


# --- speech synthesis -----------------------------------------------------------------------------------------
@torch.no_grad()
def synthesize(model: str | os.PathLike | LegacyModel, text: str, vocoder: str | os.PathLike | LegacyModel,
               device: str | torch.device = "cpu", speaker: str | None = None, language: str = "en"
               ) -> np.ndarray:
    """Speak ``text`` with a Tacotron 2 or FastSpeech 2 directory and a HiFi-GAN vocoder directory.

    Args:
        model: the acoustic model directory (or a loaded one).
        text: what to say (normalized and encoded as in training: :func:`encode_input`).
        vocoder: the HiFi-GAN directory (or a loaded one); its log-mel parameters must match the acoustic model's.
        device: where to run.
        speaker: the voice of a multi-speaker model (one of :func:`speakers`; ``None``: its first); a
            single-voice model refuses a name.
        language: the language of ``text`` (``"en"``/``"es"``): a ``phonemes`` model phonemizes it in that
            language; a letters model reads the letters of either.

    Returns:
        ``[T]`` float32 waveform in ``[-1, 1]`` at the vocoder's sample rate (16 kHz), after the output hook.
    """
    acoustic, voc = _loaded(model, device), _loaded(vocoder, device)
    if not isinstance(acoustic.model, TTS_CLASSES):
        raise ValueError(f"{acoustic.kind} is not an acoustic model (Tacotron 2 or FastSpeech 2)")
    if not isinstance(voc.model, HiFiGANGenerator):
        raise ValueError(f"the vocoder directory holds a {voc.kind}, not a HiFiGANGenerator")
    if acoustic.features != voc.features:
        raise ValueError(f"the acoustic model's features {acoustic.features} differ from the vocoder's "
                         f"{voc.features}: train both on the same log-mel")
    param = next(acoustic.model.parameters())
    ids = torch.tensor(encode_input(acoustic, text, language), device=param.device)
    voice = None if speaker is None else torch.tensor([acoustic.model.speaker_id(speaker)], device=param.device)
    mel = acoustic.model.infer(ids[None], speaker_ids=voice).mel  # [1, T, n_mels]
    wav = voc.model(mel.transpose(1, 2).to(next(voc.model.parameters()).device))[0]  # [T * hop]
    audio = wav.float().clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)
    return apply_output_hook(audio, voc.features.sample_rate)


def speakers(model: str | os.PathLike | LegacyModel) -> tuple[str, ...]:
    """The voices a Tacotron 2 or FastSpeech 2 directory can speak in (``()``: one voice, trained without ids)."""
    acoustic = _loaded(model, "cpu")
    if not isinstance(acoustic.model, TTS_CLASSES):
        raise ValueError(f"{acoustic.kind} is not an acoustic model (Tacotron 2 or FastSpeech 2)")
    return tuple(acoustic.model.config.speakers)


# --- speech-to-speech translation ----------------------------------------------------------------------------
@torch.no_grad()
def translate(model: str | os.PathLike | LegacyModel, wav: Any, vocoder: str | os.PathLike | LegacyModel,
              device: str | torch.device = "cpu") -> np.ndarray:
    """Translate one utterance speech-to-speech with a Translatotron directory and a HiFi-GAN vocoder directory.

    Args:
        model: the Translatotron directory (or a loaded one).
        wav: source speech: an audio file path or a ``[T]`` waveform at 16 kHz.
        vocoder: the HiFi-GAN directory (or a loaded one), trained on the same log-mel.
        device: where to run.

    Returns:
        ``[T']`` float32 target-language waveform at the vocoder's sample rate, after the output hook.
    """
    s2st, voc = _loaded(model, device), _loaded(vocoder, device)
    if not isinstance(s2st.model, Translatotron):
        raise ValueError(f"{s2st.kind} is not a Translatotron")
    if not isinstance(voc.model, HiFiGANGenerator):
        raise ValueError(f"the vocoder directory holds a {voc.kind}, not a HiFiGANGenerator")
    if s2st.features != voc.features:
        raise ValueError(f"the Translatotron's features {s2st.features} differ from the vocoder's {voc.features}")
    feats = features_of(wav, s2st.features)[None].to(next(s2st.model.parameters()).device)  # [1, F, n_mels]
    out = s2st.model.translate(feats)
    mel = out.mel[:, : int(out.mel_lengths[0])]  # [1, T, n_mels]
    wav_out = voc.model(mel.transpose(1, 2).to(next(voc.model.parameters()).device))[0]
    audio = wav_out.float().clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)
    return apply_output_hook(audio, voc.features.sample_rate)


__all__ = ["LegacyModel", "apply_output_hook", "encode_input", "encode_text", "features_of", "las_token_ids",
           "load_features", "load_legacy", "normalize_text", "phonemes_of", "save_extras", "set_output_hook",
           "speakers", "synthesize", "transcribe", "translate"]
