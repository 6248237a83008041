"""A keyed spread-spectrum watermark for 16 kHz speech: 16-bit payload, per-frame detection, crop-robust.

Why not a learned watermark (AudioSeal-style generator + detector pair)? It would need a training run over a large
speech corpus and the attack set, a model shipped with the package, and it gives no closed-form false-positive
rate. This scheme is plain numpy: the threshold follows from the statistic's null distribution, it runs at
thousands of times real time on a CPU, and its failure modes are easy to reason about. A learned pair remains the
stronger alternative against codecs and speed changes; :func:`embed` / :func:`detect` are the interface it would
plug into.

The method (all in the STFT domain, Hann-family windows of ``N_FFT`` = 512 samples, hop 256 = 16 ms):

- The band 250-7000 Hz is split into ``N_BANDS`` = 54 bands of 125 Hz. Time is cut into *symbols* of 4 frames
  (64 ms); a *period* is 20 symbols (1.28 s): 4 pilot symbols and one symbol for each of the 16 payload bits, in a
  keyed order. Every symbol of an 8-period *cycle* (10.24 s) has its own keyed pseudo-random pattern
  ``w in {-1, +1}^54``, so the repeats of a bit see independent patterns.
- Embedding multiplies each band's power by ``exp(s * d * w)``: ``s`` is +1 on pilots and the (keyed-scrambled)
  bit sign on data symbols; the depth ``d`` is a base depth times the ratio of the frame's loudest band power to
  this band's power, capped at ``MAX_DEPTH``, the base solved per clip for an SNR of 26 dB. The change is
  proportional to the signal's own magnitude (silence
  stays silent), and the inverse-power allocation puts the mark where it is cheap in energy: the loudest band moves
  by a few hundredths of a dB, much quieter bands by up to +/-3.5 dB (masked by the loud ones). The SNR never
  falls below ``MIN_SNR_DB`` = 25.2 dB (the mark is scaled down if a clip would).
- Detection computes log band powers, whitens them (per-frame mean removed, then local means over 13 frames and
  3 bands subtracted: this removes loudness, spectral envelope and any fixed filter such as an EQ), and
  correlates each symbol's summed features with its pattern. With a random +/-1 pattern, ``z = v.w / |v|`` has
  mean 0 and variance 1 under "no watermark" whatever the audio, so the statistic's null distribution is known.
- The detector tries every alignment (4 frame offsets x 160 cycle phases = 640), so a crop starting anywhere
  still aligns. Per alignment it combines the pilots' summed ``z`` and each bit's ``|summed z|`` (mapped to a
  standard normal through the half-normal CDF) into a Stouffer score ``T``, N(0, 1) without the mark; it declares a
  mark when the Bonferroni-corrected p-value of the best alignment is at most its share of
  ``FALSE_POSITIVE_RATE`` (1e-3), i.e. ``T >= 4.73``. Each bit is the sign of its summed ``z``; its confidence is the
  posterior of a Gaussian model whose mean is estimated from the clip.
- Speed changes (resampling: duration / f, every frequency x f) move bands and symbols off the pattern grid; the
  plain scan tolerates about +/-1 %. When it finds nothing, the detector undoes each candidate factor ``f`` of
  :data:`SPEED_FACTORS` (0.90..1.10 in 1 % steps, nearest to 1 first) and rescans: the features of the input
  resampled by ``f``, taken from one finer STFT of the input with frame times and band edges scaled by ``f``. Once a
  factor's best alignment clears a threshold corrected for the ``N_ALIGNMENTS x 20`` hypotheses (``T >= 5.55``), the
  best grid point nearby decides and a local search (steps 0.5, 0.25, 0.125 %) refines the factor for the payload
  and the spans. The false-positive budget is split (weighted Bonferroni): of the 90 % the scans get (the codec
  layer below takes 10 %), 80 % for the plain scan, 20 % for the speed search, so the rate stays at most 1e-3.
  Unmarked audio pays for the whole search, its factors scanned in batches: on one CPU thread about 8x the plain
  scan's time for a 2.5 s clip and 10-12x for 10-60 s (150x and 230x real time); marked audio at its original
  speed pays nothing extra.

A second layer, :mod:`safety.codec_mark`, marks the first-codebook codes of the project's own neural codec, which
erases this one: ``embed(..., codec_layer=True)`` adds it (the generation hook always does) and :func:`detect` tests
it when both scans find nothing, with ``CODEC_FPR_SHARE`` (a tenth) of the false-positive budget; the scans share
the rest as above (80/20), so the whole detector stays at ``FALSE_POSITIVE_RATE`` per clip.

A different key draws independent patterns, so its statistic is null: another key detects nothing and a mark made
with another key is not accepted. Needs about 0.5-1 s of speech to detect and one period (1.28 s) for the payload.
Known weaknesses: speed changes beyond +/-10 % and time stretching that keeps the pitch (neither is searched),
strong broadband noise and low-bitrate codecs (the mark lives mostly in quiet bands; the codec layer covers the
project's own codec only), and only one alignment is
tracked per clip (two separately marked clips joined together localize only the stronger one).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import as_strided, sliding_window_view
from scipy.special import ndtr, ndtri

from safety import codec_mark
from safety.keys import WatermarkKey, configured_key, warn_if_default

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz; the rate the watermark lives at (other rates are resampled to it)
N_FFT = 512  # 32 ms analysis window
HOP = 256  # 16 ms: the resolution of frame_scores
FRAME_HOP_S = HOP / SAMPLE_RATE  # 0.016 s
BAND_BINS = 4  # 125 Hz per band (bins are 31.25 Hz)
BAND_LO_BIN, BAND_HI_BIN = 8, 224  # 250 Hz .. 7000 Hz
N_BANDS = (BAND_HI_BIN - BAND_LO_BIN) // BAND_BINS  # 54
N_BITS = 16
FRAMES_PER_SYMBOL = 4  # 64 ms per symbol
PILOT_POSITIONS = (0, 5, 10, 15)  # symbol positions of the pilots in the period
SYMBOLS_PER_PERIOD = N_BITS + len(PILOT_POSITIONS)  # 20
PERIOD_S = SYMBOLS_PER_PERIOD * FRAMES_PER_SYMBOL * FRAME_HOP_S  # 1.28 s: the shortest stretch with every bit
# Each period draws fresh patterns for its 20 symbols, for 8 periods (10.24 s) before they repeat: repeats of a bit
# then see independent patterns, so neither a steady host nor a mark made with another key adds up coherently.
PERIODS_PER_CYCLE = 8
N_PATTERNS = SYMBOLS_PER_PERIOD * PERIODS_PER_CYCLE  # 160
N_ALIGNMENTS = FRAMES_PER_SYMBOL * N_PATTERNS  # 640 hypotheses the detector tries

# Depth of the log-power modulation: base x (frame's loudest band power / band power), capped at MAX_DEPTH, with
# the base solved per clip so that the mark's energy is TARGET_SNR_DB below the signal's. Inverse-power allocation
# maximizes the detector's log-domain evidence per unit of mark energy (every band counts the same in the log
# domain but costs energy in proportion to its power). The cap is +/-3.5 dB.
MAX_DEPTH = 0.8
TARGET_SNR_DB = 26.0  # at strength 1; strength s aims at TARGET_SNR_DB - 20 log10(s)
MIN_SNR_DB = 25.2  # hard floor: the mark is scaled down if a clip would come out louder (aim: >= 25 dB)
NOISE_FLOOR_RMS = 1e-4  # -80 dBFS: band powers below white noise of this level count as silence
_FLOOR = NOISE_FLOOR_RMS**2 * BAND_BINS * 0.375 * N_FFT  # that noise's power per band (Hann: sum w^2 = 3N/8)
TIME_WHITEN_FRAMES, FREQ_WHITEN_BANDS = 13, 3  # local means removed from the log band powers
_ACTIVE = 1e-3  # a symbol or frame whose whitened feature norm is below this is silence: it carries no evidence

FALSE_POSITIVE_RATE = 1e-3  # per clip, on unmarked audio of any length
# Speed search: factors tried (nearest to 1 first) when the plain scan fails. The plain scan keeps most of its score
# up to about 1 % off the true factor, so a 1 % grid loses at most a fifth of the score at 0.5 % off.
SPEED_STEP = 0.01
SPEED_FACTORS = tuple(round(1 + sign * k * SPEED_STEP, 4) for k in range(1, 11) for sign in (-1, 1))  # 0.99, 1.01..
SPEED_REFINE_STEPS = (0.005, 0.0025, 0.00125)  # local search around the factor found, for payload and spans
# Weighted Bonferroni: the plain scan may spend 80 % of the false-positive budget, the speed search (20 factors x
# 640 alignments) the other 20 %, so the per-clip rate of the whole detector stays at most FALSE_POSITIVE_RATE.
SPEED_FPR_SHARE = 0.2
# The codec layer (safety.codec_mark, tried when both scans find nothing) takes a tenth of the whole budget first.
CODEC_FPR_SHARE = 0.1
_SCAN_FPR = (1 - CODEC_FPR_SHARE) * FALSE_POSITIVE_RATE  # what the plain scan and the speed search share
THRESHOLD = float(-ndtri((1 - SPEED_FPR_SHARE) * _SCAN_FPR / N_ALIGNMENTS))  # 4.73: T above -> marked
SPEED_THRESHOLD = float(-ndtri(SPEED_FPR_SHARE * _SCAN_FPR / (N_ALIGNMENTS * len(SPEED_FACTORS))))  # 5.55
SMOOTH_FRAMES = 15  # 240 ms moving average of frame scores before the spans are thresholded
MIN_SPAN_S = 0.25  # shorter marked runs are dropped, shorter unmarked gaps are bridged

# Payload of every waveform the toolkit generates: high byte = generator id 0xA1 ("alm" toolkit), low byte =
# release of the generating model/watermark scheme (1). Change MESSAGE_VERSION when the shipped model changes.
MESSAGE_GENERATOR_ID = 0xA1
MESSAGE_VERSION = 1
DEFAULT_MESSAGE = (MESSAGE_GENERATOR_ID << 8) | MESSAGE_VERSION  # 41217 = 0xA101
CODEC_LAYER_ENV = "ALM_WATERMARK_CODEC_LAYER"  # "0": the generation hook embeds the spread-spectrum layer only

_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann: analysis window of the detector
_SQRT_WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:-1])  # sqrt-Hann in and out: overlap-adds to exactly 1 at 50 %


class WatermarkInputError(ValueError):
    """Audio the watermark cannot work on: empty, NaN/Inf, not mono, not floating point, absurd rate."""


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` found in a clip.

    ``probability`` is ``1 - p`` where ``p`` is the corrected p-value under "no watermark with this key": the smaller
    of the plain scan's, the speed search's and the codec layer's p-values, each divided by its share of the
    false-positive budget (the plain scan's alone when nothing is detected and the codec layer was not smaller);
    ``detected`` is ``p <= false_positive_rate``. ``layer`` says which layer decided; after the codec layer
    ``payload`` is None (it carries none), ``score`` / ``threshold`` stay the plain scan's and ``codec_score`` is
    the codec layer's z.
    ``speed`` is the speed factor found (1.0 unless the speed search decided): the input plays ``speed`` times
    faster than the marked original. ``frame_scores`` and ``spans`` are on the input's timeline either way.
    """

    probability: float
    detected: bool
    payload: int | None  # the 16-bit message; None unless detected and every bit was seen
    bit_confidence: np.ndarray  # [16] probability that each decoded bit (MSB first) is right; 0.5 = unseen
    bits: np.ndarray  # [16] int8 hard decisions at the best alignment, MSB first (meaningless when not detected)
    frame_scores: np.ndarray  # [n_frames] per-frame z-score (about N(0, 1) without the mark), hop frame_hop_s
    spans: list[tuple[float, float]]  # (start_s, end_s) where the mark is present; [] when not detected
    frame_hop_s: float = FRAME_HOP_S
    score: float = 0.0  # the standardized statistic T of the best alignment (at the factor that decided)
    threshold: float = THRESHOLD  # THRESHOLD, or SPEED_THRESHOLD when the speed search decided
    speed: float = 1.0  # speed factor of the input relative to the marked original
    false_positive_rate: float = FALSE_POSITIVE_RATE
    layer: str = ""  # which layer decided: "spread-spectrum", "codec" (safety.codec_mark), "" when not detected
    codec_score: float | None = None  # the codec layer's z (about N(0, 1) unmarked); None when it did not run
    key_id: str = field(default="", repr=False)

    def frame_times(self) -> np.ndarray:
        """``[n_frames]`` centre time of each frame score in seconds."""
        return (np.arange(len(self.frame_scores)) * HOP + N_FFT / 2) / SAMPLE_RATE

    def to_dict(self) -> dict:
        """JSON-ready summary (arrays as lists, rounded)."""
        return {
            "watermarked": self.detected,
            "probability": round(self.probability, 6),
            "score": round(self.score, 3),
            "threshold": round(self.threshold, 3),
            "false_positive_rate": self.false_positive_rate,
            "speed": round(self.speed, 4),
            "layer": self.layer,
            "codec_score": None if self.codec_score is None else round(self.codec_score, 3),
            "payload": self.payload,
            "bits": "".join(str(int(b)) for b in self.bits),
            "bit_confidence": [round(float(c), 4) for c in self.bit_confidence],
            "spans": [[round(a, 3), round(b, 3)] for a, b in self.spans],
            "frame_hop_s": self.frame_hop_s,
            "key_id": self.key_id,
        }


