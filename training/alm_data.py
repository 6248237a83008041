"""Data for the audio-language model: a token cache of a corpus, task examples built from it, a multi-task sampler.

1. **Token cache** (:func:`build_token_cache`). Every utterance of a manifest corpus is encoded once: codec codes
   ``[K_max, F]`` (all of the codec's codebooks; a model takes the first ``K``) and HuBERT-style units ``[F]``
   (uncollapsed; collapsing happens when an example is built), both ``uint16``. Layout::

       ROOT/<fingerprint>/<split>-<nnnnn>/      one shard per <= shard_size utterances of a split:
           codes.npy [K_max, sum F], units.npy [sum F]   uint16, memory-mapped when read (pages load on use)
           index.json                                    ids [n], n_frames [n]
       ROOT/<fingerprint>/cache.json            what the cache holds; written last, so it marks a finished cache

   The fingerprint hashes the manifest (records + audio file sizes), the codec's class, config and weights and
   the unit tokenizer's config and weights: a changed corpus or tokenizer gets a new directory (is rebuilt), an
   unchanged one is loaded without encoding anything. Shards are written atomically, so a killed build resumes at
   the first missing shard. Plain ``.npy`` and JSON: nothing is unpickled. (Caches written before shards were
   directories hold ``<split>-<nnnnn>.npz`` files with the same arrays; they are still read, into memory.)

2. **Examples** (:class:`ExampleBuilder`). One :class:`alm.prompts.Example` per (task, utterance), through the
   ``alm.prompts`` builders:

   - ``asr``: speech of the utterance -> its text;
   - ``tts``: text + a ``voice_seconds`` window of codec tokens from *another* utterance of the same speaker in
     the same split (random utterance, random window; an empty ``<voice></voice>`` when the speaker has no other
     utterance) -> the utterance's codec tokens;
   - ``s2st``: source speech + a voice prompt from another utterance of the *target* utterance's speaker (the one
     named by ``translation_id``) -> (with probability ``s2st_text_prob`` the target text, then) target codec tokens;
   - ``slu``: speech -> ``training.data.slu.format_target(intent, slots)``;
   - ``continue``: the codec tokens split at ``continue_at`` seconds.

   "Speech" in ASR / SLU / S2ST prompts is ``input_speech``: ``"units"`` (collapsed runs, the ``alm.prompts``
   format ``<units> u… </units>``), ``"codec"`` (``<audio> c… </audio>`` in its place) or ``"both"`` (units
   segment, then audio segment).

3. **Sampling** (:class:`MultiTaskSampler`). A task is drawn with probability ``p ∝ (n_task / N)^(1/T)``, then a
   language within it with ``p ∝ (n_task,lang / n_task)^(1/T)``, then an utterance uniformly (``T = 1``:
   proportional to the data, ``T -> inf``: uniform; ``T = 2`` is DESIGN's ``α = 0.5``). Examples are packed into
   right-padded batches of at most ``max_tokens`` padded tokens (``B * L_max``); examples longer than ``max_len``
   (the model's positions) are dropped and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from alm.config import INPUT_SPEECH
from alm.prompts import (
    IGNORE_INDEX,
    Example,
    asr_example,
    continue_example,
    s2st_example,
    slu_example,
    tts_example,
    with_speech_input,
)
from alm.vocab import TASKS, Vocabulary
from codec.audio import load_audio
from codec.base import AudioTokenizer, atomic_write_text
from codec.units import UnitTokenizer, without_blanks
from training.data.corpus import read_manifest
from training.data.slu import format_target

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cache layout or the encoding procedure changes
CACHE_META = "cache.json"
SHARD_INDEX = "index.json"
SHARD_SIZE = 256  # utterances per shard: ~256 x 3 s x 50 frames x 9 x 2 bytes = 0.7 MB with 8 codebooks
LONG_SECONDS = 30.0  # longer audio is encoded in chunks (bounded memory) when the codec can
MAX_CONSECUTIVE_DROPS = 10_000  # a sampler that drops this many examples in a row has nothing that fits


# --- fingerprints -------------------------------------------------------------------------------------------------
def weights_hash(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and raw bytes), independent of its device."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_fingerprint(records: list[dict[str, Any]], corpus_root: Path, codec: AudioTokenizer,
                      units: UnitTokenizer) -> str:
    """16 hex digits naming what a cache holds: the manifest, the codec and the unit tokenizer."""
    h = hashlib.sha256(f"alm-token-cache-v{CACHE_VERSION}".encode())
    for r in records:
        path = Path(r["path"])
        rel = os.path.relpath(path, corpus_root) if path.is_relative_to(corpus_root) else str(path)
        rec = {**r, "path": rel, "bytes": path.stat().st_size}
        h.update(json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str).encode())
    h.update(json.dumps({"class": type(codec).__name__, "config": codec.get_config(),
                         "weights": weights_hash(codec)}, sort_keys=True, default=str).encode())
    h.update(json.dumps({"config": asdict(units.config), "weights": weights_hash(units)},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def default_cache_root(corpus: str | Path) -> Path:
    """``CORPUS/token_cache`` when the corpus directory is writable, else ``~/.cache/alm/token_cache``."""
    root = Path(corpus)
    root = root if root.is_dir() else root.parent
    return root / "token_cache" if os.access(root, os.W_OK) else Path.home() / ".cache" / "alm" / "token_cache"


# --- the cache ----------------------------------------------------------------------------------------------------
@dataclass
class TokenCache:
    """The tokens of a corpus, in memory.

    Attributes:
        directory: where the cache lives (``ROOT/<fingerprint>``).
        fingerprint: see :func:`cache_fingerprint`.
        meta: the contents of ``cache.json`` (codec and unit sizes, shard list, counts).
        records: manifest record of every utterance, by id (paths absolute).
        codes: ``[K_max, F]`` uint16 codec codes by id.
        units: ``[F]`` uint16 uncollapsed units by id.
        encoded: utterances encoded by the call that returned this cache (0: everything was reused).
    """

    directory: Path
    fingerprint: str
    meta: dict[str, Any]
    records: dict[str, dict[str, Any]]
    codes: dict[str, np.ndarray]
    units: dict[str, np.ndarray]
    encoded: int = 0

    @property
    def max_codebooks(self) -> int:
        return int(self.meta["codec"]["max_codebooks"])

    @property
    def cardinality(self) -> int:
        return int(self.meta["codec"]["cardinality"])

    @property
    def num_units(self) -> int:
        return int(self.meta["units"]["num_units"])

    @property
    def frame_rate(self) -> int:
        return int(self.meta["codec"]["frame_rate"])

    def split(self, name: str) -> list[dict[str, Any]]:
        """Records of one split, in manifest order."""
        return [r for r in self.records.values() if r["split"] == name]


def _shard_plan(records: list[dict[str, Any]], shard_size: int) -> dict[str, list[str]]:
    """``{shard name: [ids]}``: each split's utterances in manifest order, ``shard_size`` per shard."""
    by_split: dict[str, list[str]] = {}
    for r in records:
        by_split.setdefault(r["split"], []).append(r["id"])
    plan = {}
    for split, ids in sorted(by_split.items()):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", split)
        for n, start in enumerate(range(0, len(ids), shard_size)):
            plan[f"{safe}-{n:05d}"] = ids[start: start + shard_size]
    return plan


