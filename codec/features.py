"""Log-mel and MFCC features, built on ``transformers.audio_utils`` (STFT, mel filterbank, window).

Frame contract (``center=True``: frame ``f`` is centred on sample ``f * hop_length``)::

    F = 1 + (T + 2 * (n_fft // 2) - n_fft) // hop_length      # = 1 + T // hop_length for even n_fft

With the defaults (16 kHz, ``n_fft=400`` = 25 ms window, ``hop_length=160`` = 10 ms hop) that is
``F = 1 + T // 160``: 100 frames per second, 1001 frames for 10 s (see :meth:`FeatureConfig.num_frames`).

Log-mel is the natural log of the mel-filtered *power* spectrum, floored at ``floor`` (1e-10, i.e. about
-23.03) before the log so that digital silence stays finite. The mel filterbank uses the Slaney mel scale and
area normalisation (librosa's defaults). MFCCs are the orthonormal DCT-II of the log-mel (as librosa);
deltas are the Savitzky-Golay first derivative over ``delta_width`` frames, which for a degree-1 fit is the
HTK/librosa regression ``d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum n^2)`` with ``N = width // 2``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import scipy.fft
import scipy.signal
import torch
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

LOG_FLOOR = 1e-10  # power floor before log: log(1e-10) ~ -23.03 for digital silence
DELTA_WIDTH = 9  # frames in the delta regression window (librosa's default; +-4 frames = +-40 ms)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the STFT and mel filterbank; validated on construction.

    Field names match the keyword arguments of :func:`log_mel` and :func:`mfcc`, so
    ``log_mel(wav, **dataclasses.asdict(cfg))`` reproduces a stored configuration.
    """

    sample_rate: int = 16000  # Hz
    n_mels: int = 80
    n_fft: int = 400  # 25 ms at 16 kHz; FFT size and analysis window length
    hop_length: int = 160  # 10 ms at 16 kHz -> 100 frames/s
    f_min: float = 0.0  # Hz, lowest mel filter edge
    f_max: float | None = None  # Hz, highest mel filter edge; None = sample_rate / 2
    floor: float = LOG_FLOOR

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "n_fft", "hop_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"FeatureConfig.{name} must be a positive int, got {value!r}")
        if self.n_mels > self.n_freqs:
            raise ValueError(f"n_mels={self.n_mels} exceeds the {self.n_freqs} FFT bins (n_fft={self.n_fft})")
        if not 0.0 <= self.f_min < self.mel_f_max <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={self.f_min}, f_max={self.f_max}, "
                f"sample_rate={self.sample_rate}"
            )
        if not self.floor > 0:
            raise ValueError(f"floor must be positive, got {self.floor!r}")

    @property
    def n_freqs(self) -> int:
        """Number of one-sided FFT bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def mel_f_max(self) -> float:
        """Upper edge of the mel filterbank in Hz (``f_max`` or Nyquist)."""
        return float(self.sample_rate / 2 if self.f_max is None else self.f_max)

    @property
    def frame_rate(self) -> float:
        """Feature frames per second, ``sample_rate / hop_length`` (100.0 with the defaults)."""
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames ``F`` produced from ``T = num_samples`` samples (``1 + T // hop_length`` for even n_fft)."""
        pad = self.n_fft // 2
        return 1 + (num_samples + 2 * pad - self.n_fft) // self.hop_length


def log_mel(
    wav: torch.Tensor | np.ndarray,
    sample_rate: int = 16000,
    n_mels: int = 80,
    n_fft: int = 400,
    hop_length: int = 160,
    *,
    f_min: float = 0.0,
    f_max: float | None = None,
    floor: float = LOG_FLOOR,
) -> torch.Tensor:
    """Log-mel power spectrogram.

    Args:
        wav: ``[T]`` or ``[B, T]`` waveform at ``sample_rate`` (float, roughly in ``[-1, 1]``), ``T >= 1``.
        sample_rate: rate of ``wav`` in Hz.
        n_mels: number of mel bands.
        n_fft: FFT size and Hann window length in samples.
        hop_length: stride between frames in samples.
        f_min: lowest mel filter edge in Hz.
        f_max: highest mel filter edge in Hz (``None``: Nyquist).
        floor: power floor applied before the natural log.

    Returns:
        float32 ``[n_mels, F]`` (or ``[B, n_mels, F]``) with ``F = FeatureConfig.num_frames(T)``, on the
        device of ``wav``; always finite, at least ``log(floor)``.
    """
    cfg = FeatureConfig(sample_rate, n_mels, n_fft, hop_length, f_min, f_max, floor)
    return _apply(wav, functools.partial(_log_mel_np, cfg=cfg))


