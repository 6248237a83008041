"""The one token space shared by text, semantic units and codec tokens.

Layout, in id order (every range half-open ``[start, end)``, together covering ``[0, size)``)::

    special   <pad> <bos> <eos> <unk>, task tokens, language tokens, segment markers   (19 ids)
    text      a byte-level BPE trained here (HF ``tokenizers``), ids shifted by ``text.start``
    units     HuBERT-style unit ``u`` -> ``units.start + u``
    codec_k   codebook ``k`` code ``c`` -> ``codec.start + k * cardinality + c``, for k in 0..K-1
    reserved  only when ``pad_to_multiple_of > 1``: unused ids so the embedding size is a round number

Codec frames are flattened frame-major, coarse to fine: ``frame0 cb0, frame0 cb1, ..., frame1 cb0, ...``.
Each codebook owns its own range, so the position of a codec token inside its frame is visible in its id.

The layout (a small JSON dict, :meth:`Vocabulary.to_dict`) is stored in the model config; the text tokenizer
is saved beside it as ``tokenizer.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from codec.base import atomic_write_text

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("asr", "tts", "s2st", "slu", "continue")
LANGUAGES: tuple[str, ...] = ("en", "es")
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<bos>", "<eos>", "<unk>",
    *(f"<{t}>" for t in TASKS),
    *(f"<{lang}>" for lang in LANGUAGES),
    "<units>", "</units>", "<audio>", "</audio>", "<voice>", "</voice>", "<text>", "</text>",
)
LAYOUT_VERSION = 1
TOKENIZER_FILE = "tokenizer.json"
LAYOUT_FILE = "vocab.json"
CONFIG_FILE = "config.json"  # a model checkpoint's config, which holds the layout under "vocab_layout"

TokenIds = Sequence[int] | torch.Tensor | np.ndarray


class VocabularyError(ValueError):
    """Ids or a saved vocabulary that do not fit the layout; the message says which and why."""


@dataclass(frozen=True)
class TokenRange:
    """Half-open id range ``[start, end)``; unpacks as ``start, end = r``."""

    start: int
    end: int

    def __iter__(self) -> Iterator[int]:
        return iter((self.start, self.end))

    def __len__(self) -> int:
        return self.end - self.start

    def __contains__(self, token_id: object) -> bool:
        return isinstance(token_id, (int, np.integer)) and self.start <= int(token_id) < self.end


def train_text_tokenizer(sentences: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE on ``sentences`` (both languages mixed).

    Every byte is in the initial alphabet, so any string encodes without ``<unk>``. A space is prefixed to the
    input so that a word is the same token at the start of a sentence and in its middle. The tokenizer carries
    no special tokens: those live in :class:`Vocabulary`'s own range.

    Args:
        sentences: training text; normalized (spoken-form) sentences give the most useful merges.
        vocab_size: target size including the 256 byte tokens (fewer if the text has fewer merges to offer).
        min_frequency: a pair must occur this often to be merged.
    """
    if vocab_size < 257:
        raise ValueError(f"vocab_size must exceed the 256 byte tokens, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(sentences, trainer=trainer)
    log.info("trained a byte-level BPE with %d tokens", tok.get_vocab_size())
    return tok


class Vocabulary:
    """Maps text, units and codec codes into one id space and back.

    Args:
        text_tokenizer: the BPE from :func:`train_text_tokenizer`; ``None`` builds a layout-only vocabulary
            (ranges and ids work, :meth:`encode_text` / :meth:`decode_text` raise) and then needs
            ``text_vocab_size``.
        num_units: size of the unit inventory (k-means clusters).
        num_codebooks: K, the most codebooks any model over this vocabulary may use.
        cardinality: codes per codebook (1024 for the shipped codec).
        text_vocab_size: number of text ids; defaults to the tokenizer's size and must match it when both given.
        pad_to_multiple_of: round :attr:`size` up with a ``reserved`` range (e.g. 64 for GPU-friendly matmuls).
    """

    def __init__(self, text_tokenizer: Tokenizer | None, *, num_units: int, num_codebooks: int, cardinality: int,
                 text_vocab_size: int | None = None, pad_to_multiple_of: int = 1) -> None:
        if text_tokenizer is not None:
            n = text_tokenizer.get_vocab_size()
            if text_vocab_size is not None and text_vocab_size != n:
                raise VocabularyError(f"layout says {text_vocab_size} text tokens but the tokenizer has {n}")
            text_vocab_size = n
        if text_vocab_size is None:
            raise VocabularyError("give a text tokenizer or text_vocab_size")
        for name, value in (("text_vocab_size", text_vocab_size), ("num_units", num_units),
                            ("num_codebooks", num_codebooks), ("cardinality", cardinality),
                            ("pad_to_multiple_of", pad_to_multiple_of)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise VocabularyError(f"{name} must be a positive int, got {value!r}")
        self.tokenizer = text_tokenizer
        self.num_units = int(num_units)
        self.num_codebooks = int(num_codebooks)
        self.cardinality = int(cardinality)
        self.pad_to_multiple_of = int(pad_to_multiple_of)
        self._special = {name: i for i, name in enumerate(SPECIAL_TOKENS)}

        s = len(SPECIAL_TOKENS)
        self.special = TokenRange(0, s)
        self.text = TokenRange(s, s + int(text_vocab_size))
        self.units = TokenRange(self.text.end, self.text.end + self.num_units)
        self.codec = TokenRange(self.units.end, self.units.end + self.num_codebooks * self.cardinality)
        used = self.codec.end
        self.size = -(-used // self.pad_to_multiple_of) * self.pad_to_multiple_of
        self.reserved = TokenRange(used, self.size)

    # --- ranges and special ids ------------------------------------------------------------------------------
    def codebook(self, k: int) -> TokenRange:
        """Range of codebook ``k`` (0 = coarsest)."""
        if not 0 <= k < self.num_codebooks:
            raise VocabularyError(f"codebook {k} outside 0..{self.num_codebooks - 1}")
        start = self.codec.start + k * self.cardinality
        return TokenRange(start, start + self.cardinality)

    @property
    def ranges(self) -> dict[str, TokenRange]:
        """Every range by name, in id order: special, text, units, codec_0..codec_{K-1}, reserved (if any)."""
        out = {"special": self.special, "text": self.text, "units": self.units}
        out.update({f"codec_{k}": self.codebook(k) for k in range(self.num_codebooks)})
        if len(self.reserved):
            out["reserved"] = self.reserved
        return out

    def token_id(self, name: str) -> int:
        """Id of a special token, e.g. ``"<asr>"``."""
        try:
            return self._special[name]
        except KeyError:
            raise VocabularyError(f"no special token {name!r}; known: {', '.join(SPECIAL_TOKENS)}") from None

    def task_id(self, task: str) -> int:
        """Id of a task token (``asr tts s2st slu continue``)."""
        if task not in TASKS:
            raise VocabularyError(f"unknown task {task!r}; known: {TASKS}")
        return self._special[f"<{task}>"]

    def lang_id(self, lang: str) -> int:
        """Id of a language token (``en es``)."""
        if lang not in LANGUAGES:
            raise VocabularyError(f"unsupported language {lang!r}; supported: {LANGUAGES}")
        return self._special[f"<{lang}>"]

    @property
    def pad_id(self) -> int:
        return self._special["<pad>"]

    @property
    def bos_id(self) -> int:
        return self._special["<bos>"]

    @property
    def eos_id(self) -> int:
        return self._special["<eos>"]

    # --- text ------------------------------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Text -> ids in the text range (no special tokens added).

        Any ``str`` encodes (the BPE is byte-level: no ``<unk>``) except one holding a lone surrogate, which is
        not Unicode text and raises :class:`VocabularyError`. ``decode_text(encode_text(s))`` is ``s`` in the
        tokenizer's NFC, less one leading space if that starts with one (the pre-tokenizer's prefix space is not
        marked). The tokenizer's NFC is Python's ``unicodedata`` NFC on characters assigned by Unicode 3.2; its
        tables predate some newer combining marks (tests/test_fuzz_text.py).
        """
        if self.tokenizer is None:
            raise VocabularyError("this vocabulary was built from a layout alone: load it with its tokenizer.json")
        try:
            encoding = self.tokenizer.encode(text, add_special_tokens=False)
        except TypeError:  # tokenizers says only "TextInputSequence must be str"
            raise VocabularyError(_not_text(text)) from None
        return [i + self.text.start for i in encoding.ids]

    def decode_text(self, ids: TokenIds) -> str:
        """Ids -> text, skipping every id outside the text range (markers, units, codec tokens)."""
        if self.tokenizer is None:
            raise VocabularyError("this vocabulary was built from a layout alone: load it with its tokenizer.json")
        text_ids = [i - self.text.start for i in _as_list(ids) if i in self.text]
        out = self.tokenizer.decode(text_ids, skip_special_tokens=False)
        return out[1:] if out.startswith(" ") else out  # the prefix space the pre-tokenizer added

    # --- units -----------------------------------------------------------------------------------------------
    def units_to_ids(self, units: TokenIds) -> list[int]:
        """Unit sequence ``[F]`` with values in ``[0, num_units)`` -> ids ``[F]``."""
        u = _as_list(units)
        bad = [x for x in u if not 0 <= x < self.num_units]
        if bad:
            raise VocabularyError(f"units out of range [0, {self.num_units}): {bad[:5]}")
        return [x + self.units.start for x in u]

    def ids_to_units(self, ids: TokenIds) -> list[int]:
        """Inverse of :meth:`units_to_ids`; raises on any id outside the unit range."""
        i = _as_list(ids)
        bad = [x for x in i if x not in self.units]
        if bad:
            raise VocabularyError(f"ids outside the unit range {tuple(self.units)}: {bad[:5]}")
        return [x - self.units.start for x in i]

    # --- codec codes -----------------------------------------------------------------------------------------
    def codes_to_ids(self, codes: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> list[int]:
        """Codes ``[K, F]`` -> ids ``[F * K]``, frame-major, coarse to fine, codebook ``k`` in its own range.

        ``K`` may be anything in ``1..num_codebooks`` (the first K codebooks are used).
        """
        c = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
        if c.dim() != 2:
            raise VocabularyError(f"codes must be [K, F], got shape {tuple(c.shape)}")
        if c.is_floating_point():
            raise VocabularyError(f"codes must be integers, got {c.dtype}")
        k = c.shape[0]
        if not 1 <= k <= self.num_codebooks:
            raise VocabularyError(f"codes have {k} codebooks; this vocabulary holds 1..{self.num_codebooks}")
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.cardinality):
            raise VocabularyError(f"codes out of range [0, {self.cardinality}): found [{int(c.min())}, "
                                  f"{int(c.max())}]")
        offsets = self.codec.start + torch.arange(k) * self.cardinality  # [K]
        return (c.long().cpu() + offsets[:, None]).T.reshape(-1).tolist()  # [F, K] -> [F * K]

    def ids_to_codes(self, ids: TokenIds, num_codebooks: int | None = None) -> torch.Tensor:
        """Inverse of :meth:`codes_to_ids`: ids ``[N]`` -> codes ``[K, N // K]`` (int64).

        A trailing incomplete frame is dropped. Every id (the dropped ones too) must lie in the range of the
        codebook its position calls for; otherwise :class:`VocabularyError` names the first offender.

        Args:
            ids: codec ids only (strip markers first).
            num_codebooks: K of the stream; defaults to :attr:`num_codebooks`.
        """
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        if not 1 <= k <= self.num_codebooks:
            raise VocabularyError(f"num_codebooks must be in 1..{self.num_codebooks}, got {k}")
        t = torch.as_tensor(_as_list(ids), dtype=torch.long)
        pos = torch.arange(t.numel()) % k
        local = t - self.codec.start - pos * self.cardinality
        bad = ((local < 0) | (local >= self.cardinality)).nonzero()
        if bad.numel():
            j = int(bad[0, 0])
            raise VocabularyError(f"id {int(t[j])} at position {j} is not in codebook {int(pos[j])}'s range "
                                  f"{tuple(self.codebook(int(pos[j])))}")
        frames = t.numel() // k
        if frames * k != t.numel():
            log.debug("dropping an incomplete trailing frame (%d of %d codes)", t.numel() - frames * k, k)
        return local[: frames * k].view(frames, k).T.contiguous()

    # --- inspection ------------------------------------------------------------------------------------------
    def describe(self, token_id: int) -> str:
        """Readable name of one id: ``<asr>``, a text piece in quotes, ``u17``, ``c2:345`` (codebook 2, code 345)."""
        if token_id in self.special:
            return SPECIAL_TOKENS[token_id]
        if token_id in self.text:
            piece = self.tokenizer.id_to_token(token_id - self.text.start) if self.tokenizer else None
            return repr(piece) if piece is not None else f"t{token_id - self.text.start}"
        if token_id in self.units:
            return f"u{token_id - self.units.start}"
        if token_id in self.codec:
            k, c = divmod(token_id - self.codec.start, self.cardinality)
            return f"c{k}:{c}"
        if token_id in self.reserved:
            return f"<reserved{token_id - self.reserved.start}>"
        raise VocabularyError(f"id {token_id} outside [0, {self.size})")

    def __repr__(self) -> str:
        spans = ", ".join(f"{n}=[{r.start},{r.end})" for n, r in self.ranges.items())
        return f"Vocabulary(size={self.size}, {spans})"

    # --- persistence -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The layout as a JSON-able dict (stored in the model config as ``vocab_layout``)."""
        return {
            "layout_version": LAYOUT_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "text_vocab_size": len(self.text),
            "num_units": self.num_units,
            "num_codebooks": self.num_codebooks,
            "cardinality": self.cardinality,
            "pad_to_multiple_of": self.pad_to_multiple_of,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, layout: dict[str, Any], text_tokenizer: Tokenizer | None = None) -> Vocabulary:
        """Rebuild from :meth:`to_dict`; without a tokenizer the vocabulary knows ids but not text."""
        if not isinstance(layout, dict):
            raise VocabularyError(f"a vocabulary layout is a JSON object, got a {type(layout).__name__}")
        version = layout.get("layout_version")
        if version != LAYOUT_VERSION:
            raise VocabularyError(f"vocabulary layout version {version!r}; this code reads {LAYOUT_VERSION}")
        if list(layout.get("special_tokens", [])) != list(SPECIAL_TOKENS):
            raise VocabularyError("the layout's special tokens differ from this code's; the checkpoint was made "
                                  "by another version of alm")
        try:
            vocab = cls(text_tokenizer, text_vocab_size=layout["text_vocab_size"], num_units=layout["num_units"],
                        num_codebooks=layout["num_codebooks"], cardinality=layout["cardinality"],
                        pad_to_multiple_of=layout.get("pad_to_multiple_of", 1))
        except KeyError as e:
            raise VocabularyError(f"vocabulary layout lacks {e.args[0]!r}") from None
        if "size" in layout and layout["size"] != vocab.size:
            raise VocabularyError(f"layout says size {layout['size']}, its ranges give {vocab.size}")
        return vocab

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` and ``vocab.json`` (the layout) into ``directory`` (atomically)."""
        if self.tokenizer is None:
            raise VocabularyError("cannot save a layout-only vocabulary: it has no text tokenizer")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / TOKENIZER_FILE, self.tokenizer.to_str(pretty=False))
        atomic_write_text(out / LAYOUT_FILE, json.dumps(self.to_dict(), indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Vocabulary:
        """Read a vocabulary saved with :meth:`save`, or a model checkpoint (layout in ``config.json``)."""
        d = Path(directory)
        if not (d / TOKENIZER_FILE).is_file():
            raise FileNotFoundError(f"{d} has no {TOKENIZER_FILE}: not a vocabulary or checkpoint directory")
        if (d / LAYOUT_FILE).is_file():
            source, layout = d / LAYOUT_FILE, _read_json(d / LAYOUT_FILE)
        elif (d / CONFIG_FILE).is_file() and "vocab_layout" in (cfg := _read_json(d / CONFIG_FILE)):
            source, layout = d / CONFIG_FILE, cfg["vocab_layout"]
        else:
            raise FileNotFoundError(f"{d} has neither {LAYOUT_FILE} nor a {CONFIG_FILE} with a vocab_layout")
        try:
            tokenizer = Tokenizer.from_file(str(d / TOKENIZER_FILE))
        except Exception as e:  # tokenizers raises a bare Exception for a malformed file
            raise VocabularyError(f"{d / TOKENIZER_FILE} is not a valid tokenizer file: {e}") from e
        try:
            return cls.from_dict(layout, tokenizer)
        except VocabularyError as e:
            raise VocabularyError(f"{source}: {e}") from e


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`VocabularyError` naming the file when it is not one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VocabularyError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise VocabularyError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def _not_text(text: object) -> str:
    """Why ``text`` cannot be tokenized, for an error message."""
    if not isinstance(text, str):
        return f"text must be a str, got {type(text).__name__}"
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"text is not valid Unicode: lone surrogate U+{ord(ch):04X} at position {i}"
    return f"the text tokenizer cannot encode {text[:40]!r}"


def _as_list(ids: TokenIds) -> list[int]:
    if isinstance(ids, torch.Tensor):
        return ids.reshape(-1).tolist()
    if isinstance(ids, np.ndarray):
        return ids.reshape(-1).tolist()
    return [int(i) for i in ids]

