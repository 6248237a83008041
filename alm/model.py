"""The decoder: a stock transformers Llama over the shared vocabulary, with an optionally weighted loss.

:class:`AlmForCausalLM` *is* a ``LlamaForCausalLM`` (subclass, same module tree and weight names
``model.embed_tokens``, ``model.layers.*``, ``lm_head``) whose ``config_class`` is :class:`AlmConfig`. So
``generate`` (greedy, beam, sampling, KV cache), ``save_pretrained`` / ``from_pretrained`` (config.json +
model.safetensors), SDPA / flash attention, gradient checkpointing, the Trainer and DeepSpeed all work
unchanged, and ``AutoModelForCausalLM.from_pretrained(checkpoint)`` rebuilds it once ``alm`` is imported.

The only addition is ``loss_weights`` in :meth:`AlmForCausalLM.forward`: a per-position weight, e.g. a small
weight on prompt tokens so the model also learns to model its inputs.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaForCausalLM
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils.deprecation import deprecate_kwarg

from alm.config import AlmConfig
from alm.prompts import IGNORE_INDEX

log = logging.getLogger(__name__)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy per position: ``[B, L - 1]`` float32, where position ``t`` of ``logits [B, L, V]``
    predicts ``labels[t + 1]`` (``labels [B, L]``); 0 where the label is ``-100``."""
    target = labels[:, 1:].to(logits.device)
    return F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target, ignore_index=IGNORE_INDEX,
                           reduction="none")


def weighted_causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, loss_weights: torch.Tensor | None = None,
                            ce: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy, weighted per position.

    Position ``t`` of ``logits`` predicts ``labels[t + 1]`` with weight ``loss_weights[t + 1]``; positions whose
    label is ``-100`` count for nothing. The result is ``sum(w * ce) / sum(w)`` over scored positions (without
    ``loss_weights``: the plain mean over scored positions, as transformers' causal LM loss).

    Args:
        logits: ``[B, L, V]``.
        labels: ``[B, L]`` int64, ``-100`` where not scored.
        loss_weights: ``[B, L]`` float, aligned with ``labels``, or ``None`` (all 1).
        ce: :func:`token_losses` of ``logits`` and ``labels`` when the caller has it already.

    Returns:
        Scalar loss (float32).
    """
    ce = token_losses(logits, labels) if ce is None else ce
    target = labels[:, 1:].to(ce.device)
    weight = (target != IGNORE_INDEX).to(torch.float32)
    if loss_weights is not None:
        weight = weight * loss_weights[:, 1:].to(ce.device, torch.float32)
    return (ce * weight).sum() / weight.sum().clamp_min(torch.finfo(torch.float32).tiny)


class AlmForCausalLM(LlamaForCausalLM):
    """Llama decoder over text, unit and codec tokens (see module docstring).

    Build with ``AlmForCausalLM(alm_tiny(vocab))``; load with ``AlmForCausalLM.from_pretrained(path)``.
    """

    config_class = AlmConfig
    config: AlmConfig

    def __init__(self, config: AlmConfig) -> None:
        if config.vocab_layout is None:
            raise ValueError("AlmForCausalLM needs a config with a vocab_layout (see alm.config presets)")
        super().__init__(config)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        loss_weights: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Causal LM forward.

        Args:
            input_ids: ``[B, L]`` ids (or ``inputs_embeds`` ``[B, L, H]``).
            attention_mask: ``[B, L(+past)]``, 1 for real tokens, 0 for padding.
            cache: KV cache from a previous call (``past_key_values`` is accepted as the old name).
            labels: ``[B, L]``, ``-100`` where no loss; shifted inside (position t predicts ``labels[t + 1]``).
            loss_weights: ``[B, L]`` optional weights aligned with ``labels``; without them the loss is the
                plain mean over scored positions (transformers' ``ForCausalLMLoss``).
            logits_to_keep: compute logits only for the last N positions (0 = all).

        Returns:
            ``CausalLMOutputWithPast`` with ``logits`` ``[B, L, V]``, ``loss`` when labels are given, ``cache``.
        """
        if loss_weights is not None and labels is None:
            raise ValueError("loss_weights needs labels")
        out = super().forward(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
            inputs_embeds=inputs_embeds, labels=labels if loss_weights is None else None, use_cache=use_cache,
            logits_to_keep=logits_to_keep, **kwargs,
        )
        if loss_weights is not None:
            if out.logits.shape[1] != labels.shape[1]:
                raise ValueError("a weighted loss needs logits for every position (logits_to_keep=0)")
            out.loss = weighted_causal_lm_loss(out.logits, labels, loss_weights)
        return out


AutoModelForCausalLM.register(AlmConfig, AlmForCausalLM)
