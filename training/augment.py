"""Training-time ASR data augmentation for :mod:`training.finetune_units`: speaker and channel variation that the
corpus's ~38 synthetic voices do not cover (the phone recognizer overfits them without it).

On the 16 kHz waveform (float32 ``[T]`` in ``[-1, 1]``), before the log-mels:

- speed perturbation (Ko et al. 2015; Kaldi's 0.9/1.0/1.1): the samples are read as if recorded at
  ``factor x 16 kHz`` and resampled to 16 kHz with soxr, so tempo and pitch change together and ``T`` becomes
  ``round(T / factor)``; the phone targets are unchanged;
- additive white or pink noise at a random SNR (signal power = mean square over the whole utterance);
- a random gain, capped so that the result never clips.

On the Conformer's stacked log-mels ``[F, 3 * 80]`` (three 80-band frames per unit,
:func:`codec.units.conformer_inputs`):

- vocal tract length perturbation (VTLP, Jaitly & Hinton 2013): the frequency axis warped by a random factor
  ``alpha`` in ``[1 - a, 1 + a]`` with their piecewise-linear warp (``f -> alpha f`` up to a knee near 4.8 kHz,
  then linear to Nyquist), applied as linear interpolation along the mel axis; ``alpha > 1`` moves energy up;
- SpecAugment frequency masks (Park et al. 2019): bands replaced by the utterance's mean log-mel (the same bands
  in the three stacked frames); time masking stays the model's own (``mask_time_indices``).

Every draw comes from the one :class:`numpy.random.Generator` passed in, so a seed fixes a run's augmentation
and a resumed run continues it from the generator's saved state.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import soxr
import torch
from transformers.audio_utils import hertz_to_mel, mel_to_hertz

from codec.audio import RESAMPLE_QUALITY
from codec.units import CONFORMER_MELS, SAMPLE_RATE

VTLP_KNEE_HZ = 4800.0  # Jaitly & Hinton's F_hi for 16 kHz audio: the warp is linear in f below ~F_hi
NOISE_COLORS = ("white", "pink")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a training batch gets; every field's default is off. Validated on construction."""

    speeds: tuple[float, ...] = ()  # speed factors drawn uniformly per utterance (() or (1.0,): off)
    vtlp: float = 0.0  # warp factor uniform in [1 - vtlp, 1 + vtlp] (0: off)
    noise_snr: tuple[float, float] | None = None  # (lo, hi) dB, SNR uniform in the range (None: off)
    noise_prob: float = 1.0  # fraction of utterances that get noise when noise_snr is set
    gain_db: float = 0.0  # gain uniform in [-gain_db, gain_db] dB (0: off)
    freq_masks: int = 0  # SpecAugment frequency masks per utterance (0: off)
    freq_mask_width: int = 27  # at most this many mel bands each (SpecAugment's F = 27 of 80 bands)

    def __post_init__(self) -> None:
        if any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ValueError(f"speed factors must lie in [0.5, 2], got {self.speeds}")
        if not 0.0 <= self.vtlp < 0.5:
            raise ValueError(f"vtlp must be in [0, 0.5), got {self.vtlp}")
        if self.noise_snr is not None and (len(self.noise_snr) != 2 or self.noise_snr[0] > self.noise_snr[1]):
            raise ValueError(f"noise_snr must be (lo, hi) dB with lo <= hi, got {self.noise_snr}")
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ValueError(f"noise_prob must be in [0, 1], got {self.noise_prob}")
        if self.gain_db < 0:
            raise ValueError(f"gain_db must be >= 0, got {self.gain_db}")
        if self.freq_masks < 0 or not 0 <= self.freq_mask_width <= CONFORMER_MELS:
            raise ValueError(f"need freq_masks >= 0 and 0 <= freq_mask_width <= {CONFORMER_MELS}, got "
                             f"{self.freq_masks}, {self.freq_mask_width}")

    @property
    def speed(self) -> bool:
        return any(s != 1.0 for s in self.speeds)

    @property
    def waveform(self) -> bool:
        """Any augmentation of the waveform (the log-mels must then be computed per batch)."""
        return self.speed or (self.noise_snr is not None and self.noise_prob > 0) or self.gain_db > 0

    @property
    def features(self) -> bool:
        """Any augmentation of the log-mel features."""
        return self.vtlp > 0 or (self.freq_masks > 0 and self.freq_mask_width > 0)

    @property
    def max_stretch(self) -> float:
        """The longest an utterance can become, as a multiple of its length (``1 / min(speeds)``, at least 1)."""
        return max([1.0] + [1.0 / s for s in self.speeds])


