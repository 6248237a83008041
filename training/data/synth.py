"""Synthesize a planned corpus to 16 kHz WAV files and a JSONL manifest; resumable and safe to interrupt.

Layout of a corpus directory::

    recipe.json             what was asked for (hours, seed, langs); a resume must ask for the same
    wavs/<speaker>/<id>.wav 16 kHz mono PCM16
    progress.jsonl          one line per finished utterance, appended and fsync'ed as each WAV lands
    manifest.jsonl          the final manifest, written atomically when the run completes
    summary.json            counts per split, language, task and speaker; hours; wall time

Why it never loses or half-writes anything: each WAV is written to a temporary name and renamed into place
(``codec.save_audio``), and its progress line is appended only after that, so a line always names a complete
file. A run killed while appending leaves at most one torn last line, which the next run drops (and re-makes
that utterance). The manifest itself appears only complete, by rename.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from codec.audio import SAMPLE_RATE, load_audio, save_audio
from codec.base import atomic_write_text
from training.data import voices
from training.data.engines import EngineError, available_engines, engine_versions, synthesize
from training.data.recipe import RECIPE_VERSION, Utterance, plan_corpus

log = logging.getLogger(__name__)

PROGRESS = "progress.jsonl"
MANIFEST = "manifest.jsonl"
CONTINUE_MIN_S = 2.0  # shorter clips are too short to split into a prompt and a continuation


@dataclass
class SynthReport:
    """What a synthesis run made (also written to ``summary.json``)."""

    out_dir: Path
    utterances: int
    hours: float
    skipped_done: int
    failed: int
    wall_s: float
    counts: dict[str, Any]


def read_progress(path: Path) -> dict[str, dict[str, Any]]:
    """Finished utterances by id. A torn last line (a run killed mid-append) is cut off the file."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    raw = path.read_bytes()
    good_end = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        done[rec["id"]] = rec
        good_end += len(line)
    if good_end < len(raw):
        log.warning("dropping a torn last line in %s (%d bytes); that utterance is made again",
                    path, len(raw) - good_end)
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return done


def _render(utt: Utterance, out_dir: Path) -> dict[str, Any]:
    """Worker: make one utterance's WAV (atomically) and return its manifest record, or an error record."""
    rel = Path("wavs") / utt.speaker / f"{utt.id}.wav"
    try:
        if "source_path" in utt.fields:
            wav = load_audio(utt.fields["source_path"], SAMPLE_RATE).numpy()
        else:
            spk = voices.by_id(utt.speaker)
            wav = synthesize(spk, utt.text, utt.lang, pitch_shift=utt.pitch_shift, rate_scale=utt.rate_scale)
    except (EngineError, ValueError) as e:
        return {"id": utt.id, "error": str(e)}
    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    save_audio(out_dir / rel, wav, SAMPLE_RATE)
    rec: dict[str, Any] = {
        "id": utt.id, "path": rel.as_posix(), "text": utt.text, "lang": utt.lang, "speaker": utt.speaker,
        "duration": round(len(wav) / SAMPLE_RATE, 3), "split": utt.split, "tasks": list(utt.tasks),
        "source": utt.source,
    }
    rec.update({k: v for k, v in utt.fields.items() if k != "source_path"})
    return rec


def _render_star(args: tuple[Utterance, Path]) -> dict[str, Any]:
    return _render(*args)


def _continuation_point(rec: dict[str, Any]) -> float | None:
    # Split point for voice continuation: 40-60 % into the clip, fixed by the id so it is reproducible.
    if rec["duration"] < CONTINUE_MIN_S:
        return None
    frac = 0.4 + 0.2 * (int.from_bytes(rec["id"].encode()[-4:].rjust(4, b"\0"), "big") % 1000) / 1000
    return round(rec["duration"] * frac, 2)


