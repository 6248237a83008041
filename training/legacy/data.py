"""Data of the baseline trainers: utterance selection, the per-utterance .npy cache (log-mel, prosody, durations),
and a resumable length-bucketed batch stream measured in seconds of audio.

Cache layout (``cache_dir``, default ``CORPUS/legacy_features``); each directory is keyed by what its arrays
depend on, so a change of features (or of the Tacotron 2 that gave the durations) starts a new one::

    logmel-<features hash>/<id>.npy          [F, n_mels] float32 log-mel (codec.features.log_mel, transposed)
    prosody-<features hash>/<id>.npy         [2, F] float32: z-scored log-F0 and energy (FastSpeech 2)
    durations-<tacotron weights hash>/<id>.npy   [L] int64 frames per symbol (FastSpeech 2)

Every array is written once (temporary file, then rename), so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from codec.audio import load_audio
from codec.features import FeatureConfig, log_mel

log = logging.getLogger(__name__)

MIN_FRAMES = 16  # shorter utterances are left out: LAS reduces time 8x, the Conformer 4x (and needs 7 frames)
BUCKET_POOL = 64  # batches drawn, sorted by length and cut together (less padding); the order stays seeded


@dataclass(frozen=True)
class Utterance:
    """One usable corpus record."""

    id: str
    path: str
    text: str  # normalized (legacy_seq2seq.inference.normalize_text)
    lang: str
    speaker: str
    split: str
    seconds: float


def select_utterances(records: list[dict[str, Any]], task: str | None, langs: Iterable[str],
                      normalize: Callable[[str], str]) -> list[Utterance]:
    """Records of ``langs`` tagged with ``task`` (``asr`` / ``tts``; ``None``: any), with non-empty text."""
    langs = set(langs)
    out = []
    for r in records:
        if r["lang"] not in langs or (task is not None and task not in (r.get("tasks") or [])):
            continue
        text = normalize(r["text"])
        seconds = r.get("duration")
        if seconds is None:
            import soundfile as sf

            seconds = sf.info(r["path"]).duration
        if text:
            out.append(Utterance(r["id"], r["path"], text, r["lang"], r.get("speaker", "unknown"), r["split"],
                                 float(seconds)))
    return out


def fingerprint(payload: Any) -> str:
    """A short stable hash of a JSON-able value."""
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def file_fingerprint(path: str | os.PathLike) -> str:
    """A short hash of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


class NpyCache:
    """One array per utterance id in a directory; written atomically, read memory-mapped."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, utt_id: str) -> Path:
        return self.dir / f"{utt_id.replace(os.sep, '__')}.npy"

    def __contains__(self, utt_id: str) -> bool:
        return self._path(utt_id).is_file()

    def load(self, utt_id: str) -> np.ndarray:
        return np.load(self._path(utt_id), mmap_mode="r")

    def save(self, utt_id: str, array: np.ndarray) -> None:
        path = self._path(utt_id)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, np.ascontiguousarray(array))
        os.replace(tmp, path)

    def fill(self, utts: list[Utterance], compute: Callable[[Utterance], np.ndarray], desc: str,
             progress: bool = True) -> int:
        """Compute and save the arrays of ``utts`` not yet cached; returns how many were computed."""
        todo = [u for u in utts if u.id not in self]
        if todo:
            log.info("%s: %d of %d utterances to compute into %s", desc, len(todo), len(utts), self.dir)
        for u in tqdm(todo, desc=desc, unit="utt", disable=not progress or not todo):
            self.save(u.id, compute(u))
        return len(todo)


def feature_cache(root: str | os.PathLike, features: FeatureConfig) -> NpyCache:
    """The log-mel cache for ``features`` under ``root``."""
    return NpyCache(Path(root) / f"logmel-{fingerprint(dataclasses.asdict(features))}")


def compute_log_mel(utt: Utterance, features: FeatureConfig) -> np.ndarray:
    """``[F, n_mels]`` float32 log-mel of an utterance's audio."""
    wav = load_audio(utt.path, features.sample_rate, max_seconds=None)
    return log_mel(wav, **dataclasses.asdict(features)).T.contiguous().numpy().astype(np.float32)


class BatchStream:
    """An endless, seeded stream of batches of utterance ids, each at most ``batch_seconds`` of audio.

    Each epoch shuffles the ids (seed and epoch number), takes them ``BUCKET_POOL`` batches' worth at a time,
    sorts each pool by length, cuts it into batches and shuffles those. :meth:`state_dict` (epoch, position) is
    all a resumed run needs to continue with the same batches.

    Args:
        seconds: utterance id -> its duration.
        batch_seconds: audio per batch (an utterance longer than this is a batch alone).
        max_batch_size: utterances per batch at most.
        seed: the stream's seed.
    """

    def __init__(self, seconds: dict[str, float], batch_seconds: float, max_batch_size: int, seed: int) -> None:
        if not seconds:
            raise ValueError("no utterances to train on (check langs, max_seconds and the corpus's splits)")
        self.ids = sorted(seconds)
        self.seconds = seconds
        self.batch_seconds, self.max_batch_size, self.seed = batch_seconds, max_batch_size, seed
        self.epoch, self.index = 0, 0
        self._batches = self._plan(0)

    def _plan(self, epoch: int) -> list[list[str]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = [self.ids[i] for i in rng.permutation(len(self.ids))]
        per_batch = max(1, min(self.max_batch_size, int(self.batch_seconds / np.mean(list(self.seconds.values())))))
        pool = BUCKET_POOL * per_batch
        batches: list[list[str]] = []
        for start in range(0, len(order), pool):
            current: list[str] = []
            total = 0.0
            for utt in sorted(order[start:start + pool], key=lambda u: self.seconds[u]):
                if current and (total + self.seconds[utt] > self.batch_seconds or len(current) >= self.max_batch_size):
                    batches.append(current)
                    current, total = [], 0.0
                current.append(utt)
                total += self.seconds[utt]
            if current:
                batches.append(current)
        return [batches[i] for i in rng.permutation(len(batches))]

    def next(self) -> list[str]:
        """The next batch (a new epoch is planned when one ends)."""
        if self.index >= len(self._batches):
            self.epoch, self.index = self.epoch + 1, 0
            self._batches = self._plan(self.epoch)
        batch = self._batches[self.index]
        self.index += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._batches = self._plan(self.epoch)


def pad_stack(arrays: list[np.ndarray], value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``[N_i, ...]`` arrays -> ``([B, max N, ...], lengths [B])``, padded with ``value``."""
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    out = np.full((len(arrays), int(lengths.max()), *arrays[0].shape[1:]), value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths


def audio_segments(utts: list[Utterance], segment: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One random ``segment``-sample window of each utterance's audio (zero-padded if shorter): ``[B, segment]``."""
    out = np.zeros((len(utts), segment), dtype=np.float32)
    for i, u in enumerate(utts):
        wav = load_audio(u.path, sample_rate, max_seconds=None).numpy()
        start = int(rng.integers(0, max(1, len(wav) - segment + 1)))
        piece = wav[start:start + segment]
        out[i, : len(piece)] = piece
    return out
