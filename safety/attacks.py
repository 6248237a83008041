"""Audio attacks for the watermark robustness benchmark, and speech-like test signals.

Every attack is ``fn(wav, sr, ...) -> wav``: ``wav`` is float ``[T]`` mono in ``[-1, 1]``; the result is float32
``[T']``, finite, with ``T' == T`` except for :func:`speed` (``T / factor``), :func:`crop` (the kept part) and
:func:`splice` (the pieces joined). Noise and talker mixes are seeded, so a benchmark run is reproducible.
:data:`ATTACKS` names the standard set with its parameters; :func:`splice` and :func:`mix_talker` need a second
signal and are wired by the benchmark.

The codec attacks (MP3, AAC, Opus) round-trip through the ``ffmpeg`` binary with temporary files and raise
:class:`AttackUnavailableError` when ffmpeg (or the encoder) is missing, so callers can skip them.
:func:`neural_codec` re-encodes through the project's own neural codec (``codec.load_codec()``, loaded once, on
first use; torch is imported only then).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal

FFMPEG_TIMEOUT_S = 120


class AttackUnavailableError(RuntimeError):
    """An attack that cannot run here (no ffmpeg binary, or ffmpeg without the encoder)."""


def _out(y: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)


def _same_length(y: np.ndarray, n: int) -> np.ndarray:
    """:func:`_out` of ``y`` zero-padded or cut to ``n`` samples (codecs and resamplers add or drop a few)."""
    return _out(np.pad(y, (0, max(n - len(y), 0)))[:n])


def _noise_at_snr(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    power = float(np.mean(np.square(wav, dtype=np.float64)))
    scale = np.sqrt(power * 10 ** (-snr_db / 10) / max(float(np.mean(noise.astype(np.float64) ** 2)), 1e-20))
    return _out(wav + scale * noise)


def white_noise(wav: np.ndarray, sr: int, snr_db: float = 20.0, seed: int = 0) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` relative to the signal's mean power."""
    return _noise_at_snr(wav, np.random.default_rng(seed).standard_normal(len(wav)), snr_db)


def pink_noise(wav: np.ndarray, sr: int, snr_db: float = 20.0, seed: int = 0) -> np.ndarray:
    """Add pink (1/f power) noise at ``snr_db``: white noise shaped by ``1/sqrt(f)`` in the frequency domain."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(len(wav)))
    f = np.fft.rfftfreq(len(wav), 1 / sr)
    spectrum /= np.sqrt(np.maximum(f, 20.0))  # flat below 20 Hz instead of an infinite DC
    return _noise_at_snr(wav, np.fft.irfft(spectrum, len(wav)), snr_db)


def _butter(wav: np.ndarray, sr: int, cutoff: float | list[float], btype: str, order: int = 5) -> np.ndarray:
    sos = signal.butter(order, cutoff, btype=btype, fs=sr, output="sos")
    return _out(signal.sosfilt(sos, wav))  # causal, as an attacker's or a channel's filter would be


def lowpass(wav: np.ndarray, sr: int, cutoff_hz: float = 3500.0) -> np.ndarray:
    """5th-order Butterworth low-pass."""
    return _butter(wav, sr, cutoff_hz, "lowpass")


def highpass(wav: np.ndarray, sr: int, cutoff_hz: float = 500.0) -> np.ndarray:
    """5th-order Butterworth high-pass."""
    return _butter(wav, sr, cutoff_hz, "highpass")


def bandpass(wav: np.ndarray, sr: int, low_hz: float = 300.0, high_hz: float = 3400.0) -> np.ndarray:
    """5th-order Butterworth band-pass; the default is the telephone band."""
    return _butter(wav, sr, [low_hz, high_hz], "bandpass")


def resample(wav: np.ndarray, sr: int, via_hz: int = 8000) -> np.ndarray:
    """Down to ``via_hz`` and back up (polyphase, Kaiser window): everything above ``via_hz / 2`` is lost."""
    g = np.gcd(sr, via_hz)
    down = signal.resample_poly(wav, via_hz // g, sr // g)
    return _same_length(signal.resample_poly(down, sr // g, via_hz // g), len(wav))


def speed(wav: np.ndarray, sr: int, factor: float = 1.05) -> np.ndarray:
    """Play ``factor`` times faster: duration / factor, every frequency x factor (resampling, as on tape)."""
    if not factor > 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    ratio = Fraction(str(factor)).limit_denominator(1000)  # 1.05 -> 21/20: resample by 20/21
    return _out(signal.resample_poly(wav, ratio.denominator, ratio.numerator))


def echo(wav: np.ndarray, sr: int, delay_s: float = 0.1, gain: float = 0.4) -> np.ndarray:
    """Add one copy delayed by ``delay_s`` and scaled by ``gain`` (a room reflection)."""
    d = int(round(delay_s * sr))
    y = wav.astype(np.float64).copy()
    if 0 < d < len(wav):
        y[d:] += gain * wav[:-d]
    return _out(y / (1 + abs(gain)))


def smooth(wav: np.ndarray, sr: int, width: int = 5) -> np.ndarray:
    """Moving average over ``width`` samples (a crude low-pass: first zero at ``sr / width``)."""
    return _out(np.convolve(wav, np.ones(width) / width, mode="same"))


def gain(wav: np.ndarray, sr: int, gain_db: float = 6.0) -> np.ndarray:
    """Scale by ``gain_db`` (boost > 0, duck < 0), clipping at full scale as a real level change would."""
    return _out(np.clip(wav * 10 ** (gain_db / 20), -1.0, 1.0))


def crop(wav: np.ndarray, sr: int, seconds: float = 1.5, start_s: float | None = None) -> np.ndarray:
    """Keep ``seconds`` of audio starting at ``start_s`` (default: the middle part)."""
    n = min(len(wav), int(round(seconds * sr)))
    start = (len(wav) - n) // 2 if start_s is None else min(max(int(round(start_s * sr)), 0), len(wav) - n)
    return _out(wav[start : start + n])


def splice(wav: np.ndarray, sr: int, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``before + wav + after``: a marked stretch between unmarked speech (the truth span is known to the caller)."""
    return _out(np.concatenate([before, wav, after]))


