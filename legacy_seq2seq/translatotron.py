"""Translatotron (Jia et al. 2019): direct speech-to-speech translation, source log-mel -> target log-mel.

The paper's diagram, with this module's shapes (``k = frame_stack``, ``T' = ceil(T / k)``)::

    src_mel [B, T, n_mels] -> stack k frames [B, T', k * n_mels] -> encoder_layers x BiLSTM -> h [B, T', E]
        layer aux_source_layer -> attention LSTM decoder -> source ids logits [B, U_s, V_s]   (auxiliary CE)
        layer aux_target_layer -> attention LSTM decoder -> target ids logits [B, U_t, V_t]   (auxiliary CE)
    src_mel -> speaker encoder (d-vector, frozen) -> e [B, D], broadcast over T' -> memory [h; e] [B, T', E + D]
    memory -> Tacotron 2 decoder (prenet, location-sensitive attention, r frames + stop per step, postnet)
        -> tgt mel [B, T_out, n_mels]; a HiFi-GAN vocoder (:mod:`legacy_seq2seq.hifigan`) makes the waveform

Differences from the paper: the spectrogram decoder is Tacotron 2's (:class:`~legacy_seq2seq.tacotron2.Tacotron2`,
two LSTM layers, single-head location-sensitive attention) instead of a deeper one with multi-head attention; it
predicts log-mel for HiFi-GAN rather than linear spectrograms; the auxiliary decoders have one LSTM layer.
:meth:`Translatotron.forward` is teacher-forced training; :meth:`Translatotron.translate` generates until a stop
probability passes ``stop_threshold`` or ``config.max_decoder_steps(T)`` steps, so it always ends.
Auxiliary targets are id sequences ``[B, U]`` (e.g. :class:`~legacy_seq2seq.text.CharVocab` ids ending with an
end-of-sentence id), 0-padded; id 0 doubles as the start symbol the decoders read first.
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
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from legacy_seq2seq.checkpoint import load_model_dir, save_model_dir
from legacy_seq2seq.las_attention import AttentionState, LocationAwareAttention
from legacy_seq2seq.speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig
from legacy_seq2seq.tacotron2 import Tacotron2, Tacotron2Config, guided_attention_loss, stop_token_loss

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FRAME_STACKS = (1, 2, 4)
MEL_LOSSES = ("l1", "l2", "l1+l2")


@dataclass(frozen=True)
class TranslatotronConfig:
    """Translatotron sizes, saved as ``config.json``; a vocab size or ``speaker_dim`` of 0 drops that part."""

    n_mels: int = 80  # source and target log-mel width
    source_vocab_size: int = 0  # auxiliary source-language ids in [0, V_s); 0 is padding and start
    target_vocab_size: int = 0  # auxiliary target-language ids in [0, V_t)
    frame_stack: int = 1  # k: source frames stacked into one encoder frame (1, 2 or 4)
    encoder_layers: int = 8
    encoder_dim: int = 1024  # E, BiLSTM output size (E / 2 per direction)
    speaker_dim: int = 256  # D, d-vector size
    speaker_hidden: int = 768
    speaker_layers: int = 3
    train_speaker_encoder: bool = False  # the paper pretrains it with GE2E and freezes it
    aux_source_layer: int = 4  # 1-based encoder layer the source decoder attends to
    aux_target_layer: int = 6
    aux_hidden: int = 256
    aux_embed_dim: int = 64
    aux_attention_dim: int = 128
    aux_source_weight: float = 1.0
    aux_target_weight: float = 1.0
    prenet_dim: int = 256
    attention_rnn_dim: int = 1024
    decoder_rnn_dim: int = 1024
    attention_dim: int = 128
    location_n_filters: int = 32
    location_kernel_size: int = 31
    postnet_dim: int = 512
    postnet_n_convs: int = 5
    reduction_factor: int = 2  # r: mel frames per decoder step
    dropout: float = 0.5  # postnet
    prenet_dropout: float = 0.5  # kept on at inference, as in Tacotron 2
    decoder_dropout: float = 0.1
    mel_loss: str = "l1+l2"  # before and after the postnet
    guided_attention_weight: float = 0.0
    stop_threshold: float = 0.5
    stop_pos_weight: float = 5.0  # see legacy_seq2seq.tacotron2.stop_token_loss
    max_length_ratio: float = 2.0  # inference bound: target frames per source frame
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"TranslatotronConfig schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        if self.frame_stack not in FRAME_STACKS or self.mel_loss not in MEL_LOSSES:
            raise ValueError(f"frame_stack must be in {FRAME_STACKS} and mel_loss in {MEL_LOSSES}")
        if self.encoder_dim % 2 or self.speaker_dim % 2:
            raise ValueError("encoder_dim (BiLSTM halves) and speaker_dim (memory E + D must be even) must be even")
        for name in ("aux_source_layer", "aux_target_layer"):
            if not 1 <= getattr(self, name) <= self.encoder_layers:
                raise ValueError(f"{name} must be in [1, encoder_layers={self.encoder_layers}]")
        if self.source_vocab_size == 1 or self.target_vocab_size == 1 or self.max_length_ratio <= 0:
            raise ValueError("an auxiliary vocabulary needs >= 2 ids (or 0 for none); max_length_ratio > 0")

    @property
    def memory_dim(self) -> int:
        """Size of what the spectrogram decoder attends to: encoder output and d-vector, ``E + D``."""
        return self.encoder_dim + self.speaker_dim

    @property
    def speaker_config(self) -> SpeakerEncoderConfig:
        """The speaker encoder's config (it reads the source log-mel)."""
        return SpeakerEncoderConfig(self.n_mels, self.speaker_hidden, self.speaker_layers, self.speaker_dim)

    @property
    def decoder_config(self) -> Tacotron2Config:
        """Tacotron 2 settings for the decoder half; its text-side fields are placeholders (no convs)."""
        return Tacotron2Config(
            vocab_size=2, n_mels=self.n_mels, embedding_dim=self.memory_dim, encoder_n_convs=0,
            prenet_dim=self.prenet_dim, attention_rnn_dim=self.attention_rnn_dim, decoder_rnn_dim=self.decoder_rnn_dim,
            attention_dim=self.attention_dim, location_n_filters=self.location_n_filters,
            location_kernel_size=self.location_kernel_size, postnet_dim=self.postnet_dim,
            postnet_n_convs=self.postnet_n_convs, reduction_factor=self.reduction_factor, dropout=self.dropout,
            prenet_dropout=self.prenet_dropout, decoder_dropout=self.decoder_dropout,
            stop_threshold=self.stop_threshold, stop_pos_weight=self.stop_pos_weight)

    def max_decoder_steps(self, source_frames: int) -> int:
        """Inference bound for ``source_frames`` source frames: ``ceil(max_length_ratio * T / r)`` steps (>= 1)."""
        return max(1, math.ceil(self.max_length_ratio * source_frames / self.reduction_factor))


