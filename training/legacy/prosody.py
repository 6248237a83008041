"""FastSpeech 2's variance targets: frame pitch, frame energy, and symbol durations from Tacotron 2 alignments.

* Pitch: a plain **autocorrelation F0 estimator written here with numpy** (no pitch tracker is installed: no
  torchaudio, librosa, pyworld or parselmouth). Per 40 ms Hann-windowed frame centred on each log-mel frame, the
  autocorrelation is computed by FFT and divided by the window's own autocorrelation (Boersma 1993); between
  lags 1/400 s and 1/60 s the shortest-lag peak within 90% of the best one gives F0 (against octave errors),
  voiced when that normalized peak passes 0.45 and the frame is not near-silent. Log-F0 is interpolated over
  unvoiced frames and z-scored per utterance.
* Energy: the log of the frame's total mel power (from the cached log-mel), z-scored per utterance.
* Durations: frames per symbol from a trained Tacotron 2's teacher-forced attention on the utterance
  (:func:`legacy_seq2seq.fastspeech2.durations_from_alignment`, times the reduction factor), trimmed from the end
  so they sum to the utterance's frame count exactly.

Both z-scores are clipped to ``[-4, 4]``, the span of FastSpeech 2's default quantization bins.
"""

from __future__ import annotations

import numpy as np
import torch

from legacy_seq2seq.fastspeech2 import durations_from_alignment
from legacy_seq2seq.tacotron2 import Tacotron2

F0_MIN, F0_MAX = 60.0, 400.0  # Hz: the search range of the lag
WINDOW_S = 0.04  # analysis window: two periods of the lowest F0 fit in it
VOICING_THRESHOLD = 0.45  # normalized autocorrelation peak above which a frame counts as voiced
OCTAVE_TOLERANCE = 0.9  # a shorter lag within this fraction of the best peak is preferred (no subharmonics)
SILENCE_RATIO = 0.03  # frames whose RMS is below this fraction of the utterance's loudest are unvoiced
Z_CLIP = 4.0


def f0_autocorrelation(wav: np.ndarray, sample_rate: int, hop_length: int, n_frames: int) -> np.ndarray:
    """F0 in Hz per frame (0 where unvoiced), frame ``f`` centred on sample ``f * hop_length``.

    Args:
        wav: ``[T]`` float waveform.
        sample_rate: its rate.
        hop_length: samples between frames (the log-mel's).
        n_frames: frames wanted (the log-mel's ``F``).

    Returns:
        ``[n_frames]`` float32.
    """
    width = int(WINDOW_S * sample_rate)
    x = np.pad(np.asarray(wav, dtype=np.float64), (width // 2, width // 2 + hop_length))
    x = np.pad(x, (0, max(0, (n_frames - 1) * hop_length + width - len(x))))
    frames = x[np.arange(n_frames)[:, None] * hop_length + np.arange(width)[None]]  # [F, W]
    rms = np.sqrt((frames ** 2).mean(1))
    window = np.hanning(width)
    frames = (frames - frames.mean(1, keepdims=True)) * window
    n_fft = 1 << (2 * width - 1).bit_length()  # no circular wrap-around
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, n_fft)) ** 2, n_fft)[:, :width]
    wac = np.fft.irfft(np.abs(np.fft.rfft(window, n_fft)) ** 2, n_fft)[:width]
    lo, hi = int(sample_rate / F0_MAX), min(int(sample_rate / F0_MIN), width // 2)
    r = ac[:, lo:hi + 1] / np.maximum(ac[:, :1], 1e-12) / (wac[lo:hi + 1] / wac[0])[None]
    # octave errors: the shortest lag whose peak is within OCTAVE_TOLERANCE of the best one wins
    good = r >= OCTAVE_TOLERANCE * r.max(1, keepdims=True)
    best = good.argmax(1)
    while True:  # climb from the first good lag to the top of its peak
        nxt = np.minimum(best + 1, r.shape[1] - 1)
        up = r[np.arange(n_frames), nxt] > r[np.arange(n_frames), best]
        if not up.any():
            break
        best = np.where(up, nxt, best)
    peak = r[np.arange(n_frames), best]
    voiced = (peak > VOICING_THRESHOLD) & (rms > SILENCE_RATIO * max(float(rms.max()), 1e-8))
    return np.where(voiced, sample_rate / (lo + best), 0.0).astype(np.float32)


def _zscore(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    z = (x - x.mean()) / std if std > 1e-6 else np.zeros_like(x)
    return np.clip(z, -Z_CLIP, Z_CLIP).astype(np.float32)


def pitch_target(wav: np.ndarray, sample_rate: int, hop_length: int, n_frames: int) -> np.ndarray:
    """Per-utterance z-scored log-F0 ``[n_frames]``, unvoiced frames linearly interpolated (all 0 if none voiced)."""
    f0 = f0_autocorrelation(wav, sample_rate, hop_length, n_frames)
    voiced = np.flatnonzero(f0 > 0)
    if len(voiced) < 2:
        return np.zeros(n_frames, dtype=np.float32)
    log_f0 = np.interp(np.arange(n_frames), voiced, np.log(f0[voiced]))
    return _zscore(log_f0)


def energy_target(log_mel: np.ndarray) -> np.ndarray:
    """Per-utterance z-scored log of each frame's total mel power: ``log_mel [F, n_mels]`` -> ``[F]``."""
    lm = np.asarray(log_mel, dtype=np.float64)
    peak = lm.max(1, keepdims=True)
    return _zscore(peak[:, 0] + np.log(np.exp(lm - peak).sum(1)))  # log-sum-exp


def fit_durations(durations: torch.Tensor, frames: int) -> torch.Tensor:
    """Trim ``durations [L]`` from the last symbols back so they sum to ``frames`` (they may not sum to less)."""
    d = durations.clone().long()
    excess = int(d.sum()) - frames
    if excess < 0:
        raise ValueError(f"durations sum to {int(d.sum())} < {frames} frames")
    for i in range(len(d) - 1, -1, -1):
        if excess == 0:
            break
        take = min(excess, int(d[i]))
        d[i] -= take
        excess -= take
    return d


@torch.no_grad()
def tacotron_durations(model: Tacotron2, text_ids: list[int], mel: np.ndarray) -> np.ndarray:
    """Mel frames per symbol from ``model``'s teacher-forced attention on one utterance.

    Args:
        model: a trained Tacotron 2 (eval mode; its prenet dropout stays on, so seed the call for repeatability).
        text_ids: the utterance's symbol ids in the model's vocabulary.
        mel: its log-mel ``[F, n_mels]``.

    Returns:
        ``[L]`` int64 durations summing to ``F``.
    """
    device = next(model.parameters()).device
    ids = torch.tensor([text_ids], device=device)
    mels = torch.tensor(np.array(mel, dtype=np.float32), device=device)[None]
    frames = mels.shape[1]
    out = model(ids, torch.tensor([len(text_ids)], device=device), mels, torch.tensor([frames], device=device))
    d = durations_from_alignment(out.alignments[0].float().cpu()) * model.config.reduction_factor
    return fit_durations(d, frames).numpy()
