"""A d-vector speaker encoder (Wan et al. 2018, "Generalized End-to-End Loss for Speaker Verification").

The network and its training loss::

    log-mel [B, T, n_mels] -> num_layers x LSTMP (hidden_dim cells, projected to embedding_dim)
        -> top layer's output at the last valid frame -> L2 normalize -> d-vector e [B, D]

    GE2E (softmax variant), a batch of N speakers x M utterances, embeddings e_ji [N, M, D]:
        c_k = mean_m e_km                      centroid of speaker k
        c_j^(-i) = (sum_m e_jm - e_ji) / (M - 1)  own centroid without the utterance itself (stabler)
        S_ji,k = w * cos(e_ji, c_k) + b        (c_j^(-i) for k = j), w > 0 and b learned (init 10, -5)
        L = mean_ji [ -S_ji,j + log sum_k exp(S_ji,k) ]  = cross-entropy of S_ji against speaker j

Translatotron (:mod:`legacy_seq2seq.translatotron`) conditions its decoder on the d-vector of the source
utterance; as in Jia et al. (2019) the encoder is trained on its own with GE2E on the corpus speakers, then frozen.
:meth:`SpeakerEncoder.embed_utterance` averages the d-vectors of overlapping windows of one long utterance (the
paper's inference mode: 50% overlapping partial utterances, averaged, then renormalized).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from legacy_seq2seq.checkpoint import load_model_dir, save_model_dir

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GE2E_INIT_W, GE2E_INIT_B = 10.0, -5.0  # initial similarity scale and offset (Wan et al. 2018, section 2.1)
WINDOW_FRAMES = 160  # partial utterance: 1.6 s at 100 frames/s (Wan et al. 2018, section 3.1)


@dataclass(frozen=True)
class SpeakerEncoderConfig:
    """Speaker encoder sizes (defaults: the paper's 3 x LSTMP 768 -> 256); saved as ``config.json``."""

    n_mels: int = 40
    hidden_dim: int = 768  # LSTM cells per layer
    num_layers: int = 3
    embedding_dim: int = 256  # the LSTM projection size D, also the d-vector size
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"SpeakerEncoderConfig schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        if self.n_mels < 1 or self.num_layers < 1:
            raise ValueError("need n_mels >= 1 and num_layers >= 1")
        if not 0 < self.embedding_dim < self.hidden_dim:
            raise ValueError(f"need 0 < embedding_dim < hidden_dim (an LSTM projection shrinks), got "
                             f"{self.embedding_dim} and {self.hidden_dim}")


class SpeakerEncoder(nn.Module):
    """Log-mel frames -> unit-norm d-vector (see the module docstring)."""

    def __init__(self, config: SpeakerEncoderConfig):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.n_mels, config.hidden_dim, config.num_layers, batch_first=True,
                            proj_size=config.embedding_dim)

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embed a batch of utterances.

        Args:
            mels: ``[B, T, n_mels]`` log-mel frames.
            lengths: ``[B]`` valid frames per utterance (>= 1); ``None``: all ``T``.

        Returns:
            ``[B, D]`` L2-normalized d-vectors (independent of the padding).
        """
        if mels.dim() != 3 or mels.shape[-1] != self.config.n_mels:
            raise ValueError(f"mels must be [B, T, {self.config.n_mels}], got {list(mels.shape)}")
        if lengths is None:
            lengths = torch.full((mels.shape[0],), mels.shape[1], dtype=torch.long)
        packed = pack_padded_sequence(mels, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: [num_layers, B, D] at each utterance's last valid frame
        return F.normalize(h[-1], dim=-1)

    @torch.no_grad()
    def embed_utterance(self, mel: torch.Tensor, window: int = WINDOW_FRAMES) -> torch.Tensor:
        """The d-vector of one (long) utterance: mean of 50%-overlapping windows' d-vectors, renormalized.

        Args:
            mel: ``[T, n_mels]`` log-mel frames.
            window: frames per partial utterance (hop ``window // 2``); shorter utterances are one window.

        Returns:
            ``[D]`` unit-norm d-vector.
        """
        if mel.shape[0] <= window:
            return self(mel[None])[0]
        windows = mel.unfold(0, window, max(1, window // 2)).transpose(1, 2)  # [n, window, n_mels]
        return F.normalize(self(windows).mean(0), dim=-1)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (atomic)."""
        return save_model_dir(directory, self, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> SpeakerEncoder:
        """Rebuild an encoder saved with :meth:`save_pretrained` (eval mode); raises ``CheckpointError``."""
        return load_model_dir(directory, cls, SpeakerEncoderConfig, device)


class GE2ELoss(nn.Module):
    """Generalized end-to-end loss, softmax variant, with its learned scale ``w`` and offset ``b``.

    Train ``w`` and ``b`` with the encoder (put this module's parameters in the same optimizer).
    """

    def __init__(self, init_w: float = GE2E_INIT_W, init_b: float = GE2E_INIT_B):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    def similarity(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities ``S [N, M, N]`` of every utterance to every speaker centroid.

        Args:
            embeddings: ``[N, M, D]`` d-vectors, N speakers x M utterances each (N >= 2, M >= 2).

        Returns:
            ``[N, M, N]``; ``S[j, i, j]`` uses the centroid of speaker ``j`` without utterance ``i``.
        """
        N, M, _ = embeddings.shape
        if N < 2 or M < 2:
            raise ValueError(f"GE2E needs at least 2 speakers x 2 utterances, got {N} x {M}")
        e = F.normalize(embeddings, dim=-1)
        centroids = F.normalize(e.mean(1), dim=-1)  # [N, D]
        own = F.normalize((e.sum(1, keepdim=True) - e) / (M - 1), dim=-1)  # [N, M, D]
        cos = torch.einsum("jmd,kd->jmk", e, centroids)  # [N, M, N]
        own_cos = (e * own).sum(-1)  # [N, M]
        same = torch.eye(N, dtype=torch.bool, device=e.device)[:, None, :]  # [N, 1, N]
        cos = torch.where(same, own_cos[..., None], cos)
        return self.w.clamp_min(1e-6) * cos + self.b

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scalar GE2E softmax loss of ``embeddings [N, M, D]``, averaged over the N x M utterances."""
        N, M, _ = embeddings.shape
        logits = self.similarity(embeddings).reshape(N * M, N)
        speakers = torch.arange(N, device=embeddings.device).repeat_interleave(M)
        return F.cross_entropy(logits, speakers)


def speaker_encoder_tiny(n_mels: int = 40) -> SpeakerEncoderConfig:
    """A debug-size config (1 x LSTMP 32 -> 8) for CPU smoke runs and tests."""
    return SpeakerEncoderConfig(n_mels=n_mels, hidden_dim=32, num_layers=1, embedding_dim=8)


__all__ = ["GE2ELoss", "SpeakerEncoder", "SpeakerEncoderConfig", "speaker_encoder_tiny"]
