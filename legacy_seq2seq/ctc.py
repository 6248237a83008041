"""CTC speech recognition (Graves et al., 2006) on a Conformer encoder: config, model, greedy and beam decoding.

::

    features [B, T, n_mels] -> ConformerEncoder -> [B, T', D] -> Linear -> log-probs [B, T', V]   (id 0: blank)

Training uses ``torch.nn.functional.ctc_loss``. Decoding: :func:`ctc_greedy_decode` (best path: collapse repeats,
drop blanks) and :func:`ctc_prefix_beam_search` (sums every alignment of each prefix). A checkpoint directory
(``config.json`` + ``model.safetensors``) rebuilds the model: :meth:`CTCModel.save_pretrained` /
:meth:`CTCModel.from_pretrained`.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from legacy_seq2seq.checkpoint import load_model_dir, save_model_dir
from legacy_seq2seq.conformer import ConformerEncoder, check_encoder_args
from legacy_seq2seq.text import BLANK_ID

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
REDUCTIONS = ("mean", "sum", "none")


@dataclass
class CTCConfig:
    """Architecture of :class:`CTCModel`; saved as ``config.json``.

    Attributes:
        n_mels: log-mel bins per input frame.
        d_model: Conformer width.
        n_heads: attention heads.
        n_layers: Conformer blocks.
        ff_mult: feed-forward expansion.
        conv_kernel: depthwise convolution width (odd unless ``causal``).
        vocab_size: output classes V, blank (id 0) included: ``len(CharVocab)``.
        dropout: dropout in the encoder.
        causal: streaming encoder (chunked attention, causal convolution).
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
    dropout: float = 0.1
    causal: bool = False
    chunk_size: int = 8
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"CTCConfig schema_version {self.schema_version} is not supported (this code reads "
                             f"{SCHEMA_VERSION}); re-export the model with a matching version of legacy_seq2seq")
        check_encoder_args(self.n_mels, self.d_model, self.n_heads, self.n_layers, self.conv_kernel, self.causal,
                           self.chunk_size)
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size counts the blank and at least one label, got {self.vocab_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def ctc_greedy_decode(log_probs: torch.Tensor) -> list[int]:
    """Best-path decoding of one utterance: per-frame argmax, repeats collapsed, blanks removed.

    Args:
        log_probs: ``[T, V]`` (only the valid frames).

    Returns:
        The label ids, each in ``[1, V)``.
    """
    out: list[int] = []
    prev = BLANK_ID
    for k in log_probs.argmax(-1).tolist():
        if k != prev and k != BLANK_ID:
            out.append(k)
        prev = k
    return out


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


def ctc_prefix_beam_search(log_probs: torch.Tensor, beam_size: int = 8) -> list[tuple[list[int], float]]:
    """CTC prefix beam search (Hannun et al., 2014, without a language model) over one utterance.

    Written by hand: the maintained implementations live in torchaudio (``ctc_decoder``, flashlight-text) or need
    a KenLM build (pyctcdecode), and torchaudio cannot be installed next to this project's transformers.
    Each prefix keeps two log-probabilities, of its alignments ending in a blank and in its last label, so a
    prefix's score sums all its alignments. Width 1 is not best-path decoding in general (a prefix can beat the
    best path's by summing many alignments); they agree when every frame's argmax dominates.

    Args:
        log_probs: ``[T, V]`` per-frame log-probabilities (only the valid frames).
        beam_size: prefixes kept after each frame.

    Returns:
        Up to ``beam_size`` ``(label ids, log-probability)`` pairs, best first.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be positive, got {beam_size}")
    neg = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}  # prefix -> (log p_blank, log p_label)
    for frame in log_probs.double().tolist():
        nxt: defaultdict[tuple[int, ...], list[float]] = defaultdict(lambda: [neg, neg])
        for prefix, (p_b, p_nb) in beams.items():
            total = _logaddexp(p_b, p_nb)
            stay = nxt[prefix]
            stay[0] = _logaddexp(stay[0], total + frame[BLANK_ID])
            last = prefix[-1] if prefix else None
            if last is not None:  # the last label repeated without a blank in between collapses into it
                stay[1] = _logaddexp(stay[1], p_nb + frame[last])
            for k in range(len(frame)):
                if k == BLANK_ID:
                    continue
                grown = nxt[prefix + (k,)]
                # a repeated label starts a new symbol only after a blank
                grown[1] = _logaddexp(grown[1], (p_b if k == last else total) + frame[k])
        ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:beam_size]
        beams = {prefix: (p[0], p[1]) for prefix, p in ranked}
    return [(list(prefix), _logaddexp(p_b, p_nb)) for prefix, (p_b, p_nb) in beams.items()]


class CTCModel(nn.Module):
    """Conformer encoder + linear CTC head.

    Args:
        config: the architecture; :meth:`save_pretrained` stores it with the weights.
    """

    def __init__(self, config: CTCConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConformerEncoder(config.n_mels, config.d_model, config.n_heads, config.n_layers,
                                        config.ff_mult, config.conv_kernel, config.dropout, config.causal,
                                        config.chunk_size)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame label log-probabilities.

        Args:
            features: log-mel features ``[B, T, n_mels]``.
            lengths: valid frames per element ``[B]``.

        Returns:
            ``(log_probs [B, T', V], lengths [B])`` at the encoder's frame rate (a quarter of the input's).
        """
        encoded, out_lengths = self.encoder(features, lengths)
        return self.head(encoded).log_softmax(-1), out_lengths

    def loss(self, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """CTC loss (``torch.nn.functional.ctc_loss``; impossible alignments count zero).

        Args:
            features: ``[B, T, n_mels]``.
            lengths: ``[B]``.
            targets: label ids ``[B, U]`` in ``[1, V)``, padded with anything past ``target_lengths``.
            target_lengths: ``[B]``.
            reduction: ``"mean"`` (per-utterance loss divided by its target length, then averaged, as torch
                does), ``"sum"`` (total negative log-likelihood) or ``"none"`` (``[B]``).

        Returns:
            The loss: a scalar, or ``[B]`` for ``"none"``.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        log_probs, out_lengths = self(features, lengths)
        return F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths, blank=BLANK_ID,
                          reduction=reduction, zero_infinity=True)

    @torch.no_grad()
    def greedy_decode(self, features: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best-path decoding of a batch ``[B, T, n_mels]``; returns B lists of label ids."""
        log_probs, out_lengths = self(features, lengths)
        return [ctc_greedy_decode(log_probs[b, : int(n)]) for b, n in enumerate(out_lengths)]

    @torch.no_grad()
    def beam_search(self, features: torch.Tensor, lengths: torch.Tensor, beam_size: int = 8) -> list[list[int]]:
        """Prefix beam search of a batch ``[B, T, n_mels]``; returns the best label ids of each element."""
        log_probs, out_lengths = self(features, lengths)
        return [ctc_prefix_beam_search(log_probs[b, : int(n)], beam_size)[0][0] for b, n in enumerate(out_lengths)]

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` atomically (temp dir, then rename)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> CTCModel:
        """Rebuild a model saved with :meth:`save_pretrained`; in eval mode on ``device``.

        Raises:
            legacy_seq2seq.checkpoint.CheckpointError: the directory is not a complete CTC model directory.
        """
        return load_model_dir(directory, cls, CTCConfig, device=device)
