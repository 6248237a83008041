"""A file format for codec tokens: ``.npz`` with the codes and what is needed to decode them.

``encodec.compress`` only accepts encodec's official models, so the project keeps its own: an uncompressed
NumPy archive (no pickles) with ``codes`` (``[K, F]`` uint16) and the tokenizer's sample rate, frame rate,
cardinality and the original length in samples, checked against the tokenizer at decode time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec.base import AudioTokenizer

FORMAT_VERSION = 1


@dataclass
class TokenFile:
    """Codes ``[K, F]`` plus the facts needed to decode them with the right tokenizer."""

    codes: torch.Tensor
    sample_rate: int
    frame_rate: int
    cardinality: int
    num_samples: int


def save_tokens(path: str | os.PathLike, codes: torch.Tensor, tokenizer: AudioTokenizer, num_samples: int) -> Path:
    """Write ``codes`` (``[K, F]`` or ``[1, K, F]``) from ``tokenizer`` to ``path`` (``.npz``), atomically."""
    codes = torch.as_tensor(codes)
    if codes.dim() == 3:
        if codes.shape[0] != 1:
            raise ValueError(f"a token file holds one clip; got a batch of {codes.shape[0]}")
        codes = codes[0]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, codes=codes.cpu().numpy().astype(np.uint16), sample_rate=tokenizer.sample_rate,
             frame_rate=tokenizer.frame_rate, cardinality=tokenizer.cardinality, num_samples=num_samples,
             version=FORMAT_VERSION)
    os.replace(tmp, path)
    return path


def load_tokens(path: str | os.PathLike) -> TokenFile:
    """Read a token file written by :func:`save_tokens`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return TokenFile(codes=torch.from_numpy(z["codes"].astype(np.int64)), sample_rate=int(z["sample_rate"]),
                             frame_rate=int(z["frame_rate"]), cardinality=int(z["cardinality"]),
                             num_samples=int(z["num_samples"]))
    except FileNotFoundError:
        raise
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not an alm token file: {e}") from e


def decode_tokens(tf: TokenFile, tokenizer: AudioTokenizer) -> torch.Tensor:
    """Decode a token file with ``tokenizer`` (checked to match) to ``[num_samples]``."""
    mine = (tokenizer.sample_rate, tokenizer.frame_rate, tokenizer.cardinality)
    theirs = (tf.sample_rate, tf.frame_rate, tf.cardinality)
    if mine != theirs:
        raise ValueError(f"token file was made by a tokenizer with (rate, frame rate, cardinality) {theirs}; "
                         f"this one has {mine}")
    return tokenizer.decode(tf.codes[None])[0, : tf.num_samples]
