"""Location-aware attention for the LAS speller (Chorowski et al. 2015), and the tensors attention steps share.

One attention step maps the speller's query ``s_u [B, Q]`` and the listener memory ``h [B, T', D]`` to a context
``c_u [B, D]`` and weights ``a_u [B, T']``. Location-aware energies look at the previous weights through a
convolution, which favours moving forward from where the last step attended::

    f_u = F * a_{u-1}                                   # [B, T', C]: C filters of width K over the old weights
    e_{u,t} = w^T tanh(W s_u + V h_t + U f_{u,t} + b)   # [B, T']
    a_u = softmax over valid frames of e_u              # padded frames get exactly 0
    c_u = sum_t a_{u,t} h_t

The first step sees ``a_0 = one-hot(frame 0)``: decoding starts at the beginning of the utterance.
Monotonic chunkwise attention (:mod:`legacy_seq2seq.mocha`) implements the same two methods
(``prepare``, ``forward``), so the speller does not care which one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EncoderMemory:
    """The listener output an attention module reads, with its projections computed once per utterance.

    Attributes:
        values: listener states ``[B, T', D]``; padded frames are zeros.
        mask: ``[B, T']`` bool, True on valid frames.
        keys: named projections of ``values`` (``[B, T', A]`` each), filled by the attention's ``prepare``.
    """

    values: torch.Tensor
    mask: torch.Tensor
    keys: dict[str, torch.Tensor]

    @property
    def lengths(self) -> torch.Tensor:
        """Valid frames per utterance ``[B]``."""
        return self.mask.sum(-1)

    def utterance(self, b: int, copies: int = 1) -> EncoderMemory:
        """Utterance ``b`` alone, its padding cut off, repeated ``copies`` times (one row per beam hypothesis).

        Args:
            b: batch index.
            copies: how many rows the result has.

        Returns:
            A memory with ``values [copies, T'_b, D]``.
        """
        n = int(self.mask[b].sum())
        return EncoderMemory(
            values=self.values[b : b + 1, :n].expand(copies, n, self.values.size(-1)).contiguous(),
            mask=self.mask[b : b + 1, :n].expand(copies, n).contiguous(),
            keys={k: v[b : b + 1, :n].expand(copies, n, v.size(-1)).contiguous() for k, v in self.keys.items()},
        )


@dataclass
class AttentionState:
    """What an attention module carries from one output step to the next.

    Attributes:
        align: ``[B, T']`` the previous alignment: location-aware attention's previous weights, or MoChA's
            previous expected monotonic alignment ``alpha_{u-1}`` (soft mode).
        position: ``[B]`` long, the frame hard monotonic attention last stopped at (MoChA inference only).
    """

    align: torch.Tensor
    position: torch.Tensor

    @classmethod
    def initial(cls, memory: EncoderMemory) -> AttentionState:
        """All attention starts on frame 0: ``align = one-hot(0)``, ``position = 0``."""
        b, t = memory.mask.shape
        align = torch.zeros(b, t, dtype=memory.values.dtype, device=memory.values.device)
        align[:, 0] = 1.0
        return cls(align=align, position=torch.zeros(b, dtype=torch.long, device=align.device))

    def index_select(self, index: torch.Tensor) -> AttentionState:
        """Rows ``index`` (beam search reorders hypotheses)."""
        return AttentionState(self.align.index_select(0, index), self.position.index_select(0, index))


class LocationAwareAttention(nn.Module):
    """Content + location attention (Chorowski et al. 2015, "Attention-Based Models for Speech Recognition").

    Args:
        query_dim: speller state size Q.
        value_dim: listener output size D.
        attention_dim: size A of the energy MLP.
        channels: number C of location filters.
        kernel_size: width K of the location filters (odd, so the features stay centred on their frame).
    """

    def __init__(self, query_dim: int, value_dim: int, attention_dim: int, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep location features centred, got {kernel_size}")
        self.query_proj = nn.Linear(query_dim, attention_dim, bias=False)
        self.key_proj = nn.Linear(value_dim, attention_dim)  # its bias is the energy MLP's b
        self.location_conv = nn.Conv1d(1, channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.location_proj = nn.Linear(channels, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def prepare(self, values: torch.Tensor, mask: torch.Tensor) -> EncoderMemory:
        """Project the listener output once per utterance.

        Args:
            values: ``[B, T', D]`` listener states.
            mask: ``[B, T']`` bool, True on valid frames.

        Returns:
            The memory with ``keys["key"] = V h + b`` ``[B, T', A]``.
        """
        return EncoderMemory(values=values, mask=mask, keys={"key": self.key_proj(values)})

    def forward(
        self, query: torch.Tensor, memory: EncoderMemory, state: AttentionState, hard: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionState]:
        """One attention step.

        Args:
            query: ``[B, Q]`` the speller's current top-layer state.
            memory: from :meth:`prepare`.
            state: the previous step's state (``align`` = previous weights ``[B, T']``).
            hard: ignored (soft attention has no separate inference mode).

        Returns:
            ``(context [B, D], weights [B, T'], new state)``; weights sum to 1 over valid frames, 0 elsewhere.
        """
        del hard
        location = self.location_conv(state.align.unsqueeze(1)).transpose(1, 2)  # [B, T', C]
        hidden = memory.keys["key"] + self.query_proj(query).unsqueeze(1) + self.location_proj(location)
        energy = self.score(torch.tanh(hidden)).squeeze(-1)  # [B, T']
        weights = F.softmax(energy.masked_fill(~memory.mask, float("-inf")), dim=-1)
        context = torch.bmm(weights.unsqueeze(1), memory.values).squeeze(1)  # [B, D]
        return context, weights, AttentionState(align=weights, position=state.position)