def mfcc(
    wav: torch.Tensor | np.ndarray,
    sample_rate: int = 16000,
    n_mfcc: int = 13,
    deltas: bool = False,
    *,
    n_mels: int = 40,
    n_fft: int = 400,
    hop_length: int = 160,
    f_min: float = 0.0,
    f_max: float | None = None,
    floor: float = LOG_FLOOR,
    delta_width: int = DELTA_WIDTH,
) -> torch.Tensor:
    """Mel-frequency cepstral coefficients, optionally with deltas and delta-deltas.

    Args:
        wav: ``[T]`` or ``[B, T]`` waveform at ``sample_rate``, ``T >= 1``.
        sample_rate: rate of ``wav`` in Hz.
        n_mfcc: cepstral coefficients kept (c0 included), at most ``n_mels``.
        deltas: append first and second time derivatives (13 -> 39 dims).
        n_mels: mel bands the cepstrum is computed from (40, as Kaldi's high-resolution MFCC).
        n_fft, hop_length, f_min, f_max, floor: as in :func:`log_mel`.
        delta_width: odd number of frames in the delta regression window.

    Returns:
        float32 ``[n_mfcc, F]`` (``[3 * n_mfcc, F]`` with deltas, ordered static, delta, delta-delta), or with
        a leading ``B`` for batched input; ``F`` as in :func:`log_mel`.
    """
    cfg = FeatureConfig(sample_rate, n_mels, n_fft, hop_length, f_min, f_max, floor)
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc must be in 1..n_mels={n_mels}, got {n_mfcc}")
    if delta_width < 3 or delta_width % 2 == 0:
        raise ValueError(f"delta_width must be odd and >= 3, got {delta_width}")

    def one(x: np.ndarray) -> np.ndarray:
        ceps = scipy.fft.dct(_log_mel_np(x, cfg), type=2, axis=0, norm="ortho")[:n_mfcc]  # [n_mfcc, F]
        if not deltas:
            return ceps
        d1 = _delta(ceps, delta_width)
        return np.concatenate([ceps, d1, _delta(d1, delta_width)], axis=0)  # [3 * n_mfcc, F]

    return _apply(wav, one)


@functools.lru_cache(maxsize=16)
def _mel_filters(cfg: FeatureConfig) -> np.ndarray:
    """``[n_freqs, n_mels]`` float32 Slaney-normalised triangular filters (cached per config)."""
    return mel_filter_bank(
        num_frequency_bins=cfg.n_freqs,
        num_mel_filters=cfg.n_mels,
        min_frequency=cfg.f_min,
        max_frequency=cfg.mel_f_max,
        sampling_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
        dtype=np.float32,
    )


@functools.lru_cache(maxsize=16)
def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann window ``[n_fft]`` (the STFT convention of torch and librosa)."""
    return window_function(n_fft, "hann", periodic=True).astype(np.float32)


def _log_mel_np(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``[T]`` float32 -> ``[n_mels, F]`` float32 natural-log mel power."""
    return spectrogram(
        x,
        _window(cfg.n_fft),
        frame_length=cfg.n_fft,
        hop_length=cfg.hop_length,
        power=2.0,
        center=True,
        pad_mode="reflect",
        mel_filters=_mel_filters(cfg),
        mel_floor=cfg.floor,
        log_mel="log",
        dtype=np.float32,
    )


def _delta(x: np.ndarray, width: int) -> np.ndarray:
    """First time derivative of ``[D, F]`` by local linear regression over ``width`` frames (librosa's delta).

    Edges use a polynomial fit to the first/last window (``interp``) when ``F >= width``, else edge
    replication, so very short inputs still work.
    """
    mode = "interp" if x.shape[-1] >= width else "nearest"
    return scipy.signal.savgol_filter(x, width, polyorder=1, deriv=1, axis=-1, mode=mode).astype(np.float32)


def _apply(wav: torch.Tensor | np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Run a ``[T] -> [D, F]`` numpy feature function on ``[T]`` or each row of ``[B, T]``."""
    device = wav.device if isinstance(wav, torch.Tensor) else torch.device("cpu")
    x = wav.detach().to("cpu", torch.float32).numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if x.dtype.kind != "f":
        raise TypeError(f"features need a float waveform, got dtype {x.dtype} (use codec.load_audio first)")
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"expected a non-empty [T] or [B, T] waveform, got shape {tuple(x.shape)}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN/Inf samples")
    out = fn(x) if x.ndim == 1 else np.stack([fn(row) for row in x])  # [B, D, F]
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(device)
