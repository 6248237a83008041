"""Tests for codec.features: the frame-count contract, MFCC deltas, silence, pitch placement and batching."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from transformers.audio_utils import hertz_to_mel, mel_to_hertz

from codec import FeatureConfig, log_mel, mfcc


def tone(freq: float, seconds: float = 0.5, sample_rate: int = 16000, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(sample_rate * seconds), dtype=torch.float64) / sample_rate
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


@pytest.mark.parametrize("num_samples", [1, 159, 160, 161, 400, 16000, 16001])
def test_log_mel_shape_follows_frame_contract(num_samples: int) -> None:
    x = torch.randn(num_samples, generator=torch.Generator().manual_seed(num_samples)) * 0.1
    feats = log_mel(x)
    assert feats.shape == (80, 1 + num_samples // 160) == (80, FeatureConfig().num_frames(num_samples))
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


def test_frame_contract_for_other_settings() -> None:
    cfg = FeatureConfig(sample_rate=8000, n_mels=40, n_fft=201, hop_length=80)
    x = tone(440, 0.3, 8000)
    assert log_mel(x, **dataclasses.asdict(cfg)).shape == (40, cfg.num_frames(len(x)))
    assert FeatureConfig().frame_rate == 100.0
    assert FeatureConfig().num_frames(10 * 16000) == 1001  # 10 s -> 100 frames/s, plus the centred frame 0


def test_numpy_and_tensor_inputs_agree() -> None:
    x = tone(300)
    torch.testing.assert_close(log_mel(x), log_mel(x.numpy()))


def test_mfcc_shapes_and_static_block() -> None:
    x = tone(500) + 0.05 * torch.randn(8000, generator=torch.Generator().manual_seed(0))
    static = mfcc(x)
    full = mfcc(x, deltas=True)
    F = 1 + 8000 // 160
    assert static.shape == (13, F) and full.shape == (39, F)
    assert static.dtype == full.dtype == torch.float32
    torch.testing.assert_close(full[:13], static)


def test_mfcc_deltas_match_htk_regression_formula() -> None:
    x = tone(500, 1.0) * torch.linspace(0.05, 1.0, 16000)  # rising loudness: non-trivial deltas
    full = mfcc(x, deltas=True).numpy().astype(np.float64)
    c, d1, d2 = full[:13], full[13:26], full[26:]
    N = 4  # width 9
    denom = 2 * sum(n * n for n in range(1, N + 1))

    def regress(m: np.ndarray) -> np.ndarray:  # interior frames only, where no edge handling applies
        T = m.shape[1]
        return np.stack(
            [sum(n * (m[:, t + n] - m[:, t - n]) for n in range(1, N + 1)) / denom for t in range(N, T - N)],
            axis=1,
        )

    np.testing.assert_allclose(d1[:, N:-N], regress(c), atol=1e-4)
    np.testing.assert_allclose(d2[:, N:-N], regress(d1), atol=1e-4)


def test_mfcc_c0_is_scaled_mean_log_mel() -> None:
    x = tone(800)
    lm = log_mel(x, n_mels=40)
    c0 = mfcc(x, n_mfcc=1)[0]
    torch.testing.assert_close(c0, lm.sum(0) / math.sqrt(40), rtol=1e-4, atol=1e-3)  # orthonormal DCT-II


def test_short_input_mfcc_deltas() -> None:
    out = mfcc(tone(440, 0.01), deltas=True)  # 160 samples -> 2 frames, fewer than the delta window
    assert out.shape == (39, 2) and torch.isfinite(out).all()


def test_silence_is_finite_and_floored() -> None:
    z = torch.zeros(4000)
    lm = log_mel(z)
    assert torch.isfinite(lm).all()
    torch.testing.assert_close(lm, torch.full_like(lm, math.log(1e-10)))
    m = mfcc(z, deltas=True)
    assert torch.isfinite(m).all()
    torch.testing.assert_close(m[13:], torch.zeros_like(m[13:]))  # constant features have zero deltas


@pytest.mark.parametrize("freq", [250.0, 1000.0, 3000.0, 6000.0])
def test_tone_peaks_in_its_mel_bin(freq: float) -> None:
    n_mels = 80
    # centre frequencies of the Slaney-scale triangular filters spanning 0..8000 Hz
    edges = mel_to_hertz(
        np.linspace(hertz_to_mel(0.0, "slaney"), hertz_to_mel(8000.0, "slaney"), n_mels + 2), "slaney"
    )
    expected = int(np.argmin(np.abs(edges[1:-1] - freq)))
    peak = log_mel(tone(freq)).mean(dim=1).argmax().item()
    assert abs(peak - expected) <= 1


def test_batch_equals_per_item() -> None:
    g = torch.Generator().manual_seed(1)
    batch = torch.stack([tone(300), tone(1200, amp=0.1), 0.2 * torch.randn(8000, generator=g)])  # [3, T]
    lm = log_mel(batch)
    mf = mfcc(batch, deltas=True)
    assert lm.shape == (3, 80, 51) and mf.shape == (3, 39, 51)
    for i in range(3):
        torch.testing.assert_close(lm[i], log_mel(batch[i]))
        torch.testing.assert_close(mf[i], mfcc(batch[i], deltas=True))


def test_invalid_inputs_and_configs() -> None:
    with pytest.raises(ValueError, match="NaN/Inf"):
        log_mel(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="non-empty"):
        log_mel(torch.zeros(0))
    with pytest.raises(ValueError, match=r"\[T\] or \[B, T\]"):
        log_mel(torch.zeros(1, 2, 100))
    with pytest.raises(TypeError, match="float waveform"):
        log_mel(np.zeros(100, np.int16))
    with pytest.raises(ValueError, match="f_max"):
        FeatureConfig(f_max=9000.0)
    with pytest.raises(ValueError, match="hop_length"):
        FeatureConfig(hop_length=0)
    with pytest.raises(ValueError, match="n_mfcc"):
        mfcc(tone(440), n_mfcc=41)
    with pytest.raises(dataclasses.FrozenInstanceError):
        FeatureConfig().n_mels = 40  # type: ignore[misc]
