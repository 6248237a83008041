"""The typed settings every trainer shares, the DeepSpeed JSON generated from them, and YAML/command-line loading.

A run is described once, by a dataclass (:class:`TrainConfig` or a trainer's subclass such as
``training.train_alm.TrainAlmConfig``). The DeepSpeed configuration is never written by hand beside it:
:meth:`TrainConfig.deepspeed_config` derives it (ZeRO stage, offload, bf16/fp16, gradient accumulation, clipping),
and ``training/configs/*.yaml`` hold only dataclass fields, so a typo or a stale key is an error, not a silent
default::

    cfg = load_config("training/configs/alm_small.yaml", TrainAlmConfig)
    ds = cfg.deepspeed_config(on_gpu=True)   # the dict deepspeed.initialize(config=...) takes
"""

from __future__ import annotations

import argparse
import json
import os
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

ENGINES = ("auto", "plain", "deepspeed")
RUN_KEYS = ("corpus", "out")  # keys a config file may hold besides the dataclass fields: where the run reads/writes
LAUNCHER_ENV = ("LOCAL_RANK", "RANK", "WORLD_SIZE")  # set by deepspeed, torchrun and accelerate launchers

C = TypeVar("C", bound="TrainConfig")


@dataclass
class TrainConfig:
    """Optimization and engine settings shared by every trainer (saved with each run).

    ``engine``: ``plain`` is one process with a torch optimizer; ``deepspeed`` wraps the same model and optimizer in
    a DeepSpeed engine (data parallel over the launched processes, ZeRO partitioning, offload, mixed precision);
    ``auto`` picks ``deepspeed`` when a launcher started the process (``LOCAL_RANK``/``WORLD_SIZE`` set) and
    ``plain`` otherwise.
    """

    steps: int = 20000
    lr: float = 5e-4
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 500
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per optimizer step (per process)
    max_bad_steps: int = 5  # non-finite loss/gradient steps in a row before the run stops (each one is skipped)
    seed: int = 0
    threads: int = 0  # torch threads per process; 0: torch's default
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under a launcher: the process's local GPU)
    bf16: bool = True  # bf16 mixed precision on CUDA (autocast, or DeepSpeed's bf16); fp32 on CPU
    fp16: bool = False  # fp16 with dynamic loss scaling (DeepSpeed engine on CUDA only)
    # engine
    engine: str = "auto"  # auto | plain | deepspeed
    zero_stage: int = 0  # DeepSpeed ZeRO stage: 0 off, 1 optimizer states, 2 + gradients, 3 + parameters
    offload_optimizer: bool = False  # ZeRO optimizer states (and the update) in CPU memory
    offload_params: bool = False  # ZeRO-3 parameters in CPU memory
    backend: str = "auto"  # process-group backend: auto (nccl on GPU, gloo on CPU) | nccl | gloo
    # bookkeeping
    log_every: int = 10
    eval_every: int = 500
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = True  # event files in OUT/tensorboard

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming every inconsistent setting."""
        problems = []
        if self.engine not in ENGINES:
            problems.append(f"engine={self.engine!r} (one of {', '.join(ENGINES)})")
        if self.zero_stage not in (0, 1, 2, 3):
            problems.append(f"zero_stage={self.zero_stage} (0, 1, 2 or 3)")
        if self.offload_optimizer and self.zero_stage == 0:
            problems.append("offload_optimizer needs zero_stage >= 1")
        if self.offload_params and self.zero_stage != 3:
            problems.append("offload_params needs zero_stage = 3")
        if self.fp16 and self.bf16 and self.device.startswith("cuda"):
            problems.append("fp16 and bf16 are exclusive")
        if self.engine == "plain" and (self.zero_stage or self.offload_optimizer or self.offload_params or self.fp16):
            problems.append("ZeRO, offload and fp16 need engine=deepspeed (or auto under a launcher)")
        if self.grad_accum < 1:
            problems.append(f"grad_accum={self.grad_accum} (at least 1)")
        if self.steps < 0 or self.warmup_steps < 0:
            problems.append("steps and warmup_steps cannot be negative")
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"lr={self.lr} must be positive and min_lr_ratio={self.min_lr_ratio} in [0, 1]")
        if self.grad_clip <= 0:
            problems.append(f"grad_clip={self.grad_clip} must be positive")
        if self.backend not in ("auto", "nccl", "gloo"):
            problems.append(f"backend={self.backend!r} (auto, nccl or gloo)")
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))

    # --- engine ------------------------------------------------------------------------------------------------
    def use_deepspeed(self) -> bool:
        """Whether this process trains through a DeepSpeed engine (see :attr:`engine`)."""
        if self.engine == "auto":
            return launched() or bool(self.zero_stage or self.offload_optimizer or self.offload_params or self.fp16)
        return self.engine == "deepspeed"

    def deepspeed_config(self, on_gpu: bool = False) -> dict[str, Any]:
        """The DeepSpeed JSON for this run (what ``deepspeed.initialize(config=...)`` takes).

        Batches are bounded in tokens, not sequences, so DeepSpeed's sequence counts are nominal: one "sample" per
        micro-batch; ``gradient_accumulation_steps`` is :attr:`grad_accum` and the engine averages over it
        (DeepSpeed derives ``train_batch_size`` from these and the number of processes).
        """
        zero: dict[str, Any] = {"stage": self.zero_stage}
        if self.zero_stage:
            zero.update(contiguous_gradients=True, overlap_comm=on_gpu, reduce_bucket_size=int(5e7),
                        allgather_bucket_size=int(5e7))
        if self.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
        if self.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
        if self.zero_stage == 3:
            zero["stage3_gather_16bit_weights_on_model_save"] = True
        return {
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": self.grad_accum,
            "gradient_clipping": self.grad_clip,
            "zero_optimization": zero,
            "bf16": {"enabled": bool(self.bf16 and on_gpu and not self.fp16)},
            "fp16": {"enabled": bool(self.fp16 and on_gpu), "loss_scale": 0, "initial_scale_power": 16},
            # the trainer's own AdamW (decay groups, LR schedule) is used, also with offload
            "zero_allow_untested_optimizer": True,
            "zero_force_ds_cpu_optimizer": False,
            "steps_per_print": 10**9,  # the trainer logs (tqdm, log lines, TensorBoard)
            "wall_clock_breakdown": False,
        }


def launched() -> bool:
    """Whether a distributed launcher (deepspeed, torchrun, accelerate) started this process."""
    return any(k in os.environ for k in LAUNCHER_ENV)


# --- YAML and the command line ------------------------------------------------------------------------------------
def config_fields(cls: type[TrainConfig]) -> dict[str, type]:
    """Field name -> its plain type (``X | None`` unwrapped) for every field of ``cls``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        out[f.name] = args[0] if args and typing.get_origin(kind) is not dict else kind
    return out


