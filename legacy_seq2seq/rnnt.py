"""RNN-Transducer speech recognition (Graves, 2012) on a Conformer encoder: config and model.

::

    features [B, T, n_mels] -> ConformerEncoder ----------------------------> enc  [B, T', D]
    [blank] + labels [B, U]  -> Embedding -> LSTM (PredictionNetwork) -----> pred [B, U + 1, P]
    JointNetwork: Linear(enc) + Linear(pred) -> tanh -> Linear -> log-probs [B, T', U + 1, V]   (id 0: blank)

The loss is :func:`legacy_seq2seq.rnnt_loss.rnnt_loss` (pure torch). Decoding lives in
:mod:`legacy_seq2seq.rnnt_decoding` (greedy, beam, streaming); :meth:`RNNTModel.greedy_decode` and
:meth:`RNNTModel.beam_search` call it. The blank id doubles as the prediction network's start symbol.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from legacy_seq2seq.checkpoint import load_model_dir, save_model_dir
from legacy_seq2seq.conformer import ConformerEncoder, check_encoder_args
from legacy_seq2seq.rnnt_decoding import MAX_SYMBOLS_PER_FRAME, rnnt_beam_search, rnnt_greedy_decode
from legacy_seq2seq.rnnt_loss import REDUCTIONS, rnnt_loss
from legacy_seq2seq.text import BLANK_ID

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [layers, N, P]


@dataclass
class RNNTConfig:
    """Architecture of :class:`RNNTModel`; saved as ``config.json``.

    Attributes:
        n_mels: log-mel bins per input frame.
        d_model: Conformer width D.
        n_heads: attention heads.
        n_layers: Conformer blocks.
        ff_mult: feed-forward expansion.
        conv_kernel: depthwise convolution width (odd unless ``causal``).
        vocab_size: output classes V, blank (id 0) included: ``len(CharVocab)``.
        pred_dim: embedding and LSTM width P of the prediction network.
        pred_layers: LSTM layers of the prediction network.
        joint_dim: hidden width of the joint network.
        dropout: dropout in the encoder and prediction network.
        causal: streaming encoder (chunked attention, causal convolution); needed by ``StreamingRNNT``.
        chunk_size: attention chunk in encoder frames (causal only).
        schema_version: version of this config's layout.
    """

    n_mels: int = 80
    d_model: int = 144
    n_heads: int = 4
    n_layers: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    vocab_size: int = 32
    pred_dim: int = 256
    pred_layers: int = 1
    joint_dim: int = 256
    dropout: float = 0.1
    causal: bool = False
    chunk_size: int = 8
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"RNNTConfig schema_version {self.schema_version} is not supported (this code reads "
                             f"{SCHEMA_VERSION}); re-export the model with a matching version of legacy_seq2seq")
        check_encoder_args(self.n_mels, self.d_model, self.n_heads, self.n_layers, self.conv_kernel, self.causal,
                           self.chunk_size)
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size counts the blank and at least one label, got {self.vocab_size}")
        if min(self.pred_dim, self.pred_layers, self.joint_dim) < 1:
            raise ValueError("pred_dim, pred_layers and joint_dim must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class PredictionNetwork(nn.Module):
    """Label-history model: embedding (the blank id is the start symbol) -> LSTM.

    Args:
        vocab_size: V.
        dim: embedding and LSTM width P.
        n_layers: LSTM layers.
        dropout: on the embeddings and outputs (and between LSTM layers).
    """

    def __init__(self, vocab_size: int, dim: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.lstm = nn.LSTM(dim, dim, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        """``targets`` ``[B, U]`` -> ``[B, U + 1, P]``: output ``u`` has read the start symbol and ``y_1 .. y_u``."""
        start = torch.full_like(targets[:, :1], BLANK_ID)
        out, _ = self.lstm(self.dropout(self.embedding(torch.cat([start, targets], dim=1))))
        return self.dropout(out)

    def step(self, tokens: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, LSTMState]:
        """One step for N hypotheses: ``tokens`` ``[N]`` -> ``(out [N, P], state)``; ``state`` None starts fresh."""
        out, state = self.lstm(self.dropout(self.embedding(tokens[:, None])), state)
        return self.dropout(out[:, 0]), state


class JointNetwork(nn.Module):
    """``tanh(W_e enc + W_p pred) -> Linear`` to V logits, over the whole lattice or one node per hypothesis."""

    def __init__(self, enc_dim: int, pred_dim: int, joint_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.enc_proj = nn.Linear(enc_dim, joint_dim)
        self.pred_proj = nn.Linear(pred_dim, joint_dim, bias=False)
        self.out = nn.Linear(joint_dim, vocab_size)

    def forward(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """``enc`` ``[B, T, D]`` and ``pred`` ``[B, U + 1, P]`` -> logits ``[B, T, U + 1, V]``."""
        return self.out(torch.tanh(self.enc_proj(enc)[:, :, None] + self.pred_proj(pred)[:, None]))

    def step(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """``enc`` ``[N, D]`` and ``pred`` ``[N, P]`` -> logits ``[N, V]``."""
        return self.out(torch.tanh(self.enc_proj(enc) + self.pred_proj(pred)))


class RNNTModel(nn.Module):
    """Conformer encoder + LSTM prediction network + joint network.

    Args:
        config: the architecture; :meth:`save_pretrained` stores it with the weights.
    """

    def __init__(self, config: RNNTConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConformerEncoder(config.n_mels, config.d_model, config.n_heads, config.n_layers,
                                        config.ff_mult, config.conv_kernel, config.dropout, config.causal,
                                        config.chunk_size)
        self.prediction = PredictionNetwork(config.vocab_size, config.pred_dim, config.pred_layers, config.dropout)
        self.joint = JointNetwork(config.d_model, config.pred_dim, config.joint_dim, config.vocab_size)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities over the whole output lattice.

        Args:
            features: log-mel features ``[B, T, n_mels]``.
            lengths: valid frames per element ``[B]``.
            targets: label ids ``[B, U]`` in ``[1, V)`` (padded with 0).

        Returns:
            ``(log_probs [B, T', U + 1, V], encoder lengths [B])``.
        """
        encoded, out_lengths = self.encoder(features, lengths)
        return self.joint(encoded, self.prediction(targets)).log_softmax(-1), out_lengths

    def loss(self, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """RNN-T loss of a batch.

        Args:
            features: ``[B, T, n_mels]``.
            lengths: ``[B]``; each must give at least one encoder frame (7 input frames).
            targets: label ids ``[B, U]`` in ``[1, V)``, padded with 0 past ``target_lengths``.
            target_lengths: ``[B]``.
            reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (``[B]``).

        Returns:
            The negative log-likelihood: a scalar, or ``[B]`` for ``"none"``.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        log_probs, out_lengths = self(features, lengths, targets)
        return rnnt_loss(log_probs, targets, out_lengths, target_lengths, blank=BLANK_ID, reduction=reduction)

    @torch.no_grad()
    def greedy_decode(self, features: torch.Tensor, lengths: torch.Tensor,
                      max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME) -> list[list[int]]:
        """Greedy decoding of a batch ``[B, T, n_mels]``; returns B lists of label ids (see ``rnnt_decoding``)."""
        encoded, out_lengths = self.encoder(features, lengths)
        return [rnnt_greedy_decode(self, encoded[b, : int(n)], max_symbols_per_frame)
                for b, n in enumerate(out_lengths)]

    @torch.no_grad()
    def beam_search(self, features: torch.Tensor, lengths: torch.Tensor, beam_size: int = 4,
                    max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME) -> list[list[int]]:
        """Beam search of a batch ``[B, T, n_mels]``; returns the best label ids of each element."""
        encoded, out_lengths = self.encoder(features, lengths)
        return [rnnt_beam_search(self, encoded[b, : int(n)], beam_size, max_symbols_per_frame)[0][0]
                for b, n in enumerate(out_lengths)]

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` atomically (temp dir, then rename)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> RNNTModel:
        """Rebuild a model saved with :meth:`save_pretrained`; in eval mode on ``device``.

        Raises:
            legacy_seq2seq.checkpoint.CheckpointError: the directory is not a complete RNN-T model directory.
        """
        return load_model_dir(directory, cls, RNNTConfig, device=device)
