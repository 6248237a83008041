"""Checkpoints of a baseline run, written atomically, and its training-curve plot.

    OUT/checkpoints/step-NNNNNNN/
      model/                       the model's save_pretrained directory + vocab.json + features.json
      discriminators.safetensors   HiFi-GAN only
      deepspeed/                   a DeepSpeed engine's own shards (DeepSpeed runs only)
      trainer_state.pt             written last (its presence marks a complete checkpoint): optimizer(s), step, RNG,
                                   data-stream position, history; read with ``torch.load(weights_only=True)``
    OUT/final/                     model/ alone, plus training.json (settings, history)

Everything is written into a temporary sibling directory and renamed into place, so a killed run leaves either a
complete checkpoint or none; :func:`resume_checkpoint` takes the newest readable one and skips damaged ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from legacy_seq2seq.inference import LegacyModel, load_legacy, save_extras
from training.distributed import Engine
from training.legacy.steps import LegacyData
from training.plots import png_figure

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
DISCRIMINATORS = "discriminators.safetensors"

def checkpoint_dirs(out: Path) -> list[Path]:
    d = out / CHECKPOINTS
    done = [p for p in d.glob("step-*") if (p / TRAINER_STATE).is_file()] if d.is_dir() else []
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def savable(model: torch.nn.Module, weights: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """``model``, or (under ZeRO-3, where it holds a partition) a CPU copy with the gathered ``weights``."""
    if weights is None:
        return model
    copy = type(model)(model.config)
    copy.load_state_dict({k.removeprefix("model."): v.float().cpu() for k, v in weights.items()})
    return copy


def write_model(d: Path, model: torch.nn.Module, data: LegacyData, extra: dict[str, Any] | None = None) -> None:
    model.save_pretrained(d)
    save_extras(d, data.vocab, data.features)
    if extra is not None:
        (d / "training.json").write_text(json.dumps(extra, indent=2, default=str) + "\n")


def publish(tmp: Path, final: Path) -> None:
    """Rename a finished temp directory over ``final`` (the old one moved aside first, then removed)."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, data: LegacyData, engines: list[Engine],
                    trainer: dict[str, Any], keep: int, discriminators: torch.nn.Module | None) -> Path:
    """Write ``OUT/checkpoints/step-NNNNNNN`` atomically (temp dir, ``trainer_state.pt`` last, rename); keep the
    newest ``keep``. Every process calls it (a DeepSpeed engine writes its shards from each)."""
    final, tmp = out / CHECKPOINTS / f"step-{step:07d}", out / CHECKPOINTS / f".tmp-step-{step:07d}"
    main, engine = engines[0].info.is_main, engines[0]
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    engine.barrier()
    state = engine.save_engine(tmp)
    weights = engine.full_state_dict()
    engine.barrier()
    if main:
        write_model(tmp / "model", savable(model, weights), data)
        if discriminators is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in discriminators.state_dict().items()},
                      str(tmp / DISCRIMINATORS))
            state["d_optimizer"] = engines[1].optimizer.state_dict()
        torch.save({**trainer, **state, "torch_rng": torch.get_rng_state()}, tmp / TRAINER_STATE)
        publish(tmp, final)
        for stale in checkpoint_dirs(out)[:-keep] if keep > 0 else []:
            shutil.rmtree(stale, ignore_errors=True)
    engine.barrier()
    return final


def resume_checkpoint(out: Path) -> tuple[Path, LegacyModel, dict[str, Any]] | tuple[None, None, None]:
    """The newest readable checkpoint, its loaded model directory and trainer state; damaged ones are skipped."""
    found = checkpoint_dirs(out)
    for ckpt in reversed(found):
        try:
            loaded = load_legacy(ckpt / "model")
            trainer = torch.load(ckpt / TRAINER_STATE, weights_only=True, map_location="cpu")
            if loaded.kind == "HiFiGANGenerator":
                trainer["discriminators"] = load_file(str(ckpt / DISCRIMINATORS))
            return ckpt, loaded, trainer
        except Exception as e:  # noqa: BLE001 - truncated/partial files raise many kinds of errors
            log.warning("checkpoint %s is damaged and is skipped (%s: %s)", ckpt, type(e).__name__, e)
    if found:
        raise RuntimeError(f"none of the {len(found)} checkpoints in {out / CHECKPOINTS} can be read (see the "
                           "warnings); move them away to start afresh, or use another --out")
    return None, None, None


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and the evaluation measures against the step."""
    train = [h for h in history if h.get("loss") is not None]
    evals = [h for h in history if "eval" in h]
    with png_figure(path, 1, 2) as (_, ax):
        if train:
            ax[0].plot([h["step"] for h in train], [h["loss"] for h in train], label="train loss")
        for key in ("attention_loss", "ctc_loss", "guided_loss"):  # the parts of LAS's joint loss
            pts = [(h["step"], h[key]) for h in train if h.get(key) is not None]
            if pts:
                ax[0].plot(*zip(*pts), label=key)
        for key in sorted({k for h in evals for k in h if k not in ("step", "eval")}):
            pts = [(h["step"], h[key]) for h in evals if key in h]
            ax[1].plot(*zip(*pts), marker="o", label=key)
        for a, title in zip(ax, ("training loss (per log window)", "evaluation")):
            a.set_title(title)
            a.set_xlabel("step")
            if a.lines:
                a.legend(fontsize=8)



def export_final(out: Path, model: torch.nn.Module, data: LegacyData, engine: Engine, record: dict[str, Any]) -> Path:
    """``OUT/final``: the model directory plus ``training.json`` (``record``), written atomically by the main
    process (every process calls it: under ZeRO-3 the weights are gathered from all of them)."""
    weights = engine.full_state_dict()
    if engine.info.is_main:
        tmp = out / f".tmp-final-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        write_model(tmp, savable(model, weights), data, record)
        publish(tmp, out / "final")
    engine.barrier()
    return out / "final"
