"""Watermark keys: where the secret comes from, and how it becomes the seed of the keyed patterns.

A key is any secret string or byte string. It is never used directly: it is hashed (SHA-256, with a domain
separation prefix) into a 32-byte seed, and every keyed choice of the watermark (the pseudo-random band patterns,
the order of the payload bits in the period, the bit scrambling) is drawn from a generator seeded by it.

Where the key comes from, first match wins (:func:`configured_key`):

1. the environment variable ``ALM_WATERMARK_KEY``: a hex string (even length, hex digits only: its bytes are
   used) or any other string (its UTF-8 bytes are used);
2. the environment variable ``ALM_WATERMARK_KEY_FILE``: the path of a key file, read by :func:`load_key`;
3. the built-in development key :data:`DEFAULT_KEY`, which is public (it is in this source file) and marked
   ``is_default``; embedding with it logs a warning once per process, because anyone can detect, remove or forge
   a mark made with a public key. Deployments set ``ALM_WATERMARK_KEY``.

Key material never appears in logs, ``repr`` or ``str``: a :class:`WatermarkKey` shows where it came from and a
short *key id* (a hash of the seed, not invertible) that tells two keys apart.

    from safety import load_key
    key = load_key("/etc/alm/watermark.key")   # text (stripped) or binary file
    key                                        # WatermarkKey(source='file', is_default=False, id='3f9c1a0b')
"""

from __future__ import annotations

import hashlib
import logging
import os
import string
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_KEY = "ALM_WATERMARK_KEY"  # the secret itself (hex or any string)
ENV_KEY_FILE = "ALM_WATERMARK_KEY_FILE"  # or the path of a file holding it
_SEED_DOMAIN = b"alm-watermark-seed-v1\x00"  # domain separation: the same secret used elsewhere gives other bytes
_ID_DOMAIN = b"alm-watermark-key-id-v1\x00"
MAX_KEY_FILE_BYTES = 1 << 20  # 1 MiB: a key file larger than this is almost surely the wrong file
# Public development key: in the source, so it protects nothing. Marks made with it prove only "made by this
# toolkit in a setup that did not configure a key".
_DEFAULT_MATERIAL = b"alm development watermark key -- PUBLIC, NOT SECRET -- set ALM_WATERMARK_KEY"


class WatermarkKeyError(ValueError):
    """A key that cannot be used: empty secret, missing, unreadable or absurdly large key file."""


@dataclass(frozen=True, repr=False)
class WatermarkKey:
    """A watermark key: the 32-byte seed derived from a secret, and where the secret came from.

    Build one with :meth:`from_secret`, :func:`load_key` or :func:`configured_key`; ``repr`` never shows the seed.
    """

    seed: bytes = field(compare=True)  # 32 bytes, SHA-256 of the secret; the only thing the watermark uses
    source: str = field(default="secret", compare=False)  # "env", "file", "default" or "secret"
    is_default: bool = field(default=False, compare=False)  # the public development key

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != 32:
            raise WatermarkKeyError("a WatermarkKey seed must be 32 bytes: build keys with WatermarkKey.from_secret")

    @classmethod
    def from_secret(cls, secret: str | bytes, source: str = "secret") -> WatermarkKey:
        """Derive a key from a secret: ``bytes`` as is; a hex string by its bytes; any other string by UTF-8.

        Raises:
            WatermarkKeyError: an empty secret.
        """
        if isinstance(secret, str):
            text = secret.strip()
            if not text:
                raise WatermarkKeyError(f"the watermark key from {source} is empty")
            is_hex = len(text) % 2 == 0 and all(c in string.hexdigits for c in text)
            material = bytes.fromhex(text) if is_hex else text.encode("utf-8")
        elif isinstance(secret, (bytes, bytearray)):
            material = bytes(secret)
            if not material:
                raise WatermarkKeyError(f"the watermark key from {source} is empty")
        else:
            raise WatermarkKeyError(f"a watermark secret must be str or bytes, got {type(secret).__name__}")
        return cls(hashlib.sha256(_SEED_DOMAIN + material).digest(), source=source)

    @property
    def key_id(self) -> str:
        """8 hex digits that identify the key (a one-way hash of the seed; safe to log)."""
        return hashlib.sha256(_ID_DOMAIN + self.seed).hexdigest()[:8]

    @property
    def seed_int(self) -> int:
        """The seed as an integer, for ``numpy.random.default_rng``."""
        return int.from_bytes(self.seed, "big")

    def __repr__(self) -> str:
        return f"WatermarkKey(source={self.source!r}, is_default={self.is_default}, id={self.key_id!r})"

    __str__ = __repr__


DEFAULT_KEY = WatermarkKey(hashlib.sha256(_SEED_DOMAIN + _DEFAULT_MATERIAL).digest(), "default", is_default=True)


def load_key(path: str | os.PathLike) -> WatermarkKey:
    """Read a key file: text (surrounding whitespace stripped, hex or any string) or raw binary bytes.

    Raises:
        WatermarkKeyError: missing, unreadable, empty or larger than 1 MiB.
    """
    path = Path(path)
    if not path.is_file():
        raise WatermarkKeyError(f"watermark key file {path} does not exist or is not a file")
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise WatermarkKeyError(f"watermark key file {path} is {size} bytes: a key file holds at most 1 MiB")
        data = path.read_bytes()
    except OSError as e:
        raise WatermarkKeyError(f"cannot read watermark key file {path}: {e.strerror or e}") from e
    try:
        return WatermarkKey.from_secret(data.decode("utf-8"), source="file")
    except UnicodeDecodeError:
        return WatermarkKey.from_secret(data, source="file")
    except WatermarkKeyError:
        raise WatermarkKeyError(f"watermark key file {path} is empty") from None


def configured_key() -> WatermarkKey:
    """The key this process uses when none is passed: ``$ALM_WATERMARK_KEY``, ``$ALM_WATERMARK_KEY_FILE``, default."""
    secret = os.environ.get(ENV_KEY, "")
    if secret.strip():
        return WatermarkKey.from_secret(secret, source="env")
    key_file = os.environ.get(ENV_KEY_FILE, "")
    if key_file.strip():
        return load_key(key_file)
    return DEFAULT_KEY


_warned_default = False


def warn_if_default(key: WatermarkKey) -> None:
    """Log, once per process, that marks are being made with the public development key."""
    global _warned_default
    if key.is_default and not _warned_default:
        _warned_default = True
        logger.warning(
            "watermarking with the public DEFAULT development key: anyone can detect or forge these marks; "
            "set %s (or %s) to a secret for real deployments",
            ENV_KEY,
            ENV_KEY_FILE,
        )
