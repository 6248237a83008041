"""CTC prefix scores for joint CTC-attention beam search (Watanabe et al. 2017, Algorithm 2; ESPnet's
``CTCPrefixScore``), over one utterance's CTC log-probabilities ``x [T, V]`` and ``K`` hypotheses at once.

The prefix score of a label sequence ``h`` is the probability of every CTC path whose collapsed output starts with
``h``: ``psi(h) = sum_nu P(h + nu | x)``. For ``h = g + c`` it comes from two forward variables of ``g``,
``r_t^n(g)`` / ``r_t^b(g)`` (log-probability of the paths over frames ``0..t`` that collapse to ``g`` and end in a
label / a blank)::

    phi_t      = r_t^b(g)                          if c == last(g)   (a repeat needs a blank in between)
               = logaddexp(r_t^n(g), r_t^b(g))     otherwise
    r_0^n(h)   = x_0(c) if g is empty else -inf;    r_0^b(h) = -inf
    r_t^n(h)   = logaddexp(r_{t-1}^n(h), phi_{t-1}) + x_t(c)
    r_t^b(h)   = logaddexp(r_{t-1}^n(h), r_{t-1}^b(h)) + x_t(blank)
    psi(h)     = logsumexp(r_0^n(h), phi_{t-1} + x_t(c) for t >= 1)
    psi(g + eos) = logaddexp(r_{T-1}^n(g), r_{T-1}^b(g))            # the whole sequence is exactly g

A beam search adds ``psi(g + c) - psi(g)`` (a log-probability increment, <= 0) to the attention score of ``c``.
Every candidate of the vocabulary is scored (``[T, 2, K, V]`` per step): cheap for a character vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from legacy_seq2seq.text import BLANK_ID


@dataclass
class CTCPrefixState:
    """The CTC forward variables of ``K`` prefixes.

    Attributes:
        r: ``[T, 2, K]`` log-probabilities of each prefix's paths up to frame ``t`` ending in a label (index 0)
            or a blank (index 1).
        psi: ``[K]`` prefix scores ``log psi(g)`` (0 for the empty prefix).
        last: ``[K]`` long, each prefix's last label (-1: empty prefix).
    """

    r: torch.Tensor
    psi: torch.Tensor
    last: torch.Tensor


class CTCPrefixScorer:
    """Prefix scores of every one-label extension of ``K`` prefixes.

    Args:
        log_probs: ``[T, V]`` CTC log-probabilities of one utterance (valid frames only).
        eos_id: the end id: its score is the probability that the output is exactly the prefix.
        blank_id: the CTC blank (never a candidate).
        invalid_ids: other ids that are never candidates (e.g. the start id).
    """

    def __init__(self, log_probs: torch.Tensor, eos_id: int, blank_id: int = BLANK_ID,
                 invalid_ids: Sequence[int] = ()) -> None:
        if log_probs.dim() != 2 or log_probs.size(0) < 1:
            raise ValueError(f"log_probs must be [T, V] with T >= 1, got {list(log_probs.shape)}")
        self.x = log_probs.float()
        self.eos_id, self.blank_id = eos_id, blank_id
        self.invalid = sorted({blank_id, *invalid_ids} - {eos_id})

    def initial_state(self, k: int) -> CTCPrefixState:
        """``k`` copies of the empty prefix: no label paths, blank paths ``cumsum_t x_t(blank)``."""
        t = self.x.size(0)
        r = self.x.new_full((t, 2, k), -math.inf)
        r[:, 1] = self.x[:, self.blank_id].cumsum(0).unsqueeze(1)
        return CTCPrefixState(r=r, psi=self.x.new_zeros(k), last=torch.full((k,), -1, device=self.x.device))

    def score(self, state: CTCPrefixState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score every extension ``g + c`` of every prefix ``g`` in ``state``.

        Returns:
            ``(increment [K, V], psi [K, V], r [T, 2, K, V])``: ``psi(g + c) - psi(g)`` (-inf for the blank and the
            invalid ids), ``log psi(g + c)``, and the forward variables that :meth:`select` keeps.
        """
        x = self.x
        t_len, v = x.shape
        k = state.psi.size(0)
        r_sum = torch.logaddexp(state.r[:, 0], state.r[:, 1])  # [T, K]
        phi = r_sum.unsqueeze(-1).expand(t_len, k, v).clone()  # [T, K, V]
        rows = (state.last >= 0).nonzero().squeeze(1)
        phi[:, rows, state.last[rows]] = state.r[:, 1, rows]  # repeating the last label needs a blank first
        r = x.new_full((t_len, 2, k, v), -math.inf)
        r[0, 0] = torch.where((state.last < 0).unsqueeze(1), x[0].expand(k, v), -math.inf)
        for t in range(1, t_len):
            r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + x[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + x[t, self.blank_id]
        psi = torch.logsumexp(torch.cat([r[0, 0].unsqueeze(0), phi[:-1] + x[1:].unsqueeze(1)]), dim=0)  # [K, V]
        psi[:, self.eos_id] = r_sum[-1]
        psi[:, self.invalid] = -math.inf
        increment = psi - state.psi.unsqueeze(1)  # -inf - -inf (a prefix CTC cannot emit) is nan: make it -inf
        return increment.masked_fill(increment.isnan(), -math.inf), psi, r

    def select(self, psi: torch.Tensor, r: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor
               ) -> CTCPrefixState:
        """The states of the chosen extensions ``g_rows[i] + tokens[i]`` (the next step's prefixes).

        Args:
            psi: ``[K, V]`` from :meth:`score`.
            r: ``[T, 2, K, V]`` from :meth:`score`.
            rows: ``[K']`` long, the prefix each extension grows.
            tokens: ``[K']`` long, the label appended (not eos).
        """
        return CTCPrefixState(r=r[:, :, rows, tokens], psi=psi[rows, tokens], last=tokens.clone())