@dataclass(frozen=True)
class _Layout:
    """The keyed choices: band patterns per symbol position, which bit each position carries, bit scrambling."""

    patterns: np.ndarray  # [N_PATTERNS, N_BANDS] +/-1; symbol i of the cycle uses pattern i
    bit_of_symbol: np.ndarray  # [SYMBOLS_PER_PERIOD] bit index, -1 on pilots
    symbol_of_bit: np.ndarray  # [N_BITS] symbol position of each bit
    scramble: np.ndarray  # [N_BITS] +/-1 keyed whitening of the message bits


@functools.lru_cache(maxsize=16)
def _layout(seed: bytes) -> _Layout:
    rng = np.random.default_rng(int.from_bytes(seed, "big"))
    patterns = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(N_PATTERNS, N_BANDS))
    data_positions = np.array([p for p in range(SYMBOLS_PER_PERIOD) if p not in PILOT_POSITIONS])
    symbol_of_bit = rng.permutation(data_positions)
    bit_of_symbol = np.full(SYMBOLS_PER_PERIOD, -1)
    bit_of_symbol[symbol_of_bit] = np.arange(N_BITS)
    scramble = rng.choice(np.array([-1.0, 1.0]), size=N_BITS)
    return _Layout(patterns, bit_of_symbol, symbol_of_bit, scramble)


