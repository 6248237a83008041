"""Guided (diagonal) attention loss (Tachibana et al. 2017), shared by the attention models whose alignment is
monotonic and roughly linear: Tacotron 2 and Translatotron (decoder step x text symbol / source frame) and LAS
(output character x listener frame).

Layout: ``alignments [B, S, K]``, ``S`` query steps (the decoder's steps) each holding a distribution over ``K``
keys (the memory it attends to), with ``S_b`` and ``K_b`` valid per item::

    W[s, k] = 1 - exp(-(k / K_b - s / S_b)^2 / (2 g^2))        # 0 on the diagonal, -> 1 far from it
    loss    = sum_{b, s < S_b, k < K_b} A[b, s, k] W[b, s, k] / sum_b S_b
"""

from __future__ import annotations

import torch

GUIDED_ATTENTION_G = 0.2  # width of the diagonal band (Tachibana et al. 2017)


def guided_attention_loss(alignments: torch.Tensor, text_lengths: torch.Tensor, decoder_lengths: torch.Tensor,
                          g: float = GUIDED_ATTENTION_G) -> torch.Tensor:
    """Penalty for attention far from the diagonal: per decoder step, the attention mass off the diagonal band,
    ``sum_n A[t, n] * (1 - exp(-(n/N - t/T)^2 / (2 g^2)))``, averaged over the valid steps.

    Tachibana et al. (2017) average ``A * W`` over all ``(t, n)`` cells instead; since each step's weights sum to 1,
    that mean is at most ``1/N`` and its gradient shrinks with the text length (measured here: with 60-100
    characters it was ~0.01 beside a mel loss of ~0.5, and a CPU run did not align). Summing over the symbols keeps
    the same minimiser with a scale in ``[0, 1]`` whatever the length.

    Args:
        alignments: ``[B, T, L]`` attention weights (decoder step x symbol; LAS: output step ``U`` x listener
            frame ``T'``).
        text_lengths: ``[B]`` valid keys ``N`` per item (symbols; LAS: listener frames ``T'_b``).
        decoder_lengths: ``[B]`` valid decoder steps ``T`` per item (LAS: output steps ``U_b``).
        g: band width; 0.2 as in Tachibana et al. (2017).

    Returns:
        Scalar in ``[0, 1]``: 0 for a perfectly diagonal alignment, near 1 for one far from it. Cells past either
        length never count (their weights may hold anything).
    """
    _, T, L = alignments.shape
    t = torch.arange(T, device=alignments.device).float()[None, :, None] / decoder_lengths.float()[:, None, None]
    n = torch.arange(L, device=alignments.device).float()[None, None, :] / text_lengths.float()[:, None, None]
    weight = 1.0 - torch.exp(-((n - t) ** 2) / (2 * g * g))  # [B, T, L]
    steps = _mask(decoder_lengths, T)
    valid = (steps[:, :, None] & _mask(text_lengths, L)[:, None, :]).float()
    return (alignments * weight * valid).sum() / steps.float().sum().clamp_min(1.0)


def _mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, size]`` bool, True on valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


__all__ = ["GUIDED_ATTENTION_G", "guided_attention_loss"]