@dataclass
class TranslatotronOutput:
    """Teacher-forced forward pass. ``T`` target frames, ``T_r = ceil(T / r)`` steps, ``T'`` encoder frames."""

    mel_before: torch.Tensor  # [B, T, n_mels], zero past each target length
    mel_after: torch.Tensor  # [B, T, n_mels] after the postnet residual
    stop_logits: torch.Tensor  # [B, T]
    alignments: torch.Tensor  # [B, T_r, T'], rows sum to 1 over valid encoder frames, 0 on padding
    encoder_lengths: torch.Tensor  # [B]
    source_logits: torch.Tensor | None  # [B, U_s, V_s] when source ids were given
    target_logits: torch.Tensor | None  # [B, U_t, V_t] when target ids were given
    mel_loss: torch.Tensor  # scalar: masked L1 and/or L2, before + after the postnet
    stop_loss: torch.Tensor  # scalar: :func:`~legacy_seq2seq.tacotron2.stop_token_loss`
    source_aux_loss: torch.Tensor  # scalar CE (0 without source ids)
    target_aux_loss: torch.Tensor  # scalar CE (0 without target ids)
    attention_loss: torch.Tensor  # scalar guided attention loss (unweighted)
    loss: torch.Tensor  # the weighted total


@dataclass
class TranslatotronInference:
    """Generated target mels (frames past each length are zero); feed ``mel.transpose(1, 2)`` to HiFi-GAN."""

    mel: torch.Tensor  # [B, T, n_mels] after the postnet
    mel_lengths: torch.Tensor  # [B] frames up to and including the first stop
    alignments: torch.Tensor  # [B, T_r, T']


