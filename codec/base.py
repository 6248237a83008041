"""The interface every audio tokenizer implements, and the checks they share.

The audio-language model sees audio only through :class:`AudioTokenizer`: a waveform becomes ``K`` parallel
streams of integer codes at ``frame_rate`` frames per second, each code in ``[0, cardinality)``, and codes
become a waveform again. Which network does it (our neural codec, or any other) is a detail of the subclass.

A tokenizer directory holds ``config.json`` (with ``"tokenizer_class"`` naming the class) and
``model.safetensors``; :meth:`AudioTokenizer.from_pretrained` rebuilds the right class from it. Nothing is
unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soxr
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from codec.audio import AudioInputError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_REGISTRY: dict[str, type[AudioTokenizer]] = {}


class AudioTokenizer(torch.nn.Module, ABC):
    """Waveform <-> discrete codes.

    Subclasses set :attr:`sample_rate`, :attr:`frame_rate`, :attr:`cardinality`, :attr:`max_codebooks` and
    implement :meth:`_encode` / :meth:`_decode`; the public methods add input checks and resampling.
    """

    sample_rate: int
    frame_rate: int
    cardinality: int
    max_codebooks: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self) -> None:
        super().__init__()
        self._num_codebooks: int | None = None

    # --- properties ------------------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per frame."""
        return self.sample_rate // self.frame_rate

    @property
    def num_codebooks(self) -> int:
        """Codebooks used by :meth:`encode` (1..``max_codebooks``)."""
        return self._num_codebooks or self.max_codebooks

    def set_num_codebooks(self, k: int) -> None:
        """Use the first ``k`` codebooks (coarse to fine): bitrate ``k * frame_rate * log2(cardinality)``."""
        if not isinstance(k, int) or not 1 <= k <= self.max_codebooks:
            raise ValueError(f"num_codebooks must be an int in 1..{self.max_codebooks}, got {k!r}")
        self._num_codebooks = k

    @property
    def bitrate(self) -> float:
        """Bits per second at the current number of codebooks."""
        return self.num_codebooks * self.frame_rate * float(np.log2(self.cardinality))

    # --- public API ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> torch.Tensor:
        """Encode waveforms.

        Args:
            wav: ``[B, T]`` or ``[T]`` float waveform in [-1, 1] (louder input is clipped).
            sample_rate: rate of ``wav``; resampled to :attr:`sample_rate` when different.

        Returns:
            ``[B, K, F]`` int64 codes, ``F = ceil(T / hop_length)`` (at least one frame: shorter input is
            zero-padded), ``K = num_codebooks``.
        """
        x = self.prepare(wav, sample_rate)
        return self._encode(x, self.num_codebooks)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode ``[B, K, F]`` (or ``[K, F]``) codes with ``1 <= K <= max_codebooks`` to ``[B, F * hop]``."""
        codes = self.check_codes(codes)
        return self._decode(codes)

    def prepare(self, wav: torch.Tensor | np.ndarray, sample_rate: int | None = None) -> torch.Tensor:
        """Check, resample, clip and pad input audio to ``[B, T']`` float32 with ``T'`` a multiple of the hop."""
        x = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2:
            raise AudioInputError(f"expected a waveform [T] or a batch [B, T], got shape {tuple(x.shape)}")
        if x.numel() == 0:
            raise AudioInputError("empty audio: no samples to encode")
        if not x.is_floating_point():
            raise AudioInputError(f"expected float samples in [-1, 1], got dtype {x.dtype}")
        x = x.detach().float().cpu()
        if not torch.isfinite(x).all():
            raise AudioInputError("audio contains NaN or Inf samples")
        if sample_rate is not None and sample_rate != self.sample_rate:
            if not 1000 <= sample_rate <= 384000:
                raise AudioInputError(f"absurd sample rate {sample_rate} Hz")
            x = torch.from_numpy(np.stack([
                soxr.resample(row.numpy(), sample_rate, self.sample_rate, quality="HQ") for row in x
            ]).astype(np.float32))
        x = x.clamp(-1.0, 1.0)
        pad = (-x.shape[-1]) % self.hop_length
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
        return x.to(self.device)

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Validate codes for :meth:`decode`; returns ``[B, K, F]`` int64 on the model's device."""
        codes = torch.as_tensor(codes)
        if codes.dim() == 2:
            codes = codes[None]
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, F] or [K, F], got shape {tuple(codes.shape)}")
        if codes.is_floating_point():
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        k = codes.shape[1]
        if not 1 <= k <= self.max_codebooks:
            raise ValueError(f"codes have {k} codebooks; this tokenizer decodes 1..{self.max_codebooks}")
        if codes.shape[2] == 0:
            raise ValueError("codes have zero frames")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.cardinality:
            raise ValueError(f"codes out of range: found values in [{lo}, {hi}], valid is [0, {self.cardinality})")
        return codes.long().to(self.device)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # --- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` (atomically: temp file + rename)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        config = {"tokenizer_class": type(self).__name__, **self.get_config()}
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(out / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
        atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> AudioTokenizer:
        """Rebuild a tokenizer saved with :meth:`save_pretrained`."""
        config, state = read_pretrained(directory)
        name = config.pop("tokenizer_class", cls.__name__)
        klass = _REGISTRY.get(name) if isinstance(name, str) else None
        if klass is None or not issubclass(klass, cls):
            raise ValueError(f"{directory}: config names tokenizer class {name!r}, not a {cls.__name__}")
        try:
            model = klass.from_config(config)
        except (TypeError, ValueError, ArithmeticError) as e:  # a field of the wrong type or an impossible value
            raise ValueError(f"{Path(directory) / CONFIG_NAME}: invalid {name} config: {e}") from e
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # a tensor of another shape than the config builds
            raise ValueError(f"{Path(directory) / WEIGHTS_NAME}: weights do not match the config: {e}") from e
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the config (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
        return model.to(device).eval()

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serializable config that :meth:`from_config` rebuilds the model from."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> AudioTokenizer:
        """Build an untrained model from a config dict."""

    @abstractmethod
    def _encode(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``[B, T]`` (T a multiple of the hop) -> ``[B, k, T // hop]``."""

    @abstractmethod
    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, K, F]`` -> ``[B, F * hop]``."""

    extra_repr_keys: ClassVar[tuple[str, ...]] = ()

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, frame_rate={self.frame_rate}, num_codebooks={self.num_codebooks}"
                f"/{self.max_codebooks}, cardinality={self.cardinality}")


def read_pretrained(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a saved model directory, with errors that name what is missing."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"no model directory at {d}")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d} has no {name}: not a saved model directory")
    try:
        config = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{d / CONFIG_NAME} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{d / CONFIG_NAME} holds a JSON {type(config).__name__}, not an object of config fields")
    try:
        state = load_file(str(d / WEIGHTS_NAME))
    except SafetensorError as e:  # truncated, or a header altered: safetensors validates it against the file
        raise ValueError(f"{d / WEIGHTS_NAME} is not a valid safetensors file ({e}): truncated or altered") from e
    return config, state


def atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` whole or not at all: ``write(tmp)`` fills a temporary file in the same folder, which is
    fsynced, made world-readable and renamed over ``path`` (a reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; saved models are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
