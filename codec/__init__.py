"""Audio I/O and features, the neural codec, HuBERT-style units and the AudioTokenizer interface.

Public API::

    from codec import load_audio, log_mel
    wav = load_audio("speech.mp3")  # [T] float32 mono at 16 kHz, AudioInputError on bad input
    feats = log_mel(wav)  # [80, 1 + T // 160] natural-log mel power, 100 frames/s
"""

from codec.audio import SAMPLE_RATE, AudioInfo, AudioInputError, audio_info, load_audio, save_audio
from codec.features import FeatureConfig, log_mel, mfcc

__all__ = [
    "SAMPLE_RATE",
    "AudioInfo",
    "AudioInputError",
    "FeatureConfig",
    "audio_info",
    "load_audio",
    "log_mel",
    "mfcc",
    "save_audio",
]
