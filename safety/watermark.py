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
  mark when the Bonferroni-corrected p-value of the best alignment is at most ``FALSE_POSITIVE_RATE`` (1e-3), i.e.
  ``T >= 4.66``. Each bit is the sign of its summed ``z``; its confidence is the posterior of a Gaussian model
  whose mean is estimated from the clip.

A different key draws independent patterns, so its statistic is null: another key detects nothing and a mark made
with another key is not accepted. Needs about 0.5-1 s of speech to detect and one period (1.28 s) for the payload.
Known weaknesses: speed changes (1-2 % already shifts bands and symbols too far), strong broadband noise and
low-bitrate codecs (the mark lives mostly in quiet bands), and only one alignment is tracked per clip (two
separately marked clips joined together localize only the stronger one).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr, ndtri

from safety.keys import WatermarkKey, configured_key, warn_if_default

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
THRESHOLD = float(-ndtri(FALSE_POSITIVE_RATE / N_ALIGNMENTS))  # 4.66: T above this -> watermarked
SMOOTH_FRAMES = 15  # 240 ms moving average of frame scores before the spans are thresholded
MIN_SPAN_S = 0.25  # shorter marked runs are dropped, shorter unmarked gaps are bridged

# Payload of every waveform the toolkit generates: high byte = generator id 0xA1 ("alm" toolkit), low byte =
# release of the generating model/watermark scheme (1). Change MESSAGE_VERSION when the shipped model changes.
MESSAGE_GENERATOR_ID = 0xA1
MESSAGE_VERSION = 1
DEFAULT_MESSAGE = (MESSAGE_GENERATOR_ID << 8) | MESSAGE_VERSION  # 41217 = 0xA101

_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann: analysis window of the detector
_SQRT_WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:-1])  # sqrt-Hann in and out: overlap-adds to exactly 1 at 50 %