# --- waveform ------------------------------------------------------------------------------------------------------

def as_float(wav: np.ndarray) -> np.ndarray:
    """float32 ``[T]`` in ``[-1, 1]`` of an int16 (scaled by 1/32768) or float waveform."""
    return wav.astype(np.float32) / 32768.0 if wav.dtype == np.int16 else wav.astype(np.float32, copy=False)


def speed_perturb(wav: np.ndarray, factor: float) -> np.ndarray:
    """``[T]`` float32 16 kHz -> ``[round(T / factor)]``: played ``factor`` times as fast (tempo and pitch together,
    sox's ``speed`` effect that Kaldi's recipes use), resampled with soxr."""
    if factor == 1.0:
        return wav
    # the samples read as if recorded at factor x 16 kHz, resampled to 16 kHz (soxr low-passes when factor > 1)
    return soxr.resample(np.ascontiguousarray(wav, dtype=np.float32), SAMPLE_RATE * factor, SAMPLE_RATE,
                         quality=RESAMPLE_QUALITY)


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """float64 ``[n]`` Gaussian noise of unit mean square: ``"white"`` (flat) or ``"pink"`` (power ~ 1/f)."""
    if color not in NOISE_COLORS:
        raise ValueError(f"noise color must be one of {NOISE_COLORS}, got {color!r}")
    x = rng.standard_normal(n)
    if color == "pink" and n > 2:
        spec = np.fft.rfft(x)
        spec[0] = 0.0
        spec[1:] /= np.sqrt(np.arange(1, len(spec)))  # amplitude ~ 1/sqrt(f): power ~ 1/f
        x = np.fft.irfft(spec, n)
    return x / max(math.sqrt(float(np.mean(x * x))), 1e-12)


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """``wav`` (float32 ``[T]``) plus ``color`` noise scaled so that ``10 log10(P_signal / P_noise) = snr_db``,
    both powers the mean square over the whole utterance; digital silence is returned unchanged."""
    power = float(np.mean(np.square(wav, dtype=np.float64)))
    noise = colored_noise(len(wav), color, rng)
    if power == 0.0:
        return wav.copy()
    return (wav + noise * math.sqrt(power / 10.0 ** (snr_db / 10.0))).astype(np.float32)


def random_gain(wav: np.ndarray, max_db: float, rng: np.random.Generator) -> np.ndarray:
    """``wav`` times a gain uniform in ``[-max_db, max_db]`` dB, capped so that the peak stays within ``[-1, 1]``."""
    gain = 10.0 ** (rng.uniform(-max_db, max_db) / 20.0)
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    if peak * gain > 1.0:
        gain = 1.0 / peak
    return (wav * gain).astype(np.float32)


def augment_waveform(wav: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, *, min_samples: int = 1,
                     max_samples: int | None = None) -> np.ndarray:
    """Speed perturbation, noise and gain (those ``cfg`` turns on, in that order) of one utterance.

    Args:
        wav: ``[T]`` int16 or float waveform at 16 kHz.
        cfg: the augmentations.
        rng: the source of every draw.
        min_samples, max_samples: the perturbed length must stay within these (the CTC target's minimum frames,
            the recipe's longest utterance); speed factors that would leave them are not drawn, and when none
            is left the utterance keeps its speed.

    Returns:
        float32 ``[T']`` in ``[-1, 1]`` (``T' = round(T / factor)``).
    """
    x = as_float(wav)
    if cfg.speed:
        hi = max_samples if max_samples is not None else math.inf
        allowed = [s for s in cfg.speeds if min_samples <= round(len(x) / s) <= hi]
        if allowed:
            x = speed_perturb(x, allowed[int(rng.integers(len(allowed)))])
    if cfg.noise_snr is not None and cfg.noise_prob > 0 and rng.random() < cfg.noise_prob:
        snr = rng.uniform(*cfg.noise_snr)
        x = add_noise(x, snr, rng, NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))])
    if cfg.gain_db > 0:
        x = random_gain(x, cfg.gain_db, rng)
    return np.clip(x, -1.0, 1.0)