def _valid(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, size]`` bool, True on valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def stack_frames(mel: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate each ``k`` consecutive frames: ``[B, T, C]`` -> ``[B, ceil(T / k), k * C]``, lengths ``ceil(n / k)``
    (a partial last group is zero-filled)."""
    B, T, C = mel.shape
    steps = math.ceil(T / k)
    mel = F.pad(mel * _valid(lengths, T)[..., None], (0, 0, 0, steps * k - T))
    return mel.reshape(B, steps, k * C), torch.div(lengths + k - 1, k, rounding_mode="floor")


class AuxiliaryDecoder(nn.Module):
    """A one-layer attention LSTM decoder (location-aware attention) predicting ids, teacher-forced."""

    def __init__(self, vocab_size: int, memory_dim: int, hidden: int, embed_dim: int, attention_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = nn.LSTMCell(embed_dim + memory_dim, hidden)
        self.attention = LocationAwareAttention(hidden, memory_dim, attention_dim, channels=8, kernel_size=15)
        self.output = nn.Linear(hidden + memory_dim, vocab_size)

    def forward(self, values: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``values [B, T', E]`` (an encoder layer), ``mask [B, T']``, ``targets [B, U]`` -> logits ``[B, U, V]``."""
        memory = self.attention.prepare(values, mask)
        state = AttentionState.initial(memory)
        h = c = values.new_zeros(values.shape[0], self.rnn.hidden_size)
        context = values.new_zeros(values.shape[0], values.shape[2])
        inputs = self.embedding(F.pad(targets[:, :-1], (1, 0)))  # id 0 is the start symbol
        logits = []
        for u in range(targets.shape[1]):
            h, c = self.rnn(torch.cat([inputs[:, u], context], -1), (h, c))
            context, _, state = self.attention(h, memory, state)
            logits.append(self.output(torch.cat([h, context], -1)))
        return torch.stack(logits, 1)


class _SpectrogramDecoder(Tacotron2):
    """Tacotron 2's decoder half (prenet, attention, r frames + stop per step, postnet) over a given memory."""

    def __init__(self, config: Tacotron2Config):
        super().__init__(config)
        del self.embedding, self.encoder_convs, self.encoder_lstm  # the memory comes from the speech encoder


class Translatotron(nn.Module):
    """Speech-to-speech translation model: source log-mel ``[B, T, n_mels]`` -> target log-mel (module docstring)."""

    def __init__(self, config: TranslatotronConfig):
        super().__init__()
        self.config = c = config
        ins = [c.n_mels * c.frame_stack] + [c.encoder_dim] * (c.encoder_layers - 1)
        self.encoder = nn.ModuleList(nn.LSTM(n, c.encoder_dim // 2, batch_first=True, bidirectional=True) for n in ins)
        self.speaker_encoder = SpeakerEncoder(c.speaker_config) if c.speaker_dim else None
        if self.speaker_encoder is not None and not c.train_speaker_encoder:
            self.speaker_encoder.requires_grad_(False)
        aux = (c.encoder_dim, c.aux_hidden, c.aux_embed_dim, c.aux_attention_dim)
        self.source_decoder = AuxiliaryDecoder(c.source_vocab_size, *aux) if c.source_vocab_size else None
        self.target_decoder = AuxiliaryDecoder(c.target_vocab_size, *aux) if c.target_vocab_size else None
        self.decoder = _SpectrogramDecoder(c.decoder_config)

    def encode(self, src_mel: torch.Tensor, src_lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Source log-mel ``[B, T, n_mels]``, lengths ``[B]`` -> (every layer's output ``[B, T', E]``, zero on
        padding; encoder lengths ``[B]``)."""
        if src_mel.dim() != 3 or src_mel.shape[-1] != self.config.n_mels:
            raise ValueError(f"src_mel must be [B, T, {self.config.n_mels}], got {list(src_mel.shape)}")
        x, lengths = stack_frames(src_mel, src_lengths, self.config.frame_stack)
        layers = []
        for lstm in self.encoder:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            x = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]
            layers.append(x)
        return layers, lengths

    def speaker_embedding(self, src_mel: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor | None:
        """The source utterance's d-vector ``[B, D]`` (``None`` without a speaker encoder)."""
        if self.speaker_encoder is None:
            return None
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.train_speaker_encoder):
            return self.speaker_encoder(src_mel, src_lengths)

    def _memory(self, top: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """Encoder output ``[B, T', E]`` and d-vector ``[B, D]`` -> decoder memory ``[B, T', E + D]``."""
        if self.speaker_encoder is None:
            return top
        if speaker is None or speaker.shape != (top.shape[0], self.config.speaker_dim):
            raise ValueError(f"speaker_embedding must be [{top.shape[0]}, {self.config.speaker_dim}]")
        return torch.cat([top, speaker[:, None].expand(-1, top.shape[1], -1)], -1)

    def forward(self, src_mel: torch.Tensor, src_lengths: torch.Tensor, tgt_mel: torch.Tensor,
                tgt_lengths: torch.Tensor, source_ids: torch.Tensor | None = None,
                target_ids: torch.Tensor | None = None, speaker_embedding: torch.Tensor | None = None,
                attention_loss_weight: float | None = None) -> TranslatotronOutput:
        """Teacher-forced pass with losses.

        Args:
            src_mel: ``[B, T_src, n_mels]`` source log-mel (any padding value).
            src_lengths: ``[B]`` valid source frames (>= 1).
            tgt_mel: ``[B, T, n_mels]`` target log-mel.
            tgt_lengths: ``[B]`` valid target frames (>= 1).
            source_ids: ``[B, U_s]`` source-language ids for the auxiliary loss, 0-padded; ``None``: no term.
            target_ids: ``[B, U_t]`` target-language ids, 0-padded; ``None``: no term.
            speaker_embedding: ``[B, D]`` d-vector; ``None``: the speaker encoder's, of the source.
            attention_loss_weight: overrides ``config.guided_attention_weight`` (e.g. to decay it).

        Returns:
            :class:`TranslatotronOutput`.
        """
        c = self.config
        layers, enc_lengths = self.encode(src_mel, src_lengths)
        mask = _valid(enc_lengths, layers[-1].shape[1])
        if speaker_embedding is None:
            speaker_embedding = self.speaker_embedding(src_mel, src_lengths)
        memory = self._memory(layers[-1], speaker_embedding)
        mel_before, mel_after, stop_logits, alignments = self.decoder.decode_teacher_forced(memory, ~mask, tgt_mel)

        T = tgt_mel.shape[1]
        valid = _valid(tgt_lengths, T)[..., None].float()  # [B, T, 1]
        errors = torch.stack([mel_before - tgt_mel, mel_after - tgt_mel])
        per_cell = {"l1": errors.abs(), "l2": errors**2, "l1+l2": errors.abs() + errors**2}[c.mel_loss]
        mel_loss = (per_cell * valid).sum() / (valid.sum() * c.n_mels)
        stop_loss = stop_token_loss(stop_logits, tgt_lengths, c.stop_pos_weight)
        steps = torch.div(tgt_lengths + c.reduction_factor - 1, c.reduction_factor, rounding_mode="floor")
        attention_loss = guided_attention_loss(alignments, enc_lengths, steps)
        aux_logits, aux_losses = [], []
        for decoder, ids, layer, name in ((self.source_decoder, source_ids, c.aux_source_layer, "source"),
                                          (self.target_decoder, target_ids, c.aux_target_layer, "target")):
            if ids is None:
                aux_logits.append(None)
                aux_losses.append(mel_loss.new_zeros(()))
                continue
            if decoder is None:
                raise ValueError(f"{name}_ids given but config.{name}_vocab_size is 0 (no {name} decoder)")
            logits = decoder(layers[layer - 1], mask, ids)
            aux_logits.append(logits)
            aux_losses.append(F.cross_entropy(logits.transpose(1, 2), ids, ignore_index=0))
        weight = c.guided_attention_weight if attention_loss_weight is None else attention_loss_weight
        loss = (mel_loss + stop_loss + c.aux_source_weight * aux_losses[0] + c.aux_target_weight * aux_losses[1]
                + weight * attention_loss)
        return TranslatotronOutput(mel_before * valid, mel_after * valid, stop_logits, alignments, enc_lengths,
                                   aux_logits[0], aux_logits[1], mel_loss, stop_loss, aux_losses[0], aux_losses[1],
                                   attention_loss, loss)

    @torch.no_grad()
    def translate(self, src_mel: torch.Tensor, speaker_embedding: torch.Tensor | None = None,
                  src_lengths: torch.Tensor | None = None) -> TranslatotronInference:
        """Autoregressive translation (eval mode, prenet dropout still on).

        Args:
            src_mel: ``[B, T_src, n_mels]`` (or ``[T_src, n_mels]``) source log-mel.
            speaker_embedding: ``[B, D]`` (or ``[D]``) voice to speak in; ``None``: the source speaker's.
            src_lengths: ``[B]`` valid source frames; ``None``: all ``T_src``.

        Returns:
            :class:`TranslatotronInference`; each item stops at its first stop frame or after
            ``config.max_decoder_steps(src_length)`` steps.
        """
        was_training = self.training
        self.eval()
        if src_mel.dim() == 2:
            src_mel = src_mel[None]
        if speaker_embedding is not None and speaker_embedding.dim() == 1:
            speaker_embedding = speaker_embedding[None].expand(src_mel.shape[0], -1)
        if src_lengths is None:
            src_lengths = torch.full((src_mel.shape[0],), src_mel.shape[1], dtype=torch.long, device=src_mel.device)
        layers, enc_lengths = self.encode(src_mel, src_lengths)
        if speaker_embedding is None:
            speaker_embedding = self.speaker_embedding(src_mel, src_lengths)
        memory = self._memory(layers[-1], speaker_embedding)
        bounds = torch.tensor([self.config.max_decoder_steps(int(n)) for n in src_lengths], device=src_mel.device)
        mel, lengths, alignments = self.decoder.decode_free(memory, ~_valid(enc_lengths, memory.shape[1]), bounds,
                                                            name="Translatotron")
        self.train(was_training)
        return TranslatotronInference(mel, lengths, alignments)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (speaker encoder included) to ``directory`` (atomic)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> Translatotron:
        """Rebuild a model saved with :meth:`save_pretrained` (eval mode); raises ``CheckpointError``."""
        return load_model_dir(directory, cls, TranslatotronConfig, device)


def translatotron_tiny(n_mels: int = 80, source_vocab_size: int = 0, target_vocab_size: int = 0) -> TranslatotronConfig:
    """A debug-size config (3 encoder layers, hidden 16-32, 2x frame stacking) for CPU smoke runs and tests."""
    return TranslatotronConfig(
        n_mels, source_vocab_size, target_vocab_size, frame_stack=2, encoder_layers=3, encoder_dim=16, speaker_dim=8,
        speaker_hidden=16, speaker_layers=1, aux_source_layer=1, aux_target_layer=2, aux_hidden=16, aux_embed_dim=8,
        aux_attention_dim=8, prenet_dim=16, attention_rnn_dim=32, decoder_rnn_dim=32, attention_dim=16,
        location_n_filters=4, location_kernel_size=7, postnet_dim=16)


__all__ = ["AuxiliaryDecoder", "Translatotron", "TranslatotronConfig", "TranslatotronInference",
           "TranslatotronOutput", "stack_frames", "translatotron_tiny"]
