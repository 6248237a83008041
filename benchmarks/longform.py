"""Long-form ASR with the shipped model: peak memory against input length, and long-form WER against per-utterance
WER on the same speech.

Memory: for each length (1, 10, 60 minutes by default) a 16 kHz WAV is written by cycling one minute of corpus
utterances (English, validation split, 0.5 s of silence between them: every length holds the same chunks), then a
fresh Python process loads the model and transcribes the file (``language="en"``) and reports its peak resident
set size (``resource.getrusage``, ``ru_maxrss``) after loading and after transcribing, and the largest current RSS
(``VmRSS``, sampled every 0.5 s) in the first and the second half of the transcription. For contrast another
fresh process only decodes the same file whole with ``codec.load_audio`` (what a non-streaming reader would hold).

WER: the English test utterances of the corpus (held-out voices, ~10 minutes), transcribed one by one, and
concatenated into one file transcribed long-form, with 0.5 s of silence between utterances and with none
(back to back: only the synthesizers' own edge silence separates them). WER is over the whole text
(``jiwer``, both sides in evaluation form, :func:`alm.textnorm.normalize_for_eval`). Also: how many test
utterances (English and Spanish) the speech-presence guard would reject, i.e. lose.

    python -m benchmarks.longform --corpus /tmp/corpus-3h                 # 1 / 10 / 60 min, ~10 min WER set
    python -m benchmarks.longform --corpus /tmp/corpus-3h --quick         # 1 / 2 min, 2 min WER set

Writes ``benchmarks/results/longform.{md,json}`` and ``longform_memory.png``. Run it as a module: run as a file,
``benchmarks/codec.py`` would shadow the ``codec`` package.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

SR = 16000
GAP_S = 0.5
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"


def _rss_mb() -> float:
    """Peak RSS of this process (``ru_maxrss``; Linux reports KiB). Linux starts a child's ``ru_maxrss`` at its
    parent's peak, so the children are started while this (parent) process is still small: before it imports
    torch or loads a model (see :func:`main`); ``_hwm_mb`` (the child's own address space only) checks it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hwm_mb() -> float:
    """``VmHWM``: the peak RSS of this process's own address space, from /proc (not inherited)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- children (fresh processes) ------------------------------------------------------------------------------
def _vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_transcribe(path: str) -> dict:
    import threading

    import torch

    import alm

    torch.set_num_threads(1)
    model = alm.load()
    loaded = _rss_mb()
    samples: list[tuple[float, float]] = []  # (seconds since start, current RSS) every 0.5 s
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append((time.perf_counter() - t0, _vm_rss_mb()))

    t0 = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    r = model.transcribe(path, language="en")
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    first = [m for t, m in samples if t < wall / 2] or [float("nan")]
    second = [m for t, m in samples if t >= wall / 2] or [float("nan")]
    return {"rss_after_load_mb": loaded, "peak_rss_mb": _rss_mb(), "vm_hwm_mb": _hwm_mb(), "wall_s": wall,
            "rss_first_half_max_mb": max(first), "rss_second_half_max_mb": max(second),
            "segments": len(r.segments), "words": len(r.text.split())}


def child_load(path: str) -> dict:
    from codec import load_audio

    before = _rss_mb()
    wav = load_audio(path)
    return {"rss_before_mb": before, "peak_rss_mb": _rss_mb(), "vm_hwm_mb": _hwm_mb(), "samples": int(wav.numel())}


def run_child(mode: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.longform", f"--{mode}", str(path)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child {mode} {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- data ----------------------------------------------------------------------------------------------------
def rows(corpus: Path, split: str | None = None, lang: str | None = None) -> list[dict]:
    """ASR rows of ``corpus/manifest.jsonl`` (paths made absolute), read with json alone: importing
    ``training.data`` would pull torch into this process before the memory children run."""
    lines = (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    out = [r for r in map(json.loads, filter(str.strip, lines)) if "asr" in r.get("tasks", ["asr"])]
    for r in out:
        r["path"] = str(corpus / r["path"])
    return [r for r in out
            if (split is None or r.get("split", "train") == split) and (lang is None or r["lang"] == lang)]


def read(path: str) -> np.ndarray:
    """A corpus clip as ``[T]`` float32 at 16 kHz, with soundfile and soxr only (no torch in the parent before the
    memory children have run)."""
    wav, rate = sf.read(path, dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if rate != SR:
        import soxr

        wav = soxr.resample(wav, rate, SR).astype(np.float32)
    return wav


def write_long(path: Path, clips: list[str], minutes: float, gap_s: float) -> float:
    """Cycle through ``clips`` (paths) into a ``minutes``-long 16 kHz WAV, written block by block."""
    target, written, i = int(minutes * 60 * SR), 0, 0
    gap = np.zeros(int(gap_s * SR), np.float32)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        while written < target:
            for piece in (gap, read(clips[i % len(clips)])):
                piece = piece[: target - written]
                f.write(piece)
                written += piece.size
            i += 1
    return written / SR


# --- parts ---------------------------------------------------------------------------------------------------
def memory(corpus: Path, lengths: list[float], tmp: Path) -> list[dict]:
    # one pool of utterances (~1 minute) cycled for every length, so that all inputs hold the same chunk lengths
    # and a difference in peak memory can only come from the length itself
    pool, total = [], 0.0
    for r in sorted(rows(corpus, "valid", "en"), key=lambda r: r["id"]):
        if total >= 60:
            break
        pool.append(r["path"])
        total += r["duration"] + GAP_S
    clips = pool
    out = []
    for minutes in lengths:
        wav = tmp / f"long-{minutes:g}min.wav"
        seconds = write_long(wav, clips, minutes, GAP_S)
        t = run_child("child-transcribe", wav)
        whole = run_child("child-load", wav)
        row = {"minutes": minutes, "seconds": seconds, **t, "rtf": t["wall_s"] / seconds,
               "load_whole_peak_rss_mb": whole["peak_rss_mb"], "load_whole_rss_before_mb": whole["rss_before_mb"],
               "parent_rss_mb": _rss_mb()}
        print(json.dumps(row), flush=True)
        out.append(row)
        wav.unlink()
    return out


def wer_part(corpus: Path, minutes: float, tmp: Path) -> dict:
    import jiwer

    import alm
    from alm.textnorm import normalize_for_eval

    test = sorted(rows(corpus, "test", "en"), key=lambda r: r["id"])
    chosen, total = [], 0.0
    for r in test:
        if total >= minutes * 60:
            break
        chosen.append(r)
        total += r["duration"]
    refs = [normalize_for_eval(r["text"], "en") for r in chosen]
    model = alm.load()
    t0 = time.perf_counter()
    hyps = [normalize_for_eval(model.transcribe(r["path"], language="en").text, "en") for r in chosen]
    per_wall = time.perf_counter() - t0
    result = {"utterances": len(chosen), "speech_seconds": total,
              "per_utterance": {"wer": jiwer.wer(refs, hyps), "wall_s": per_wall,
                                "empty": sum(not h for h in hyps)}}
    for gap in (GAP_S, 0.0):
        wav = tmp / f"wer-gap{gap:g}.wav"
        with sf.SoundFile(wav, "w", SR, 1, subtype="PCM_16") as f:
            for r in chosen:
                f.write(np.zeros(int(gap * SR), np.float32))
                f.write(read(r["path"]))
        seconds = sf.info(str(wav)).duration
        # with the previous chunk's text as context (models trained with the slot), then without it
        for use_context in (True, False) if model.model.config.asr_context else (False,):
            model.longform = replace(model.longform, condition_on_previous_text=use_context)
            t0 = time.perf_counter()
            out = model.transcribe(wav, language="en")
            wall = time.perf_counter() - t0
            hyp = normalize_for_eval(out.text, "en")
            key = f"long_form_gap_{gap:g}s" + ("" if use_context or not model.model.config.asr_context else
                                               "_no_context")
            result[key] = {"wer": jiwer.wer(" ".join(refs), hyp), "seconds": seconds, "context": use_context,
                           "segments": len(out.segments), "wall_s": wall, "rtf": wall / seconds}
            print(json.dumps({key: result[key]}), flush=True)
        wav.unlink()
    return result


def guard_rejections(corpus: Path) -> dict:
    from alm.guards import speech_presence

    out = {}
    for lang in ("en", "es"):
        test = rows(corpus, "test", lang)
        rejected = [r["id"] for r in test if not speech_presence(read(r["path"]))]
        out[lang] = {"utterances": len(test), "rejected": len(rejected), "rejected_ids": rejected[:10]}
    return out


# --- report --------------------------------------------------------------------------------------------------
def report(res: dict) -> str:
    lines = [f"Long-form ASR, shipped model (`alm.load()`), `language=\"en\"`, greedy, 1 thread; corpus "
             f"`{res['corpus']}`. {res['date']}.", "",
             "## Peak memory against input length", "",
             "Each length in a fresh process: the WAV is streamed in 10 s blocks, cut at pauses by the VAD, "
             "transcribed chunk by chunk; every length cycles the same minute of utterances. Peak RSS is `ru_maxrss` "
             "(`resource.getrusage`); the halves are the largest `VmRSS` sampled in the first and second half of the "
             "transcription; 'decode whole' is a fresh process that only reads the same file with "
             "`codec.load_audio`.",
             "",
             "| input | RSS after model load | peak RSS, long-form ASR | growth during ASR | max RSS 1st / 2nd half | "
             "segments | RTF | peak RSS, decode whole |", "|---|---|---|---|---|---|---|---|"]
    for r in res["memory"]:
        lines.append(f"| {r['minutes']:g} min | {r['rss_after_load_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB | "
                     f"{r['peak_rss_mb'] - r['rss_after_load_mb']:+.0f} MB | {r['rss_first_half_max_mb']:.0f} / "
                     f"{r['rss_second_half_max_mb']:.0f} MB | {r['segments']} | {r['rtf']:.3f} | "
                     f"{r['load_whole_peak_rss_mb']:.0f} MB |")
    w = res["wer"]
    lines += ["", "## Long-form WER against per-utterance WER", "",
              f"{w['utterances']} English test utterances (held-out voices), {w['speech_seconds'] / 60:.1f} min of "
              "speech; WER over the whole text in evaluation form (jiwer).", "",
              "| decoding | WER | segments | RTF |", "|---|---|---|---|",
              f"| per utterance (one call each) | {w['per_utterance']['wer']:.3f} | {w['utterances']} | "
              f"{w['per_utterance']['wall_s'] / w['speech_seconds']:.3f} |"]
    for key, name in ((f"long_form_gap_{GAP_S:g}s", f"long-form, {GAP_S:g} s between utterances"),
                      (f"long_form_gap_{GAP_S:g}s_no_context", f"long-form, {GAP_S:g} s gaps, no previous text"),
                      ("long_form_gap_0s", "long-form, utterances back to back"),
                      ("long_form_gap_0s_no_context", "long-form, back to back, no previous text")):
        if key not in w:
            continue
        g = w[key]
        if g.get("context"):
            name += ", previous chunk's text as context"
        lines.append(f"| {name} ({g['seconds'] / 60:.1f} min file) | {g['wer']:.3f} | {g['segments']} | "
                     f"{g['rtf']:.3f} |")
    lines += ["", f"Per-utterance transcripts left empty by the guards: {w['per_utterance']['empty']} of "
              f"{w['utterances']}.", "", "## Speech-presence guard on real test speech", "",
              "| language | test utterances | rejected as non-speech |", "|---|---|---|"]
    for lang, g in res["guard"].items():
        lines.append(f"| {lang} | {g['utterances']} | {g['rejected']} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = res["memory"]
    x = [r["minutes"] for r in m]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [r["peak_rss_mb"] for r in m], "o-", label="long-form ASR (streamed)")
    ax.plot(x, [r["rss_after_load_mb"] for r in m], "s--", label="after model load")
    ax.plot(x, [r["load_whole_peak_rss_mb"] for r in m], "^:", label="decode whole file only")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g}" for v in x])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("input length (minutes)")
    ax.set_ylabel("peak RSS (MB)")
    ax.set_title("Peak memory against input length")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("/tmp/corpus-3h"))
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    p.add_argument("--wer-minutes", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="1 and 2 minute inputs, 2 minutes of WER speech")
    p.add_argument("--wer-only", action="store_true", help="only the WER and guard parts (memory: the last run's)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--child-transcribe", help=argparse.SUPPRESS)
    p.add_argument("--child-load", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_transcribe:
        print(json.dumps(child_transcribe(a.child_transcribe)))
        return
    if a.child_load:
        print(json.dumps(child_load(a.child_load)))
        return
    if not (a.corpus / "manifest.jsonl").is_file():
        raise SystemExit(f"no corpus at {a.corpus}: make one with `alm data synth --hours 3 --out {a.corpus}`")
    if a.quick:
        a.minutes, a.wer_minutes = [1, 2], 2.0
    res: dict = {"corpus": str(a.corpus), "date": time.strftime("%Y-%m-%d")}
    if a.wer_only:  # keep the memory figures of the last full run
        res["memory"] = json.loads((a.out / "longform.json").read_text())["memory"]
    with tempfile.TemporaryDirectory(prefix="alm-longform-") as tmp:
        if not a.wer_only:
            res["memory"] = memory(a.corpus, a.minutes, Path(tmp))  # first: this process is still small
        res["guard"] = guard_rejections(a.corpus)
        print(json.dumps({"guard": res["guard"]}), flush=True)
        res["wer"] = wer_part(a.corpus, a.wer_minutes, Path(tmp))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "longform.json").write_text(json.dumps(res, indent=2) + "\n")
    (a.out / "longform.md").write_text(report(res))
    plot(res, a.out / "longform_memory.png")
    print(report(res))


if __name__ == "__main__":
    main()
