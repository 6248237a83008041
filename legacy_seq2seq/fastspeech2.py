"""FastSpeech 2 (Ren et al. 2021): non-autoregressive symbol ids -> log-mel with explicit duration, pitch, energy.

The paper's diagram, bottom to top::

    text_ids [B, L] -> embedding + positions -> N x FFT block (self-attention, conv1d FFN)      h [B, L, D]
    variance adaptor:
        duration predictor(h) -> log(1 + d) [B, L]
        length regulator: repeat symbol l d_l times                                               x [B, T, D]
        pitch predictor(x) [B, T];  x += pitch embedding(bucket(pitch))       (frame level)
        energy predictor(x) [B, T]; x += energy embedding(bucket(energy))     (frame level)
    x + positions -> N x FFT block -> Linear -> mel [B, T, n_mels]

Pitch and energy are **frame-level** (one value per mel frame, the paper's choice), in whatever normalised unit
the data pipeline writes (we suggest per-speaker z-scores of log-F0 with unvoiced frames interpolated, and of
frame energy); ``pitch_min..pitch_max`` and ``energy_min..energy_max`` span the ``n_bins`` uniform quantisation
buckets whose embeddings are added to the hidden sequence. Training is teacher-forced with ground-truth
durations (integer frames per symbol, ``T = sum(d)``; see :func:`durations_from_alignment`), pitch and energy;
inference uses the predictions, with ``speed`` (durations divided by it) and ``pitch_shift`` (added to the
predicted pitch, in the pitch unit) controls. Loss = mel L1 + duration MSE (on ``log(1 + d)``) + pitch MSE +
energy MSE. A multi-speaker model (``speakers`` in the config) adds a learned voice embedding to the encoder
output, before the variance adaptor (:class:`legacy_seq2seq.speakers.SpeakerTable`); ``speaker_ids [B]`` pick the
voices (default: speaker 0).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from legacy_seq2seq.checkpoint import load_model_dir, save_model_dir
from legacy_seq2seq.speakers import SpeakerTable, check_speakers

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FastSpeech2Config:
    """FastSpeech 2 hyper-parameters (defaults: the paper's sizes); saved as ``config.json`` with the weights."""

    vocab_size: int  # symbol ids in [0, vocab_size); 0 is padding
    n_mels: int = 80
    hidden_dim: int = 256
    encoder_layers: int = 4
    decoder_layers: int = 4
    n_heads: int = 2
    ffn_dim: int = 1024
    ffn_kernel_size: int = 9  # first conv of the FFN; the second is kernel 1
    dropout: float = 0.2
    variance_dim: int = 256
    variance_kernel_size: int = 3
    variance_dropout: float = 0.5
    n_bins: int = 256  # quantisation buckets of pitch and energy
    pitch_min: float = -4.0
    pitch_max: float = 4.0
    energy_min: float = -4.0
    energy_max: float = 4.0
    max_duration: int = 100  # frames per symbol at inference (1 s at 100 frames/s)
    speakers: tuple[str, ...] = ()  # the voices of a multi-speaker model (speaker id = index); () = one voice
    phonemes: bool = False  # input symbols: espeak-ng IPA phones (codec.word_phones.phonemize), not letters
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"FastSpeech2Config schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        if self.vocab_size < 2 or self.hidden_dim % self.n_heads:
            raise ValueError(f"need vocab_size >= 2 and hidden_dim divisible by n_heads, got {self.vocab_size}, "
                             f"{self.hidden_dim}, {self.n_heads}")
        if self.ffn_kernel_size % 2 == 0 or self.variance_kernel_size % 2 == 0:
            raise ValueError("conv kernel sizes must be odd to keep lengths")
        if self.n_bins < 2 or self.pitch_min >= self.pitch_max or self.energy_min >= self.energy_max:
            raise ValueError("need n_bins >= 2, pitch_min < pitch_max and energy_min < energy_max")
        object.__setattr__(self, "speakers", check_speakers(self.speakers))


@dataclass
class FastSpeech2Output:
    """Teacher-forced forward pass; ``T = max(sum(durations))``."""

    mel: torch.Tensor  # [B, T, n_mels], zero past each length
    log_duration: torch.Tensor  # [B, L] predicted log(1 + d)
    pitch: torch.Tensor  # [B, T] predicted frame pitch
    energy: torch.Tensor  # [B, T] predicted frame energy
    mel_lengths: torch.Tensor  # [B] = durations.sum(1)
    mel_loss: torch.Tensor  # scalar L1 over valid frames
    duration_loss: torch.Tensor  # scalar MSE on log(1 + d) over valid symbols
    pitch_loss: torch.Tensor  # scalar MSE over valid frames
    energy_loss: torch.Tensor  # scalar MSE over valid frames
    loss: torch.Tensor  # sum of the four


@dataclass
class FastSpeech2Inference:
    """Synthesised mels and the durations used."""

    mel: torch.Tensor  # [B, T, n_mels], zero past each length
    mel_lengths: torch.Tensor  # [B]
    durations: torch.Tensor  # [B, L] integer frames per symbol


def _mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, size]`` bool, True on valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def length_regulate(x: torch.Tensor, durations: torch.Tensor,
                    max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand each symbol by its duration.

    Args:
        x: ``[B, L, D]`` symbol-level hidden states.
        durations: ``[B, L]`` non-negative integer frames per symbol (0 on padding).
        max_len: output frames ``T``; default ``max(sum(durations))`` (at least 1).

    Returns:
        ``(y [B, T, D], lengths [B])`` with ``y[b, t] = x[b, l]`` for the symbol ``l`` whose span holds ``t``,
        zero past ``lengths = durations.sum(1)``.
    """
    durations = durations.long().clamp_min(0)
    lengths = durations.sum(1)
    T = max(1, int(lengths.max())) if max_len is None else max_len
    ends = durations.cumsum(1)  # [B, L] exclusive end frame of each symbol
    frames = torch.arange(T, device=x.device)[None].expand(x.shape[0], T).contiguous()
    index = torch.searchsorted(ends, frames, right=True).clamp_max(x.shape[1] - 1)  # [B, T]
    y = torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))
    return y * _mask(lengths, T)[..., None], lengths


def durations_from_alignment(alignment: torch.Tensor) -> torch.Tensor:
    """Frames per symbol from an attention alignment (e.g. Tacotron 2's), counting argmax frames.

    Args:
        alignment: ``[T, L]`` weights (frame or decoder step x symbol). For a Tacotron 2 alignment with
            reduction factor ``r``, multiply the result by ``r`` to get mel frames.

    Returns:
        ``[L]`` long durations; they sum to ``T``.
    """
    return torch.bincount(alignment.argmax(dim=1), minlength=alignment.shape[1])


def sinusoids(length: int, channels: int, device: torch.device | None = None) -> torch.Tensor:
    """Transformer sinusoidal positions ``[length, channels]`` (sin on even, cos on odd channels)."""
    pos = torch.arange(length, device=device).float()[:, None]
    inv = torch.exp(-math.log(10000.0) * torch.arange(0, channels, 2, device=device).float() / channels)
    out = torch.zeros(length, channels, device=device)
    out[:, 0::2] = torch.sin(pos * inv)
    out[:, 1::2] = torch.cos(pos * inv)[:, : channels // 2]
    return out


class FFTBlock(nn.Module):
    """Feed-forward Transformer block: self-attention and a conv1d FFN, each residual + post-LayerNorm."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.conv1 = nn.Conv1d(dim, ffn_dim, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(ffn_dim, dim, 1)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """``x [B, N, D]``, ``pad [B, N]`` True on padding -> ``[B, N, D]`` (zero on padding)."""
        keep = (~pad)[..., None].float()
        a, _ = self.attention(x, x, x, key_padding_mask=pad, need_weights=False)
        x = self.norm1(x + self.dropout(a)) * keep
        f = self.conv2(F.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)
        return self.norm2(x + self.dropout(f)) * keep


class VariancePredictor(nn.Module):
    """2 x (conv1d + ReLU + LayerNorm + dropout) + Linear: ``[B, N, D]`` -> ``[B, N]`` (zero on padding)."""

    def __init__(self, dim: int, filters: int, kernel_size: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(dim, filters, kernel_size, padding=kernel_size // 2),
                                    nn.Conv1d(filters, filters, kernel_size, padding=kernel_size // 2)])
        self.norms = nn.ModuleList([nn.LayerNorm(filters), nn.LayerNorm(filters)])
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(filters, 1)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = self.dropout(norm(F.relu(conv(x.transpose(1, 2))).transpose(1, 2)))
        return self.out(x).squeeze(-1).masked_fill(pad, 0.0)


class FastSpeech2(nn.Module):
    """FastSpeech 2 acoustic model: symbol ids ``[B, L]`` -> log-mel ``[B, T, n_mels]`` (see the module docstring)."""

    def __init__(self, config: FastSpeech2Config):
        super().__init__()
        self.config = c = config
        D = c.hidden_dim

        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList(FFTBlock(D, c.n_heads, c.ffn_dim, c.ffn_kernel_size, c.dropout) for _ in range(n))

        self.embedding = nn.Embedding(c.vocab_size, D, padding_idx=0)
        self.encoder = blocks(c.encoder_layers)
        self.duration_predictor = VariancePredictor(D, c.variance_dim, c.variance_kernel_size, c.variance_dropout)
        self.pitch_predictor = VariancePredictor(D, c.variance_dim, c.variance_kernel_size, c.variance_dropout)
        self.energy_predictor = VariancePredictor(D, c.variance_dim, c.variance_kernel_size, c.variance_dropout)
        # n_bins - 1 inner edges -> bucket ids 0 .. n_bins - 1
        self.register_buffer("pitch_edges", torch.linspace(c.pitch_min, c.pitch_max, c.n_bins - 1), persistent=False)
        self.register_buffer("energy_edges", torch.linspace(c.energy_min, c.energy_max, c.n_bins - 1),
                             persistent=False)
        self.pitch_embedding = nn.Embedding(c.n_bins, D)
        self.energy_embedding = nn.Embedding(c.n_bins, D)
        self.decoder = blocks(c.decoder_layers)
        self.mel_proj = nn.Linear(D, c.n_mels)
        self.speaker_table = SpeakerTable(c.speakers, D)

    def encode(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, speaker_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """``[B, L]``, ``[B]`` (``speaker_ids [B]`` for a multi-speaker model) -> encoder states ``[B, L, D]``
        (with the voice's embedding added on the valid symbols)."""
        pad = ~_mask(text_lengths, text_ids.shape[1])
        x = self.embedding(text_ids) + sinusoids(text_ids.shape[1], self.config.hidden_dim, text_ids.device)
        for block in self.encoder:
            x = block(x, pad)
        return self.speaker_table.add(x, speaker_ids, (~pad)[..., None].to(x.dtype))

    def _adapt_and_decode(self, x: torch.Tensor, durations: torch.Tensor, pitch: torch.Tensor | None,
                          energy: torch.Tensor | None, pitch_shift: float = 0.0
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Length-regulate and add pitch/energy (targets if given, else predictions) ->
        ``(mel [B, T, n_mels], pitch_pred [B, T], energy_pred [B, T], lengths [B])``."""
        x, lengths = length_regulate(x, durations)
        pad = ~_mask(lengths, x.shape[1])
        pitch_pred = self.pitch_predictor(x, pad)
        p = pitch_pred + pitch_shift if pitch is None else pitch
        x = x + self.pitch_embedding(torch.bucketize(p.contiguous(), self.pitch_edges))
        energy_pred = self.energy_predictor(x, pad)
        e = energy_pred if energy is None else energy
        x = x + self.energy_embedding(torch.bucketize(e.contiguous(), self.energy_edges))
        x = x + sinusoids(x.shape[1], self.config.hidden_dim, x.device)
        for block in self.decoder:
            x = block(x, pad)
        mel = self.mel_proj(x) * (~pad)[..., None]
        return mel, pitch_pred, energy_pred, lengths

    def forward(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, durations: torch.Tensor,
                pitch: torch.Tensor, energy: torch.Tensor, mels: torch.Tensor,
                speaker_ids: torch.Tensor | None = None) -> FastSpeech2Output:
        """Teacher-forced pass with losses.

        Args:
            text_ids: ``[B, L]`` long symbol ids, 0-padded.
            text_lengths: ``[B]`` valid symbols (>= 1).
            durations: ``[B, L]`` integer frames per symbol (ignored on padding); ``T = max(sum(d))``.
            pitch: ``[B, T]`` frame-level target pitch (normalised unit; padding ignored).
            energy: ``[B, T]`` frame-level target energy.
            mels: ``[B, T, n_mels]`` target log-mel frames.
            speaker_ids: ``[B]`` long voice ids of a multi-speaker model (``None``: 0); refused for one voice.

        Returns:
            :class:`FastSpeech2Output`.
        """
        text_valid = _mask(text_lengths, text_ids.shape[1])
        durations = durations.long() * text_valid
        T = int(durations.sum(1).max())
        if mels.shape[1] != T or pitch.shape[1] != T or energy.shape[1] != T:
            raise ValueError(f"targets must have T = max(sum(durations)) = {T} frames, got mels "
                             f"{tuple(mels.shape)}, pitch {tuple(pitch.shape)}, energy {tuple(energy.shape)}")
        h = self.encode(text_ids, text_lengths, speaker_ids)
        log_duration = self.duration_predictor(h, ~text_valid)
        mel, pitch_pred, energy_pred, lengths = self._adapt_and_decode(h, durations, pitch, energy)

        frames = _mask(lengths, T).float()  # [B, T]
        n_frames = frames.sum().clamp_min(1.0)
        mel_loss = ((mel - mels).abs() * frames[..., None]).sum() / (n_frames * self.config.n_mels)
        log_target = torch.log1p(durations.float())
        duration_loss = (((log_duration - log_target) ** 2) * text_valid).sum() / text_valid.sum().clamp_min(1)
        pitch_loss = (((pitch_pred - pitch) ** 2) * frames).sum() / n_frames
        energy_loss = (((energy_pred - energy) ** 2) * frames).sum() / n_frames
        loss = mel_loss + duration_loss + pitch_loss + energy_loss
        return FastSpeech2Output(mel, log_duration, pitch_pred, energy_pred, lengths, mel_loss, duration_loss,
                                 pitch_loss, energy_loss, loss)

    # --- inference ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, text_ids: torch.Tensor, text_lengths: torch.Tensor | None = None, speed: float = 1.0,
              pitch_shift: float = 0.0, speaker_ids: torch.Tensor | None = None) -> FastSpeech2Inference:
        """Synthesise from predicted durations, pitch and energy (eval mode).

        Args:
            text_ids: ``[B, L]`` (or ``[L]``) long symbol ids, 0-padded.
            text_lengths: ``[B]`` valid symbols; ``None``: all ``L``.
            speed: speaking-rate factor; durations are ``round(d / speed)``, so ``speed=2`` halves the length.
            pitch_shift: added to every predicted frame pitch, in the pitch targets' unit.
            speaker_ids: ``[B]`` voice ids of a multi-speaker model (``None``: 0; see :meth:`speaker_id`).

        Returns:
            :class:`FastSpeech2Inference`; every item has at least one frame.
        """
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        was_training = self.training
        self.eval()
        if text_ids.dim() == 1:
            text_ids = text_ids[None]
        B, L = text_ids.shape
        if text_lengths is None:
            text_lengths = torch.full((B,), L, dtype=torch.long, device=text_ids.device)
        valid = _mask(text_lengths, L)
        h = self.encode(text_ids, text_lengths, speaker_ids)
        log_d = self.duration_predictor(h, ~valid)
        d = torch.round((torch.exp(log_d) - 1.0) / speed).clamp(0, self.config.max_duration).long() * valid
        d[:, 0] += (d.sum(1) == 0).long()  # never an empty utterance
        mel, _, _, lengths = self._adapt_and_decode(h, d, None, None, pitch_shift)
        self.train(was_training)
        return FastSpeech2Inference(mel, lengths, d)

    def speaker_id(self, name: str) -> int:
        """The id of voice ``name`` (one of ``config.speakers``); raises ``ValueError`` naming the known ones."""
        return self.speaker_table.id(name)

    # --- persistence ----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (atomic)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> FastSpeech2:
        """Rebuild a model saved with :meth:`save_pretrained` (eval mode); raises ``CheckpointError``."""
        return load_model_dir(directory, cls, FastSpeech2Config, device)


def fastspeech2_tiny(vocab_size: int, n_mels: int = 80) -> FastSpeech2Config:
    """A debug-size config (hidden 32) for CPU smoke runs and tests."""
    return FastSpeech2Config(vocab_size, n_mels, hidden_dim=32, encoder_layers=2, decoder_layers=2, n_heads=2,
                             ffn_dim=64, ffn_kernel_size=3, dropout=0.1, variance_dim=32, n_bins=32)


__all__ = ["FastSpeech2", "FastSpeech2Config", "FastSpeech2Inference", "FastSpeech2Output",
           "durations_from_alignment", "fastspeech2_tiny", "length_regulate"]