class WatermarkInputError(ValueError):
    """Audio the watermark cannot work on: empty, NaN/Inf, not mono, not floating point, absurd rate."""


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` found in a clip.

    ``probability`` is ``1 - p`` where ``p`` is the Bonferroni-corrected p-value of the best alignment under "no
    watermark with this key"; ``detected`` is ``p <= false_positive_rate``, i.e. ``score >= threshold``.
    """

    probability: float
    detected: bool
    payload: int | None  # the 16-bit message; None unless detected and every bit was seen
    bit_confidence: np.ndarray  # [16] probability that each decoded bit (MSB first) is right; 0.5 = unseen
    bits: np.ndarray  # [16] int8 hard decisions at the best alignment, MSB first (meaningless when not detected)
    frame_scores: np.ndarray  # [n_frames] per-frame z-score (about N(0, 1) without the mark), hop frame_hop_s
    spans: list[tuple[float, float]]  # (start_s, end_s) where the mark is present; [] when not detected
    frame_hop_s: float = FRAME_HOP_S
    score: float = 0.0  # the standardized statistic T of the best alignment
    threshold: float = THRESHOLD
    false_positive_rate: float = FALSE_POSITIVE_RATE
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


def _frames(x: np.ndarray) -> np.ndarray:
    """``[T]`` -> ``[n_frames, N_FFT]`` view; frame ``t`` starts at sample ``t * HOP`` (zero-padded at the end)."""
    n_frames = math.ceil(max(len(x) - N_FFT, 0) / HOP) + 1
    x = np.pad(x, (0, (n_frames - 1) * HOP + N_FFT - len(x)))
    return sliding_window_view(x, N_FFT)[::HOP]


def _overlap_add(frames: np.ndarray, length: int) -> np.ndarray:
    """Inverse of :func:`_frames` for sqrt-Hann windowed frames at 50 % overlap -> ``[length]``."""
    out = np.zeros((len(frames) + 1) * HOP)
    for first in range(N_FFT // HOP):  # frames first, first + 2, ... tile the signal without overlap
        chunk = frames[first::2].reshape(-1)
        out[first * HOP : first * HOP + chunk.size] += chunk
    return out[:length]


def _band_power(spectrum: np.ndarray) -> np.ndarray:
    """``[n_frames, N_FFT // 2 + 1]`` complex -> ``[n_frames, N_BANDS]`` power per band."""
    power = spectrum.real**2 + spectrum.imag**2
    return power[:, BAND_LO_BIN:BAND_HI_BIN].reshape(len(power), N_BANDS, BAND_BINS).sum(-1)


def _moving_mean(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Centred moving average of odd ``width`` along ``axis``, averaging only the samples inside at the edges."""
    a = np.moveaxis(a, axis, 0)
    c = np.concatenate([np.zeros((1, *a.shape[1:]), a.dtype), np.cumsum(a, axis=0)])
    idx = np.arange(len(a))
    lo, hi = np.maximum(idx - width // 2, 0), np.minimum(idx + width // 2 + 1, len(a))
    shape = (-1,) + (1,) * (a.ndim - 1)
    return np.moveaxis((c[hi] - c[lo]) / (hi - lo).reshape(shape), 0, axis)


def _features(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[T]`` audio -> ``[n_frames, N_BANDS]`` whitened log band powers (what the patterns are correlated with),
    and ``[n_frames]`` whether each frame is loud enough to carry the mark (within 40 dB of the loudest)."""
    spectrum = np.fft.rfft(_frames(x.astype(np.float32)) * _WINDOW, axis=1)
    power = _band_power(spectrum)
    frame_power = power.sum(axis=1)
    audible = frame_power > max(float(frame_power.max()) * 1e-4, _FLOOR * N_BANDS)
    c = np.log(power + _FLOOR)
    c -= c.mean(axis=1, keepdims=True)  # loudness
    c -= _moving_mean(c, TIME_WHITEN_FRAMES, 0)  # stationary colouring: fixed filters, steady spectra
    c -= _moving_mean(c, FREQ_WHITEN_BANDS, 1)  # spectral envelope
    return c, audible


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
    if np.abs(x).max() <= 1.0:
        y = np.clip(y, -1.0, 1.0)
    y = y.astype(np.float32)
    return y[None] if two_d else y


def watermark_hook(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The toolkit's hook (``alm.api.set_watermark_hook``): embed :data:`DEFAULT_MESSAGE` with the configured key.

    Works at any rate (see :func:`embed`); empty audio (a generation that produced no frame) passes through.
    """
    if np.asarray(audio).size == 0:
        return audio
    return embed(audio, DEFAULT_MESSAGE, key=None, sample_rate=sample_rate)


# --------------------------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class _Alignment:
    score: float  # standardized statistic T
    offset: int  # frame at which a symbol starts (0..FRAMES_PER_SYMBOL-1)
    phase: int  # cycle index of the symbol starting at `offset`
    sums: np.ndarray  # [SYMBOLS_PER_PERIOD] summed z per symbol position
    counts: np.ndarray  # [SYMBOLS_PER_PERIOD] active symbols per position


def _scan(feats: np.ndarray, layout: _Layout) -> tuple[_Alignment, np.ndarray]:
    """Score every alignment of the cycle against ``[n_frames, N_BANDS]`` features; the best one, and the
    ``[n_frames, N_PATTERNS]`` per-frame correlations with every pattern."""
    n_frames, P, S, C = len(feats), SYMBOLS_PER_PERIOD, FRAMES_PER_SYMBOL, N_PATTERNS
    corr = feats @ layout.patterns.T  # [F, C]
    pilots = layout.bit_of_symbol < 0
    data = layout.symbol_of_bit
    best = _Alignment(-math.inf, 0, 0, np.zeros(P), np.zeros(P))
    for offset in range(S):
        n_sym = (n_frames - offset) // S
        if n_sym == 0:
            continue
        span = slice(offset, offset + n_sym * S)
        norms = np.linalg.norm(feats[span].reshape(n_sym, S, N_BANDS).sum(axis=1), axis=1)  # [K]
        active = norms > _ACTIVE
        z = corr[span].reshape(n_sym, S, C).sum(axis=1) / np.where(active, norms, 1.0)[:, None]  # [K, C]
        z[~active] = 0.0
        cycle = (np.arange(C)[:, None] + np.arange(n_sym)[None, :]) % C  # [phase, K] pattern of symbol k
        z_at = z[np.arange(n_sym)[None, :], cycle]  # [phase, K]
        flat = (np.arange(C)[:, None] * P + cycle % P).ravel()  # (phase, position in the period)
        sums = np.bincount(flat, weights=z_at.ravel(), minlength=C * P).reshape(C, P)
        counts = np.bincount(flat, weights=np.broadcast_to(active, cycle.shape).ravel(), minlength=C * P)
        counts = counts.reshape(C, P)
        # Under the null every z is N(0, 1), independent: the pilot sum / sqrt(n) is N(0, 1), and so is each bit's
        # |sum| / sqrt(n) once mapped through the half-normal CDF and back (u = Phi^-1(2 Phi(|y|) - 1)). T is
        # their Stouffer combination, weighted by sqrt(n): exactly N(0, 1) per alignment.
        n_pilot, n_bit = counts[:, pilots].sum(1), counts[:, data]
        y = np.abs(sums[:, data]) / np.sqrt(np.maximum(n_bit, 1))
        u = np.where(n_bit > 0, np.maximum(-ndtri(2 * ndtr(-y)), -8.0), 0.0)
        total = n_pilot + n_bit.sum(1)
        score = np.where(
            total > 0, (sums[:, pilots].sum(1) + (np.sqrt(n_bit) * u).sum(1)) / np.sqrt(np.maximum(total, 1)), -math.inf
        )
        phase = int(np.argmax(score))
        if score[phase] > best.score:
            best = _Alignment(float(score[phase]), offset, phase, sums[phase], counts[phase])
    return best, corr


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


def detect(wav: np.ndarray, key: WatermarkKey | None = None, sample_rate: int = SAMPLE_RATE) -> Detection:
    """Look for the watermark of ``key`` in mono audio and decode its payload.

    Args:
        wav: ``[T]`` or ``[1, T]`` floating point audio (any length; about 0.5 s of speech is needed to detect
            and 1.28 s for every payload bit).
        key: the secret; ``None`` uses :func:`safety.keys.configured_key`.
        sample_rate: rate of ``wav``; other rates than 16 kHz are resampled.

    Returns:
        A :class:`Detection`; ``frame_scores`` are at 16 ms hops of the 16 kHz signal.

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
    feats, audible = _features(x)
    best, corr = _scan(feats, layout)
    p_value = min(1.0, N_ALIGNMENTS * float(ndtr(-best.score))) if math.isfinite(best.score) else 1.0
    detected = p_value <= FALSE_POSITIVE_RATE

    # payload: sign of each bit's summed z, undone scrambling; confidence from a N(+/-mu, 1) model per symbol
    bit_sums, bit_counts = best.sums[layout.symbol_of_bit], best.counts[layout.symbol_of_bit]
    signs = np.where(bit_sums >= 0, 1.0, -1.0)
    bits = ((1 - signs * layout.scramble) // 2).astype(np.int8)
    n_active = best.counts.sum()
    mu = max(0.0, (best.sums[layout.bit_of_symbol < 0].sum() + np.abs(bit_sums).sum()) / max(n_active, 1))
    confidence = np.where(bit_counts > 0, 1 / (1 + np.exp(-2 * mu * np.abs(bit_sums))), 0.5)
    payload = int("".join(map(str, bits)), 2) if detected and (bit_counts > 0).all() else None

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
    return Detection(
        probability=1.0 - p_value,
        detected=detected,
        payload=payload,
        bit_confidence=confidence.astype(np.float32),
        bits=bits,
        frame_scores=frame_scores,
        spans=_spans(frame_scores, audible, duration_s) if detected else [],
        score=best.score if math.isfinite(best.score) else 0.0,
        key_id=key.key_id,
    )
