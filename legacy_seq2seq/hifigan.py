"""HiFi-GAN (Kong et al. 2020): a GAN vocoder from the project's log-mel to a waveform.

The paper's diagram::

    mel [B, n_mels, F] -> conv7 -> K x (LeakyReLU, ConvTranspose1d x u_k, MRF) -> LeakyReLU, conv7, tanh
        -> wav [B, F * hop_length]            (prod(u_k) == hop_length, so mel frame f maps to hop samples)
    MRF (multi-receptive-field fusion) = mean of resblocks with kernels 3, 7, 11 and dilations 1, 3, 5
    MultiPeriodDiscriminator: periods 2, 3, 5, 7, 11, wav reshaped to [B, 1, T / p, p], 2-D convs (k x 1)
    MultiScaleDiscriminator: raw wav, x/2 and x/4 avg-pooled, grouped strided 1-D convs

Losses: least-squares GAN (:func:`discriminator_loss`, :func:`generator_adversarial_loss`), feature matching
(L1 between discriminator feature maps, weight 2) and mel L1 (weight 45) in :func:`generator_loss`. A run may
first train the generator alone on mel L1 plus :func:`multi_resolution_stft_loss` (Parallel WaveGAN's schedule,
``discriminator_train_start_steps``): far cheaper steps that make speech intelligible before the GAN refines it.
The mel of the loss is :class:`LogMel`, a differentiable torch twin of :func:`codec.features.log_mel` (same Slaney
filterbank, periodic Hann window, centred reflect-padded STFT, power, natural log with the same floor), so the
vocoder is trained on exactly the features Tacotron 2 / FastSpeech 2 predict. A segment of ``F * hop`` samples
has ``F + 1`` log-mel frames (``center=True``); train on the first ``F``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm
from transformers.audio_utils import mel_filter_bank

from codec.features import LOG_FLOOR, FeatureConfig
from legacy_seq2seq.checkpoint import load_model_dir, save_model_dir

SCHEMA_VERSION = 1
LRELU_SLOPE = 0.1
FEATURE_MATCHING_WEIGHT = 2.0  # lambda_fm of the paper
MEL_LOSS_WEIGHT = 45.0  # lambda_mel of the paper
MSD_KERNELS = (15, 41, 41, 41, 41, 41, 5)  # MelGAN's scale discriminator, as HiFi-GAN uses it
MSD_STRIDES = (1, 2, 2, 4, 4, 1, 1)
MSD_GROUPS = (1, 4, 16, 16, 16, 16, 1)


@dataclass(frozen=True)
class HiFiGANConfig:
    """Vocoder and discriminator sizes plus the log-mel parameters (:class:`codec.features.FeatureConfig` fields).

    Defaults: the paper's V1 generator with upsampling 5 x 4 x 4 x 2 = 160 = the project's 10 ms hop at 16 kHz.
    """

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    f_min: float = 0.0
    f_max: float | None = None
    floor: float = LOG_FLOOR
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2)
    upsample_kernel_sizes: tuple[int, ...] = (10, 8, 8, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    msd_channels: tuple[int, ...] = (128, 128, 256, 512, 1024, 1024, 1024)
    msd_scales: int = 3
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # JSON gives lists back; keep the frozen config hashable
        for name in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes", "mpd_periods",
                     "mpd_channels", "msd_channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "resblock_dilations", tuple(tuple(d) for d in self.resblock_dilations))
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"HiFiGANConfig schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        self.features  # noqa: B018 - validates the mel parameters
        if math.prod(self.upsample_rates) != self.hop_length:
            raise ValueError(f"upsample_rates {self.upsample_rates} multiply to {math.prod(self.upsample_rates)}, "
                             f"not hop_length={self.hop_length}: mel frames would not map to samples")
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates) or any(
                k < u for k, u in zip(self.upsample_kernel_sizes, self.upsample_rates)):
            raise ValueError("need one upsample kernel per rate, each kernel >= its rate")
        if len(self.resblock_dilations) != len(self.resblock_kernel_sizes):
            raise ValueError("need one dilation tuple per resblock kernel size")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("upsample_initial_channel must halve cleanly at every upsampling stage")
        if len(self.msd_channels) != len(MSD_KERNELS):
            raise ValueError(f"msd_channels needs {len(MSD_KERNELS)} entries, got {len(self.msd_channels)}")

    @property
    def features(self) -> FeatureConfig:
        """The log-mel parameters as the project's :class:`codec.features.FeatureConfig`."""
        return FeatureConfig(self.sample_rate, self.n_mels, self.n_fft, self.hop_length, self.f_min, self.f_max,
                             self.floor)


def hifigan_v1() -> HiFiGANConfig:
    """The paper's V1 generator (about 13 M parameters) at the project's 16 kHz / 10 ms features."""
    return HiFiGANConfig()


