"""Losses for training the neural codec: multi-scale mel reconstruction, and the adversarial stage's
multi-scale STFT discriminator with hinge and feature-matching losses (as in EnCodec).

The discriminator is written here because encodec's ``msstftd`` needs torchaudio for its spectrogram, which
cannot be installed beside our torch (README, dependencies); ``torch.stft`` does the same job.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.audio_utils import mel_filter_bank


class MultiScaleMelLoss(nn.Module):
    """Mean over STFT sizes 2^i (i in ``scales``) of a mel reconstruction loss: ``"encodec"``, L1 on mel power
    plus L2 on log mel (EnCodec's); or ``"log_l1"``, L1 on log mel magnitude (HiFi-GAN's, DAC's). Inputs
    ``[B, T]``; returns a scalar."""

    def __init__(self, sample_rate: int = 16000, scales: tuple[int, ...] = (6, 7, 8, 9, 10, 11), n_mels: int = 64,
                 kind: str = "encodec"):
        super().__init__()
        if kind not in ("encodec", "log_l1"):
            raise ValueError(f"mel loss kind must be 'encodec' or 'log_l1', got {kind!r}")
        self.scales, self.kind = scales, kind
        for i in scales:
            n_fft = 2**i
            mels = min(n_mels, n_fft // 4)
            fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=mels, min_frequency=0.0,
                                 max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney",
                                 mel_scale="slaney")
            self.register_buffer(f"fb{i}", torch.tensor(fb.T, dtype=torch.float32), persistent=False)
            self.register_buffer(f"win{i}", torch.hann_window(n_fft), persistent=False)

    def mel(self, x: torch.Tensor, i: int) -> torch.Tensor:
        n_fft = 2**i
        spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=getattr(self, f"win{i}"), return_complex=True)
        return getattr(self, f"fb{i}") @ spec.abs().pow(2)  # [B, mels, frames]

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = y.new_zeros(())
        for i in self.scales:
            m_hat, m = self.mel(y_hat, i), self.mel(y, i)
            if self.kind == "log_l1":  # HiFi-GAN/DAC style: L1 on log mel magnitude
                loss = loss + F.l1_loss(torch.log(m_hat.clamp(min=1e-10)) / 2, torch.log(m.clamp(min=1e-10)) / 2)
            else:
                loss = loss + F.l1_loss(m_hat, m) + F.mse_loss(torch.log(m_hat + 1e-5), torch.log(m + 1e-5)).sqrt()
        return loss / len(self.scales)


def mel_distance(y_hat: torch.Tensor, y: torch.Tensor, loss: MultiScaleMelLoss | None = None) -> float:
    """Mean absolute log-mel difference at n_fft 1024 (a quality figure for validation and benchmarks)."""
    loss = loss or MultiScaleMelLoss(scales=(10,))
    m_hat, m = loss.mel(y_hat, 10), loss.mel(y, 10)
    return float((torch.log(m_hat + 1e-5) - torch.log(m + 1e-5)).abs().mean())


class _STFTDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int = 16):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        wn = nn.utils.parametrizations.weight_norm
        self.convs = nn.ModuleList([
            wn(nn.Conv2d(2, channels, (3, 9), padding=(1, 4))),
            wn(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(1, 1), padding=(1, 4))),
            wn(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(2, 1), padding=(2, 4))),
            wn(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(4, 1), padding=(4, 4))),
            wn(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.out = wn(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x, self.n_fft, hop_length=self.n_fft // 4, window=self.window, return_complex=True)
        h = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, freq]
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    """Discriminators on complex STFTs at several resolutions. ``forward(x [B, T])`` returns a list of
    ``(logits, feature maps)`` per scale."""

    def __init__(self, n_ffts: tuple[int, ...] = (1024, 512, 256), channels: int = 16):
        super().__init__()
        self.discs = nn.ModuleList([_STFTDiscriminator(n, channels) for n in n_ffts])

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x) for d in self.discs]


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Hinge loss for the discriminator (``fake`` computed on detached generator output)."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """``(adversarial hinge loss, feature-matching loss)`` for the generator."""
    adv = sum(F.relu(1 - f).mean() for f, _ in fake) / len(fake)
    fm = fake[0][0].new_zeros(())
    n = 0
    for (_, feats_r), (_, feats_f) in zip(real, fake):
        for a, b in zip(feats_r, feats_f):
            fm = fm + F.l1_loss(b, a.detach()) / (a.detach().abs().mean() + 1e-5)
            n += 1
    return adv, fm / max(n, 1)
