"""Tacotron 2 (Shen et al. 2018): symbol ids -> log-mel frames, autoregressive with location-sensitive attention.

The paper's diagram, top to bottom::

    text_ids [B, L] -> embedding -> 3 x (conv5 + BN + ReLU) -> BiLSTM          memory [B, L, E]
    previous frame [B, n_mels] -> prenet (2 x Linear+ReLU, dropout 0.5 *always on*)
        -> attention LSTM (layer 1) -> location-sensitive attention over memory -> context [B, E]
        -> decoder LSTM (layer 2) -> Linear -> r frames [B, r, n_mels] and r stop logits [B, r]
    mel_before [B, T, n_mels] -> postnet (5 x conv5 + BN, tanh) -> + residual -> mel_after

A multi-speaker model (``speakers`` in the config: the training voices' names) adds a learned speaker embedding
``[E]`` to every memory position, as ESPnet's ``spk_embed_integration_type: add`` with speaker ids; the decoder then
no longer averages the corpus's voices into one. ``speaker_ids [B]`` pick the voices (default: speaker 0).

The two decoder LSTM layers are split as in NVIDIA's reference implementation: the first layer's output is the
attention query, the second sees the new context. Each decoder step emits ``r = reduction_factor`` frames
(Tacotron 1's trick; the paper uses ``r = 1``), so alignments are ``[B, ceil(T / r), L]``. Zoneout is replaced by
dropout on the LSTM outputs. Mel frames are the project's log-mel (:func:`codec.features.log_mel`, transposed
to ``[T, n_mels]``). :meth:`Tacotron2.forward` is teacher-forced training; :meth:`Tacotron2.infer` generates
until a stop probability passes ``stop_threshold`` or ``config.max_decoder_steps(L)`` steps, so it always ends.
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
from legacy_seq2seq.guided_attention import GUIDED_ATTENTION_G, guided_attention_loss
from legacy_seq2seq.speakers import SpeakerTable, check_speakers

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Tacotron2Config:
    """Tacotron 2 hyper-parameters (defaults: the paper's sizes); saved as ``config.json`` with the weights."""

    vocab_size: int  # symbol ids (characters or phonemes) are in [0, vocab_size); 0 is padding
    n_mels: int = 80
    embedding_dim: int = 512  # also the encoder output size E (BiLSTM: E / 2 per direction)
    encoder_n_convs: int = 3
    encoder_kernel_size: int = 5
    prenet_dim: int = 256
    attention_rnn_dim: int = 1024
    decoder_rnn_dim: int = 1024
    attention_dim: int = 128
    location_n_filters: int = 32
    location_kernel_size: int = 31
    postnet_dim: int = 512
    postnet_n_convs: int = 5
    postnet_kernel_size: int = 5
    reduction_factor: int = 1  # r: mel frames per decoder step
    dropout: float = 0.5  # encoder convs and postnet
    prenet_dropout: float = 0.5  # kept on at inference (the paper's source of output variation)
    decoder_dropout: float = 0.1  # on the LSTM outputs, in place of zoneout
    stop_threshold: float = 0.5
    stop_pos_weight: float = 5.0  # BCE weight of the one positive (last) frame per utterance (ESPnet uses 5)
    max_frames_per_symbol: float = 20.0  # inference bound: 200 ms per symbol at 100 frames/s
    speakers: tuple[str, ...] = ()  # the voices of a multi-speaker model (speaker id = index); () = one voice
    phonemes: bool = False  # input symbols: espeak-ng IPA phones (codec.word_phones.phonemize), not letters
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"Tacotron2Config schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        if self.vocab_size < 2 or self.n_mels < 1 or self.reduction_factor < 1:
            raise ValueError("need vocab_size >= 2, n_mels >= 1 and reduction_factor >= 1")
        if self.embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even (BiLSTM halves), got {self.embedding_dim}")
        for name in ("encoder_kernel_size", "location_kernel_size", "postnet_kernel_size"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd to keep lengths, got {getattr(self, name)}")
        if not 0.0 < self.stop_threshold < 1.0 or self.max_frames_per_symbol <= 0 or self.stop_pos_weight <= 0:
            raise ValueError("need 0 < stop_threshold < 1, max_frames_per_symbol > 0 and stop_pos_weight > 0")
        object.__setattr__(self, "speakers", check_speakers(self.speakers))

    def max_decoder_steps(self, text_length: int) -> int:
        """Inference bound for ``text_length`` symbols: ``ceil(max_frames_per_symbol * L / r)`` steps (>= 1)."""
        return max(1, math.ceil(self.max_frames_per_symbol * text_length / self.reduction_factor))


@dataclass
class Tacotron2Output:
    """Teacher-forced forward pass. ``T`` = target frames, ``T_r = ceil(T / r)`` decoder steps."""

    mel_before: torch.Tensor  # [B, T, n_mels] decoder output
    mel_after: torch.Tensor  # [B, T, n_mels] after the postnet residual
    stop_logits: torch.Tensor  # [B, T]
    alignments: torch.Tensor  # [B, T_r, L], each row sums to 1 over the valid symbols
    mel_loss: torch.Tensor  # scalar: masked MSE before + after the postnet
    stop_loss: torch.Tensor  # scalar: :func:`stop_token_loss` (BCE on the valid frames, 1 on each last frame)
    attention_loss: torch.Tensor  # scalar: guided attention loss (unweighted)
    loss: torch.Tensor  # mel_loss + stop_loss + attention_loss_weight * attention_loss


@dataclass
class Tacotron2Inference:
    """Generated mels (frames past each length are zero)."""

    mel: torch.Tensor  # [B, T, n_mels] after the postnet
    mel_lengths: torch.Tensor  # [B] frames up to and including the first stop
    alignments: torch.Tensor  # [B, T_r, L]


def stop_token_loss(stop_logits: torch.Tensor, lengths: torch.Tensor, pos_weight: float = 5.0) -> torch.Tensor:
    """BCE of the stop logits ``[B, T]`` against "this is the last frame", over the valid frames only.

    Each utterance's frame ``lengths - 1`` is the one positive, weighted ``pos_weight``; the frames before it are
    negatives; padding frames (past ``lengths``) are left out. Training on padding (target 1 there) would teach the
    stop from padded *input* frames, which inference never feeds back, and the model would never stop.
    """
    T = stop_logits.shape[1]
    positions = torch.arange(T, device=stop_logits.device)[None]
    valid = (positions < lengths[:, None]).float()
    target = (positions == (lengths[:, None] - 1)).float()
    weight = valid * (1.0 + (pos_weight - 1.0) * target)
    per_frame = F.binary_cross_entropy_with_logits(stop_logits, target, reduction="none")
    return (per_frame * weight).sum() / weight.sum()


def _mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, size]`` bool, True on valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class LocationSensitiveAttention(nn.Module):
    """Additive attention whose energies also see conv features of the previous and cumulative weights."""

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int, n_filters: int, kernel_size: int):
        super().__init__()
        self.query = nn.Linear(query_dim, attention_dim, bias=False)
        self.memory = nn.Linear(memory_dim, attention_dim, bias=False)
        self.location_conv = nn.Conv1d(2, n_filters, kernel_size, padding=kernel_size // 2, bias=False)
        self.location_dense = nn.Linear(n_filters, attention_dim, bias=False)
        self.v = nn.Linear(attention_dim, 1)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, prev: torch.Tensor,
                pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``query [B, Dq]``, ``keys = self.memory(memory) [B, L, A]``, ``memory [B, L, E]``, ``prev [B, 2, L]``
        (previous and cumulative weights), ``pad [B, L]`` True on padding -> ``(context [B, E], weights [B, L])``."""
        location = self.location_dense(self.location_conv(prev).transpose(1, 2))  # [B, L, A]
        energies = self.v(torch.tanh(self.query(query)[:, None] + keys + location)).squeeze(-1)  # [B, L]
        weights = torch.softmax(energies.masked_fill(pad, float("-inf")), dim=-1)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights


def _conv_bn(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, k, padding=k // 2), nn.BatchNorm1d(c_out))


class Tacotron2(nn.Module):
    """Tacotron 2 acoustic model: symbol ids ``[B, L]`` -> log-mel ``[B, T, n_mels]`` (see the module docstring)."""

    def __init__(self, config: Tacotron2Config):
        super().__init__()
        self.config = c = config
        E, r = c.embedding_dim, c.reduction_factor
        self.embedding = nn.Embedding(c.vocab_size, E, padding_idx=0)
        self.encoder_convs = nn.ModuleList(_conv_bn(E, E, c.encoder_kernel_size) for _ in range(c.encoder_n_convs))
        self.encoder_lstm = nn.LSTM(E, E // 2, batch_first=True, bidirectional=True)
        self.prenet = nn.ModuleList([nn.Linear(c.n_mels, c.prenet_dim), nn.Linear(c.prenet_dim, c.prenet_dim)])
        self.attention_rnn = nn.LSTMCell(c.prenet_dim + E, c.attention_rnn_dim)
        self.attention = LocationSensitiveAttention(c.attention_rnn_dim, E, c.attention_dim, c.location_n_filters,
                                                    c.location_kernel_size)
        self.decoder_rnn = nn.LSTMCell(c.attention_rnn_dim + E, c.decoder_rnn_dim)
        self.frame_proj = nn.Linear(c.decoder_rnn_dim + E, c.n_mels * r)
        self.stop_proj = nn.Linear(c.decoder_rnn_dim + E, r)
        dims = [c.n_mels] + [c.postnet_dim] * (c.postnet_n_convs - 1) + [c.n_mels]
        self.postnet = nn.ModuleList(_conv_bn(a, b, c.postnet_kernel_size) for a, b in zip(dims[:-1], dims[1:]))
        self.speaker_table = SpeakerTable(c.speakers, E)

    # --- building blocks ------------------------------------------------------------------------------------
    def encode(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, speaker_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """``text_ids [B, L]``, ``text_lengths [B]`` (``speaker_ids [B]`` for a multi-speaker model; default 0)
        -> memory ``[B, L, E]`` (zero on padding)."""
        keep = _mask(text_lengths, text_ids.shape[1])[:, None, :].float()  # [B, 1, L]
        x = self.embedding(text_ids).transpose(1, 2)  # [B, E, L]
        for conv in self.encoder_convs:
            x = F.dropout(F.relu(conv(x * keep)), self.config.dropout, self.training)
        packed = nn.utils.rnn.pack_padded_sequence(x.transpose(1, 2), text_lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.encoder_lstm(packed)
        memory = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=text_ids.shape[1])[0]
        return self.speaker_table.add(memory, speaker_ids, keep[:, 0, :, None])

    def _prenet(self, frames: torch.Tensor) -> torch.Tensor:
        for layer in self.prenet:  # dropout always on: the paper relies on it for variation at inference
            frames = F.dropout(F.relu(layer(frames)), self.config.prenet_dropout, training=True)
        return frames

    def _postnet(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, T, n_mels]`` -> residual ``[B, T, n_mels]``."""
        x = mel.transpose(1, 2)
        for i, conv in enumerate(self.postnet):
            x = conv(x)
            x = F.dropout(torch.tanh(x) if i < len(self.postnet) - 1 else x, self.config.dropout, self.training)
        return x.transpose(1, 2)

    def _initial_state(self, memory: torch.Tensor) -> list[torch.Tensor]:
        """Zero state: attention h, c; decoder h, c; context ``[B, E]``; weights and cumulative weights ``[B, L]``."""
        B, L, E = memory.shape
        z = memory.new_zeros
        c = self.config
        return [z(B, c.attention_rnn_dim), z(B, c.attention_rnn_dim), z(B, c.decoder_rnn_dim),
                z(B, c.decoder_rnn_dim), z(B, E), z(B, L), z(B, L)]

    def _step(self, prenet_out: torch.Tensor, state: list[torch.Tensor], memory: torch.Tensor, keys: torch.Tensor,
              pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """One decoder step: ``prenet_out [B, P]`` -> ``(frames [B, r * n_mels], stop_logits [B, r], state)``;
        ``state[5]`` holds this step's attention weights ``[B, L]``."""
        att_h, att_c, dec_h, dec_c, context, weights, cumulative = state
        p = self.config.decoder_dropout
        att_h, att_c = self.attention_rnn(torch.cat([prenet_out, context], -1), (att_h, att_c))
        att_h = F.dropout(att_h, p, self.training)
        context, weights = self.attention(att_h, keys, memory, torch.stack([weights, cumulative], 1), pad)
        dec_h, dec_c = self.decoder_rnn(torch.cat([att_h, context], -1), (dec_h, dec_c))
        dec_h = F.dropout(dec_h, p, self.training)
        out = torch.cat([dec_h, context], -1)
        state = [att_h, att_c, dec_h, dec_c, context, weights, cumulative + weights]
        return self.frame_proj(out), self.stop_proj(out), state

    def decode_teacher_forced(self, memory: torch.Tensor, pad: torch.Tensor, mels: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder over ``memory [B, L, E]`` (``pad [B, L]`` True on padding), fed the target ``mels
        [B, T, n_mels]``: ``(mel_before [B, T, n_mels], mel_after, stop_logits [B, T], alignments [B, ceil(T / r),
        L])``. Shared by Tacotron 2 and Translatotron's spectrogram decoder."""
        c, r = self.config, self.config.reduction_factor
        B, T, _ = mels.shape
        steps = math.ceil(T / r)
        keys = self.attention.memory(memory)
        targets = F.pad(mels, (0, 0, 0, steps * r - T))  # [B, steps * r, n_mels]
        previous = torch.cat([mels.new_zeros(B, 1, c.n_mels), targets[:, r - 1::r][:, :-1]], 1)  # [B, steps, n_mels]
        prenet_out = self._prenet(previous)
        state = self._initial_state(memory)
        frames, stops, aligns = [], [], []
        for k in range(steps):
            f, s, state = self._step(prenet_out[:, k], state, memory, keys, pad)
            frames.append(f)
            stops.append(s)
            aligns.append(state[5])
        mel_before = torch.stack(frames, 1).reshape(B, steps * r, c.n_mels)[:, :T]
        stop_logits = torch.stack(stops, 1).reshape(B, steps * r)[:, :T]
        return mel_before, mel_before + self._postnet(mel_before), stop_logits, torch.stack(aligns, 1)

    def decode_free(self, memory: torch.Tensor, pad: torch.Tensor, bounds: torch.Tensor, name: str = "Tacotron 2"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Autoregressive decoding over ``memory [B, L, E]``: each item ends at its first frame whose stop
        probability passes ``stop_threshold`` or after ``bounds [B]`` steps (logged as ``name`` hitting the bound).
        Returns ``(mel [B, T, n_mels]`` after the postnet, zero past each length, ``lengths [B]``, ``alignments
        [B, steps, L])``."""
        c, r = self.config, self.config.reduction_factor
        B = memory.shape[0]
        keys = self.attention.memory(memory)
        state = self._initial_state(memory)
        frame = memory.new_zeros(B, c.n_mels)
        lengths = torch.zeros(B, dtype=torch.long, device=memory.device)
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        frames, aligns = [], []
        for k in range(int(bounds.max())):
            f, s, state = self._step(self._prenet(frame), state, memory, keys, pad)
            frames.append(f)
            aligns.append(state[5])
            over = torch.sigmoid(s) > c.stop_threshold  # [B, r]
            hit = over.any(1) & ~done
            lengths = torch.where(hit, k * r + over.float().argmax(1) + 1, lengths)
            bounded = ~done & ~hit & (k + 1 >= bounds)
            lengths = torch.where(bounded, torch.full_like(lengths, (k + 1) * r), lengths)
            done |= hit | bounded
            if bool(done.all()):
                break
            frame = f[:, -c.n_mels:]
        if bool((lengths == bounds * r).any()):
            logger.warning("%s hit the max-decoder-steps bound for some items (no stop predicted)", name)
        mel = torch.stack(frames, 1).reshape(B, -1, c.n_mels)[:, : int(lengths.max())]
        mel = (mel + self._postnet(mel)) * _mask(lengths, mel.shape[1])[..., None]
        return mel, lengths, torch.stack(aligns, 1)

    # --- training -------------------------------------------------------------------------------------------
    def forward(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, mels: torch.Tensor,
                mel_lengths: torch.Tensor, attention_loss_weight: float = 0.0,
                speaker_ids: torch.Tensor | None = None) -> Tacotron2Output:
        """Teacher-forced pass with losses.

        Args:
            text_ids: ``[B, L]`` long symbol ids, 0-padded.
            text_lengths: ``[B]`` valid symbols per item (>= 1).
            mels: ``[B, T, n_mels]`` target log-mel frames, any padding value.
            mel_lengths: ``[B]`` valid frames per item (>= 1).
            attention_loss_weight: weight of :func:`guided_attention_loss`; the caller sets it (e.g. 1.0) for the
                first steps of training and 0.0 afterwards.
            speaker_ids: ``[B]`` long voice ids of a multi-speaker model (``None``: 0); refused for one voice.

        Returns:
            :class:`Tacotron2Output` with outputs cropped to ``T`` frames.
        """
        c = self.config
        T, r = mels.shape[1], c.reduction_factor
        memory = self.encode(text_ids, text_lengths, speaker_ids)
        mel_before, mel_after, stop_logits, alignments = self.decode_teacher_forced(
            memory, ~_mask(text_lengths, text_ids.shape[1]), mels)

        valid = _mask(mel_lengths, T)[..., None].float()  # [B, T, 1]
        n = valid.sum() * c.n_mels
        mel_loss = (((mel_before - mels) ** 2 + (mel_after - mels) ** 2) * valid).sum() / n
        stop_loss = stop_token_loss(stop_logits, mel_lengths, c.stop_pos_weight)
        attention_loss = guided_attention_loss(alignments, text_lengths, torch.div(mel_lengths + r - 1, r,
                                                                                   rounding_mode="floor"))
        loss = mel_loss + stop_loss + attention_loss_weight * attention_loss
        return Tacotron2Output(mel_before * valid, mel_after * valid, stop_logits, alignments, mel_loss, stop_loss,
                               attention_loss, loss)

    # --- inference ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, text_ids: torch.Tensor, text_lengths: torch.Tensor | None = None,
              speaker_ids: torch.Tensor | None = None) -> Tacotron2Inference:
        """Autoregressive synthesis (eval mode, prenet dropout still on).

        Args:
            text_ids: ``[B, L]`` (or ``[L]``) long symbol ids, 0-padded.
            text_lengths: ``[B]`` valid symbols; ``None``: all ``L``.
            speaker_ids: ``[B]`` voice ids of a multi-speaker model (``None``: 0; see :meth:`speaker_id`).

        Returns:
            :class:`Tacotron2Inference`; each item stops at the first frame whose stop probability exceeds
            ``stop_threshold``, or after ``config.max_decoder_steps(text_length)`` steps.
        """
        was_training = self.training
        self.eval()
        c = self.config
        if text_ids.dim() == 1:
            text_ids = text_ids[None]
        B, L = text_ids.shape
        if text_lengths is None:
            text_lengths = torch.full((B,), L, dtype=torch.long, device=text_ids.device)
        bounds = torch.tensor([c.max_decoder_steps(int(n)) for n in text_lengths], device=text_ids.device)
        memory = self.encode(text_ids, text_lengths, speaker_ids)
        mel, lengths, alignments = self.decode_free(memory, ~_mask(text_lengths, L), bounds)
        self.train(was_training)
        return Tacotron2Inference(mel, lengths, alignments)

    def speaker_id(self, name: str) -> int:
        """The id of voice ``name`` (one of ``config.speakers``); raises ``ValueError`` naming the known ones."""
        return self.speaker_table.id(name)

    # --- persistence ----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (atomic)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> Tacotron2:
        """Rebuild a model saved with :meth:`save_pretrained` (eval mode); raises ``CheckpointError``."""
        return load_model_dir(directory, cls, Tacotron2Config, device)


def tacotron2_tiny(vocab_size: int, n_mels: int = 80) -> Tacotron2Config:
    """A debug-size config (hidden 32) for CPU smoke runs and tests."""
    return Tacotron2Config(vocab_size, n_mels, embedding_dim=32, prenet_dim=32, attention_rnn_dim=32,
                           decoder_rnn_dim=32, attention_dim=16, location_n_filters=4, location_kernel_size=7,
                           postnet_dim=32, reduction_factor=2)


__all__ = ["GUIDED_ATTENTION_G", "Tacotron2", "Tacotron2Config", "Tacotron2Inference", "Tacotron2Output",
           "guided_attention_loss", "tacotron2_tiny"]
