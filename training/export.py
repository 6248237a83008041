"""Training checkpoint -> release checkpoint (what ``alm.load`` reads): ``alm export CHECKPOINT OUT``.

A training checkpoint (``OUT/checkpoints/step-N`` of ``training.train_alm``) holds the release layout plus the
trainer's state; one written through DeepSpeed also holds the engine's own files (``deepspeed/``: module states and
one ZeRO shard of optimizer state, and under ZeRO-3 of the fp32 parameters, per process). The weights are taken from
the ZeRO shards when there are any (DeepSpeed's ``zero_to_fp32`` merges them: the fp32 master weights, whatever the
training precision), else from the engine's module states, else from ``model.safetensors``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from alm.checkpoint import CheckpointError, save_checkpoint
from alm.config import AlmConfig
from alm.model import AlmForCausalLM
from alm.vocab import Vocabulary
from codec import load_codec, load_units
from training.distributed import DEEPSPEED_TAG

log = logging.getLogger(__name__)

TRAINING_STATE = "training_state.json"


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself when it is a checkpoint, or the newest complete checkpoint of a run directory."""
    p = Path(path)
    if (p / "config.json").is_file():
        return p
    from training.train_alm import latest_checkpoint  # a run directory

    found = latest_checkpoint(p)
    if found is None:
        raise CheckpointError(f"{p} is neither a checkpoint (no config.json) nor a run directory with checkpoints")
    return found


def training_weights(checkpoint: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The model's full fp32 state dict from a training checkpoint, and where it came from."""
    ds = checkpoint / DEEPSPEED_TAG
    if any(ds.glob("*zero_pp_rank_*_optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return (get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG),
                "DeepSpeed ZeRO shards")
    if (ds / "mp_rank_00_model_states.pt").is_file():
        # weights_only: tensors, dicts and numbers only (what DeepSpeed writes here with the trainer's torch AdamW)
        states = torch.load(ds / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)
        return {k: v.float() for k, v in states["module"].items()}, "DeepSpeed module states"
    if (checkpoint / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(checkpoint / "model.safetensors"), "model.safetensors"
    raise CheckpointError(f"{checkpoint}: no weights (neither {DEEPSPEED_TAG}/ nor model.safetensors)")


def export_release(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the release checkpoint of a training checkpoint (or of a run directory's newest one) to ``out``.

    Raises:
        CheckpointError: a piece is missing, or the weights do not fit the saved config.
    """
    ckpt = resolve_checkpoint(checkpoint)
    missing = [n for n in ("config.json", "vocab.json", "tokenizer.json", "codec/config.json", "units/config.json")
               if not (ckpt / n).is_file()]
    if missing:
        raise CheckpointError(f"{ckpt}: not a training checkpoint, missing {', '.join(missing)}")
    weights, source = training_weights(ckpt)
    model = AlmForCausalLM(AlmConfig.from_pretrained(ckpt))
    result = model.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise CheckpointError(f"{ckpt}: the weights ({source}) do not fit its config: missing "
                              f"{sorted(set(result.missing_keys) - tied)}, unexpected {sorted(result.unexpected_keys)}")
    model.tie_weights()
    extra = None
    if (ckpt / TRAINING_STATE).is_file():
        extra = {**json.loads((ckpt / TRAINING_STATE).read_text()), "exported_from": str(ckpt),
                 "weights_from": source}
    out = save_checkpoint(out, model.eval(), Vocabulary.load(ckpt), load_codec(ckpt / "codec"),
                          load_units(ckpt / "units"), extra=extra)
    log.info("exported %s (weights from %s) to %s", ckpt, source, out)
    return out