# --------------------------------------------------------------------------------------------- input checks


def _check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not (
        1000 <= sample_rate <= 384000
    ):
        raise WatermarkInputError(f"sample_rate must be an integer number of Hz in 1000..384000, got {sample_rate!r}")
    return int(sample_rate)


def _as_mono(wav: object) -> tuple[np.ndarray, bool]:
    """``[T]`` or ``[1, T]`` floating audio -> (float64 ``[T]``, whether it was 2-D); anything else raises."""
    x = np.asarray(wav)
    if x.dtype.kind != "f":
        raise WatermarkInputError(
            f"audio must be floating point samples in [-1, 1], got dtype {x.dtype} "
            "(integer PCM: divide by its full scale, e.g. 32768 for int16)"
        )
    two_d = x.ndim == 2 and x.shape[0] == 1
    if x.ndim != 1 and not two_d:
        raise WatermarkInputError(
            f"audio must be mono [T] or [1, T], got shape {tuple(x.shape)}: downmix (e.g. wav.mean(0)) first"
        )
    x = x.reshape(-1).astype(np.float64)
    if x.size == 0:
        raise WatermarkInputError("audio is empty (0 samples)")
    if not np.isfinite(x).all():
        raise WatermarkInputError(f"audio contains NaN/Inf samples ({int((~np.isfinite(x)).sum())} of {x.size})")
    return x, two_d


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    import soxr  # only for rates other than 16 kHz

    return soxr.resample(x, rate_in, rate_out, quality="HQ")


# --------------------------------------------------------------------------------------------- STFT and features


def _n_frames(n_samples: int, hop: int = HOP) -> int:
    return math.ceil(max(n_samples - N_FFT, 0) / hop) + 1


def _frames(x: np.ndarray, hop: int = HOP) -> np.ndarray:
    """``[T]`` -> ``[n_frames, N_FFT]`` view; frame ``t`` starts at sample ``t * hop`` (zero-padded at the end)."""
    n_frames = _n_frames(len(x), hop)
    x = np.pad(x, (0, (n_frames - 1) * hop + N_FFT - len(x)))
    return sliding_window_view(x, N_FFT)[::hop]