def mix_talker(wav: np.ndarray, sr: int, other: np.ndarray, snr_db: float = 10.0) -> np.ndarray:
    """Add another talker ``snr_db`` below the signal (``other`` is tiled or cut to the length of ``wav``)."""
    other = np.resize(np.asarray(other, dtype=np.float64), len(wav))
    return _noise_at_snr(wav, other, snr_db)


# --------------------------------------------------------------------------------------------- codecs


def _ffmpeg_roundtrip(wav: np.ndarray, sr: int, encode_args: list[str], suffix: str) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AttackUnavailableError("ffmpeg is not installed (apt install ffmpeg): codec attacks cannot run")
    with tempfile.TemporaryDirectory(prefix="alm-attack-") as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / f"coded{suffix}", Path(tmp) / "out.wav"
        sf.write(src, np.clip(wav, -1, 1), sr, subtype="PCM_16")
        for cmd in (
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *encode_args, str(enc)],
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(enc), "-ar", str(sr), "-ac", "1", str(dec)],
        ):
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired as e:
                raise AttackUnavailableError(f"ffmpeg timed out after {FFMPEG_TIMEOUT_S} s") from e
            if proc.returncode != 0:
                msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
                raise AttackUnavailableError(f"ffmpeg failed ({' '.join(encode_args)}): {msg[-1] if msg else '?'}")
        y, _ = sf.read(dec, dtype="float32")
    if y.ndim == 2:
        y = y.mean(axis=1)
    return _same_length(y, len(wav))


def mp3(wav: np.ndarray, sr: int, kbps: int = 32) -> np.ndarray:
    """MP3 (LAME) round trip at ``kbps``."""
    return _ffmpeg_roundtrip(wav, sr, ["-c:a", "libmp3lame", "-b:a", f"{kbps}k"], ".mp3")


def aac(wav: np.ndarray, sr: int, kbps: int = 32) -> np.ndarray:
    """AAC-LC (ffmpeg's native encoder) round trip at ``kbps``."""
    return _ffmpeg_roundtrip(wav, sr, ["-c:a", "aac", "-b:a", f"{kbps}k"], ".m4a")


def opus(wav: np.ndarray, sr: int, kbps: int = 16) -> np.ndarray:
    """Opus (libopus, VoIP tuning) round trip at ``kbps``."""
    return _ffmpeg_roundtrip(wav, sr, ["-c:a", "libopus", "-b:a", f"{kbps}k", "-application", "voip"], ".ogg")


@functools.cache
def _shipped_codec(path: str | None) -> Any:
    try:
        from codec import load_codec

        codec = load_codec(path)
    except (ImportError, OSError, ValueError) as e:
        raise AttackUnavailableError(f"the neural codec could not be loaded ({e})") from e
    return codec


