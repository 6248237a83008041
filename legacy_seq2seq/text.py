"""A character vocabulary for the CTC and RNN-T baselines: id 0 is the blank (and the padding of target batches).

Characters come from a list of training strings, sorted so the same corpus always gives the same ids::

    vocab = CharVocab.from_texts(["hello world", "hola mundo"])
    ids = vocab.encode("hola")          # [5, 9, 6, 2]: ids in [1, len(vocab))
    vocab.decode(ids)                   # "hola"; blanks (0) are skipped
    vocab.save("vocab.json"); CharVocab.load("vocab.json") == vocab

The JSON file is ``{"schema_version": 1, "blank": "<blank>", "chars": ["a", "b", ...]}``; ``chars[i]`` has id ``i + 1``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

BLANK_ID = 0  # CTC blank / RNN-T blank and start symbol / target padding
BLANK_TOKEN = "<blank>"
SCHEMA_VERSION = 1


class CharVocab:
    """Characters <-> ids, with id 0 reserved for the blank.

    Args:
        chars: the distinct characters, each a string of length 1; ``chars[i]`` gets id ``i + 1``.

    Raises:
        ValueError: a character is repeated or is not a single character.
    """

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"every vocabulary entry must be one character, got {bad[:5]}")
        if len(set(chars)) != len(chars):
            raise ValueError("the character list holds duplicates")
        self.chars: tuple[str, ...] = tuple(chars)
        self._ids = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharVocab:
        """The vocabulary of every character that occurs in ``texts`` (sorted by code point)."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(sorted(seen))

    def __len__(self) -> int:
        """Vocabulary size including the blank: the ``vocab_size`` of a model over this vocabulary."""
        return len(self.chars) + 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab(size={len(self)}, chars={''.join(self.chars)!r})"

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``'s characters, each in ``[1, len(self))``.

        Raises:
            ValueError: ``text`` holds characters outside the vocabulary (the message lists them).
        """
        unknown = sorted({c for c in text if c not in self._ids})
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown!r}")
        return [self._ids[c] for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The string of ``ids``; blanks (0) are skipped.

        Raises:
            ValueError: an id is outside ``[0, len(self))``.
        """
        out = []
        for i in ids:
            i = int(i)
            if i == BLANK_ID:
                continue
            if not 0 < i < len(self):
                raise ValueError(f"id {i} is outside the vocabulary [0, {len(self)})")
            out.append(self.chars[i - 1])
        return "".join(out)

    def to_dict(self) -> dict[str, object]:
        """The JSON-serializable form that :meth:`from_dict` reads."""
        return {"schema_version": SCHEMA_VERSION, "blank": BLANK_TOKEN, "chars": list(self.chars)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CharVocab:
        """Rebuild a vocabulary from :meth:`to_dict` output.

        Raises:
            ValueError: the dict has no ``chars`` list or a newer ``schema_version``.
        """
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"vocabulary schema_version {version!r} is not supported (this code reads up to "
                             f"{SCHEMA_VERSION})")
        chars = data.get("chars")
        if not isinstance(chars, list):
            raise ValueError("a CharVocab dict needs a 'chars' list")
        return cls(chars)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON to ``path`` (atomically: temp file, then rename); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        logger.info("wrote a %d-entry character vocabulary to %s", len(self), path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a vocabulary (the message says why).
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls.from_dict(data)
