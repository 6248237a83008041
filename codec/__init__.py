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
from typing import TYPE_CHECKING

from codec.audio import SAMPLE_RATE, AudioInfo, AudioInputError, audio_info, load_audio, save_audio
from codec.base import AudioTokenizer
from codec.features import FeatureConfig, log_mel, mfcc

if TYPE_CHECKING:
    from codec.units import UnitTokenizer

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def load_codec(path: str | os.PathLike | None = None, device: str = "cpu") -> AudioTokenizer:
    """The shipped neural codec (``codec/pretrained/codec``), or the tokenizer saved at ``path``."""
    import codec.neural  # noqa: F401  (registers NeuralCodec for from_pretrained)

    return AudioTokenizer.from_pretrained(path or PRETRAINED_DIR / "codec", device=device)


def load_units(path: str | os.PathLike | None = None) -> UnitTokenizer:
    """The shipped HuBERT-style unit tokenizer (iteration 2, ``codec/pretrained/units/hubert``), or the one
    saved at ``path``."""
    from codec.units import UnitTokenizer

    return UnitTokenizer.from_pretrained(path or PRETRAINED_DIR / "units" / "hubert")

__all__ = [
    "PRETRAINED_DIR",
    "SAMPLE_RATE",
    "AudioInfo",
    "AudioInputError",
    "AudioTokenizer",
    "FeatureConfig",
    "audio_info",
    "load_audio",
    "load_codec",
    "load_units",
    "log_mel",
    "mfcc",
    "save_audio",
]
