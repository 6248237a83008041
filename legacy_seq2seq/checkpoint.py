"""Save and load a baseline model as a directory: ``config.json`` + ``model.safetensors``, written atomically.

A model directory rebuilds the model on its own::

    tts/
      config.json          {"model_class": "Tacotron2", "schema_version": 1, ...the config's fields}
      model.safetensors    the state dict (float tensors as saved; nothing is unpickled)

:func:`save_model_dir` writes both files into a temporary sibling directory, fsyncs them, then renames it onto
the target, so a reader never sees half a checkpoint (an existing directory is swapped out, then removed).
:func:`load_model_dir` checks the class name, the config fields and the weights, and raises
:class:`CheckpointError` saying what is wrong. :func:`half_precision_copy` writes a copy with float16 weights
(half the bytes, for shipping) that loads the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

ModelT = TypeVar("ModelT", bound=torch.nn.Module)


class CheckpointError(ValueError):
    """A model directory is missing, incomplete, of another model class, or inconsistent with its weights."""


def save_model_dir(directory: str | os.PathLike, model: torch.nn.Module, config: Any) -> Path:
    """Write ``model`` and its dataclass ``config`` to ``directory`` atomically (temp dir, fsync, rename).

    Args:
        directory: target directory; replaced as a whole if it exists.
        model: the (unwrapped) module; its class name is stored as ``model_class``.
        config: a dataclass instance that ``type(model)(config)`` rebuilds the model from.

    Returns:
        The path of the written directory.
    """
    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model_class": type(model).__name__, **dataclasses.asdict(config)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("saved %s (%d tensors) to %s", type(model).__name__, len(state), out)
    return out


def load_model_dir(
    directory: str | os.PathLike,
    model_class: type[ModelT],
    config_class: type,
    device: str | torch.device = "cpu",
) -> ModelT:
    """Rebuild a model saved with :func:`save_model_dir`.

    Args:
        directory: the model directory.
        model_class: the expected class; built as ``model_class(config_class(**fields))``.
        config_class: the dataclass the config's fields are read into (it validates ``schema_version``).
        device: where the loaded model is placed.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        CheckpointError: the directory or a file is missing, it holds another model class, the config has
            unknown/missing/invalid fields, or the weights do not fit the config.
    """
    d = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (d / name).is_file():
            raise CheckpointError(f"{d} has no {name}: not a saved {model_class.__name__} directory")
    try:
        fields = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{d / CONFIG_NAME} is not valid JSON: {e}") from e
    if not isinstance(fields, dict):
        raise CheckpointError(f"{d / CONFIG_NAME} holds a JSON {type(fields).__name__}, not an object of config fields")
    name = fields.pop("model_class", None)
    if name != model_class.__name__:
        raise CheckpointError(f"{d} holds a {name!r} model, not a {model_class.__name__}")
    try:
        config = config_class(**fields)
        model = model_class(config)  # a field of the wrong type may only fail here, building a layer
    except (TypeError, ValueError, ArithmeticError) as e:
        raise CheckpointError(f"{d / CONFIG_NAME}: invalid {config_class.__name__}: {e}") from e
    try:
        state = load_file(str(d / WEIGHTS_NAME))
    except SafetensorError as e:  # truncated, or a header altered: safetensors validates it against the file
        raise CheckpointError(f"{d / WEIGHTS_NAME} is not a valid safetensors file ({e}): truncated or altered") from e
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise CheckpointError(f"{d}: weights do not match the config: {e}") from e
    if missing or unexpected:
        raise CheckpointError(f"{d}: weights do not match the config (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    return model.to(device).eval()


def half_precision_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy a model directory with its float32 weights stored as float16 (half the bytes; for shipping).

    Every file beside the weights (``config.json``, ``vocab.json``, ``features.json``, ...) is copied as is. The
    copy loads with :func:`load_model_dir` like the original: ``load_state_dict`` casts the float16 tensors back
    into the model's float32 parameters, so only the rounding of each weight to float16 (relative 2**-11) differs.

    Args:
        source: a directory written by :func:`save_model_dir`.
        target: the directory to write; replaced as a whole, atomically, if it exists.

    Returns:
        The path of the written directory.

    Raises:
        CheckpointError: ``source`` is not a model directory, or a weight does not fit in float16 (|w| > 65504).
    """
    src, out = Path(source), Path(target)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (src / name).is_file():
            raise CheckpointError(f"{src} has no {name}: not a saved model directory")
    if src.resolve() == out.resolve():
        raise CheckpointError(f"{src}: the copy must go to another directory")
    try:
        state = load_file(str(src / WEIGHTS_NAME))
    except SafetensorError as e:
        raise CheckpointError(f"{src / WEIGHTS_NAME} is not a valid safetensors file ({e})") from e
    half = {}
    for key, value in state.items():
        if value.dtype == torch.float32:
            if not torch.isfinite(value).all() or value.abs().max() > torch.finfo(torch.float16).max:
                raise CheckpointError(f"{src}: weight {key!r} is not finite or too large for float16")
            value = value.to(torch.float16)
        half[key] = value.contiguous()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for item in src.iterdir():
            if item.is_file() and item.name != WEIGHTS_NAME:
                shutil.copy2(item, tmp / item.name)
        save_file(half, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        for item in tmp.iterdir():
            with open(item, "rb") as f:
                os.fsync(f.fileno())
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %s (float16 weights of %s)", out, src)
    return out


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished temporary directory ``tmp`` onto ``out`` (an existing ``out`` is swapped out, then
    removed), so a reader sees the old directory or the new one, never half of one."""
    tmp.chmod(0o755)  # mkdtemp makes 0700; saved models are meant to be shared
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(out.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX only; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
