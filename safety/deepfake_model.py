"""The spoofing countermeasure's network: an LFCC front end and a light CNN (LCNN) with max-feature-map units.

The recipe is the LFCC-LCNN baseline of ASVspoof 2019/2021 (Wang & Yamagishi, "A comparative study on recent neural
spoofing countermeasures for synthetic speech detection", Interspeech 2021; Lavrentyeva et al., "STC antispoofing
systems for the ASVspoof2019 challenge"), made small enough to train on a CPU in a few minutes:

- :class:`LFCC`: pre-emphasis, a 20 ms Hann window every 10 ms, the power spectrum (512-point FFT), a bank of
  ``n_filters`` triangular filters spaced *linearly* from 0 Hz to Nyquist (the high band, where vocoders and codecs
  leave their traces, keeps the same resolution as the low band, unlike a mel bank), the log, a DCT-II keeping
  ``n_lfcc`` coefficients, then deltas and delta-deltas: ``[B, T] -> [B, D, F]`` with ``D = n_lfcc * (1 + deltas)``.
- :class:`LCNN`: global feature standardization (mean and standard deviation measured on the training clips, saved
  with the weights), a 5x5 convolution, then blocks of (1x1 conv, MFM, batch norm, 3x3 conv, MFM, 2x2 max pool,
  batch norm); the frequency axis is folded into the channels and the time axis pooled to its mean and standard
  deviation, so any crop length gives one logit per clip: ``[B, D, F] -> [B]`` (positive: generated).

Written here with torch because torchaudio (whose ``LFCC`` transform would do the front end) cannot be installed
next to this torch build (see NOTES-deps); the delta regression is ``torchaudio.functional.compute_deltas``'s formula.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from scipy.fft import dct
from torch import nn

SCHEMA_VERSION = 1
SAMPLE_RATE = 16000  # Hz
LOG_FLOOR = 1e-8  # floor of the filterbank power before the log (-80 dB relative to a full-scale sine's bin)
DELTA_WIDTH = 2  # the delta regression looks 2 frames either side (HTK's default)


@dataclass(frozen=True)
class DeepfakeConfig:
    """Front end, network and scoring windows of a detector; saved with its weights as ``config.json``.

    Attributes:
        sample_rate: Hz of the audio the front end reads (other rates are resampled to it).
        n_fft, win_length, hop_length: STFT size, window and hop in samples (512 / 320 = 20 ms / 160 = 10 ms).
        n_filters: linear-frequency triangular filters from 0 Hz to Nyquist.
        n_lfcc: cepstral coefficients kept after the DCT (including c0).
        deltas: 0, 1 or 2: how many orders of time derivatives are appended.
        pre_emphasis: first-order high-pass coefficient (0 disables it).
        channels: output channels of the first convolution and of each LCNN block after it (after MFM).
        hidden: units of the embedding layer (after MFM).
        dropout: before the embedding and the output layer (training only).
        crop_seconds: length of the training crops and of the scoring windows.
        window_hop_seconds: hop between scoring windows of a long clip (their scores are averaged).
        trim_db: leading and trailing audio more than this many dB below the loudest 20 ms is cut before the front
            end (0: no trimming), so that the length of silence, which differs between corpora and generators, is
            no cue.
        target_dbfs: every clip is scaled to this RMS level after trimming, so that loudness is no cue either.
        schema_version: layout version of this config (bumped when a field changes meaning).
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 320
    hop_length: int = 160
    n_filters: int = 40
    n_lfcc: int = 20
    deltas: int = 2
    pre_emphasis: float = 0.97
    channels: tuple[int, ...] = (16, 24, 32, 32)
    hidden: int = 64
    dropout: float = 0.3
    crop_seconds: float = 1.0
    window_hop_seconds: float = 0.5
    trim_db: float = 40.0
    target_dbfs: float = -25.0
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        problems = []
        if not 0 < self.win_length <= self.n_fft:
            problems.append(f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}")
        if self.hop_length <= 0:
            problems.append(f"hop_length must be positive, got {self.hop_length}")
        if not 2 <= self.n_filters <= self.n_fft // 2:
            problems.append(f"n_filters must be in [2, {self.n_fft // 2}], got {self.n_filters}")
        if not 1 <= self.n_lfcc <= self.n_filters:
            problems.append(f"n_lfcc must be in [1, n_filters={self.n_filters}], got {self.n_lfcc}")
        if self.deltas not in (0, 1, 2):
            problems.append(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if not self.channels or min(self.channels) < 1:
            problems.append(f"channels must be positive, got {self.channels}")
        if self.n_features >> len(self.channels) < 1:
            problems.append(f"{len(self.channels)} pooling stages leave nothing of {self.n_features} features")
        if self.crop_frames >> len(self.channels) < 2:
            problems.append(f"crop_seconds={self.crop_seconds} is too short for {len(self.channels)} pooling stages")
        if not self.window_hop_seconds > 0:
            problems.append(f"window_hop_seconds must be positive, got {self.window_hop_seconds}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.schema_version != SCHEMA_VERSION:
            problems.append(f"schema_version {self.schema_version} is not the supported {SCHEMA_VERSION}")
        if problems:
            raise ValueError("invalid DeepfakeConfig: " + "; ".join(problems))

    @property
    def n_features(self) -> int:
        """D, the feature dimension: ``n_lfcc`` static coefficients plus their deltas."""
        return self.n_lfcc * (1 + self.deltas)

    @property
    def crop_frames(self) -> int:
        """Feature frames per training crop / scoring window (100 for 1 s at a 10 ms hop)."""
        return round(self.crop_seconds * self.sample_rate / self.hop_length)

    @property
    def window_hop_frames(self) -> int:
        return max(1, round(self.window_hop_seconds * self.sample_rate / self.hop_length))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeepfakeConfig:
        """Rebuild from :meth:`to_dict`'s output; unknown keys are an error (a newer or foreign file)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DeepfakeConfig field(s) {unknown}")
        return cls(**d)


def linear_filterbank(n_filters: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """``[n_filters, n_fft // 2 + 1]`` triangular filters with centres equally spaced in Hz over (0, Nyquist)."""
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # [K] bin frequencies
    edges = torch.linspace(0, sample_rate / 2, n_filters + 2, dtype=torch.float64)  # [n_filters + 2]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [n_filters, 1] each
    rising = (bins - lo) / (mid - lo)
    falling = (hi - bins) / (hi - mid)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


def compute_deltas(x: torch.Tensor, width: int = DELTA_WIDTH) -> torch.Tensor:
    """Regression deltas along the last axis, edges replicated: ``d_t = sum_n n (x_{t+n} - x_{t-n}) / (2 sum_n n^2)``.

    Args:
        x: ``[..., F]``.

    Returns:
        ``[..., F]``.
    """
    frames = x.shape[-1]
    padded = torch.cat([x[..., :1].expand(*x.shape[:-1], width), x, x[..., -1:].expand(*x.shape[:-1], width)], -1)
    num = sum(n * (padded[..., width + n: width + n + frames] - padded[..., width - n: width - n + frames])
              for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


class LFCC(nn.Module):
    """Linear-frequency cepstral coefficients with deltas: ``[B, T]`` waveform -> ``[B, D, 1 + T // hop]``."""

    def __init__(self, config: DeepfakeConfig) -> None:
        super().__init__()
        self.config = config
        # Derived from the config, so not saved with the weights (persistent=False).
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        self.register_buffer("filterbank", linear_filterbank(config.n_filters, config.n_fft, config.sample_rate),
                             persistent=False)
        dct_matrix = dct(np.eye(config.n_filters), type=2, norm="ortho", axis=0)[: config.n_lfcc]  # [n_lfcc, n_filt]
        self.register_buffer("dct", torch.from_numpy(dct_matrix).float(), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav`` ``[B, T]`` float32 at ``config.sample_rate`` -> ``[B, D, F]`` with ``F = 1 + T // hop_length``."""
        c = self.config
        if c.pre_emphasis:
            wav = torch.cat([wav[:, :1], wav[:, 1:] - c.pre_emphasis * wav[:, :-1]], dim=1)
        spec = torch.stft(wav, c.n_fft, c.hop_length, c.win_length, self.window, center=True, pad_mode="constant",
                          return_complex=True)  # [B, K, F]
        power = spec.real**2 + spec.imag**2
        logfb = torch.log(torch.einsum("nk,bkf->bnf", self.filterbank, power).clamp_min(LOG_FLOOR))  # [B, n_filt, F]
        ceps = torch.einsum("cn,bnf->bcf", self.dct, logfb)  # [B, n_lfcc, F]
        feats = [ceps]
        for _ in range(c.deltas):
            feats.append(compute_deltas(feats[-1]))
        return torch.cat(feats, dim=1)


class MaxFeatureMap(nn.Module):
    """Max-feature-map activation: split the channels in two halves and keep the element-wise maximum
    (``[B, 2C, ...] -> [B, C, ...]``); LCNN's competitive alternative to ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        # max(a, b) written as a + relu(b - a): the same values, and a backward pass several times faster on a CPU
        # than torch.maximum's (whose gradient goes through masked fills).
        return a + torch.relu(b - a)


def _conv_mfm(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, 2 * c_out, kernel, padding=kernel // 2), MaxFeatureMap())


class LCNN(nn.Module):
    """The light CNN: features ``[B, D, F]`` -> logits ``[B]`` (positive means generated).

    Buffers ``feature_mean`` / ``feature_std`` ``[D]`` standardize the input; the trainer sets them from the training
    clips (``set_feature_stats``) and they are saved with the weights.
    """

    def __init__(self, config: DeepfakeConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = LFCC(config)
        self.register_buffer("feature_mean", torch.zeros(config.n_features))
        self.register_buffer("feature_std", torch.ones(config.n_features))
        ch = config.channels
        layers: list[nn.Module] = [_conv_mfm(1, ch[0], 5), nn.MaxPool2d(2)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [_conv_mfm(c_in, c_in, 1), nn.BatchNorm2d(c_in), _conv_mfm(c_in, c_out, 3), nn.MaxPool2d(2),
                       nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        folded = ch[-1] * (config.n_features >> len(ch))  # channels x remaining frequency rows
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * folded, 2 * config.hidden), MaxFeatureMap(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, 1))

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the input standardization (``[D]`` each; ``std`` is floored at 1e-3)."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-3))

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` waveform -> ``[B, D, F]`` LFCCs (not standardized: :meth:`forward` does that)."""
        return self.frontend(wav)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats`` ``[B, D, F]`` (``F >= 2 ** len(channels) * 2``) -> logits ``[B]``."""
        x = (feats - self.feature_mean[:, None]) / self.feature_std[:, None]
        x = self.body(x[:, None])  # [B, C, D', F']
        x = x.flatten(1, 2)  # [B, C * D', F']
        pooled = torch.cat([x.mean(-1), x.std(-1, unbiased=False)], dim=1)  # [B, 2 C D']
        return self.head(pooled).squeeze(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

