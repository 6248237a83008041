"""Mel-cepstral distortion: zero for identical audio, small for the same sound re-timed, large for another sound."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.mcd import mel_cepstra, mel_cepstral_distortion

SR = 16000


def _vowelish(seconds: float, f0: float, formants: tuple[float, ...], seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * k * f0 * t) / k * sum(np.exp(-((k * f0 - f) / 150) ** 2) for f in formants)
              for k in range(1, 40))
    wav = wav + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def test_cepstra_shape() -> None:
    c = mel_cepstra(_vowelish(0.5, 120, (700, 1200)))
    assert c.shape[1] == 13 and 45 <= c.shape[0] <= 55 and np.isfinite(c).all()


def test_identical_is_zero_and_retimed_is_close_and_other_is_far() -> None:
    a = _vowelish(1.0, 120, (700, 1200))
    same_sound_longer = _vowelish(1.4, 120, (700, 1200), seed=1)  # DTW absorbs the timing
    other = _vowelish(1.0, 220, (300, 2300))
    assert mel_cepstral_distortion(a, a) == pytest.approx(0.0, abs=1e-6)
    close, far = mel_cepstral_distortion(same_sound_longer, a), mel_cepstral_distortion(other, a)
    assert close < 0.5 * far and far > 1.0


def test_too_short_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 5 frames"):
        mel_cepstral_distortion(np.zeros(100, np.float32), _vowelish(1.0, 120, (700, 1200)))