@torch.no_grad()
def encode_utterance(path: str | Path, codec: AudioTokenizer, units: UnitTokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[K_max, F]`` and units ``[F]`` (both uint16) of one audio file."""
    wav = load_audio(path, codec.sample_rate, max_seconds=None)  # [T]
    previous = codec.num_codebooks
    codec.set_num_codebooks(codec.max_codebooks)
    try:
        long = wav.numel() > LONG_SECONDS * codec.sample_rate and hasattr(codec, "encode_chunked")
        codes = (codec.encode_chunked(wav[None]) if long else codec.encode(wav[None]))[0]  # [K_max, F]
    finally:
        codec.set_num_codebooks(previous)
    u = units.encode(wav if units.sample_rate == codec.sample_rate else load_audio(path, units.sample_rate,
                                                                                     max_seconds=None))
    n = min(codes.shape[-1], u.shape[-1])  # equal for 50 Hz tokenizers; guard against off-by-one of others
    return codes[:, :n].cpu().numpy().astype(np.uint16), u[:n].cpu().numpy().astype(np.uint16)


def _write_shard(path: Path, ids: list[str], codes: list[np.ndarray], units: list[np.ndarray]) -> None:
    """A shard directory: ``codes.npy [K_max, N]`` and ``units.npy [N]`` (uint16, the utterances' frames end to
    end, memory-mapped when read) and ``index.json`` (ids, frames per utterance); written to a temporary directory
    and renamed into place, so a killed build leaves no half shard."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "codes.npy", np.concatenate(codes, axis=1))
    np.save(tmp / "units.npy", np.concatenate(units))
    (tmp / SHARD_INDEX).write_text(json.dumps({"ids": ids, "n_frames": [int(u.shape[0]) for u in units]}))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _shard_ids(path: Path) -> list[str] | None:
    """The ids a finished shard holds (``None``: no such shard). ``.npz`` files are the older single-file form."""
    if (path / SHARD_INDEX).is_file():
        return json.loads((path / SHARD_INDEX).read_text())["ids"]
    legacy = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    if legacy.is_file():
        with np.load(legacy, allow_pickle=False) as z:
            return [str(i) for i in z["ids"]]
    return None


def _shard_holds(path: Path, ids: list[str]) -> bool:
    """Whether a shard from an earlier (killed) build exists and holds exactly ``ids``."""
    return _shard_ids(path) == ids


def _read_shard(path: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """``(ids, codes [K_max, F] each, units [F] each)``; arrays of a shard directory are read-only views of
    memory-mapped files (pages are read on use), those of an older ``.npz`` shard are in memory."""
    if (path / SHARD_INDEX).is_file():
        index = json.loads((path / SHARD_INDEX).read_text())
        ids, n = index["ids"], np.asarray(index["n_frames"], dtype=np.int64)
        codes, units = np.load(path / "codes.npy", mmap_mode="r"), np.load(path / "units.npy", mmap_mode="r")
    else:
        legacy = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        with np.load(legacy, allow_pickle=False) as z:
            ids, n, codes, units = [str(i) for i in z["ids"]], z["n_frames"], z["codes"], z["units"]
    if codes.shape[1] != int(n.sum()) or units.shape[0] != int(n.sum()):
        raise ValueError(f"token shard {path} is damaged (frame counts disagree); delete its cache and rebuild")
    bounds = np.concatenate([[0], np.cumsum(n)])
    return (ids, [codes[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])],
            [units[a:b] for a, b in zip(bounds[:-1], bounds[1:])])


def build_token_cache(corpus: str | Path, codec: AudioTokenizer, units: UnitTokenizer,
                      cache_root: str | Path | None = None, *, shard_size: int = SHARD_SIZE,
                      progress: bool = True) -> TokenCache:
    """Encode a corpus once (or load the finished cache) and return its tokens.

    Args:
        corpus: manifest-form corpus directory (see :func:`training.data.read_manifest`).
        codec: the audio tokenizer; all ``max_codebooks`` codebooks are cached.
        units: the unit tokenizer.
        cache_root: where caches live (:func:`default_cache_root` when ``None``); one subdirectory per fingerprint.
        shard_size: utterances per shard (the unit of resumption).
        progress: show a tqdm bar while encoding.
    """
    if codec.cardinality > 65536 or units.num_units > 65536:
        raise ValueError("codes and units are cached as uint16: cardinality and num_units must be <= 65536")
    records = read_manifest(corpus)
    corpus_root = Path(corpus).resolve()
    corpus_root = corpus_root if corpus_root.is_dir() else corpus_root.parent
    fp = cache_fingerprint(records, corpus_root, codec, units)
    root = Path(cache_root) if cache_root is not None else default_cache_root(corpus)
    d = root / fp
    plan = _shard_plan(records, shard_size)
    encoded = 0
    if not (d / CACHE_META).is_file():
        d.mkdir(parents=True, exist_ok=True)
        todo = {name: ids for name, ids in plan.items() if not _shard_holds(d / name, ids)}
        by_id = {r["id"]: r for r in records}
        log.info("token cache %s: encoding %d of %d utterances (%d shards to write)", d,
                 sum(map(len, todo.values())), len(records), len(todo))
        codec.eval()
        units.eval()
        bar = tqdm(total=sum(map(len, todo.values())), disable=not progress, desc="tokenize", unit="utt")
        for name, ids in todo.items():
            codes, unit_seqs = [], []
            for i in ids:
                c, u = encode_utterance(by_id[i]["path"], codec, units)
                codes.append(c)
                unit_seqs.append(u)
                encoded += 1
                bar.update()
            _write_shard(d / name, ids, codes, unit_seqs)
        bar.close()
        meta = {
            "version": CACHE_VERSION, "fingerprint": fp, "corpus": str(corpus_root), "utterances": len(records),
            "shards": list(plan),
            "codec": {"class": type(codec).__name__, "max_codebooks": codec.max_codebooks,
                      "cardinality": codec.cardinality, "frame_rate": codec.frame_rate,
                      "sample_rate": codec.sample_rate},
            "units": {"kind": units.config.kind, "num_units": units.num_units, "frame_rate": units.frame_rate},
        }
        atomic_write_text(d / CACHE_META, json.dumps(meta, indent=2) + "\n")
        stale = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != fp)
        if stale:
            log.info("other (stale) token caches under %s, safe to delete: %s", root, ", ".join(stale))
    meta = json.loads((d / CACHE_META).read_text())
    if meta.get("version") != CACHE_VERSION or meta.get("fingerprint") != fp:
        raise ValueError(f"{d / CACHE_META} does not describe this cache; delete {d} and rebuild")
    codes_by_id: dict[str, np.ndarray] = {}
    units_by_id: dict[str, np.ndarray] = {}
    for name in meta["shards"]:
        ids, codes, unit_seqs = _read_shard(d / name)
        codes_by_id.update(zip(ids, codes))
        units_by_id.update(zip(ids, unit_seqs))
    missing = [r["id"] for r in records if r["id"] not in codes_by_id]
    if missing:
        raise ValueError(f"token cache {d} lacks {len(missing)} utterances (e.g. {missing[0]}); delete it")
    if not encoded:
        log.info("token cache %s: reused (%d utterances)", d, len(records))
    return TokenCache(d, fp, meta, {r["id"]: r for r in records}, codes_by_id, units_by_id, encoded)