def _overlap_add(frames: np.ndarray, length: int) -> np.ndarray:
    """Inverse of :func:`_frames` for sqrt-Hann windowed frames at 50 % overlap -> ``[length]``."""
    out = np.zeros((len(frames) + 1) * HOP)
    for first in range(N_FFT // HOP):  # frames first, first + 2, ... tile the signal without overlap
        chunk = frames[first::2].reshape(-1)
        out[first * HOP : first * HOP + chunk.size] += chunk
    return out[:length]


def _band_power(spectrum: np.ndarray) -> np.ndarray:
    """``[n_frames, N_FFT // 2 + 1]`` complex -> ``[n_frames, N_BANDS]`` power per band."""
    band = spectrum[:, BAND_LO_BIN:BAND_HI_BIN]
    power = band.real**2 + band.imag**2
    return power.reshape(len(power), N_BANDS, BAND_BINS).sum(-1)


def _moving_mean(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Centred moving average of odd ``width`` along ``axis``, averaging only the samples inside at the edges."""
    a = np.moveaxis(a, axis, 0)
    c = _running_sums(a)
    idx = np.arange(len(a))
    lo, hi = np.maximum(idx - width // 2, 0), np.minimum(idx + width // 2 + 1, len(a))
    shape = (-1,) + (1,) * (a.ndim - 1)
    return np.moveaxis((c[hi] - c[lo]) / (hi - lo).reshape(shape), 0, axis)


def _running_sums(a: np.ndarray) -> np.ndarray:
    """``[n, ...]`` -> ``[n + 1, ...]``: 0, then the running sums along axis 0 (``np.cumsum``'s floats: added in
    order). Along a short axis (the bands) of a large array adding whole slices is several times faster than
    ``np.cumsum``, which loops over single values."""
    c = np.empty((len(a) + 1, *a.shape[1:]), a.dtype)
    c[0] = 0
    if len(a) > 64 or a[0].size < 1024:
        np.cumsum(a, axis=0, out=c[1:])
    else:
        c[1:] = a
        for k in range(1, len(a)):
            c[k + 1] += c[k]
    return c


def _features(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[T]`` audio -> ``[n_frames, N_BANDS]`` whitened log band powers (what the patterns are correlated with),
    and ``[n_frames]`` whether each frame is loud enough to carry the mark (within 40 dB of the loudest)."""
    spectrum = scipy.fft.rfft(_frames(x.astype(np.float32)) * _WINDOW, axis=1)  # float32, 3x numpy's speed
    return _whiten(_band_power(spectrum))


def _whiten(power: np.ndarray, n_frames: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[n_frames, N_BANDS]`` band powers -> (whitened log band powers, ``[n_frames]`` audible); see
    :func:`_features`.

    Also batched, for the speed search: ``[G, F, N_BANDS]`` powers of which only the first ``n_frames[g]`` frames of
    ``power[g]`` are real (the rest is padding, zero) -> ``[G, F, N_BANDS]`` and ``[G, F]``, where
    ``[g, :n_frames[g]]`` is exactly what ``_whiten(power[g, :n_frames[g]])`` gives (same operations in the same
    order, so the same floats) and the padded frames are finite and not audible.
    """
    if power.ndim == 2:
        c, audible = _whiten(power[None], np.array([len(power)]))
        return c[0], audible[0]
    frame_power = power.sum(axis=2)
    loudest = frame_power.max(axis=1).astype(np.float64)  # padding is silent
    # compared in the powers' dtype, as a Python float threshold would be
    threshold = np.maximum(loudest * 1e-4, _FLOOR * N_BANDS).astype(frame_power.dtype)
    audible = frame_power > threshold[:, None]  # never on padding: the threshold is above 0
    c = np.log(power + _FLOOR)
    c -= c.mean(axis=2, keepdims=True)  # loudness
    c -= _moving_mean_frames(c, TIME_WHITEN_FRAMES, n_frames)  # stationary colouring: fixed filters, steady spectra
    c -= _moving_mean(c, FREQ_WHITEN_BANDS, 2)  # spectral envelope
    return c, audible


def _moving_mean_frames(a: np.ndarray, width: int, n_frames: np.ndarray) -> np.ndarray:
    """:func:`_moving_mean` along axis 1 of ``[G, F, ...]`` where row ``g`` ends after ``n_frames[g]`` frames, the
    same floats: the window is cut at that end (padded frames past it get garbage, finite). The frames whose
    window is whole take one slice difference; only the few near an end are gathered."""
    n_rows, length, half = a.shape[0], a.shape[1], width // 2
    c = np.empty((n_rows, length + 1, *a.shape[2:]), a.dtype)
    c[:, 0] = 0
    np.cumsum(a, axis=1, out=c[:, 1:])
    out = np.empty(a.shape)
    if length > 2 * half:
        np.divide(c[:, width:] - c[:, : length + 1 - width], width, out=out[:, half:-half], dtype=np.float64)
    ends = np.arange(half)
    edge = np.concatenate(  # [G, 3 * half]: the first frames, the last real ones, the last ones
        [np.broadcast_to(ends, (n_rows, half)), n_frames[:, None] - half + ends,
         np.broadcast_to(length - half + ends, (n_rows, half))], axis=1).clip(0, length - 1)
    end = np.where(edge < n_frames[:, None], n_frames[:, None], length)
    lo, hi = np.maximum(edge - half, 0), np.minimum(edge + half + 1, end)
    rows = np.arange(n_rows)[:, None]
    out[rows, edge] = (c[rows, hi] - c[rows, lo]) / (hi - lo).reshape(*hi.shape, *(1,) * (a.ndim - 2))
    return out


# The speed search does not resample the input for every factor. Undoing a speed change by f maps the STFT frame
# centred at sample c to the input's sample c / f and the frequency v to v * f, so every factor's band powers come
# from one STFT of the input at a finer hop (frame centres rounded to FINE_HOP, 1/16 of a symbol) with band edges
# scaled by f (fractional bins weighted by overlap). At f = 1 this is exactly _features.
FINE_HOP = HOP // 2  # 8 ms
_FINE_FIRST_BIN = 4  # bins the scaled bands can reach for factors 0.85..1.15
_FINE_LAST_BIN = 260  # exclusive; rfft of N_FFT has 257 bins


@dataclass(frozen=True)
class _FineSpectrum:
    power: np.ndarray  # [n_fine_frames, n_bins] float32 power of bins _FINE_FIRST_BIN.. of the input, hop FINE_HOP
    n_samples: int  # length of the input


def _fine_spectrum(x: np.ndarray, block: int = 4096) -> _FineSpectrum:
    """``[T]`` 16 kHz audio -> its power spectrogram at hop :data:`FINE_HOP` (in blocks, to bound temporaries)."""
    # zeros after the end, as _frames pads: the last frame of a slowed-down input can start up to a hop past its end
    frames = _frames(np.pad(x.astype(np.float32), (0, N_FFT + HOP)), FINE_HOP)
    last = min(_FINE_LAST_BIN, N_FFT // 2 + 1)
    power = np.empty((len(frames), last - _FINE_FIRST_BIN), np.float32)
    for a in range(0, len(frames), block):
        spectrum = scipy.fft.rfft(frames[a : a + block] * _WINDOW, axis=1)[:, _FINE_FIRST_BIN:last]
        power[a : a + block] = spectrum.real**2 + spectrum.imag**2
    return _FineSpectrum(power, len(x))


@functools.lru_cache(maxsize=64)
def _band_weights(factor: float, n_bins: int) -> np.ndarray:
    """``[n_bins, N_BANDS]``: how much of each fine-spectrum bin (``_FINE_FIRST_BIN + i``, covering
    ``[k - 1/2, k + 1/2)``) falls into each band of the input undone by ``factor``."""
    k = np.arange(_FINE_FIRST_BIN, _FINE_FIRST_BIN + n_bins, dtype=np.float64)[:, None]
    edges = factor * (BAND_LO_BIN - 0.5 + BAND_BINS * np.arange(N_BANDS + 1))  # in the input's bins
    overlap = np.minimum(k + 0.5, edges[None, 1:]) - np.maximum(k - 0.5, edges[None, :-1])
    return np.clip(overlap, 0.0, None).astype(np.float32)


def _features_at(fine: _FineSpectrum, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`_features` gives for the input resampled by ``factor`` (to ``T * factor`` samples), from its
    fine spectrum: ``[n_frames, N_BANDS]`` whitened log band powers and ``[n_frames]`` audible, with ``n_frames``
    the frame count of the resampled input."""
    feats, audible, _ = _features_batch(fine, (factor,))
    return feats[0], audible[0]


def _features_batch(fine: _FineSpectrum, factors: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_features_at` for several factors at once: ``[G, F, N_BANDS]`` features and ``[G, F]`` audible,
    padded to the longest (``F`` frames), and ``[G]`` the frame count of each factor (``feats[g, :n_frames[g]]`` is
    exactly ``_features_at(fine, factors[g])[0]``; the padding frames are zero)."""
    n_frames = np.array([_n_frames(round(fine.n_samples * factor)) for factor in factors])
    centres = (np.arange(n_frames.max()) * HOP + N_FFT / 2) / np.array(factors)[:, None]  # in the input's samples
    index = np.clip(np.rint((centres - N_FFT / 2) / FINE_HOP).astype(np.int64), 0, len(fine.power) - 1)
    rows = fine.power[index]  # [G, F, n_bins]
    power = np.zeros((len(factors), n_frames.max(), N_BANDS), np.float32)
    for g, factor in enumerate(factors):  # one product per factor, of exactly its frames: the same floats as alone
        # (a matrix product's rows depend on how many rows it has)
        power[g, : n_frames[g]] = rows[g, : n_frames[g]] @ _band_weights(round(factor, 6), fine.power.shape[1])
    feats, audible = _whiten(power, n_frames)
    feats[np.arange(power.shape[1]) >= n_frames[:, None]] = 0.0
    return feats, audible, n_frames


# --------------------------------------------------------------------------------------------- embedding


def _message_signs(message: int, layout: _Layout) -> np.ndarray:
    """``[SYMBOLS_PER_PERIOD]`` +/-1: +1 on pilots, the scrambled bit sign (bit 0 -> +1) on data symbols."""
    bits = np.array([(message >> (N_BITS - 1 - j)) & 1 for j in range(N_BITS)])
    signs = np.ones(SYMBOLS_PER_PERIOD)
    signs[layout.symbol_of_bit] = (1 - 2 * bits) * layout.scramble
    return signs


def _mark(x: np.ndarray, message: int, layout: _Layout, snr_db: float) -> np.ndarray:
    """The additive mark for 16 kHz ``[T]`` audio, about ``snr_db`` below it: ``embed(x) - x`` before the guard."""
    spectrum = np.fft.rfft(_frames(x) * _SQRT_WINDOW, axis=1)  # [F, 257]
    band_power = _band_power(spectrum)  # [F, N_BANDS]
    ratio = band_power.max(axis=1, keepdims=True) / (band_power + _FLOOR)  # >= 1: how much quieter each band is
    symbol = (np.arange(len(spectrum)) // FRAMES_PER_SYMBOL) % N_PATTERNS  # index in the cycle
    direction = layout.patterns[symbol] * _message_signs(message, layout)[symbol % SYMBOLS_PER_PERIOD, None]

    def mark_for(base: float) -> np.ndarray:
        gain = np.zeros(spectrum.shape)  # gain - 1 per bin; bins outside the bands are untouched
        depth = np.minimum(base * ratio, MAX_DEPTH) * direction  # log-power change per band
        gain[:, BAND_LO_BIN:BAND_HI_BIN] = np.repeat(np.expm1(depth / 2), BAND_BINS, axis=1)  # -> amplitude
        return _overlap_add(np.fft.irfft(spectrum * gain, N_FFT, axis=1) * _SQRT_WINDOW, len(x))

    def energy_for(base: float) -> float:  # the mark's energy, up to a constant, from the STFT (no synthesis)
        return float((band_power * np.expm1(np.minimum(base * ratio, MAX_DEPTH) / 2) ** 2).sum())

    budget = float(np.dot(x, x)) * 10 ** (-snr_db / 10)
    probe = 0.01
    mark = mark_for(probe)
    scale = float(np.dot(mark, mark)) / max(energy_for(probe), 1e-30)  # STFT-domain energy -> samples
    if scale * energy_for(MAX_DEPTH) <= budget:
        return mark_for(MAX_DEPTH)  # every band at the cap is still quiet enough
    lo, hi = 0.0, MAX_DEPTH  # bisection on the base depth: the energy grows with it
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if scale * energy_for(mid) <= budget else (lo, mid)
    return mark_for(lo)


def embed(
    wav: np.ndarray,
    message: int,
    key: WatermarkKey | None = None,
    sample_rate: int = SAMPLE_RATE,
    strength: float = 1.0,
    codec_layer: bool = False,
) -> np.ndarray:
    """Embed a 16-bit ``message`` into mono speech, keyed by ``key``.

    Args:
        wav: ``[T]`` or ``[1, T]`` floating point audio in ``[-1, 1]``.
        message: integer in ``0..65535``, repeated every 1.28 s so that any period-long stretch carries it all.
        key: the secret; ``None`` uses :func:`safety.keys.configured_key` (``$ALM_WATERMARK_KEY`` ...).
        sample_rate: rate of ``wav``. Any rate works: the mark is made at 16 kHz and resampled back, so only
            the band 250-7000 Hz is touched.
        strength: relative strength: the mark is made ``TARGET_SNR_DB - 20 log10(strength)`` dB (26 dB at 1)
            below the signal, and never louder than ``MIN_SNR_DB`` (25.2 dB) below it.
        codec_layer: also add the second layer (:mod:`safety.codec_mark`) that survives re-encoding through the
            project's neural codec. Needs torch and the shipped codec; 0.26x real time on one CPU thread
            (about 4 s of CPU per second of audio), and the total SNR falls to about 15 dB (PESQ (wb) 4.1 on
            average, measured). :func:`watermark_hook` turns it on for everything the toolkit generates.

    Returns:
        float32 audio of the input's shape: the input plus the mark (clipped to ``[-1, 1]`` if the input was).

    Raises:
        WatermarkInputError: empty, NaN/Inf, not mono, not floating point, absurd ``sample_rate``.
        ValueError: ``message`` outside ``0..65535`` or ``strength`` not positive.
    """
    if isinstance(message, bool) or not isinstance(message, (int, np.integer)) or not 0 <= message < 2**N_BITS:
        raise ValueError(f"message must be an integer in 0..{2**N_BITS - 1}, got {message!r}")
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength!r}")
    snr_db = max(TARGET_SNR_DB - 20 * math.log10(strength), MIN_SNR_DB)
    sample_rate = _check_rate(sample_rate)
    x, two_d = _as_mono(wav)
    key = configured_key() if key is None else key
    warn_if_default(key)
    layout = _layout(key.seed)
    if sample_rate == SAMPLE_RATE:
        mark = _mark(x, int(message), layout, snr_db)
    else:  # the mark is band-limited to 7 kHz, so carrying it across rates loses nothing
        mark = _resample(_mark(_resample(x, sample_rate, SAMPLE_RATE), int(message), layout, snr_db),
                         SAMPLE_RATE, sample_rate)
        mark = np.pad(mark, (0, max(len(x) - len(mark), 0)))[: len(x)]
    signal_energy, mark_energy = float(np.dot(x, x)), float(np.dot(mark, mark))
    if mark_energy > signal_energy * 10 ** (-MIN_SNR_DB / 10):
        mark *= math.sqrt(signal_energy * 10 ** (-MIN_SNR_DB / 10) / mark_energy)
    y = x + mark
    if codec_layer:
        if sample_rate == SAMPLE_RATE:
            y = codec_mark.embed(y.astype(np.float32), key)
        else:  # the layer lives at 16 kHz: make it there and carry the change back to the input's rate
            y16 = _resample(y, sample_rate, SAMPLE_RATE)
            change = _resample(codec_mark.embed(y16.astype(np.float32), key) - y16, SAMPLE_RATE, sample_rate)
            y = y + np.pad(change, (0, max(len(y) - len(change), 0)))[: len(y)]
    if np.abs(x).max() <= 1.0:
        y = np.clip(y, -1.0, 1.0)
    y = y.astype(np.float32)
    return y[None] if two_d else y


def watermark_hook(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The toolkit's hook (``alm.api.set_watermark_hook``): embed :data:`DEFAULT_MESSAGE` with the configured key.

    Works at any rate (see :func:`embed`); empty audio (a generation that produced no frame) passes through.
    Both layers are embedded (the codec layer whenever torch and the shipped codec load; a warning otherwise).
    The codec layer multiplies the cost of speech generation on a CPU (ALM TTS: real-time factor 0.26 -> 1.9 on two
    threads); ``ALM_WATERMARK_CODEC_LAYER=0`` in the environment leaves it out (logged as a warning).
    """
    if np.asarray(audio).size == 0:
        return audio
    if os.environ.get(CODEC_LAYER_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        _warn_codec_layer_off()
        layer = False
    else:
        layer = codec_mark.available()
        if not layer:
            _warn_no_codec_layer()
    return embed(audio, DEFAULT_MESSAGE, key=None, sample_rate=sample_rate, codec_layer=layer)


@functools.lru_cache(maxsize=1)
def _warn_codec_layer_off() -> None:
    logger.warning("%s is off: generated audio carries the spread-spectrum layer only, which re-encoding through "
                   "the neural codec removes", CODEC_LAYER_ENV)


@functools.lru_cache(maxsize=1)
def _warn_no_codec_layer() -> None:
    logger.warning("the codec watermark layer is unavailable (torch or the shipped codec did not load): generated "
                   "audio carries the spread-spectrum layer only, which re-encoding through the neural codec removes")


# --------------------------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class _Alignment:
    score: float  # standardized statistic T
    offset: int  # frame at which a symbol starts (0..FRAMES_PER_SYMBOL-1)
    phase: int  # cycle index of the symbol starting at `offset`
    sums: np.ndarray  # [SYMBOLS_PER_PERIOD] summed z per symbol position
    counts: np.ndarray  # [SYMBOLS_PER_PERIOD] active symbols per position


def _sum_by_position(z: np.ndarray, n_sym: np.ndarray | None = None) -> np.ndarray:
    """``[K, N_PATTERNS]`` z of symbol k against every pattern -> ``[N_PATTERNS, SYMBOLS_PER_PERIOD]``: for each
    phase (the pattern index of symbol 0), the sum over k of ``z[k, (phase + k) % N_PATTERNS]`` grouped by
    ``k % SYMBOLS_PER_PERIOD``.

    Within a block of N_PATTERNS symbols the diagonal ``(k, (phase + k) % C)`` of ``z`` tiled twice is a strided view
    (row k starts ``2C + 1`` values after row k - 1), so no index arrays are built. In a block, the whole periods
    are summed first (in ``z``'s dtype, in order) and the remaining symbols then added one by one.

    Batched: ``[G, K, N_PATTERNS]`` where only the first ``n_sym[g]`` symbols of ``z[g]`` are real (the rest must be
    zero) -> ``[G, N_PATTERNS, SYMBOLS_PER_PERIOD]``, each summed in exactly the order it is summed alone.
    """
    if z.ndim == 2:
        return _sum_by_position(z[None])[0]
    C, P = N_PATTERNS, SYMBOLS_PER_PERIOD
    G, K = z.shape[:2]
    n_sym = [K] * G if n_sym is None else [int(n) for n in n_sym]
    tiled = np.concatenate([z, z], axis=2)  # [G, K, 2C]
    item = tiled.itemsize
    acc = np.zeros((G, P, C), dtype=np.float64)
    for first in range(0, K, C):  # blocks start at multiples of C, so k % P is the position in the block
        n = min(C, K - first)  # row i of the block starts 2C + 1 values after row i - 1; n <= C keeps it in bounds
        diagonal = as_strided(tiled[:, first:], shape=(G, n, C), strides=(tiled.strides[0], (2 * C + 1) * item, item),
                              writeable=False)
        in_block = [min(max(m - first, 0), n) for m in n_sym]  # each row's symbols in this block
        whole = [m // P for m in in_block]
        common = min(whole)
        periods = diagonal[:, : common * P].reshape(G, common, P, C).sum(axis=1)  # what every row has
        for j in range(common, max(whole)):  # the periods only some have, added in the same order
            periods += np.where(np.array(whole)[:, None, None] > j, diagonal[:, j * P : (j + 1) * P], 0)
        acc += periods
        for g, (m, w) in enumerate(zip(in_block, whole)):  # the symbols past the whole periods, one by one
            if m > w * P:
                acc[g, : m - w * P] += diagonal[g, w * P : m]
    return acc.transpose(0, 2, 1)


# u = Phi^-1(2 Phi(y) - 1) for y >= 0 (a half-normal |N(0, 1)| mapped to N(0, 1)), tabulated: scipy's ndtri costs
# about 60 ns a value and the scan needs 640 x 16 of them per factor. Linear interpolation on a 1/512 grid is within
# 5e-5 of it where it is used; the steep start (y < 1/16) and the far tail are computed exactly.
_U_STEP = 1 / 512
_U_MAX = 32.0
_U_TABLE = np.maximum(-ndtri(2 * ndtr(-np.arange(0, _U_MAX + 2 * _U_STEP, _U_STEP))), -8.0)
_U_SLOPE = _U_TABLE[1:] - _U_TABLE[:-1]
_U_EXACT = np.arange(len(_U_TABLE) - 1) < 1 / (16 * _U_STEP)  # by table node: y < 1/16 (and y >= _U_MAX, below)
_U_EXACT[-1] = True


def _half_normal_to_normal(y: np.ndarray) -> np.ndarray:
    """Elementwise ``max(Phi^-1(2 Phi(y) - 1), -8)`` for ``y >= 0``: N(0, 1) when ``y`` is half-normal."""
    pos = y * (1 / _U_STEP)  # exact (a power of 2)
    node = np.minimum(pos, len(_U_TABLE) - 2)
    np.floor(node, out=node)  # node len - 2 is y >= _U_MAX: computed exactly below
    i = node.astype(np.intp)
    pos -= node
    pos *= _U_SLOPE.take(i)
    u = _U_TABLE.take(i)
    u += pos
    exact = _U_EXACT.take(i)
    if exact.any():
        near = y[exact]
        inside = near > 0  # y = 0 (a bit no active symbol reached) maps to -8, as the formula gives
        near[inside] = np.maximum(-ndtri(2 * ndtr(-near[inside])), -8.0)
        near[~inside] = -8.0
        u[exact] = near
    return u


_ROTATE = (np.arange(SYMBOLS_PER_PERIOD)[None, :] - np.arange(N_PATTERNS)[:, None]) % SYMBOLS_PER_PERIOD


def _scan(feats: np.ndarray, layout: _Layout) -> tuple[_Alignment, np.ndarray]:
    """Score every alignment of the cycle against ``[n_frames, N_BANDS]`` features; the best one, and the
    ``[n_frames, N_PATTERNS]`` per-frame correlations with every pattern."""
    best, corr = _scan_batch(feats[None], np.array([len(feats)]), layout)
    return best[0], corr[0]


def _scan_batch(feats: np.ndarray, n_frames: np.ndarray, layout: _Layout) -> tuple[list[_Alignment], np.ndarray]:
    """:func:`_scan` of several feature sequences at once (the speed search's factors): ``[G, F, N_BANDS]``
    features of which ``feats[g, :n_frames[g]]`` are real and the rest zero -> the best alignment of each, exactly
    as ``_scan(feats[g, :n_frames[g]])`` finds it, and ``[G, F, N_PATTERNS]`` correlations (zero on padding)."""
    G, F = feats.shape[:2]
    P, S, C = SYMBOLS_PER_PERIOD, FRAMES_PER_SYMBOL, N_PATTERNS
    corr = np.zeros((G, F, C), np.float32)
    for g in range(G):  # one product per sequence, of exactly its frames: the same floats as alone
        corr[g, : n_frames[g]] = feats[g, : n_frames[g]] @ layout.patterns.T
    by_k = np.zeros((G, S, C, P))  # [factor, offset, phase, k % P]: summed z of symbols k (k = 0 at `offset`)
    counts = np.zeros((G, S, P))  # [factor, offset, k % P]: how many of them are active
    for offset in range(S):
        n_sym = np.maximum(n_frames - offset, 0) // S  # [G]
        K = int(n_sym.max())
        if K == 0:
            continue
        span = slice(offset, offset + K * S)
        norms = np.linalg.norm(feats[:, span].reshape(G, K, S, N_BANDS).sum(axis=2), axis=2)  # [G, K]
        active = norms > _ACTIVE
        if n_sym.min() < K:
            active &= np.arange(K) < n_sym[:, None]
        z = corr[:, span].reshape(G, K, S, C).sum(axis=2) / np.where(active, norms, 1.0)[:, :, None]  # [G, K, C]
        z[~active] = 0.0
        by_k[:, offset] = _sum_by_position(z, n_sym)
        padded = np.zeros((G, -(-K // P) * P))
        padded[:, :K] = active
        counts[:, offset] = padded.reshape(G, -1, P).sum(axis=1)
    # scored one sequence at a time: its temporaries (16 values per alignment, 80 kB) then stay in cache, which
    # makes up for the calls (two at once is slower)
    score = np.concatenate([_alignment_scores(by_k[g : g + 1], counts[g : g + 1], layout) for g in range(G)])
    found = []
    for g, best in enumerate(np.argmax(score.reshape(G, S * C), axis=1)):  # the first of equal maxima, in
        offset, phase = divmod(int(best), C)  # (offset, phase) order
        rotate = _ROTATE[phase]  # period position p holds the symbols k with k % P == (p - phase) % P
        found.append(_Alignment(float(score[g, offset, phase]), offset, phase, by_k[g, offset, phase, rotate],
                                counts[g, offset, rotate]))
    return found, corr


@functools.lru_cache(maxsize=16)
def _period_index(symbol_of_bit: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where :func:`_alignment_scores` reads each term. The alignment (offset, phase) puts symbol k at period
    position (phase + k) % P, so position p reads column (p - phase) % P of its phase's row: ``[N_BITS * C]``
    flat indices into ``[C * P]`` of each bit's sums (bit-major: bit 0 at every phase, then bit 1 ...), the same
    into ``[P]`` (its count), and ``[n_pilots * C]`` into ``[C * P]`` of the pilots' sums."""
    columns = _ROTATE[:, list(symbol_of_bit)].T  # [N_BITS, C]
    pilot_columns = _ROTATE[:, list(PILOT_POSITIONS)].T
    rows = np.arange(N_PATTERNS) * SYMBOLS_PER_PERIOD
    return (columns + rows).ravel(), columns.ravel(), (pilot_columns + rows).ravel()


def _alignment_scores(by_k: np.ndarray, counts: np.ndarray, layout: _Layout) -> np.ndarray:
    """``[G, S, C, P]`` summed z per (factor, offset, phase, k % P) and ``[G, S, P]`` active counts -> ``[G, S, C]``
    the Stouffer score ``T`` of every alignment (``-inf`` where no symbol is active)."""
    G, S, C, P = by_k.shape
    # Gathered straight into [bit (or pilot), phase] order: the terms of T are then added one bit after the other,
    # in bit order, as they always have been (the floats of T depend on that order).
    bit_at, count_at, pilot_at = _period_index(tuple(layout.symbol_of_bit.tolist()))
    flat = by_k.reshape(G * S, C * P)
    counts = counts.reshape(G * S, P)
    # Under the null every z is N(0, 1), independent: the pilot sum / sqrt(n) is N(0, 1), and so is each bit's
    # |sum| / sqrt(n) once mapped through the half-normal CDF and back (u = Phi^-1(2 Phi(|y|) - 1)). T is
    # their Stouffer combination, weighted by sqrt(n): exactly N(0, 1) per alignment.
    y = np.abs(flat.take(bit_at, axis=1))
    y /= np.sqrt(np.maximum(counts, 1)).take(count_at, axis=1)
    # A bit with no active symbol has sum 0, u = -8 and weight sqrt(0): its term is -0.0, which changes no sum
    # (pilot sums are never -0.0), so T is the same as with such terms left out.
    terms = _half_normal_to_normal(y)
    terms *= np.sqrt(counts).take(count_at, axis=1)
    total = counts.sum(1)[:, None]  # every position of the period, pilots and bits: the same at every phase
    pilot_sums = flat.take(pilot_at, axis=1).reshape(G * S, -1, C).sum(1)
    score = np.where(
        total > 0, (pilot_sums + terms.reshape(G * S, N_BITS, C).sum(1)) / np.sqrt(np.maximum(total, 1)), -math.inf
    )
    return score.reshape(G, S, C)


def _max_segment(gain: np.ndarray) -> tuple[int, int, float]:
    """The frames ``[a, b)`` with the largest sum of ``gain`` (Kadane, on prefix sums), and that sum."""
    csum = np.concatenate([[0.0], np.cumsum(gain)])
    end = int(np.argmax(csum[1:] - np.minimum.accumulate(csum)[:-1])) + 1
    start = int(np.argmin(csum[:end]))
    return start, end, float(csum[end] - csum[start])


def _spans(frame_scores: np.ndarray, audible: np.ndarray, duration_s: float) -> list[tuple[float, float]]:
    """Where the mark is: segments maximizing the sum of (frame score - half the marked level), recursively.
    Near-silent frames are neutral (they can carry no mark), so pauses neither split nor end a span."""
    level = float(np.quantile(_moving_mean(frame_scores[audible], SMOOTH_FRAMES, 0), 0.9)) if audible.any() else 0
    gain = np.where(audible, frame_scores - 0.5 * level, 0.0)
    min_frames = int(MIN_SPAN_S / FRAME_HOP_S)
    found: list[tuple[int, int]] = []
    todo = [(0, len(gain))]
    while todo and level > 0:
        lo, hi = todo.pop()
        if hi - lo < min_frames:
            continue
        a, b, total = _max_segment(gain[lo:hi])
        if b - a < min_frames or total < 0.5 * level * min_frames:
            continue
        found.append((lo + a, lo + b))
        todo += [(lo, lo + a), (lo + b, hi)]
    centre = (N_FFT / 2) / SAMPLE_RATE  # frame i is centred at i * hop + centre
    edges = [(max(0.0, a * FRAME_HOP_S + centre - FRAME_HOP_S / 2),
              min(duration_s, (b - 1) * FRAME_HOP_S + centre + FRAME_HOP_S / 2)) for a, b in sorted(found)]
    return [(round(a, 3), round(b, 3)) for a, b in edges]


@dataclass(frozen=True)
class _Analysis:
    """One scan of the input undone by a speed factor: what :func:`detect` reports from."""

    factor: float  # the input was resampled by this factor (1.0: as given)
    best: _Alignment
    feats: np.ndarray  # [n_frames, N_BANDS] whitened log band powers of the resampled input
    corr: np.ndarray  # [n_frames, N_PATTERNS]
    audible: np.ndarray  # [n_frames] bool


def _analyse(x: np.ndarray | _FineSpectrum, layout: _Layout, factor: float = 1.0) -> _Analysis:
    """Scan 16 kHz ``[T]`` audio (or its fine spectrum, for the speed search) after undoing a speed change by
    ``factor``: the features of the input resampled to ``T * factor`` samples."""
    feats, audible = _features(x) if isinstance(x, np.ndarray) else _features_at(x, factor)
    best, corr = _scan(feats, layout)
    return _Analysis(factor, best, feats, corr, audible)


def _p_value(score: float, n_hypotheses: int) -> float:
    """Bonferroni p-value of the best of ``n_hypotheses`` N(0, 1) statistics."""
    return min(1.0, n_hypotheses * float(ndtr(-score))) if math.isfinite(score) else 1.0


# The grid is scanned a group of factors at a time, every step batched over the group (see _features_batch and
# _scan_batch): unmarked audio scans all of them, and on short clips the per-call overhead of one factor at a time
# is a large part of the cost. A group holds at most SPEED_GROUP factors (the first group reaches +/-5 %, so a mark
# found there does not pay for the whole grid) and at most SPEED_BATCH_FRAMES frames in all (at the longest
# factor), which bounds the temporaries to about 10 MB (2-3 kB a frame) and keeps them nearer the cache: 10 factors
# at once up to about 5 s, 5 for 10 s, one at a time from about 30 s. Measured: larger groups are no faster.
SPEED_GROUP = 10
SPEED_BATCH_FRAMES = 4096


def _speed_scores(x: _FineSpectrum, layout: _Layout, factors: tuple[float, ...]) -> np.ndarray:
    """``[len(factors)]`` the best alignment's score at each factor: ``_analyse(x, layout, f).best.score``, the
    same floats, computed in one batch."""
    feats, _, n_frames = _features_batch(x, factors)
    best, _ = _scan_batch(feats, n_frames, layout)
    return np.array([b.score for b in best])


def _first_over_threshold(x: _FineSpectrum, layout: _Layout) -> float | None:
    """The first of :data:`SPEED_FACTORS` whose best score reaches :data:`SPEED_THRESHOLD`, or None (the grid is
    scanned nearest to 1 first, in groups of :data:`SPEED_GROUP` factors or :data:`SPEED_BATCH_FRAMES` frames)."""
    per_factor = _n_frames(round(x.n_samples * max(SPEED_FACTORS)))
    size = max(1, min(SPEED_GROUP, SPEED_BATCH_FRAMES // per_factor))
    for first in range(0, len(SPEED_FACTORS), size):
        group = SPEED_FACTORS[first : first + size]
        hits = np.flatnonzero(_speed_scores(x, layout, group) >= SPEED_THRESHOLD)
        if hits.size:
            return group[hits[0]]
    return None


def _speed_search(x: _FineSpectrum, layout: _Layout) -> tuple[_Analysis, _Analysis] | None:
    """Try :data:`SPEED_FACTORS` nearest to 1 first. At the first whose best alignment reaches
    :data:`SPEED_THRESHOLD`, climb on along the grid away from 1 while the score grows, then refine the factor by a
    local search. Returns (the best analysis on the grid, the refined one), or None when no factor reaches the
    threshold."""
    factor = _first_over_threshold(x, layout)
    if factor is None:
        return None
    found = _analyse(x, layout, factor)
    # The plain scan tolerates about 1 %, so the first factor to clear the threshold can be a step short of the true
    # one: the grid point with the best score is the decision statistic (every grid point is a hypothesis the
    # threshold is corrected for). The local search then sharpens the factor, which the payload and the
    # localization of long clips need (0.5 % off drifts 50 ms in 10 s); it does not change the decision.
    direction = 1 if found.factor > 1 else -1
    limit = max(SPEED_FACTORS) if direction > 0 else min(SPEED_FACTORS)
    while abs(found.factor - limit) > SPEED_STEP / 2:
        further = _analyse(x, layout, round(found.factor + direction * SPEED_STEP, 4))
        if further.best.score <= found.best.score:
            break
        found = further
    refined = found
    for step in SPEED_REFINE_STEPS:
        around = [_analyse(x, layout, refined.factor + sign * step) for sign in (-1, 1)]
        refined = max([refined, *around], key=lambda a: a.best.score)
    return found, refined


def detect(
    wav: np.ndarray,
    key: WatermarkKey | None = None,
    sample_rate: int = SAMPLE_RATE,
    search_speed: bool = True,
    codec_layer: bool = True,
) -> Detection:
    """Look for the watermark of ``key`` in mono audio and decode its payload.

    Args:
        wav: ``[T]`` or ``[1, T]`` floating point audio (any length; about 0.5 s of speech is needed to detect
            and 1.28 s for every payload bit).
        key: the secret; ``None`` uses :func:`safety.keys.configured_key`.
        sample_rate: rate of ``wav``; other rates than 16 kHz are resampled.
        search_speed: when the plain scan finds nothing, search speed factors 0.90..1.10 (on unmarked audio
            about 8x the plain scan's time for a 2.5 s clip, 10-12x for 10-60 s). The thresholds are the same
            either way, so turning it off only loses detections.
        codec_layer: when neither scan finds the mark, test the codec layer (:mod:`safety.codec_mark`: the
            mark that survives re-encoding through the project's neural codec; it runs the codec's encoder, about
            45x real time on one thread, and carries no payload). Skipped, with a logged note, where torch or the
            shipped codec cannot load.

    Returns:
        A :class:`Detection`; ``frame_scores`` are at 16 ms hops of the input's timeline (16 kHz frames).

    Raises:
        WatermarkInputError: empty, NaN/Inf, not mono, not floating point, absurd ``sample_rate``.
    """
    sample_rate = _check_rate(sample_rate)
    x, _ = _as_mono(wav)
    duration_s = len(x) / sample_rate
    if sample_rate != SAMPLE_RATE:
        x = _resample(x, sample_rate, SAMPLE_RATE)
    key = configured_key() if key is None else key
    layout = _layout(key.seed)
    plain = _analyse(x, layout)
    scan_share = 1 - CODEC_FPR_SHARE
    p_value = _p_value(plain.best.score, N_ALIGNMENTS) / ((1 - SPEED_FPR_SHARE) * scan_share)
    decided, used, threshold = plain, plain, THRESHOLD
    if p_value > FALSE_POSITIVE_RATE and search_speed and math.isfinite(plain.best.score):
        found = _speed_search(_fine_spectrum(x), layout)
        if found is not None:
            decided, used = found
            threshold = SPEED_THRESHOLD
            p_value = _p_value(decided.best.score, N_ALIGNMENTS * len(SPEED_FACTORS)) / (SPEED_FPR_SHARE * scan_share)
    detected = p_value <= FALSE_POSITIVE_RATE
    layer = "spread-spectrum" if detected else ""
    codec = _codec_layer(x, key) if codec_layer and not detected else None
    if codec is not None and codec.p_value / CODEC_FPR_SHARE < p_value:
        p_value = codec.p_value / CODEC_FPR_SHARE
        detected = p_value <= FALSE_POSITIVE_RATE
        layer = "codec" if detected else ""
    p_value = min(1.0, p_value)
    best, feats, corr = used.best, used.feats, used.corr

    # payload: sign of each bit's summed z, undone scrambling; confidence from a N(+/-mu, 1) model per symbol
    bit_sums, bit_counts = best.sums[layout.symbol_of_bit], best.counts[layout.symbol_of_bit]
    signs = np.where(bit_sums >= 0, 1.0, -1.0)
    bits = ((1 - signs * layout.scramble) // 2).astype(np.int8)
    n_active = best.counts.sum()
    mu = max(0.0, (best.sums[layout.bit_of_symbol < 0].sum() + np.abs(bit_sums).sum()) / max(n_active, 1))
    confidence = np.where(bit_counts > 0, 1 / (1 + np.exp(-2 * mu * np.abs(bit_sums))), 0.5)
    payload = int("".join(map(str, bits)), 2) if layer == "spread-spectrum" and (bit_counts > 0).all() else None

    # frame scores: each frame's z against the pattern (and sign) of the symbol the best alignment puts there
    n_frames = len(feats)
    cycle = ((np.arange(n_frames) - best.offset) // FRAMES_PER_SYMBOL + best.phase) % N_PATTERNS
    symbol_sign = np.ones(SYMBOLS_PER_PERIOD)
    symbol_sign[layout.symbol_of_bit] = signs
    norms = np.linalg.norm(feats, axis=1)
    frame_scores = np.where(
        norms > _ACTIVE,
        symbol_sign[cycle % SYMBOLS_PER_PERIOD] * corr[np.arange(n_frames), cycle] / np.maximum(norms, _ACTIVE),
        0.0,
    ).astype(np.float32)
    if layer == "codec" and codec is not None:  # frames scored by their codes instead: (green - GAMMA) / sd
        frame_scores = _codec_frame_scores(codec, len(plain.feats))
        used = plain
    spans = _spans(frame_scores, used.audible, duration_s * used.factor) if detected else []
    if used.factor != 1.0:  # back to the input's timeline: time t of the resampled signal is t / factor there
        spans = [(round(a / used.factor, 3), round(min(b / used.factor, duration_s), 3)) for a, b in spans]
        centres = (np.arange(len(plain.feats)) * HOP + N_FFT / 2) / SAMPLE_RATE * used.factor  # input frames
        frame_scores = np.interp(centres, (np.arange(n_frames) * HOP + N_FFT / 2) / SAMPLE_RATE, frame_scores)
        frame_scores = frame_scores.astype(np.float32)
    return Detection(
        probability=1.0 - p_value,
        detected=detected,
        payload=payload,
        bit_confidence=confidence.astype(np.float32),
        bits=bits,
        frame_scores=frame_scores,
        spans=spans,
        score=decided.best.score if math.isfinite(decided.best.score) else 0.0,
        threshold=threshold,
        speed=round(used.factor, 5),
        key_id=key.key_id,
        layer=layer,
        codec_score=None if codec is None else codec.z,
    )


def _codec_layer(x: np.ndarray, key: WatermarkKey) -> codec_mark.CodecLayerStatistic | None:
    """The codec layer's statistic on 16 kHz ``x``, or None (logged once) where the layer cannot run."""
    if not codec_mark.available():
        _warn_no_codec_layer()
        return None
    return codec_mark.statistic(x, key)


def _codec_frame_scores(codec: codec_mark.CodecLayerStatistic, n_frames: int) -> np.ndarray:
    """``[n_frames]`` the codec layer's per-code-frame evidence ((green - GAMMA) / sd, 20 ms frames) on the
    detector's 16 ms frame grid (nearest codec frame)."""
    gamma = codec_mark.GAMMA
    per_code = (codec.frame_green - gamma) / math.sqrt(gamma * (1 - gamma))
    centres = (np.arange(n_frames) * HOP + N_FFT / 2) / SAMPLE_RATE
    index = np.minimum((centres / codec.frame_hop_s).astype(int), max(len(per_code) - 1, 0))
    return per_code[index].astype(np.float32) if len(per_code) else np.zeros(n_frames, np.float32)
