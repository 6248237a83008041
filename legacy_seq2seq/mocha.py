"""Monotonic chunkwise attention (MoChA; Chiu & Raffel 2018, "Monotonic Chunkwise Attention") for streaming LAS.

At inference a hard monotonic head scans the listener frames left to right from where the previous output step
stopped, and stops at the first frame ``j`` whose selection probability ``p_{u,j} = sigmoid(e_{u,j})`` reaches
0.5; a soft attention over the chunk of ``w`` frames ending there, ``[j - w + 1, j]``, gives the context. If it
scans past the last frame without stopping, the context is zero and the position stays put. The attention
therefore never reads a frame beyond the one it stopped at (the BiLSTM listener itself is not streaming; set
``listener_bidirectional=False`` in :class:`legacy_seq2seq.las.LASConfig` for an end-to-end streaming model).

Training cannot backpropagate through the stop decision, so it uses the expected alignment (Raffel et al. 2017)
with Gaussian noise added to the monotonic energies (which pushes ``p`` towards 0 or 1, so training matches
the hard inference)::

    alpha_{u,j} = p_{u,j} * sum_{k<=j} alpha_{u-1,k} * prod_{l=k}^{j-1} (1 - p_{u,l})
                = p_{u,j} * P_{u,j} * cumsum_j(alpha_{u-1} / P_u)           P_{u,j} = prod_{l<j} (1 - p_{u,l})
    beta_{u,j}  = sum_{k=j}^{j+w-1} alpha_{u,k} * exp(c_{u,j}) / sum_{l=k-w+1}^{k} exp(c_{u,l})

Both are written here by hand. The first is the paper's parallel cumulative-product form: the exclusive
cumulative product ``P`` is taken in log space and clamped to ``[1e-10, 1]`` before dividing, as in the
reference implementation (clamping only shrinks terms, so ``sum_j alpha_{u,j} <= 1`` still holds). For the
second, instead of the paper's ratio of moving sums of ``exp(c)``, each chunk's softmax is taken exactly over
its ``w`` frames (``unfold``) and spread back onto those frames: the same quantity, without overflow. Mass that
runs past the last valid frame is lost, so ``alpha`` and ``beta`` sum to at most 1 (not exactly 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from legacy_seq2seq.las_attention import AttentionState, EncoderMemory

CUMPROD_FLOOR = 1e-10  # smallest P_{u,j} divided by (the reference implementation's clip value)


def exclusive_cumprod(x: torch.Tensor, floor: float = CUMPROD_FLOOR) -> torch.Tensor:
    """``out_j = prod_{l<j} x_l`` (so ``out_0 = 1``) along the last axis, via ``exp(cumsum(log x))``.

    Args:
        x: ``[..., T]`` values in ``[0, 1]``; values below ``floor`` count as ``floor``.
        floor: keeps ``log`` finite.

    Returns:
        ``[..., T]``.
    """
    log_cumsum = torch.cumsum(torch.log(x.clamp(min=floor)), dim=-1)
    return torch.exp(F.pad(log_cumsum[..., :-1], (1, 0)))


def expected_monotonic_alignment(p_choose: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """The expected hard monotonic alignment of one output step (parallel form, Raffel et al. 2017, eq. 13).

    Args:
        p_choose: ``[B, T']`` stop probabilities ``p_{u,j}``; 0 on padded frames.
        previous: ``[B, T']`` the previous step's alignment ``alpha_{u-1}`` (``one-hot(0)`` before step 1).

    Returns:
        ``alpha_u [B, T']``, non-negative, summing to at most 1 per row.
    """
    cumprod = exclusive_cumprod(1.0 - p_choose)  # P_{u,j}
    return p_choose * cumprod * torch.cumsum(previous / cumprod.clamp(CUMPROD_FLOOR, 1.0), dim=-1)


def expected_chunk_attention(alpha: torch.Tensor, energy: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Spread each frame's monotonic probability over the chunk of ``w`` frames that ends there.

    Args:
        alpha: ``[B, T']`` monotonic alignment ``alpha_u`` (0 on padded frames).
        energy: ``[B, T']`` chunk energies ``c_u``, finite everywhere (padded frames are never inside the chunk
            of a valid frame, because padding is on the right).
        chunk_size: ``w``.

    Returns:
        ``beta_u [B, T']``; ``beta_u`` sums to ``alpha_u``'s sum per row.
    """
    t = alpha.size(-1)
    padded = F.pad(energy, (chunk_size - 1, 0), value=float("-inf"))  # frames before 0 are outside every chunk
    windows = F.softmax(padded.unfold(-1, chunk_size, 1), dim=-1)  # [B, T', w]: chunk k = frames k-w+1 .. k
    spread = alpha.unsqueeze(-1) * windows  # [B, T', w]: what chunk k gives to frame k - (w - 1) + m
    beta = sum(F.pad(spread[..., m], (m, chunk_size - 1 - m)) for m in range(chunk_size))  # [B, T' + w - 1]
    return beta[..., chunk_size - 1 :][..., :t]


class MonotonicChunkwiseAttention(nn.Module):
    """MoChA: soft expected alignment in training (``hard=False``), hard monotonic scan at inference.

    Args:
        query_dim: speller state size Q.
        value_dim: listener output size D.
        attention_dim: size A of both energy MLPs.
        chunk_size: ``w``, frames attended to at and before the stop frame.
        init_bias: initial ``r`` of the monotonic energy; negative, so early training attends cautiously.
        noise_std: std of the Gaussian pre-sigmoid noise added in training mode (soft mode only).
    """

    def __init__(
        self, query_dim: int, value_dim: int, attention_dim: int, chunk_size: int, init_bias: float = -4.0,
        noise_std: float = 1.0,
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.noise_std = noise_std
        # Monotonic energy e = g v^T/||v|| tanh(W s + V h + b) + r (weight-normalized, as in the paper).
        self.mono_query = nn.Linear(query_dim, attention_dim, bias=False)
        self.mono_key = nn.Linear(value_dim, attention_dim)
        self.mono_v = nn.Parameter(torch.randn(attention_dim) / math.sqrt(attention_dim))
        self.mono_g = nn.Parameter(torch.tensor(1.0 / math.sqrt(attention_dim)))
        self.mono_r = nn.Parameter(torch.tensor(float(init_bias)))
        # Chunk energy c = w^T tanh(W' s + V' h + b').
        self.chunk_query = nn.Linear(query_dim, attention_dim, bias=False)
        self.chunk_key = nn.Linear(value_dim, attention_dim)
        self.chunk_score = nn.Linear(attention_dim, 1, bias=False)

    def prepare(self, values: torch.Tensor, mask: torch.Tensor) -> EncoderMemory:
        """Project the listener output ``[B, T', D]`` (mask ``[B, T']``) once per utterance."""
        return EncoderMemory(values=values, mask=mask,
                             keys={"mono": self.mono_key(values), "chunk": self.chunk_key(values)})

    def monotonic_energy(self, query: torch.Tensor, memory: EncoderMemory) -> torch.Tensor:
        """``e_u [B, T']`` from the query ``[B, Q]``; the stop probability is ``sigmoid(e_u)``."""
        hidden = torch.tanh(memory.keys["mono"] + self.mono_query(query).unsqueeze(1))
        return hidden @ (self.mono_g * self.mono_v / self.mono_v.norm()) + self.mono_r

    def chunk_energy(self, query: torch.Tensor, memory: EncoderMemory) -> torch.Tensor:
        """``c_u [B, T']`` from the query ``[B, Q]``."""
        hidden = torch.tanh(memory.keys["chunk"] + self.chunk_query(query).unsqueeze(1))
        return self.chunk_score(hidden).squeeze(-1)

    def forward(
        self, query: torch.Tensor, memory: EncoderMemory, state: AttentionState, hard: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """One attention step.

        Args:
            query: ``[B, Q]`` the speller's current top-layer state.
            memory: from :meth:`prepare`.
            state: the previous step's state (``align = alpha_{u-1}`` soft; ``position`` hard).
            hard: hard monotonic + chunk attention (inference) instead of the expected alignment (training).

        Returns:
            ``(context [B, D], weights [B, T'], new state)``. Soft: weights are ``beta_u`` (sum <= 1). Hard: a
            softmax over the chunk ending at the stop frame, or all zeros where the head did not stop.
        """
        if hard:
            return self._hard(query, memory, state)
        energy = self.monotonic_energy(query, memory)
        if self.training and self.noise_std > 0:
            energy = energy + self.noise_std * torch.randn_like(energy)
        p_choose = torch.sigmoid(energy).masked_fill(~memory.mask, 0.0)
        alpha = expected_monotonic_alignment(p_choose, state.align)
        chunk = self.chunk_energy(query, memory).masked_fill(~memory.mask, 0.0)
        beta = expected_chunk_attention(alpha, chunk, self.chunk_size)
        context = torch.bmm(beta.unsqueeze(1), memory.values).squeeze(1)
        return context, beta, AttentionState(align=alpha, position=state.position)

    def _hard(
        self, query: torch.Tensor, memory: EncoderMemory, state: AttentionState
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        # The energies of all frames come from one batched op, but the outcome equals a left-to-right scan:
        # the stop frame is the first frame >= the previous position with p >= 0.5 (e >= 0), and the chunk
        # ends there, so nothing after the stop frame influences the context.
        energy = self.monotonic_energy(query, memory)  # [B, T']
        t = energy.size(-1)
        frames = torch.arange(t, device=energy.device)
        stop = (energy >= 0) & memory.mask & (frames >= state.position.unsqueeze(1))
        attended = stop.any(-1)  # [B]
        first = torch.where(stop, frames, t).amin(-1)
        position = torch.where(attended, first, state.position)
        window = (frames <= position.unsqueeze(1)) & (frames > position.unsqueeze(1) - self.chunk_size)
        window = window & attended.unsqueeze(1)
        chunk = self.chunk_energy(query, memory).masked_fill(~window, float("-inf"))
        chunk = chunk.masked_fill(~attended.unsqueeze(1), 0.0)  # rows that did not stop: no -inf-only softmax
        weights = F.softmax(chunk, dim=-1) * attended.unsqueeze(1)
        context = torch.bmm(weights.unsqueeze(1), memory.values).squeeze(1)
        align = F.one_hot(position, t).to(weights.dtype) * attended.unsqueeze(1)
        return context, weights, AttentionState(align=align, position=position)