# --- examples -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExampleOptions:
    """How examples are made from cached tokens (validated on construction).

    Attributes:
        num_codebooks: ``K`` codec codebooks per frame the model reads and writes.
        input_speech: speech in ASR/SLU/S2ST prompts: ``"units"``, ``"codec"`` or ``"both"``.
        collapse_units: merge runs of repeated units in prompts (shorter inputs).
        drop_unit_blanks: leave the CTC blank of ``"phone"`` units out of prompts, after collapsing.
        voice_seconds: length of TTS / S2ST voice prompts.
        s2st_text_prob: probability that an S2ST target starts with the target-language text.
        prompt_weight: loss weight on prompt tokens (0: only the target is scored).
        asr_context_prob: probability that an ASR prompt carries earlier text (``<text> … </text>`` before the
            units). The corpus has no running recordings, so the context is another sentence of the same
            language and split: the model learns the format and to transcribe the speech, not the context.
        ctc_targets: attach the transcript of the prompt's speech to ASR / SLU / S2ST examples
            (``Example.ctc_targets``, for the auxiliary CTC loss).
        asr_word_phones: ASR targets spell each word's phones before the word ("copy, then spell",
            :func:`alm.prompts.spelled_text`); the builder then needs a lexicon (:meth:`ExampleBuilder.set_lexicon`).
        audio_units: every audio frame of TTS / S2ST / continuation targets (and of continuation prompts) is the
            frame's cached unit (uncollapsed) followed by its codes (:func:`alm.prompts.audio_ids`).
        tts_word_phones: TTS prompts spell each word's phones before the word (needs the lexicon, as
            ``asr_word_phones``).
        slu_transcript: SLU targets write the utterance's transcript first (spelled as ASR targets are), then
            ``<slu>``, then the intent and slots (:func:`alm.prompts.slu_example`).
    """

    num_codebooks: int
    input_speech: str = "units"
    collapse_units: bool = True
    drop_unit_blanks: bool = False
    voice_seconds: float = 3.0
    s2st_text_prob: float = 0.5
    prompt_weight: float = 0.0
    asr_context_prob: float = 0.0
    ctc_targets: bool = False
    asr_word_phones: bool = False
    audio_units: bool = False
    tts_word_phones: bool = False
    slu_transcript: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.asr_context_prob <= 1.0:
            raise ValueError(f"asr_context_prob must be in [0, 1], got {self.asr_context_prob}")
        if self.input_speech not in INPUT_SPEECH:
            raise ValueError(f"input_speech must be one of {INPUT_SPEECH}, got {self.input_speech!r}")
        if self.num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {self.num_codebooks}")
        if not self.voice_seconds > 0:
            raise ValueError(f"voice_seconds must be positive, got {self.voice_seconds}")
        if not 0.0 <= self.s2st_text_prob <= 1.0:
            raise ValueError(f"s2st_text_prob must be in [0, 1], got {self.s2st_text_prob}")
        if self.prompt_weight < 0:
            raise ValueError(f"prompt_weight must be >= 0, got {self.prompt_weight}")