def neural_codec(wav: np.ndarray, sr: int, num_codebooks: int | None = None, path: str | None = None) -> np.ndarray:
    """Encode and decode through the project's neural codec (the shipped one unless ``path``), as a user
    re-synthesising generated speech would: 8 codebooks x 1024 at 50 frames/s (4 kb/s), or ``num_codebooks``.
    The decode is the codec's own, without the watermark hook."""
    import torch

    codec = _shipped_codec(path)
    with torch.no_grad():
        codes = codec.encode(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), sr)
        if num_codebooks is not None:
            codes = codes[:, :num_codebooks]
        y = codec.decode(codes)[0].numpy()
    if sr != codec.sample_rate:
        g = np.gcd(sr, codec.sample_rate)
        y = signal.resample_poly(y, sr // g, codec.sample_rate // g)
    return _same_length(y, len(wav))


Attack = Callable[[np.ndarray, int], np.ndarray]

# The standard benchmark set: name -> fn(wav, sr). Lengths change only for "speed" and "crop".
ATTACKS: dict[str, Attack] = {
    "none": lambda wav, sr: _out(wav),
    "white_noise_20dB": white_noise,
    "pink_noise_20dB": pink_noise,
    "lowpass_3500Hz": lowpass,
    "highpass_500Hz": highpass,
    "bandpass_300_3400Hz": bandpass,
    "resample_8kHz": resample,
    "speed_0.90": lambda wav, sr: speed(wav, sr, 0.90),
    "speed_0.95": lambda wav, sr: speed(wav, sr, 0.95),
    "speed_1.02": lambda wav, sr: speed(wav, sr, 1.02),
    "speed_1.05": speed,
    "speed_1.10": lambda wav, sr: speed(wav, sr, 1.10),
    "echo_100ms": echo,
    "smooth_5": smooth,
    "boost_6dB": gain,
    "duck_-10dB": lambda wav, sr: gain(wav, sr, -10.0),
    "crop_1.5s": crop,
    "mp3_32kbps": mp3,
    "aac_32kbps": aac,
    "opus_16kbps": opus,
    "neural_codec_4kbps": neural_codec,
}
CODEC_ATTACKS = ("mp3_32kbps", "aac_32kbps", "opus_16kbps", "neural_codec_4kbps")


# --------------------------------------------------------------------------------------------- test signals


def speech_like(seconds: float, sr: int = 16000, seed: int = 0, pauses: bool = True) -> np.ndarray:
    """A speech-like signal: syllables of formant-shaped harmonics with a moving f0 and aspiration noise,
    fricative noise bursts, pauses.

    Not speech, but with speech's structure where the watermark cares: a harmonic spectrum under a moving
    envelope, 3-6 syllables a second, silences, noisy consonants, 30-40 dB of dynamic range.

    Args:
        pauses: whether some syllables are followed by a 150-400 ms pause (False: continuous speech).

    Returns:
        float32 ``[round(seconds * sr)]`` with RMS around -23 dBFS, peak below 1.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    # syllable grid: onsets every 150-320 ms, some followed by a pause
    onsets, pos = [], float(rng.uniform(0.0, 0.15))
    while pos < seconds:
        dur = float(rng.uniform(0.12, 0.28))
        onsets.append((pos, dur))
        pause = float(rng.uniform(0.15, 0.4)) if pauses and rng.random() < 0.15 else 0.0
        pos += dur + float(rng.uniform(0.02, 0.06)) + pause
    env = np.zeros(n)
    fricative = np.zeros(n)
    f1, f2, f3 = np.zeros(n), np.zeros(n), np.zeros(n)
    for start, dur in onsets:
        a, b = int(start * sr), min(n, int((start + dur) * sr))
        if b <= a:
            continue
        env[a:b] = np.sin(np.linspace(0, np.pi, b - a)) ** 0.7 * rng.uniform(0.3, 1.0)
        ramp = np.linspace(0, 1, b - a)
        f1[a:b] = np.interp(ramp, [0, 1], rng.uniform(300, 800, 2))
        f2[a:b] = np.interp(ramp, [0, 1], rng.uniform(900, 2300, 2))
        f3[a:b] = rng.uniform(2400, 3200)
        if rng.random() < 0.4:  # a fricative of 40-100 ms at the syllable onset
            m = min(b - a, int(rng.uniform(0.04, 0.1) * sr))
            fricative[a : a + m] = rng.uniform(0.1, 0.4)
    for f in (f1, f2, f3):  # hold formants through pauses, so the filters never see 0 Hz
        idx = np.flatnonzero(f)
        f[:] = np.interp(np.arange(n), idx, f[idx]) if idx.size else 500.0
    f0_base = rng.uniform(95, 230)
    f0 = f0_base * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6)) - 0.08 * t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = np.zeros(n)
    for k in range(1, int(6000 / f0_base)):
        fk = k * f0
        amp = sum(g / (1 + ((fk - fc) / bw) ** 2) for fc, bw, g in ((f1, 90, 1), (f2, 120, 0.5), (f3, 180, 0.25)))
        amp = (amp + 0.02) / k  # glottal source and radiation: -6 dB per octave
        voiced += np.where(fk < sr / 2 - 500, amp, 0) * np.sin(k * phase)
    # aspiration: voiced speech is never purely harmonic (harmonics-to-noise ratio ~20 dB), which fills the valleys
    breath = signal.sosfilt(signal.butter(2, 3000, "lowpass", fs=sr, output="sos"), rng.standard_normal(n))
    voiced += breath * 0.1 * float(np.sqrt(np.mean(voiced**2)) / max(np.sqrt(np.mean(breath**2)), 1e-12))
    hiss = signal.sosfilt(signal.butter(4, [2500, 7000], "bandpass", fs=sr, output="sos"), rng.standard_normal(n))
    env_s = np.convolve(env, np.ones(80) / 80, mode="same")  # 5 ms attack/decay
    x = voiced * env_s + 0.3 * hiss * np.convolve(fricative, np.ones(160) / 160, mode="same")
    x += 1e-4 * rng.standard_normal(n)  # room/microphone noise floor, -80 dBFS
    x *= 10 ** (-23 / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-9)
    return np.clip(x, -0.99, 0.99).astype(np.float32)
