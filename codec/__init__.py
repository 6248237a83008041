"""Audio I/O and features, the neural codec, HuBERT-style units and the AudioTokenizer interface.

Public API::

    from codec import load_audio, load_codec, load_units, log_mel
    wav = load_audio("speech.mp3")  # [T] float32 mono at 16 kHz, AudioInputError on bad input
    feats = log_mel(wav)  # [80, 1 + T // 160] natural-log mel power, 100 frames/s
    codec = load_codec()  # the shipped neural codec (an AudioTokenizer)
    codes = codec.encode(wav)  # [1, 8, F] at 50 frames/s; codec.decode(codes) -> [1, 320 F]
    units = load_units().encode(wav)  # [F] HuBERT-style units at 50 frames/s
"""

from __future__ import annotations

import os
from pathlib import Path

from codec.audio import SAMPLE_RATE, AudioInfo, AudioInputError, audio_info, load_audio, save_audio
from codec.base import AudioTokenizer
from codec.features import FeatureConfig, log_mel, mfcc
from codec.units import KINDS, UnitTokenizer, collapse_repeats

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def load_codec(path: str | os.PathLike | None = None, device: str = "cpu") -> AudioTokenizer:
    """The shipped neural codec (``codec/pretrained/codec``), or the tokenizer saved at ``path``."""
    import codec.neural  # noqa: F401  (registers NeuralCodec for from_pretrained)

    return AudioTokenizer.from_pretrained(path or PRETRAINED_DIR / "codec", device=device)


def load_units(path: str | os.PathLike | None = None, kind: str = "mfcc") -> UnitTokenizer:
    """A shipped unit tokenizer, or the one saved at ``path``.

    ``kind`` picks the shipped one: ``"mfcc"`` (iteration 1, k-means over MFCCs; the default because it
    measured best against phone labels so far, see ``codec/pretrained/units/QUALITY.md``), ``"hubert"``
    (iteration 2, k-means over a small HuBERT's features), ``"conformer"`` (supervised: k-means over a
    phone-CTC-trained Conformer's layer 2) or ``"phone"`` (that Conformer's frame-wise phone decisions, what
    the shipped ALM reads).
    """
    if path is None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return UnitTokenizer.from_pretrained(path or PRETRAINED_DIR / "units" / kind)


__all__ = [
    "PRETRAINED_DIR",
    "SAMPLE_RATE",
    "AudioInfo",
    "AudioInputError",
    "AudioTokenizer",
    "FeatureConfig",
    "UnitTokenizer",
    "audio_info",
    "collapse_repeats",
    "load_audio",
    "load_codec",
    "load_units",
    "log_mel",
    "mfcc",
    "save_audio",
]