SIM_PREFIX = "sim:"  # item ids of text-only ASR examples (ExampleBuilder.add_simulated_asr)
SIM_SLU_PREFIX = "sim-slu:"  # item ids of text-only SLU examples (ExampleBuilder.add_simulated_slu)


def collapse(units: np.ndarray) -> np.ndarray:
    """Merge runs of equal units: ``[5, 5, 7, 5] -> [5, 7, 5]`` (numpy twin of :func:`codec.units.collapse_repeats`)."""
    if units.size == 0:
        return units
    return units[np.concatenate([[True], units[1:] != units[:-1]])]


class ExampleBuilder:
    """Builds task examples from a :class:`TokenCache` (see the module docstring for each task's recipe).

    Args:
        vocab: the shared vocabulary (``num_units`` and ``cardinality`` must hold the cache's values).
        cache: the corpus tokens.
        options: see :class:`ExampleOptions`.
    """

    def __init__(self, vocab: Vocabulary, cache: TokenCache, options: ExampleOptions) -> None:
        if options.num_codebooks > min(vocab.num_codebooks, cache.max_codebooks):
            raise ValueError(f"num_codebooks={options.num_codebooks} but the vocabulary holds {vocab.num_codebooks} "
                             f"and the cache {cache.max_codebooks}")
        if vocab.cardinality != cache.cardinality or vocab.num_units < cache.num_units:
            raise ValueError(f"vocabulary (cardinality {vocab.cardinality}, {vocab.num_units} units) does not fit the "
                             f"cache (cardinality {cache.cardinality}, {cache.num_units} units)")
        self.vocab, self.cache, self.options = vocab, cache, options
        self.voice_frames = max(1, round(options.voice_seconds * cache.frame_rate))
        self._simulated: dict[str, tuple[str, str, list[int]]] = {}  # sim id -> (lang, text, phone ids)
        self._simulated_slu: dict[str, tuple[str, str, list[int], str]] = {}  # -> (lang, text, phone ids, target)
        self._simulator: Any = None
        self._lexicon: Callable[[str, str], list[list[int]]] | None = None
        self._by_speaker: dict[tuple[str, str], list[str]] = {}
        self._by_language: dict[tuple[str, str], list[str]] = {}
        for r in cache.records.values():
            self._by_speaker.setdefault((r["split"], r["speaker"]), []).append(r["id"])
            self._by_language.setdefault((r["split"], r["lang"]), []).append(r["id"])

    # --- what can be built ---------------------------------------------------------------------------------------
    def can_build(self, task: str, utt_id: str) -> bool:
        """Whether ``utt_id`` serves ``task`` (listed in its ``tasks`` and carrying the fields the task needs)."""
        r = self.cache.records[utt_id]
        if task not in r.get("tasks", ()) or task not in TASKS:
            return False
        if task == "s2st":
            return r.get("translation_id") in self.cache.records
        if task == "slu":
            return bool(r.get("intent"))
        if task == "continue":
            return r.get("continue_at") is not None and 1 <= self._cut(utt_id) < self.cache.codes[utt_id].shape[1]
        return True

    def groups(self, split: str, tasks: Sequence[str] = TASKS) -> dict[tuple[str, str], list[str]]:
        """``{(task, language): [utterance ids]}`` of one split (S2ST by source language); empty groups left out."""
        out: dict[tuple[str, str], list[str]] = {}
        for r in self.cache.split(split):
            for task in tasks:
                if self.can_build(task, r["id"]):
                    out.setdefault((task, r["lang"]), []).append(r["id"])
        return out

    def add_simulated_asr(self, simulator: Any, pairs: dict[tuple[str, str], list[int]]) -> dict[str, list[str]]:
        """Register text-only ASR items (:mod:`training.phone_sim`): ``pairs`` maps ``(lang, text)`` to phone ids;
        each becomes an item ``"sim:<n>"`` whose example reads freshly simulated units every time it is built.
        Returns ``{lang: [item ids]}`` to add to the ``("asr", lang)`` sampler groups."""
        self._use_simulator(simulator, "ASR")
        out: dict[str, list[str]] = {}
        for (lang, text), ids in pairs.items():
            item = f"{SIM_PREFIX}{len(self._simulated)}"
            self._simulated[item] = (lang, text, list(ids))
            out.setdefault(lang, []).append(item)
        return out

    def add_simulated_slu(self, simulator: Any, commands: dict[tuple[str, str], tuple[list[int], str]]
                          ) -> dict[str, list[str]]:
        """Register text-only SLU items, as :meth:`add_simulated_asr`: ``commands`` maps ``(lang, text)`` to the
        text's phone ids and its SLU target (``training.data.slu.format_target``); each becomes an item
        ``"sim-slu:<n>"`` whose example reads freshly simulated units. Returns ``{lang: [item ids]}`` to add to
        the ``("slu", lang)`` sampler groups."""
        self._use_simulator(simulator, "SLU")
        out: dict[str, list[str]] = {}
        for (lang, text), (ids, target) in commands.items():
            item = f"{SIM_SLU_PREFIX}{len(self._simulated_slu)}"
            self._simulated_slu[item] = (lang, text, list(ids), target)
            out.setdefault(lang, []).append(item)
        return out

    def _use_simulator(self, simulator: Any, task: str) -> None:
        """Check that ``simulator``'s units can stand in this builder's prompts, then keep it."""
        if self.options.input_speech != "units" or not self.options.collapse_units:
            raise ValueError(f"simulated {task} input is collapsed units: needs input_speech='units', collapse_units")
        if simulator.phones is None or len(simulator.phones) > self.vocab.num_units:
            raise ValueError("the simulator's phone inventory does not fit the vocabulary's unit range")
        self._simulator = simulator

    def _simulated_units(self, ids: list[int], rng: np.random.Generator) -> np.ndarray:
        """Fresh simulated units of phone ids ``ids``, in this builder's prompt format."""
        units = self._simulator.simulate(ids, rng)
        return without_blanks(units) if self.options.drop_unit_blanks else units

    def simulated_texts(self) -> list[tuple[str, str]]:
        """``(lang, text)`` of the registered simulated ASR and SLU items."""
        return [*((lang, text) for lang, text, _ in self._simulated.values()),
                *((lang, text) for lang, text, _, _ in self._simulated_slu.values())]

    def set_lexicon(self, lexicon: Callable[[str, str], list[list[int]]]) -> None:
        """The word phones of ``asr_word_phones`` targets and ``tts_word_phones`` prompts: ``lexicon(lang, text)``
        gives one unit-id list per word of ``text.split()`` (:class:`codec.word_phones.WordPhones`, filled with
        every corpus text first)."""
        self._lexicon = lexicon

    def _word_phones(self, lang: str, text: str, task: str = "asr") -> list[list[int]] | None:
        if not (self.options.tts_word_phones if task == "tts" else self.options.asr_word_phones):
            return None
        if self._lexicon is None:
            raise ValueError(f"{task}_word_phones examples need a lexicon: call ExampleBuilder.set_lexicon first")
        return self._lexicon(lang, text)

    # --- building ------------------------------------------------------------------------------------------------
    def build(self, task: str, utt_id: str, rng: np.random.Generator) -> Example:
        """One example of ``task`` from utterance ``utt_id``; ``rng`` picks voice prompts and S2ST text."""
        if utt_id.startswith(SIM_PREFIX):
            if task != "asr":
                raise ValueError(f"simulated item {utt_id} serves ASR only, not {task!r}")
            lang, text, ids = self._simulated[utt_id]
            ex = asr_example(self.vocab, lang, self._simulated_units(ids, rng), text, self.options.prompt_weight,
                             word_phones=self._word_phones(lang, text))
            if self.options.ctc_targets:
                ex = replace(ex, ctc_targets=self.vocab.encode_text(text))
            return ex
        if utt_id.startswith(SIM_SLU_PREFIX):
            if task != "slu":
                raise ValueError(f"simulated item {utt_id} serves SLU only, not {task!r}")
            lang, text, ids, target = self._simulated_slu[utt_id]
            words = text if self.options.slu_transcript else None
            ex = slu_example(self.vocab, lang, self._simulated_units(ids, rng), target, self.options.prompt_weight,
                             transcript=words, word_phones=self._word_phones(lang, text) if words else None)
            if self.options.ctc_targets:
                ex = replace(ex, ctc_targets=self.vocab.encode_text(text))
            return ex
        r, o, v = self.cache.records[utt_id], self.options, self.vocab
        if task == "asr":
            context = self.context(r["split"], r["lang"], utt_id, rng) if o.asr_context_prob > 0 else None
            return self._speech_input(asr_example(v, r["lang"], self._units(utt_id), r["text"], o.prompt_weight,
                                                  context, self._word_phones(r["lang"], r["text"])), utt_id)
        if task == "slu":
            slots = r.get("slots") or {}
            slots = json.loads(slots) if isinstance(slots, str) else slots
            words = r["text"] if o.slu_transcript else None
            ex = slu_example(v, r["lang"], self._units(utt_id), format_target(r["intent"], slots), o.prompt_weight,
                             transcript=words, word_phones=self._word_phones(r["lang"], words) if words else None)
            return self._speech_input(ex, utt_id)
        if task == "tts":
            voice = self.voice_prompt(r["split"], r["speaker"], exclude=utt_id, rng=rng)
            return tts_example(v, r["lang"], r["text"], voice, self._codes(utt_id), o.prompt_weight,
                               max_voice_frames=None, target_units=self._frame_units(utt_id),
                               word_phones=self._word_phones(r["lang"], r["text"], "tts"))
        if task == "s2st":
            t = self.cache.records[r["translation_id"]]
            voice = self.voice_prompt(t["split"], t["speaker"], exclude=t["id"], rng=rng)
            with_text = bool(rng.random() < o.s2st_text_prob)
            ex = s2st_example(v, r["lang"], t["lang"], self._units(utt_id), voice, t["text"], self._codes(t["id"]),
                              with_text=with_text, prompt_weight=o.prompt_weight, max_voice_frames=None,
                              target_units=self._frame_units(t["id"]))
            return self._speech_input(ex, utt_id)
        if task == "continue":
            codes, cut, units = self._codes(utt_id), self._cut(utt_id), self._frame_units(utt_id)
            return continue_example(v, codes[:, :cut], codes[:, cut:], o.prompt_weight,
                                    None if units is None else units[:cut], None if units is None else units[cut:])
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")

    def context(self, split: str, lang: str, exclude: str, rng: np.random.Generator) -> str | None:
        """With probability ``asr_context_prob``, the text of a random other utterance of ``lang`` in ``split``
        (cut to its last 1..all words, as a previous chunk's transcript ends anywhere); else ``None``."""
        if rng.random() >= self.options.asr_context_prob:
            return None
        others = [i for i in self._by_language.get((split, lang), ()) if i != exclude]
        if not others:
            return None
        words = self.cache.records[others[int(rng.integers(len(others)))]]["text"].split()
        return " ".join(words[-int(rng.integers(1, len(words) + 1)):]) if words else None

    def voice_prompt(self, split: str, speaker: str, exclude: str, rng: np.random.Generator) -> np.ndarray | None:
        """A random ``voice_seconds`` window ``[K, F_v]`` of a random other utterance of ``speaker`` in ``split``,
        or ``None`` (an empty voice segment) when the speaker has no other utterance there."""
        others = [i for i in self._by_speaker.get((split, speaker), ()) if i != exclude]
        if not others:
            return None
        codes = self._codes(others[int(rng.integers(len(others)))])
        n = codes.shape[1]
        start = int(rng.integers(0, n - self.voice_frames + 1)) if n > self.voice_frames else 0
        return codes[:, start: start + self.voice_frames]

    def fixed_examples(self, split: str, max_per_task: int | None = None, seed: int = 0,
                       tasks: Sequence[str] = TASKS) -> dict[str, list[tuple[str, Example]]]:
        """Deterministic ``{task: [(utterance id, example)]}`` of a split (for evaluation): the same seed gives the
        same voice prompts and S2ST text choices every time."""
        out: dict[str, list[tuple[str, Example]]] = {}
        for n, r in enumerate(self.cache.split(split)):
            for t, task in enumerate(tasks):
                items = out.setdefault(task, [])
                if (max_per_task is None or len(items) < max_per_task) and self.can_build(task, r["id"]):
                    items.append((r["id"], self.build(task, r["id"], np.random.default_rng([seed, n, t]))))
        return {task: items for task, items in out.items() if items}

    # --- pieces --------------------------------------------------------------------------------------------------
    def _codes(self, utt_id: str) -> np.ndarray:
        return self.cache.codes[utt_id][: self.options.num_codebooks].astype(np.int64)  # [K, F]

    def _units(self, utt_id: str) -> np.ndarray:
        u = self.cache.units[utt_id].astype(np.int64)
        u = collapse(u) if self.options.collapse_units else u
        return without_blanks(u) if self.options.drop_unit_blanks else u

    def _frame_units(self, utt_id: str) -> np.ndarray | None:
        """``[F]`` uncollapsed units of the utterance's codec frames (``audio_units`` streams), else ``None``."""
        return self.cache.units[utt_id].astype(np.int64) if self.options.audio_units else None

    def _cut(self, utt_id: str) -> int:
        return int(round(float(self.cache.records[utt_id]["continue_at"]) * self.cache.frame_rate))

    def _speech_input(self, ex: Example, utt_id: str) -> Example:
        """Replace the prompt's ``<units> … </units>`` by ``<audio> c… </audio>`` (``"codec"``) or follow it with
        that segment (``"both"``); labels and weights of the new segment are the prompt's. With ``ctc_targets``
        on, the example also carries the utterance's transcript as text ids (the speech segment's CTC targets)."""
        ex = self._with_speech_segment(ex, utt_id)
        if self.options.ctc_targets:
            ex = replace(ex, ctc_targets=self.vocab.encode_text(self.cache.records[utt_id]["text"]))
        return ex

    def _with_speech_segment(self, ex: Example, utt_id: str) -> Example:
        mode = self.options.input_speech
        if mode == "units":
            return ex
        prompt = with_speech_input(self.vocab, ex.input_ids[: ex.prompt_len], mode, self._codes(utt_id))
        ids = [*prompt, *ex.input_ids[ex.prompt_len:]]
        prompt_len = len(prompt)
        if ex.loss_weights is None:
            labels = [IGNORE_INDEX] * prompt_len + ex.labels[ex.prompt_len:]
            return Example(ids, labels, prompt_len)
        w = ex.loss_weights[0]
        return Example(ids, list(ids), prompt_len, [w] * prompt_len + ex.loss_weights[ex.prompt_len:])


