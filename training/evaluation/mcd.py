"""Mel-cepstral distortion (MCD) between a synthesized utterance and a real recording of the same text.

The cepstra are the DCT-II (orthonormal) of the project's 80-bin log-mel (:func:`codec.features.log_mel`,
natural log), coefficients 1..13 (``c0``, the loudness, is left out), and the two sequences are aligned by dynamic
time warping (``dtw-python``; symmetric2 steps) before the frame distances are averaged::

    MCD = (10 / ln 10) * sqrt(2 * sum_k (c_k - c'_k)^2)     per aligned frame pair, in dB, then the mean

These are not the SPTK mel-generalized cepstra of the classic MCD papers, so the dB values are comparable between
the systems measured here, not with published figures.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.fft import dct

from codec.features import log_mel

N_CEPSTRA = 13
_DB = 10.0 / math.log(10.0) * math.sqrt(2.0)


def mel_cepstra(wav: np.ndarray, sample_rate: int = 16000, n: int = N_CEPSTRA) -> np.ndarray:
    """``[F, n]`` cepstra c1..cn of a ``[T]`` waveform's log-mel (10 ms frames), silence frames kept."""
    if sample_rate != 16000:
        raise ValueError(f"mel_cepstra expects 16 kHz audio, got {sample_rate} Hz")
    mel = log_mel(torch.as_tensor(np.asarray(wav, dtype=np.float32))).numpy().T  # [F, 80]
    return dct(mel, type=2, norm="ortho", axis=1)[:, 1: n + 1]


def mel_cepstral_distortion(synthesized: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float:
    """MCD in dB of ``synthesized`` against ``reference`` (both ``[T]`` at 16 kHz), DTW-aligned.

    Raises:
        ValueError: either waveform is shorter than 5 frames (50 ms).
    """
    from dtw import dtw

    a, b = mel_cepstra(synthesized, sample_rate), mel_cepstra(reference, sample_rate)
    if len(a) < 5 or len(b) < 5:
        raise ValueError(f"MCD needs at least 5 frames on each side, got {len(a)} and {len(b)}")
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # [Fa, Fb] Euclidean frame distances
    path = dtw(cost, step_pattern="symmetric2")
    return float(_DB * cost[path.index1, path.index2].mean())


__all__ = ["N_CEPSTRA", "mel_cepstra", "mel_cepstral_distortion"]
