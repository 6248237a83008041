"""Hallucination guards: keep the model from writing text where nobody speaks, and from looping.

Two failure modes of decoder ASR (Whisper's "thank you thank you" on silence is the famous one) are guarded here:

- **non-speech input** (:func:`speech_presence`): silence, stationary noise (white, pink, hum), steady tones and
  chords (music-like) and click trains are recognised from a few spectral statistics *before* any generation, so
  the model never sees them and the task returns its empty result;
- **repetition** (:func:`find_repetition`, :func:`is_repetitive`): an n-gram repeated back to back, or a text
  made mostly of repeated 3-grams, marks an output as a loop; the API then decodes again with the
  :data:`FALLBACKS` (beam search that may not repeat a 3-gram, then sampling at rising temperatures, as Whisper's
  temperature fallback does) and, when every decode loops, keeps the least repetitive one with its tandem
  repeats collapsed to one copy (:func:`collapse_repetition`).

The speech-presence check is written here by hand: the maintained speech/music/noise classifiers (inaSpeechSegmenter,
pyannote, Silero) need pretrained weights from a hub that cannot be reached, and a VAD such as WebRTC's
(:mod:`alm.vad`) answers "is there sound like speech in this 30 ms frame", which steady tones and loud noise
often pass. The check is conservative: it rejects only what is clearly not speech, since a rejected utterance is
lost while a garbled transcript of an odd sound is merely wrong.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz
FRAME = 512  # samples: 32 ms analysis frames (31.25 Hz bins)
HOP = 160  # samples: 10 ms between frames
BAND_EDGES_HZ = (100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000, 2320, 2700, 3150, 3700,
                 4400, 5300, 6400, 7700)  # 20 bands on the Bark scale (Zwicker), 100 Hz - 7.7 kHz


@dataclass(frozen=True)
class GuardConfig:
    """Thresholds of the hallucination guards (defaults measured on the synthetic corpus; see tests/test_guards.py).

    Attributes:
        enabled: run the guards at all (``False`` restores the unguarded behaviour).
        floor_dbfs: frames quieter than this hold no sound.
        active_range_db: frames more than this below the loudest (99th percentile) frame are background.
        min_active_s: less sound than this (seconds of active frames) is no utterance.
        max_crest_db: median peak-to-RMS ratio of active frames above this is impulsive (clicks, crackle).
        max_steady_fraction: share of consecutive active frames with (nearly) identical spectra above this is a
            steady tone, chord or hum; voices glide in pitch and formants from one 10 ms frame to the next.
        steady_similarity: cosine similarity of two magnitude spectra that counts as "identical".
        min_variation_db: median distance (dB, power-weighted over Bark bands) of a frame's spectrum from the
            clip's average spectrum below this is stationary noise.
        repeat_max_n: longest n-gram (words) whose back-to-back repetition is looked for.
        repeat_min_count: copies in a row that make a loop (single words need one more).
        min_unique_trigrams: a text of >= 12 words whose distinct 3-grams are fewer than this share is a loop.
    """

    enabled: bool = True
    floor_dbfs: float = -55.0
    active_range_db: float = 40.0
    min_active_s: float = 0.15
    max_crest_db: float = 18.0
    max_steady_fraction: float = 0.7
    steady_similarity: float = 0.995
    min_variation_db: float = 3.5
    repeat_max_n: int = 8
    repeat_min_count: int = 3
    min_unique_trigrams: float = 0.4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SpeechCheck:
    """What :func:`speech_presence` found.

    Attributes:
        is_speech: the clip may hold speech (``False`` only for clearly non-speech sound).
        reason: ``"speech"``, or why not: ``"silence"``, ``"too little sound"``, ``"clicks"``, ``"steady tone"``
            (tones, chords, hum), ``"stationary sound"`` (noise, beating chords).
        features: the measured statistics (``active_s``, ``crest_db``, ``steady_fraction``, ``variation_db``).
    """

    is_speech: bool
    reason: str
    features: dict[str, float]

    def __bool__(self) -> bool:
        return self.is_speech


def _frames(wav: np.ndarray) -> np.ndarray:
    """``[T]`` -> ``[N, FRAME]`` overlapping frames (a view; the tail shorter than a frame is dropped)."""
    if wav.size < FRAME:
        wav = np.pad(wav, (0, FRAME - wav.size))
    n = 1 + (wav.size - FRAME) // HOP
    return np.lib.stride_tricks.as_strided(wav, (n, FRAME), (wav.strides[0] * HOP, wav.strides[0]), writeable=False)


def speech_presence(wav: np.ndarray | torch.Tensor, config: GuardConfig | None = None) -> SpeechCheck:
    """Whether a 16 kHz clip may hold speech, or is clearly silence, noise, a steady tone or clicks.

    Args:
        wav: ``[T]`` float waveform in ``[-1, 1]`` at 16 kHz (a few seconds to a few tens of seconds).
        config: thresholds (default :class:`GuardConfig`).

    Returns:
        A :class:`SpeechCheck` (truthy when the clip may hold speech).
    """
    cfg = config or GuardConfig()
    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    feats: dict[str, float] = {}
    if x.size == 0 or not np.isfinite(x).all() or float(np.abs(x).max(initial=0.0)) < 10 ** (cfg.floor_dbfs / 20):
        return SpeechCheck(False, "silence", feats)
    frames = _frames(x)  # [N, FRAME]
    power = (frames ** 2).mean(axis=1) + 1e-12  # [N]
    level = 10 * np.log10(power)  # dBFS (a full-scale sine is -3)
    top = float(np.percentile(level, 99))
    active = level > max(cfg.floor_dbfs, top - cfg.active_range_db)  # [N]
    feats["active_s"] = float(active.sum() * HOP / SAMPLE_RATE)
    if feats["active_s"] < cfg.min_active_s:
        return SpeechCheck(False, "too little sound", feats)
    fa = frames[active]  # [A, FRAME]
    crest = 20 * np.log10(np.abs(fa).max(axis=1) / np.sqrt(power[active]) + 1e-12)  # [A] dB
    feats["crest_db"] = float(np.median(crest))

    mag = np.abs(np.fft.rfft(fa * np.hanning(FRAME), axis=1))  # [A, FRAME/2 + 1]
    # steadiness: consecutive active frames with the same spectrum (tones, chords, hum)
    pairs = active[1:] & active[:-1]  # [N-1] both frames active
    full = np.zeros((len(active), mag.shape[1]))
    full[active] = mag
    a, b = full[:-1][pairs], full[1:][pairs]
    sim = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    feats["steady_fraction"] = float((sim > cfg.steady_similarity).mean()) if len(sim) else 1.0

    # spectral variation: how far each frame's band levels stray from the clip's average, weighted by power
    freqs = np.fft.rfftfreq(FRAME, 1 / SAMPLE_RATE)
    band = np.digitize(freqs, BAND_EDGES_HZ) - 1  # bin -> band index (-1 / 20: outside)
    inside = (band >= 0) & (band < len(BAND_EDGES_HZ) - 1)
    bands = np.zeros((len(fa), len(BAND_EDGES_HZ) - 1))
    np.add.at(bands.T, band[inside], (mag[:, inside] ** 2).T)  # [A, 20] band power
    mean_power = bands.mean(axis=0)  # [20]
    weight = mean_power / (mean_power.sum() + 1e-30)
    dev = 10 * np.log10((bands + 1e-12) / (mean_power + 1e-12))  # [A, 20] dB from the average
    feats["variation_db"] = float(np.median(np.sqrt((weight * dev ** 2).sum(axis=1))))

    if feats["crest_db"] > cfg.max_crest_db:
        return SpeechCheck(False, "clicks", feats)
    if feats["steady_fraction"] > cfg.max_steady_fraction:
        return SpeechCheck(False, "steady tone", feats)
    if feats["variation_db"] < cfg.min_variation_db:
        return SpeechCheck(False, "stationary sound", feats)
    return SpeechCheck(True, "speech", feats)


# --- repetition ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Repetition:
    """A run of one n-gram repeated back to back: ``tokens[start : start + n * count]`` is ``count`` copies of
    ``tokens[start : start + n]``."""

    start: int
    n: int
    count: int


def find_repetition(tokens: list[Any], max_n: int = 8, min_count: int = 3) -> Repetition | None:
    """The longest back-to-back repetition of an n-gram (``n <= max_n``) with at least ``min_count`` copies
    (``min_count + 1`` for single tokens, so "no no no" passes), or ``None``.

    Args:
        tokens: words or ids ``[L]`` (anything comparable with ``==``).
    """
    best: Repetition | None = None
    size = len(tokens)
    for n in range(1, min(max_n, size // 2) + 1):
        need = min_count + (n == 1)
        i = 0
        while i + n * need <= size:
            count = 1
            while i + n * (count + 1) <= size and tokens[i + n * count: i + n * (count + 1)] == tokens[i: i + n]:
                count += 1
            if count >= need and (best is None or n * count > best.n * best.count):
                best = Repetition(i, n, count)
            i += max(1, n * (count - 1)) if count > 1 else 1
    return best


def unique_trigram_share(words: list[str]) -> float:
    """Distinct 3-grams / all 3-grams of ``words`` (1.0 when there are none)."""
    grams = [tuple(words[i: i + 3]) for i in range(len(words) - 2)]
    return len(set(grams)) / len(grams) if grams else 1.0


def is_repetitive(text: str, config: GuardConfig | None = None) -> bool:
    """Whether ``text`` loops: an n-gram repeated back to back, or (12 words or more) mostly repeated 3-grams."""
    cfg = config or GuardConfig()
    words = text.lower().split()
    if find_repetition(words, cfg.repeat_max_n, cfg.repeat_min_count) is not None:
        return True
    return len(words) >= 12 and unique_trigram_share(words) < cfg.min_unique_trigrams


def repetition_score(text: str, config: GuardConfig | None = None) -> float:
    """Share of the words of ``text`` inside its longest tandem repeat, beyond the first copy (0: none)."""
    cfg = config or GuardConfig()
    words = text.lower().split()
    rep = find_repetition(words, cfg.repeat_max_n, cfg.repeat_min_count)
    return 0.0 if rep is None else rep.n * (rep.count - 1) / len(words)


def collapse_repetition(text: str, config: GuardConfig | None = None) -> str:
    """``text`` with each back-to-back repeated n-gram kept once ("thank you thank you thank you" -> "thank you").

    The last resort when every fallback decode loops: the words are the model's, only the loop is cut.
    """
    cfg = config or GuardConfig()
    words = text.split()
    for _ in range(len(words)):  # each pass removes at least one word
        rep = find_repetition([w.lower() for w in words], cfg.repeat_max_n, cfg.repeat_min_count)
        if rep is None:
            break
        words = words[: rep.start + rep.n] + words[rep.start + rep.n * rep.count:]
    return " ".join(words)


# Decodes tried in turn when an output loops (GenerationOptions fields, plus extra GenerationConfig fields):
# beam search forbidden to repeat a 3-gram, then sampling at rising temperatures (Whisper's fallback ladder).
FALLBACKS: tuple[tuple[dict[str, Any], dict[str, Any]], ...] = (
    ({"strategy": "beam", "num_beams": 4}, {"no_repeat_ngram_size": 3}),
    ({"strategy": "sample", "temperature": 0.6}, {}),
    ({"strategy": "sample", "temperature": 1.0}, {}),
)