def assemble_manifest(plan: list[Utterance], done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Final manifest records in plan order: pair links resolved, continuation points added."""
    records = [dict(done[u.id]) for u in plan if u.id in done and "error" not in done[u.id]]
    by_id = {r["id"]: r for r in records}
    for rec in records:
        partner = by_id.get(rec.get("translation_id", ""))
        if "translation_id" in rec:
            if partner is None:  # its other side failed or was not planned: no longer a pair
                for k in ("pair_id", "translation", "translation_id"):
                    rec.pop(k, None)
                rec["tasks"] = [t for t in rec["tasks"] if t != "s2st"]
            else:
                rec["translation"] = partner["text"]
        cut = _continuation_point(rec)
        if cut is None:
            rec["tasks"] = [t for t in rec["tasks"] if t != "continue"]
        else:
            rec["continue_at"] = cut
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and hours by split, language, task, speaker and source."""
    hours = Counter()
    for r in records:
        hours[r["split"]] += r["duration"] / 3600
    spk_split: dict[str, set[str]] = {}
    for r in records:
        spk_split.setdefault(r["split"], set()).add(r["speaker"])
    return {
        "utterances": len(records),
        "hours": round(sum(r["duration"] for r in records) / 3600, 3),
        "hours_by_split": {k: round(v, 3) for k, v in sorted(hours.items())},
        "by_split": dict(Counter(r["split"] for r in records)),
        "by_lang": dict(Counter(r["lang"] for r in records)),
        "by_task": dict(Counter(t for r in records for t in r["tasks"])),
        "by_source": dict(Counter(r["source"] for r in records)),
        "by_speaker": dict(sorted(Counter(r["speaker"] for r in records).items())),
        "speakers": len({r["speaker"] for r in records}),
        "speakers_by_split": {k: len(v) for k, v in sorted(spk_split.items())},
        "test_only_speakers": sorted(spk_split.get("test", set()) - spk_split.get("train", set())),
    }


def synthesize_corpus(out_dir: str | Path, hours: float, seed: int = 0, langs: tuple[str, ...] = ("en", "es"),
                      jobs: int = 1, progress: bool = True, engines: tuple[str, ...] | None = None
                      ) -> SynthReport:
    """Make (or finish making) a corpus in ``out_dir``.

    Args:
        out_dir: created if missing; an existing one is resumed if it was started with the same recipe.
        hours: target hours of speech (estimated while planning; the summary reports the real figure).
        seed: fixes the whole corpus.
        langs: languages to include.
        engines: only these synthesizers' voices (see :func:`~training.data.recipe.plan_corpus`); ``None``: all.
        jobs: parallel synthesis processes.
        progress: show a tqdm bar.

    Raises:
        ValueError: ``out_dir`` holds a corpus made with a different recipe.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe: dict[str, Any] = {"version": RECIPE_VERSION, "hours": hours, "seed": seed, "langs": list(langs)}
    if engines is not None:  # recorded only when chosen, so corpora made before the option still resume
        recipe["engines"] = sorted(engines)
    plan = plan_corpus(hours, seed, tuple(langs), tuple(engines) if engines is not None else None)
    recipe_path = out / "recipe.json"
    if recipe_path.is_file():
        old = json.loads(recipe_path.read_text())
        if old != recipe:
            raise ValueError(f"{out} holds a corpus made with {old}, not {recipe}: use another directory "
                             "or the same settings to resume")
    else:
        atomic_write_text(recipe_path, json.dumps(recipe, indent=2) + "\n")
    log.info("engines available: %s", ", ".join(sorted(available_engines())) or "none")
    t0 = time.time()
    done = read_progress(out / PROGRESS)
    todo = [u for u in plan if u.id not in done or "error" in done[u.id]]  # failures are tried again
    skipped = len(plan) - len(todo)
    if skipped:
        log.info("resuming: %d of %d utterances already made", skipped, len(plan))
    failed = 0
    with open(out / PROGRESS, "a", encoding="utf-8") as prog:
        ctx = mp.get_context("fork")
        pool = ctx.Pool(jobs) if jobs > 1 else None
        try:
            args = [(u, out) for u in todo]
            results = pool.imap_unordered(_render_star, args, chunksize=4) if pool else map(_render_star, args)
            for rec in tqdm(results, total=len(todo), disable=not progress, desc="synthesizing", unit="utt"):
                if "error" in rec:
                    failed += 1
                    log.warning("could not make %s: %s", rec["id"], rec["error"])
                prog.write(json.dumps(rec, ensure_ascii=False) + "\n")
                prog.flush()
                os.fsync(prog.fileno())
                done[rec["id"]] = rec
        finally:
            if pool:
                pool.close()
                pool.join()
    records = assemble_manifest(plan, done)
    atomic_write_text(out / MANIFEST, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    counts = summarize(records)
    wall = time.time() - t0
    summary = {"recipe": recipe, "engines": engine_versions(), "wall_s": round(wall, 1), "jobs": jobs, **counts}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return SynthReport(out_dir=out, utterances=len(records), hours=counts["hours"], skipped_done=skipped,
                       failed=failed, wall_s=wall, counts=counts)
