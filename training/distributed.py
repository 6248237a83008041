"""The two engines a trainer's loop drives: one plain process, or DeepSpeed over the launched processes.

Both expose the same small surface, so the loop is written once::

    engine = make_engine(model, optimizer, cfg)         # PlainEngine or DeepSpeedEngine
    for micro_batch in ...:                             # cfg.grad_accum micro-batches per step
        loss = loss_fn(engine(**inputs).logits, labels)
        if engine.all_finite(loss): engine.backward(loss)
    grad_norm = engine.step(apply)                      # clip + update (skipped when ``apply`` is False)

Data parallelism is the loop's: every process draws the same batch stream (same sampler seed) and takes every
``world_size``-th batch, so the global data order does not depend on the number of processes and a resumed run
sees what an uninterrupted one would. DeepSpeed itself does the rest: the process group (gloo on CPU, nccl on GPU),
gradient all-reduce, ZeRO partitioning and offload, bf16/fp16, clipping; nothing here re-implements it.

Launchers (all start the same script): ``deepspeed --num_gpus N``, ``torchrun --nproc_per_node N``,
``accelerate launch`` (they set ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``), or a plain ``python`` process, which for
``engine=deepspeed`` becomes a one-process group.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig

log = logging.getLogger(__name__)

DEEPSPEED_TAG = "deepspeed"  # the DeepSpeed sub-directory of a checkpoint (its engine, optimizer and ZeRO shards)


@dataclass
class ProcessInfo:
    """Where this process sits in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def process_info() -> ProcessInfo:
    """Rank, local rank and world size from the launcher's environment (one process when none is set)."""
    env = os.environ
    return ProcessInfo(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", env.get("RANK", 0))),
                       int(env.get("WORLD_SIZE", 1)))


def pick_device(cfg: TrainConfig, info: ProcessInfo | None = None) -> torch.device:
    """``cfg.device``; ``auto`` is this process's local GPU when there is one, else the CPU."""
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", (info or process_info()).local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(cfg.device)


class PlainEngine:
    """One process, the model and a torch optimizer: ``backward`` accumulates, ``step`` clips and updates."""

    deepspeed = False

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                 device: torch.device) -> None:
        self.module, self.optimizer, self.cfg, self.device = model, optimizer, cfg, device
        self.info = ProcessInfo()

    def __call__(self, **inputs: torch.Tensor) -> Any:
        return self.module(**inputs)

    def all_finite(self, value: torch.Tensor) -> bool:
        return bool(torch.isfinite(value).all())

    def mean(self, value: float) -> float:
        return value

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.grad_accum).backward()

    def step(self, apply: bool = True) -> float:
        """Clip, update, zero the gradients; returns the gradient norm (NaN when skipped). With ``apply=False``, or
        when the norm is not finite, the update is skipped and the gradients dropped."""
        norm = float(torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)) if apply \
            else math.nan
        if apply and math.isfinite(norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def barrier(self) -> None:
        pass

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole model's weights (on the main process)."""
        return None  # the module itself is whole

    def save_engine(self, directory: Path) -> dict[str, Any]:
        """Engine state for the trainer-state file (the optimizer's)."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_engine(self, directory: Path, trainer: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(trainer["optimizer"])


class DeepSpeedEngine:
    """The model and optimizer wrapped by ``deepspeed.initialize`` with the JSON of ``cfg.deepspeed_config``."""

    deepspeed = True

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                 device: torch.device) -> None:
        import deepspeed

        info = init_process_group(cfg, device)
        self.info, self.cfg, self.device = info, cfg, device
        self.config = cfg.deepspeed_config(on_gpu=device.type == "cuda")
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model.to(device), optimizer=optimizer,
                                                                 config=self.config)
        self.module = self.engine.module
        if info.is_main:
            log.info("DeepSpeed engine: %d process(es), ZeRO stage %d%s%s, %s", info.world_size, cfg.zero_stage,
                     ", optimizer offload" if cfg.offload_optimizer else "",
                     ", parameter offload" if cfg.offload_params else "",
                     "bf16" if self.config["bf16"]["enabled"] else "fp16" if self.config["fp16"]["enabled"]
                     else "fp32")

    def __call__(self, **inputs: torch.Tensor) -> Any:
        return self.engine(**inputs)

    def all_finite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is finite on every process (all agree, so all skip the same micro-batches)."""
        flag = torch.tensor([0.0 if bool(torch.isfinite(value).all()) else 1.0], device=self._comm_device())
        torch.distributed.all_reduce(flag)
        return float(flag) == 0.0

    def mean(self, value: float) -> float:
        """``value`` averaged over the processes."""
        t = torch.tensor([value], dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t)
        return float(t) / self.info.world_size

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by gradient_accumulation_steps itself
        self.engine.step()  # a no-op between accumulation boundaries; only counts the micro-step

    def step(self, apply: bool = True) -> float:
        """The update happened in the boundary micro-batch's ``backward``; returns the global gradient norm (NaN
        when nothing was applied this step: every micro-batch of it was skipped as non-finite)."""
        if not apply:
            return math.nan
        norm = self.engine.get_global_grad_norm()
        return math.nan if norm is None else float(norm)

    def set_lr(self, lr: float) -> None:
        for g in self.engine.optimizer.param_groups:
            g["lr"] = lr

    def barrier(self) -> None:
        torch.distributed.barrier()

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """ZeRO-3: the parameters gathered from every process (a collective: every process calls it); the main
        process gets the state dict, the others ``None``. Other stages: ``None`` (the module is whole)."""
        if self.cfg.zero_stage != 3:
            return None
        sd = self.engine._zero3_consolidated_16bit_state_dict()  # DeepSpeed's own gather (what save_16bit_model uses)
        return sd if self.info.is_main else None

    def save_engine(self, directory: Path) -> dict[str, Any]:
        """Every process writes its part of the engine (module, optimizer, ZeRO shards) under ``directory``."""
        self.engine.save_checkpoint(str(directory), tag=DEEPSPEED_TAG, save_latest=False)
        return {}

    def load_engine(self, directory: Path, trainer: dict[str, Any]) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=DEEPSPEED_TAG, load_optimizer_states=True,
                                              load_lr_scheduler_states=False)
        if path is None:
            raise RuntimeError(f"{directory / DEEPSPEED_TAG}: DeepSpeed could not load this checkpoint")

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def init_process_group(cfg: TrainConfig, device: torch.device) -> ProcessInfo:
    """Join (or, alone, create) the process group through DeepSpeed: gloo on CPU, nccl on GPU."""
    import deepspeed

    if not any(k in os.environ for k in ("RANK", "WORLD_SIZE")):
        # a plain `python` process: a one-process group (DeepSpeed would otherwise look for MPI)
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return process_info()


def broadcast(obj: Any, info: ProcessInfo) -> Any:
    """The main process's ``obj`` in every process (pickled; for small setup objects such as the vocabulary)."""
    if info.world_size == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of every parameter's bytes (in name order): equal in every process of a data-parallel run."""
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gather_strings(value: str, info: ProcessInfo) -> list[str]:
    """``value`` from every process, in rank order."""
    if info.world_size == 1:
        return [value]
    out: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(out, value)
    return out


def make_engine(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                device: torch.device) -> PlainEngine | DeepSpeedEngine:
    """The engine ``cfg`` asks for (see :meth:`training.config.TrainConfig.use_deepspeed`)."""
    if cfg.use_deepspeed():
        return DeepSpeedEngine(model, optimizer, cfg, device)
    return PlainEngine(model.to(device), optimizer, cfg, device)


Engine = PlainEngine | DeepSpeedEngine
