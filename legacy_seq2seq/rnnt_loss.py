"""The RNN-T loss (Graves, 2012) in pure torch: the forward algorithm over the T x (U + 1) lattice, in log space.

Written here because the maintained kernels (``torchaudio.functional.rnnt_loss``, warp-transducer, k2) are out
of reach: torchaudio cannot be installed next to this project's transformers, and the others need a native
build. Autograd differentiates the recursion, so no hand-written backward pass is needed.

Node ``(t, u)`` means "``u`` labels emitted, at frame ``t``". From it a blank moves to ``(t + 1, u)`` and label
``y_{u+1}`` to ``(t, u + 1)``; the paths run from ``(0, 0)`` to a final blank out of ``(T - 1, U)``::

    alpha(t, u) = logaddexp(alpha(t - 1, u) + blank(t - 1, u),  alpha(t, u - 1) + label(t, u - 1))
    log P(y | x) = alpha(T - 1, U) + blank(T - 1, U)

Every node of an anti-diagonal ``n = t + u`` depends only on diagonal ``n - 1``, so the loop runs over the
``T + U`` diagonals and each step is one vectorized operation over the batch and ``u``.
"""

from __future__ import annotations

import logging

import torch

from legacy_seq2seq.text import BLANK_ID

logger = logging.getLogger(__name__)

# Log-probability of "no path": finite, so logaddexp's gradient stays finite (-inf - -inf would be NaN).
_NO_PATH = -1.0e30
REDUCTIONS = ("mean", "sum", "none")


def _skew(x: torch.Tensor, n_diagonals: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``[B, T, W]`` -> ``([B, N, W], inside [N, W])`` with ``out[b, n, u] = x[b, n - u, u]``."""
    t_len, width = x.size(1), x.size(2)
    t = torch.arange(n_diagonals, device=x.device)[:, None] - torch.arange(width, device=x.device)[None, :]
    inside = (t >= 0) & (t < t_len)
    index = t.clamp(0, t_len - 1)[None].expand(x.size(0), -1, -1)
    return x.gather(1, index).masked_fill(~inside, _NO_PATH), inside


def rnnt_loss(log_probs: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
              target_lengths: torch.Tensor, blank: int = BLANK_ID, reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood of ``targets`` under the transducer's output lattice.

    Args:
        log_probs: joint-network log-probabilities ``[B, T, U + 1, V]`` (log-softmax over V).
        targets: label ids ``[B, U]`` (anything in ``[0, V)`` past ``target_lengths``).
        logit_lengths: valid frames per element ``[B]``, each at least 1.
        target_lengths: labels per element ``[B]``, each at most U.
        blank: the blank id.
        reduction: ``"mean"`` (over the batch, as torchaudio), ``"sum"`` or ``"none"`` (``[B]``).

    Returns:
        The loss (float32): a scalar, or ``[B]`` for ``"none"``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if log_probs.dim() != 4 or targets.dim() != 2 or log_probs.size(2) != targets.size(1) + 1:
        raise ValueError(f"expected log_probs [B, T, U + 1, V] and targets [B, U], got {list(log_probs.shape)} "
                         f"and {list(targets.shape)}")
    b, t_len, width, _ = log_probs.shape
    u_len = width - 1
    logit_lengths, target_lengths = logit_lengths.to(log_probs.device), target_lengths.to(log_probs.device)
    if bool((logit_lengths < 1).any()) or bool((logit_lengths > t_len).any()):
        raise ValueError(f"logit_lengths must be in [1, {t_len}], got {logit_lengths.tolist()}")
    if bool((target_lengths < 0).any()) or bool((target_lengths > u_len).any()):
        raise ValueError(f"target_lengths must be in [0, {u_len}], got {target_lengths.tolist()}")

    lp = log_probs.float()
    blank_lp = lp[..., blank]  # (B, T, U+1)
    label_lp = lp[:, :, :u_len].gather(-1, targets.long()[:, None, :, None].expand(b, t_len, u_len, 1))[..., 0]

    n_diagonals = t_len + u_len  # diagonals 0 .. T + U - 1; the last node (T - 1, U) sits on T - 1 + U
    blank_skew, inside = _skew(blank_lp, n_diagonals)  # (B, N, U+1): blank out of node (n - u, u)
    label_skew, _ = _skew(label_lp, n_diagonals)  # (B, N, U): label y_{u+1} out of node (n - u, u)

    alpha = torch.full((b, width), _NO_PATH, device=lp.device)
    alpha[:, 0] = 0.0  # node (0, 0)
    alphas = [alpha]
    no_path = torch.full((b, 1), _NO_PATH, device=lp.device)
    for n in range(1, n_diagonals):
        from_blank = alpha + blank_skew[:, n - 1]  # (n - 1 - u, u) -> (n - u, u)
        from_label = torch.cat([no_path, alpha[:, :-1] + label_skew[:, n - 1]], dim=1)  # (n - u, u - 1) -> (n - u, u)
        alpha = torch.logaddexp(from_blank, from_label).masked_fill(~inside[n], _NO_PATH)
        alphas.append(alpha)
    alpha_all = torch.stack(alphas, dim=1)  # (B, N, U+1)

    rows = torch.arange(b, device=lp.device)
    last_t = logit_lengths.long() - 1
    last_u = target_lengths.long()
    log_likelihood = alpha_all[rows, last_t + last_u, last_u] + blank_lp[rows, last_t, last_u]
    nll = -log_likelihood
    if reduction == "none":
        return nll
    return nll.sum() if reduction == "sum" else nll.mean()