def load_config(path: str | os.PathLike, cls: type[C], **overrides: Any) -> C:
    """A config of type ``cls`` from a YAML file of its fields (plus ``overrides``); unknown keys are an error,
    except the run's place (:data:`RUN_KEYS`: ``corpus``, ``out``), which the trainer's command line reads."""
    values = {k: v for k, v in read_yaml(path).items() if k not in RUN_KEYS}
    return make_config(cls, {**values, **overrides}, where=str(path))


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML config file (an error names the file when it is not one)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no config file {p}")
    values = yaml.safe_load(p.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{p}: a config file holds a mapping of settings, got {type(values).__name__}")
    return values


def make_config(cls: type[C], values: dict[str, Any], where: str = "settings") -> C:
    """``cls(**values)`` with unknown keys and wrong types reported by name."""
    known = config_fields(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}")
    converted = {}
    for k, v in values.items():
        kind = known[k]
        if v is not None and kind in (int, float, bool, str) and not isinstance(v, kind):
            if kind is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            else:
                raise ValueError(f"{where}: {k} should be {kind.__name__}, got {v!r}")
        converted[k] = v
    return cls(**converted)


def accelerate_settings(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings an ``accelerate launch --config_file ...`` passes in the environment (its DeepSpeed plugin
    fields and mixed precision), as :class:`TrainConfig` fields; empty when accelerate did not launch us."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        out["engine"] = "deepspeed"
        if "ACCELERATE_DEEPSPEED_ZERO_STAGE" in env:
            out["zero_stage"] = int(env["ACCELERATE_DEEPSPEED_ZERO_STAGE"])
        if "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" in env:
            out["grad_accum"] = int(env["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"])
        if env.get("ACCELERATE_GRADIENT_CLIPPING", "none").lower() != "none":
            out["grad_clip"] = float(env["ACCELERATE_GRADIENT_CLIPPING"])
        for key, name in (("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "offload_optimizer"),
                          ("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "offload_params")):
            device = env.get(key, "none").lower()
            if device not in ("none", "cpu"):
                raise ValueError(f"{key}={device}: only CPU offload is supported")
            out[name] = device == "cpu"
    precision = env.get("ACCELERATE_MIXED_PRECISION", "").lower()
    if precision in ("no", "bf16", "fp16"):
        out.update(bf16=precision == "bf16", fp16=precision == "fp16")
    return out


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[TrainConfig]) -> None:
    """A ``--flag`` per field of ``cls`` (booleans as ``--x/--no-x``; dicts as JSON), all defaulting to "unset" so
    that a ``--config`` file's values stay unless a flag is given."""
    for f in fields(cls):
        kind = config_fields(cls)[f.name]
        flag = f"--{f.name.replace('_', '-')}"
        default = f.default if f.default is not MISSING else "(empty)"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"default {default}")
        elif kind is dict or typing.get_origin(kind) is dict:
            parser.add_argument(flag, type=json.loads, default=None, help="JSON object")
        else:
            parser.add_argument(flag, type=kind, default=None, help=f"default {default}")


def config_from_arguments(args: dict[str, Any], cls: type[C], config_file: str | None) -> tuple[C, dict[str, Any]]:
    """``(config, rest)``: the ``--config`` file's fields overridden by the flags given; ``rest`` holds the file's
    :data:`RUN_KEYS` and the arguments that are not fields (a flag given wins over the file)."""
    names = set(config_fields(cls))
    values, rest = {}, {}
    if config_file:
        for k, v in read_yaml(config_file).items():
            (rest if k in RUN_KEYS else values)[k] = v
    values.update(accelerate_settings())
    for k, v in args.items():
        if k in names:
            if v is not None:
                values[k] = v
        elif v is not None or k not in rest:
            rest[k] = v
    return make_config(cls, values, where=config_file or "command line"), rest