# --- batches ------------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Right-padded examples.

    Attributes:
        input_ids: ``[B, L]`` int64, ``pad_id`` after each sequence.
        attention_mask: ``[B, L]`` int64, 1 on real tokens.
        labels: ``[B, L]`` int64, ``-100`` on prompts and padding.
        loss_weights: ``[B, L]`` float32 (0 on padding), or ``None`` when no example carries weights.
        tasks: the task of each row.
        ctc_targets: per row, the transcript ids of its speech input (``Example.ctc_targets``) or ``None``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    loss_weights: torch.Tensor | None
    tasks: list[str]
    ctc_targets: list[list[int] | None] = field(default_factory=list)

    def model_inputs(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Keyword arguments for :meth:`alm.model.AlmForCausalLM.forward`."""
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}
        if self.loss_weights is not None:
            out["loss_weights"] = self.loss_weights
        return {k: t.to(device) for k, t in out.items()} if device is not None else out

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.attention_mask.sum())

    @property
    def num_targets(self) -> int:
        """Positions that are predicted and scored (a label other than -100 after the first position)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


def collate(examples: Sequence[Example], pad_id: int, tasks: Sequence[str] | None = None) -> Batch:
    """Right-pad examples into a :class:`Batch`."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    n, length = len(examples), max(len(e.input_ids) for e in examples)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    labels = torch.full((n, length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    weighted = any(e.loss_weights is not None for e in examples)
    weights = torch.zeros((n, length)) if weighted else None
    for b, e in enumerate(examples):
        m = len(e.input_ids)
        ids[b, :m] = torch.tensor(e.input_ids)
        labels[b, :m] = torch.tensor(e.labels)
        mask[b, :m] = 1
        if weights is not None:
            weights[b, :m] = torch.tensor(e.loss_weights) if e.loss_weights is not None else 1.0
    return Batch(ids, mask, labels, weights, list(tasks) if tasks is not None else [""] * n,
                 [e.ctc_targets for e in examples])


def pack(examples: Sequence[tuple[str, Example]], max_tokens: int, pad_id: int) -> list[Batch]:
    """Batches of ``(task, example)`` pairs in order, each at most ``max_tokens`` padded tokens (or one example)."""
    out, current, longest = [], [], 0
    for task, ex in examples:
        if current and (len(current) + 1) * max(longest, len(ex.input_ids)) > max_tokens:
            out.append(collate([e for _, e in current], pad_id, [t for t, _ in current]))
            current, longest = [], 0
        current.append((task, ex))
        longest = max(longest, len(ex.input_ids))
    if current:
        out.append(collate([e for _, e in current], pad_id, [t for t, _ in current]))
    return out


def temperature_probs(counts: dict[Any, int], temperature: float) -> dict[Any, float]:
    """``p_i ∝ (n_i / N)^(1/T)`` over the keys with ``n_i > 0`` (``T = inf``: uniform)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    counts = {k: n for k, n in counts.items() if n > 0}
    total = sum(counts.values())
    if not total:
        raise ValueError("no examples to sample from")
    w = {k: (n / total) ** (1.0 / temperature) for k, n in counts.items()}
    z = sum(w.values())
    return {k: x / z for k, x in w.items()}


class MultiTaskSampler:
    """Endless length-bounded batches mixing tasks and languages by temperature sampling.

    Args:
        groups: ``{(task, language): items}``; an item is whatever ``build`` takes (an utterance id).
        build: ``build(task, item, rng) -> Example``.
        temperature: ``T`` of ``p ∝ (n / N)^(1/T)`` at both levels (task, then language within the task).
        max_tokens: most padded tokens (``B * L_max``) per batch; a longer single example makes a batch alone.
        max_len: longest sequence kept (the model's ``max_position_embeddings``); longer ones are dropped and counted
            in :attr:`dropped`.
        max_batch_size: most sequences per batch (``None``: no limit besides ``max_tokens``).
        pad_id: the padding id.
        seed: seed of the sampler's own generator (its state is in :meth:`state_dict`).
        task_weights: multipliers of the tasks' temperature probabilities (then renormalized), e.g. ``{"asr": 2}``
            to see twice as many ASR examples; tasks not named keep weight 1.
        bucket_pool: length bucketing: draw this many examples at a time, sort them by length, cut the sorted run
            into batches and serve those in random order, so a batch holds similar lengths and little padding
            (0 or 1: batches in the order drawn).

    :attr:`length_limit` (set by the trainer each step; ``None``: off) is a short-first curriculum: examples longer
    than it (but within ``max_len``) are redrawn, counted in :attr:`deferred`, not dropped.
    """

    def __init__(self, groups: dict[tuple[str, str], Sequence[Any]],
                 build: Callable[[str, Any, np.random.Generator], Example] | None = None, *,
                 temperature: float = 2.0, max_tokens: int = 8192, max_len: int | None = None,
                 max_batch_size: int | None = None, pad_id: int = 0, seed: int = 0,
                 task_weights: dict[str, float] | None = None, bucket_pool: int = 0) -> None:
        self.groups = {k: v for k, v in groups.items() if len(v)}
        if not self.groups:
            raise ValueError("the sampler has no examples: every (task, language) group is empty")
        self.build, self.temperature = build, temperature
        self.max_tokens, self.max_len, self.max_batch_size, self.pad_id = max_tokens, max_len, max_batch_size, pad_id
        task_counts: Counter[str] = Counter()
        for (task, _), items in self.groups.items():
            task_counts[task] += len(items)
        self.task_probs = temperature_probs(dict(task_counts), temperature)
        if task_weights:
            unknown = sorted(set(task_weights) - set(self.task_probs))
            if unknown or any(not w >= 0 for w in task_weights.values()):
                raise ValueError(f"task weights {task_weights}: unknown task(s) {unknown} (known: "
                                 f"{sorted(self.task_probs)}) or a negative weight")
            w = {t: p * task_weights.get(t, 1.0) for t, p in self.task_probs.items()}
            if not sum(w.values()) > 0:
                raise ValueError(f"task weights {task_weights} leave no task to sample")
            self.task_probs = {t: x / sum(w.values()) for t, x in w.items() if x > 0}
        self.lang_probs = {task: temperature_probs({lang: len(items) for (t, lang), items in self.groups.items()
                                                    if t == task}, temperature) for task in self.task_probs}
        self._tasks = list(self.task_probs)
        self.rng = np.random.default_rng(seed)
        self.dropped: Counter[str] = Counter()
        self._pending: tuple[str, Example] | None = None
        self.bucket_pool = bucket_pool
        self._ready: list[list[tuple[str, Example]]] = []  # bucketed batches not served yet
        self.length_limit: int | None = None
        self.deferred = 0

    def probabilities(self) -> dict[tuple[str, str], float]:
        """Joint probability of each ``(task, language)`` group."""
        return {(t, lang): self.task_probs[t] * p for t, langs in self.lang_probs.items() for lang, p in langs.items()}

    def sample_group(self) -> tuple[str, str]:
        """Draw a task, then a language within it."""
        task = self._tasks[int(self.rng.choice(len(self._tasks), p=list(self.task_probs.values())))]
        langs = self.lang_probs[task]
        lang = list(langs)[int(self.rng.choice(len(langs), p=list(langs.values())))]
        return task, lang

    def sample_example(self) -> tuple[str, Example]:
        """Draw a group, an item of it, and build its example; examples longer than ``max_len`` are redrawn."""
        if self.build is None:
            raise ValueError("this sampler has no build function")
        for _ in range(MAX_CONSECUTIVE_DROPS):
            task, lang = self.sample_group()
            items = self.groups[(task, lang)]
            ex = self.build(task, items[int(self.rng.integers(len(items)))], self.rng)
            if self.max_len is None or len(ex.input_ids) <= self.max_len:
                if self.length_limit is not None and len(ex.input_ids) > self.length_limit:
                    self.deferred += 1  # the curriculum holds it back; not a drop
                    continue
                return task, ex
            self.dropped[task] += 1
            n = self.dropped[task]
            if n & (n - 1) == 0:  # log at 1, 2, 4, 8, ... drops
                log.warning("dropped %d %s example(s) longer than %d tokens so far (this one: %d)", n, task,
                            self.max_len, len(ex.input_ids))
        raise ValueError(f"{MAX_CONSECUTIVE_DROPS} examples in a row were longer than max_len={self.max_len}: "
                         "use fewer codebooks, shorter utterances or a model with more positions")

    def _fits(self, n: int, length: int) -> bool:
        """Whether ``n`` sequences padded to ``length`` fit one batch."""
        return n * length <= self.max_tokens and (self.max_batch_size is None or n <= self.max_batch_size)

    def _fill_buckets(self) -> None:
        pool = sorted((self.sample_example() for _ in range(self.bucket_pool)), key=lambda te: len(te[1].input_ids))
        batches: list[list[tuple[str, Example]]] = []
        for item in pool:  # sorted, so the newest example is the longest of its batch
            if batches and self._fits(len(batches[-1]) + 1, len(item[1].input_ids)):
                batches[-1].append(item)
            else:
                batches.append([item])
        self._ready = [batches[i] for i in self.rng.permutation(len(batches))]

    def next_batch(self) -> Batch:
        """One batch of at most ``max_tokens`` padded tokens."""
        if self.bucket_pool > 1:
            if not self._ready:
                self._fill_buckets()
            chosen = self._ready.pop(0)
            return collate([e for _, e in chosen], self.pad_id, [t for t, _ in chosen])
        chosen: list[tuple[str, Example]] = []
        longest = 0
        while True:
            item, self._pending = self._pending or self.sample_example(), None
            length = max(longest, len(item[1].input_ids))
            if chosen and (length * (len(chosen) + 1) > self.max_tokens
                           or (self.max_batch_size is not None and len(chosen) >= self.max_batch_size)):
                self._pending = item  # starts the next batch: nothing drawn is wasted
                break
            chosen.append(item)
            longest = length
        return collate([e for _, e in chosen], self.pad_id, [t for t, _ in chosen])

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    # --- resumption ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: generator, drop counts and the examples drawn but not served yet."""
        def plain(item: tuple[str, Example]) -> list[Any]:
            task, ex = item
            return [task, ex.input_ids, ex.labels, ex.prompt_len, ex.loss_weights, ex.ctc_targets]

        return {"rng": json.dumps(self.rng.bit_generator.state), "dropped": dict(self.dropped),
                "pending": json.dumps(None if self._pending is None else plain(self._pending)),
                "ready": json.dumps([[plain(i) for i in b] for b in self._ready]), "deferred": self.deferred}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def example(item: list[Any]) -> tuple[str, Example]:
            return item[0], Example(*item[1:])

        self.rng.bit_generator.state = json.loads(state["rng"])
        self.dropped = Counter(state.get("dropped", {}))
        pending = json.loads(state.get("pending", "null"))
        self._pending = None if pending is None else example(pending)
        self._ready = [[example(i) for i in b] for b in json.loads(state.get("ready", "[]"))]
        self.deferred = int(state.get("deferred", 0))


@dataclass
class DataSummary:
    """Counts for logs and ``training_state.json``: examples per ``task/lang`` and sampling probabilities."""

    counts: dict[str, int] = field(default_factory=dict)
    probabilities: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, sampler: MultiTaskSampler) -> DataSummary:
        return cls({f"{t}/{lang}": len(v) for (t, lang), v in sorted(sampler.groups.items())},
                   {f"{t}/{lang}": round(p, 4) for (t, lang), p in sorted(sampler.probabilities().items())})
