"""Load a corpus in manifest form (ours or a user's) as a Hugging Face ``datasets.DatasetDict``.

The manifest form: a directory with ``manifest.jsonl``, one JSON object per utterance. Required keys:
``id`` (unique), ``path`` (audio file, relative to the directory or absolute), ``text``, ``lang``. Optional:
``speaker``, ``duration``, ``split`` (``train`` when absent), ``tasks`` and task fields (``translation``,
``translation_id``, ``pair_id``, ``intent``, ``slots``, ``spans``, ``continue_at``). Any audio format that
:func:`codec.load_audio` reads works; the ``audio`` column decodes at 16 kHz through ``datasets.Audio``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile as sf

from codec.audio import SAMPLE_RATE

log = logging.getLogger(__name__)

REQUIRED = ("id", "path", "text", "lang")
DEFAULTS: dict[str, Any] = {"speaker": "unknown", "split": "train", "tasks": ["asr", "tts"], "duration": None}


class ManifestError(ValueError):
    """A manifest is missing, malformed, or names audio that does not exist."""


def read_manifest(corpus_dir: str | Path) -> list[dict[str, Any]]:
    """Parse and validate ``corpus_dir/manifest.jsonl``; paths come back absolute.

    Raises:
        ManifestError: naming the file and line of the first problem.
    """
    root = Path(corpus_dir)
    path = root / "manifest.jsonl" if root.is_dir() else root
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}: make one with `alm data synth --out {root}` "
                            "or write manifest.jsonl (keys: id, path, text, lang)")
    root = path.parent
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: not valid JSON ({e.msg})") from e
            if not isinstance(rec, dict):
                raise ManifestError(f"{path}:{n}: each line must be a JSON object")
            missing = [k for k in REQUIRED if k not in rec]
            if missing:
                raise ManifestError(f"{path}:{n}: missing required key(s) {missing}")
            if rec["id"] in seen:
                raise ManifestError(f"{path}:{n}: duplicate id {rec['id']!r}")
            seen.add(rec["id"])
            audio = Path(rec["path"])
            audio = audio if audio.is_absolute() else root / audio
            if not audio.is_file():
                raise ManifestError(f"{path}:{n}: audio file {audio} does not exist")
            rec = {**DEFAULTS, **rec, "path": str(audio.resolve())}
            records.append(rec)
    if not records:
        raise ManifestError(f"{path} is empty")
    return records


def _column_values(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys]
    cols = {k: [r.get(k) for r in records] for k in keys}
    # Slots differ per intent; a JSON string keeps one column type for every row (json.loads gives the dict).
    if "slots" in cols:
        cols["slots"] = [json.dumps(v, ensure_ascii=False) if v is not None else None for v in cols["slots"]]
    if "spans" in cols:
        cols["spans"] = [json.dumps(v) if v is not None else None for v in cols["spans"]]
    return cols


def load_corpus(corpus_dir: str | Path, sample_rate: int = SAMPLE_RATE) -> datasets.DatasetDict:
    """Load a manifest-form corpus, one dataset per split.

    Args:
        corpus_dir: directory holding ``manifest.jsonl`` (or the manifest file itself).
        sample_rate: the rate the ``audio`` column decodes to.

    Returns:
        ``DatasetDict`` with one ``Dataset`` per split present. Columns: ``audio`` (decodes to a waveform at
        ``sample_rate``), ``path`` and every manifest key; ``slots`` and ``spans`` are JSON strings.
    """
    records = read_manifest(corpus_dir)
    splits: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        splits.setdefault(r["split"], []).append(r)
    out = {}
    for split, recs in sorted(splits.items()):
        cols = _column_values(recs)
        cols["audio"] = list(cols["path"])
        ds = datasets.Dataset.from_dict(cols)
        out[split] = ds.cast_column("audio", datasets.Audio(sampling_rate=sample_rate))
    log.info("loaded %s: %s", corpus_dir, {k: len(v) for k, v in out.items()})
    return datasets.DatasetDict(out)


def read_split_audio(corpus: str | Path, split: str, max_hours: float, seed: int) -> list[np.ndarray]:
    """Shuffled ``[T]`` int16 waveforms of one split of a manifest corpus, up to ``max_hours`` of audio (held in
    memory by the codec and unit trainers). Rows without a ``split`` count as ``train``."""
    return read_split_rows(corpus, split, max_hours, seed)[0]


def read_split_rows(corpus: str | Path, split: str, max_hours: float, seed: int,
                    keep: Callable[[dict[str, Any]], bool] | None = None
                    ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """:func:`read_split_audio` with the manifest rows of the waveforms, and only rows ``keep`` accepts."""
    corpus = Path(corpus)
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split", "train") == split and (keep is None or keep(r))]
    if not rows:
        raise ValueError(f"{corpus} has no {split!r} utterances" + (" that qualify" if keep else ""))
    random.Random(seed).shuffle(rows)
    out, kept, total = [], [], 0.0
    for r in rows:
        if total >= max_hours * 3600:
            break
        data, rate = sf.read(corpus / r["path"], dtype="int16")
        if rate != SAMPLE_RATE or data.ndim != 1:
            raise ValueError(f"{r['path']}: expected {SAMPLE_RATE} Hz mono, got {rate} Hz {data.shape}")
        out.append(data)
        kept.append(r)
        total += len(data) / rate
    log.info("%s: %d utterances, %.2f h in memory", split, len(out), total / 3600)
    return out, kept
