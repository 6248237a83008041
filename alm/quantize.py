"""int8 dynamic quantization of the decoder for CPU serving.

:func:`quantize_int8` replaces every ``nn.Linear`` of the decoder (attention and MLP projections, and by default
the output head) with PyTorch's dynamically quantized linear layer: weights stored as int8 (per-tensor scale),
activations quantized on the fly per batch, matrix products in int8 through fbgemm / oneDNN, results in float32.
Embeddings, norms, the codec and the unit tokenizer stay float32. The decoder's embedding matrix is tied to the
output head; quantizing the head copies its weight, so the embedding keeps its float32 values.

It uses ``torch.ao.quantization.quantize_dynamic``, which PyTorch marks deprecated in favour of torchao (whose
CPU int8 path needs ``torch.compile`` to be fast); on torch 2.13 it still works and is the CPU int8 path with
ready-made kernels, so its deprecation warnings are silenced here. Measured speed and WER:
``benchmarks/quantize.py`` (results in ``benchmarks/results/quantize.md``).

A quantized model is for inference only (no training, no ``save_pretrained`` of the int8 weights: quantize
again after loading, it takes a fraction of a second).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

from alm.api import AudioLanguageModel

log = logging.getLogger(__name__)

QUANTIZED_FLAG = "_alm_quantized"  # set on the decoder module once quantized


def _quantize_dynamic() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic
    return quantize_dynamic


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's weights as stored: float tensors at their element size, int8 packed weights at one
    byte per element (dynamically quantized layers keep theirs in packed parameters, outside ``parameters()``)."""
    total = 0

    def add(value: Any) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, (tuple, list)):
            for v in value:
                add(v)

    for value in module.state_dict().values():
        add(value)
    return total


def is_quantized(model: AudioLanguageModel) -> bool:
    """Whether :func:`quantize_int8` has run on this model."""
    return bool(getattr(model.model, QUANTIZED_FLAG, False))


def quantize_int8(model: AudioLanguageModel, *, include_head: bool = True) -> AudioLanguageModel:
    """Quantize the decoder's linear layers to int8 (dynamic quantization), in place.

    Args:
        model: a loaded model on the CPU (quantized kernels are CPU-only).
        include_head: also quantize the output projection ``lm_head`` (``[V, H]``, the largest matrix of a
            small model); its tied embedding stays float32.

    Returns:
        ``model``, whose ``model.model`` now holds ``torch.ao.nn.quantized.dynamic.Linear`` layers.

    Raises:
        ValueError: the model is not on the CPU, or is quantized already.
    """
    if model.device.type != "cpu":
        raise ValueError(f"int8 dynamic quantization runs on the CPU only; this model is on {model.device}: "
                         "load it with device='cpu'")
    if is_quantized(model):
        raise ValueError("this model is quantized already")
    decoder = model.model.eval()
    before = module_bytes(decoder)
    targets = {name for name, m in decoder.named_modules() if isinstance(m, nn.Linear)
               and (include_head or name != "lm_head")}
    if not targets:
        raise ValueError("the decoder has no nn.Linear layer to quantize")
    if torch.backends.quantized.engine == "none":
        engines = torch.backends.quantized.supported_engines
        supported = [e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in engines]
        if not supported:
            raise RuntimeError("this PyTorch build has no quantized CPU engine")
        torch.backends.quantized.engine = supported[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")  # same deprecation, per layer
        _quantize_dynamic()(decoder, qconfig_spec=targets, dtype=torch.qint8, inplace=True)
    setattr(decoder, QUANTIZED_FLAG, True)
    log.info("int8 dynamic quantization of %d linear layers (engine %s): decoder weights %.1f MB -> %.1f MB",
             len(targets), torch.backends.quantized.engine, before / 1e6, module_bytes(decoder) / 1e6)
    return model