# --- log-mel features ----------------------------------------------------------------------------------------------

def mel_centres(n_mels: int = CONFORMER_MELS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Centre frequencies in Hz ``[n_mels]`` of the Slaney mel filterbank :func:`codec.features.log_mel` uses."""
    mels = np.linspace(hertz_to_mel(0.0, "slaney"), hertz_to_mel(sample_rate / 2, "slaney"), n_mels + 2)
    return mel_to_hertz(mels[1:-1], "slaney")


def vtlp_frequency(freq: np.ndarray, alpha: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Jaitly & Hinton's piecewise-linear VTLP warp of ``freq`` (Hz): ``alpha f`` up to the knee
    ``F_hi min(alpha, 1) / alpha``, then the straight line that maps Nyquist to itself."""
    nyquist = sample_rate / 2
    knee_out = VTLP_KNEE_HZ * min(alpha, 1.0)
    knee_in = knee_out / alpha
    upper = nyquist - (nyquist - knee_out) / (nyquist - knee_in) * (nyquist - freq)
    return np.where(freq <= knee_in, alpha * freq, upper)


def vtlp_warp(feats: torch.Tensor, alpha: float, n_mels: int = CONFORMER_MELS) -> torch.Tensor:
    """VTLP of log-mel features: ``[..., k * n_mels]`` (``k`` stacked frames of ``n_mels`` bands) -> same shape.

    Output band ``j`` (centre ``c_j``) takes the input at the frequency the warp sends to ``c_j``, read by
    linear interpolation between the neighbouring bands; ``alpha = 1`` is the identity, ``alpha > 1`` moves
    energy to higher bands (a shorter vocal tract).
    """
    # Hand-written because no maintained library offers VTLP on log-mel features: torchaudio and audiomentations
    # have no VTLP, and nlpaug's VtlpAug warps a raw waveform's spectrum.
    centres = mel_centres(n_mels)
    src = np.interp(centres, vtlp_frequency(centres, alpha), np.arange(n_mels, dtype=np.float64))  # [n_mels]
    lo = np.minimum(np.floor(src), n_mels - 2).astype(np.int64)
    w = torch.from_numpy(src - lo).to(feats.dtype)
    lo_t = torch.from_numpy(lo)
    x = feats.reshape(*feats.shape[:-1], -1, n_mels)  # [..., k, n_mels]
    return (x[..., lo_t] * (1 - w) + x[..., lo_t + 1] * w).reshape(feats.shape)


def freq_mask(feats: torch.Tensor, count: int, width: int, rng: np.random.Generator, n_mels: int = CONFORMER_MELS
              ) -> torch.Tensor:
    """SpecAugment frequency masking of one utterance's ``[F, k * n_mels]`` log-mels (a masked copy).

    ``count`` masks, each of ``f ~ U{0..width}`` bands starting at ``f0 ~ U{0..n_mels - f}``, the same bands in the
    ``k`` stacked frames, filled with the utterance's mean log-mel (zero after mean normalization, as the paper).
    """
    x = feats.reshape(feats.shape[0], -1, n_mels).clone()  # [F, k, n_mels]
    fill = feats.mean()
    for _ in range(count):
        f = int(rng.integers(0, width + 1))
        f0 = int(rng.integers(0, n_mels - f + 1))
        x[:, :, f0: f0 + f] = fill
    return x.reshape(feats.shape)


def augment_features(feats: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """VTLP then frequency masks (those ``cfg`` turns on) of one utterance's ``[F, 3 * 80]`` Conformer inputs."""
    if cfg.vtlp > 0:
        feats = vtlp_warp(feats, rng.uniform(1.0 - cfg.vtlp, 1.0 + cfg.vtlp))
    if cfg.freq_masks > 0 and cfg.freq_mask_width > 0:
        feats = freq_mask(feats, cfg.freq_masks, cfg.freq_mask_width, rng)
    return feats