def hifigan_cpu() -> HiFiGANConfig:
    """A small preset for CPU training and synthesis (about 0.15 M generator parameters, V3-style dilations)."""
    return HiFiGANConfig(upsample_initial_channel=64, resblock_kernel_sizes=(3, 5, 7),
                         resblock_dilations=((1, 2), (2, 6), (3, 12)), mpd_channels=(16, 32, 64, 128, 128),
                         msd_channels=(16, 32, 64, 128, 128, 128, 128))


class LogMel(nn.Module):
    """Differentiable ``[B, T]`` waveform -> ``[B, n_mels, F]`` log-mel, numerically :func:`codec.features.log_mel`."""

    def __init__(self, features: FeatureConfig):
        super().__init__()
        self.features = features
        filters = mel_filter_bank(num_frequency_bins=features.n_freqs, num_mel_filters=features.n_mels,
                                  min_frequency=features.f_min, max_frequency=features.mel_f_max,
                                  sampling_rate=features.sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("filters", torch.as_tensor(filters, dtype=torch.float32).T.contiguous(),
                             persistent=False)  # [n_mels, n_freqs]
        self.register_buffer("window", torch.hann_window(features.n_fft, periodic=True), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        f = self.features
        spec = torch.stft(wav.float(), f.n_fft, f.hop_length, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)  # [B, n_freqs, F]
        power = spec.real ** 2 + spec.imag ** 2  # not abs() ** 2: finite gradient at zero
        return torch.log(torch.matmul(self.filters, power).clamp_min(f.floor))


def _init_wn(conv: nn.Module) -> nn.Module:
    """The paper's init, N(0, 0.01) weights, then weight normalisation (the gain starts at that norm)."""
    nn.init.normal_(conv.weight, 0.0, 0.01)
    return weight_norm(conv)


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock(nn.Module):
    """HiFi-GAN ResBlock1: per dilation, LReLU -> dilated conv -> LReLU -> conv, residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(_init_wn(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                                       padding=_padding(kernel_size, d))) for d in dilations)
        self.convs2 = nn.ModuleList(_init_wn(nn.Conv1d(channels, channels, kernel_size,
                                                       padding=_padding(kernel_size))) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """Log-mel ``[B, n_mels, F]`` (channels first, as :func:`codec.features.log_mel`) -> waveform ``[B, F * hop]``."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        self.config = c = config
        C = c.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(c.n_mels, C, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes)):
            pad = math.ceil((k - u) / 2)  # output length (F - 1) u - 2 pad + k + out_pad == F u exactly
            self.ups.append(_init_wn(nn.ConvTranspose1d(C >> i, C >> (i + 1), k, u, padding=pad,
                                                        output_padding=2 * pad - (k - u))))
            for ks, ds in zip(c.resblock_kernel_sizes, c.resblock_dilations):
                self.resblocks.append(ResBlock(C >> (i + 1), ks, ds))
        self.conv_post = weight_norm(nn.Conv1d(C >> len(c.upsample_rates), 1, 7, padding=3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [B, n_mels, F]`` -> ``wav [B, F * hop_length]`` in ``[-1, 1]``."""
        x = self.conv_pre(mel)
        n = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(block(x) for block in self.resblocks[i * n:(i + 1) * n]) / n  # MRF
        return torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(1)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (atomic)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> HiFiGANGenerator:
        """Rebuild a generator saved with :meth:`save_pretrained` (eval mode); raises ``CheckpointError``."""
        return load_model_dir(directory, cls, HiFiGANConfig, device)


DiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]  # (logits [B, N_k], feature maps)


class PeriodDiscriminator(nn.Module):
    """Judges samples ``p`` apart: ``[B, T]`` -> ``[B, 1, ceil(T / p), p]`` -> strided (5 x 1) 2-D convs."""

    def __init__(self, period: int, channels: tuple[int, ...]):
        super().__init__()
        self.period = period
        dims = (1, *channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), (3 if i < len(channels) - 1 else 1, 1), padding=(2, 0)))
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])))
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = wav[:, None]
        if wav.shape[-1] % self.period:
            x = F.pad(x, (0, self.period - wav.shape[-1] % self.period), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class ScaleDiscriminator(nn.Module):
    """MelGAN scale discriminator: grouped strided 1-D convs over a (pooled) waveform ``[B, T]``."""

    def __init__(self, channels: tuple[int, ...], use_spectral_norm: bool = False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        dims = (1, *channels)
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(a, b, k, s, groups=math.gcd(g, a, b), padding=k // 2))
            for a, b, k, s, g in zip(dims[:-1], dims[1:], MSD_KERNELS, MSD_STRIDES, MSD_GROUPS))
        self.conv_post = norm(nn.Conv1d(channels[-1], 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = wav[:, None]
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period in ``config.mpd_periods``."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, config.mpd_channels) for p in config.mpd_periods)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """``wav [B, T]`` -> (one logits ``[B, N_k]`` per period, one list of feature maps per period)."""
        outs = [d(wav) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class MultiScaleDiscriminator(nn.Module):
    """``config.msd_scales`` :class:`ScaleDiscriminator` s on the waveform avg-pooled by 1, 2, 4, ...;
    the first uses spectral norm (as in the paper)."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        self.discriminators = nn.ModuleList(ScaleDiscriminator(config.msd_channels, use_spectral_norm=i == 0)
                                            for i in range(config.msd_scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """``wav [B, T]`` -> (one logits ``[B, N_k]`` per scale, one list of feature maps per scale)."""
        logits, fmaps = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                wav = self.pool(wav[:, None]).squeeze(1)
            y, f = d(wav)
            logits.append(y)
            fmaps.append(f)
        return logits, fmaps


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN: ``sum_k mean((1 - D_k(y))^2) + mean(D_k(G(s))^2)``."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(g ** 2) for r, g in zip(real_logits, fake_logits))


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN: ``sum_k mean((1 - D_k(G(s)))^2)``."""
    return sum(torch.mean((1 - g) ** 2) for g in fake_logits)


def feature_matching_loss(real_fmaps: list[list[torch.Tensor]], fake_fmaps: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over discriminators and layers of the mean L1 between real (detached) and generated feature maps."""
    return sum(torch.mean(torch.abs(r.detach() - g)) for rs, gs in zip(real_fmaps, fake_fmaps) for r, g in zip(rs, gs))


STFT_RESOLUTIONS = ((1024, 256, 1024), (512, 128, 512), (256, 64, 256))  # (n_fft, hop, window) at 16 kHz


def multi_resolution_stft_loss(fake: torch.Tensor, real: torch.Tensor,
                               resolutions: tuple[tuple[int, int, int], ...] = STFT_RESOLUTIONS) -> torch.Tensor:
    """Parallel WaveGAN's multi-resolution STFT loss (Yamamoto et al. 2020), written here because it is a few lines
    of ``torch.stft``: per resolution, spectral convergence ``||S - S'||_F / ||S||_F`` plus the mean L1 of the log
    magnitudes, averaged over the resolutions.

    Args:
        fake: ``[B, S]`` generated waveform.
        real: ``[B, S]`` reference waveform.

    Returns:
        Scalar loss (0 when ``fake == real``).
    """
    total = fake.new_zeros(())
    for n_fft, hop, win in resolutions:
        window = torch.hann_window(win, device=fake.device)
        mags = [torch.stft(x.float(), n_fft, hop, win, window=window, return_complex=True).abs().clamp_min(1e-7)
                for x in (fake, real)]
        convergence = torch.linalg.norm(mags[1] - mags[0]) / torch.linalg.norm(mags[1]).clamp_min(1e-7)
        total = total + convergence + F.l1_loss(torch.log(mags[0]), torch.log(mags[1]))
    return total / len(resolutions)


@dataclass
class GeneratorLoss:
    """The generator's objective and its unweighted terms (all scalars)."""

    adversarial: torch.Tensor
    feature_matching: torch.Tensor
    mel: torch.Tensor  # L1 between log-mels
    total: torch.Tensor  # adversarial + 2 * feature_matching + 45 * mel


def generator_loss(fake_logits: list[torch.Tensor], real_fmaps: list[list[torch.Tensor]],
                   fake_fmaps: list[list[torch.Tensor]], mel_fake: torch.Tensor,
                   mel_real: torch.Tensor) -> GeneratorLoss:
    """Combine the generator losses with the paper's weights.

    Args:
        fake_logits: all discriminators' logits on the generated waveform (MPD + MSD lists concatenated).
        real_fmaps: their feature maps on the real waveform.
        fake_fmaps: their feature maps on the generated waveform.
        mel_fake: ``[B, n_mels, F]`` :class:`LogMel` of the generated waveform.
        mel_real: ``[B, n_mels, F]`` :class:`LogMel` of the real waveform.

    Returns:
        :class:`GeneratorLoss`.
    """
    adv = generator_adversarial_loss(fake_logits)
    fm = feature_matching_loss(real_fmaps, fake_fmaps)
    mel = F.l1_loss(mel_fake, mel_real)
    return GeneratorLoss(adv, fm, mel, adv + FEATURE_MATCHING_WEIGHT * fm + MEL_LOSS_WEIGHT * mel)


__all__ = ["FEATURE_MATCHING_WEIGHT", "MEL_LOSS_WEIGHT", "GeneratorLoss", "HiFiGANConfig", "HiFiGANGenerator",
           "LogMel", "MultiPeriodDiscriminator", "MultiScaleDiscriminator", "discriminator_loss",
           "feature_matching_loss", "generator_adversarial_loss", "generator_loss", "hifigan_cpu", "hifigan_v1",
           "multi_resolution_stft_loss"]
