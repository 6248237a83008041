"""float32 vs int8 (dynamic quantization of the decoder's linear layers, alm.quantize): decoding speed and ASR WER.

    python -m benchmarks.quantize --corpus /tmp/corpus-3h [--clips 40] [--rounds 3] [--threads 1]

English ASR clips of the corpus' test split (held-out speakers) are prepared once (units: float32, shared), then
decoded greedily by both decoders, alternating float32 / int8 round by round so that both see the same load on
a shared machine; speeds are medians over rounds. Reported per decoder: generated ids per second one clip at a
time and in batches of 8 (alm.batching), the real-time factor of decoding, decoder weight size, WER against the
references, and the WER of the int8 transcripts against the float32 ones (how often quantization changes the
output). Writes benchmarks/results/quantize.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import alm  # noqa: E402
from alm.api import TaskJob  # noqa: E402
from alm.batching import run_batch  # noqa: E402
from alm.quantize import module_bytes, quantize_int8  # noqa: E402
from codec import load_audio  # noqa: E402
from training.data.corpus import read_manifest  # noqa: E402
from training.evaluation.eval_alm import select  # noqa: E402
from training.evaluation.metrics import word_error_rate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 8


def english_asr_clips(corpus: Path, n: int, seed: int = 0) -> list[dict]:
    rows = [r for r in select(read_manifest(corpus), "test", "asr", 10 * n, seed) if r["lang"] == "en"][:n]
    if not rows:
        raise SystemExit(f"{corpus} has no English ASR clips in its test split")
    return rows


def decode_all(model: alm.AudioLanguageModel, jobs: list[TaskJob], batch: int) -> tuple[list[list[int]], float]:
    """Greedy ids of every job and the seconds it took (``batch`` 1: ``model.run`` one job at a time)."""
    start = time.perf_counter()
    if batch == 1:
        ids = [model.run(job)[1] for job in jobs]
    else:
        ids = [out.unwrap()[1] for i in range(0, len(jobs), batch) for out in run_batch(model, jobs[i:i + batch])]
    return ids, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("/tmp/corpus-3h"))
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped model)")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    rows = english_asr_clips(a.corpus, a.clips)
    fp32 = alm.load(a.checkpoint, watermark=False)
    int8 = quantize_int8(alm.load(a.checkpoint, watermark=False))
    wavs = [load_audio(r["path"]) for r in rows]
    audio_s = sum(len(w) for w in wavs) / 16000
    jobs = [fp32.prepare("asr", w, language="en") for w in wavs]  # prompts do not depend on the decoder
    models = {"float32": fp32, "int8": int8}
    times: dict[str, dict[int, list[float]]] = {name: {1: [], BATCH: []} for name in models}
    ids: dict[str, list[list[int]]] = {}
    for r in range(a.rounds):
        for name, model in (models.items() if r % 2 == 0 else reversed(models.items())):
            for batch in (1, BATCH):
                out, seconds = decode_all(model, jobs, batch)
                times[name][batch].append(seconds)
                if batch == 1:
                    ids.setdefault(name, out)
            print(f"round {r + 1}/{a.rounds} {name}: {times[name][1][-1]:.1f} s one at a time, "
                  f"{times[name][BATCH][-1]:.1f} s in batches of {BATCH}", flush=True)

    refs = [r["text"] for r in rows]
    hyps = {name: [m.finish(job, "en", i).text for job, i in zip(jobs, ids[name])] for name, m in models.items()}
    n_ids = {name: sum(len(i) for i in ids[name]) for name in models}
    report: dict = {"corpus": str(a.corpus), "clips": len(rows), "audio_seconds": round(audio_s, 1),
                    "rounds": a.rounds, "threads": a.threads, "torch": torch.__version__,
                    "engine": torch.backends.quantized.engine, "cpu": platform.processor() or platform.machine(),
                    "models": {}}
    for name, model in models.items():
        one, batched = statistics.median(times[name][1]), statistics.median(times[name][BATCH])
        report["models"][name] = {
            "decoder_mb": round(module_bytes(model.model) / 1e6, 2),
            "ids_per_s": round(n_ids[name] / one, 1), f"ids_per_s_batch{BATCH}": round(n_ids[name] / batched, 1),
            "decode_rtf": round(one / audio_s, 4), "seconds": times[name],
            "wer": round(word_error_rate(refs, hyps[name], "en"), 4),
        }
    f, q = report["models"]["float32"], report["models"]["int8"]
    report["speedup"] = round(q["ids_per_s"] / f["ids_per_s"], 3)
    report[f"speedup_batch{BATCH}"] = round(q[f"ids_per_s_batch{BATCH}"] / f[f"ids_per_s_batch{BATCH}"], 3)
    report["int8_vs_float32_wer"] = round(word_error_rate(hyps["float32"], hyps["int8"], "en"), 4)
    report["identical_transcripts"] = sum(x == y for x, y in zip(hyps["float32"], hyps["int8"]))
    report["examples"] = [{"ref": r, "float32": x, "int8": y} for r, x, y in
                          list(zip(refs, hyps["float32"], hyps["int8"]))[:5]]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "quantize.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md = markdown(report)
    (a.out / "quantize.md").write_text(md)
    print(md)


def markdown(r: dict) -> str:
    f, q = r["models"]["float32"], r["models"]["int8"]
    lines = [
        "# int8 dynamic quantization of the decoder (`alm serve --quantize int8`)\n",
        f"{r['clips']} English ASR clips ({r['audio_seconds']} s) of the test split of `{r['corpus']}`, greedy, "
        f"{r['threads']} thread(s), torch {r['torch']} (engine {r['engine']}); medians of {r['rounds']} "
        "alternating rounds. Decoding only (units are computed once, in float32, for both).\n",
        "| decoder | weights | ids/s (one at a time) | ids/s (batches of 8) | decode RTF | WER |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in (("float32", f), ("int8", q)):
        lines.append(f"| {name} | {m['decoder_mb']} MB | {m['ids_per_s']} | {m[f'ids_per_s_batch{BATCH}']} | "
                     f"{m['decode_rtf']} | {m['wer']:.1%} |")
    lines += [
        "",
        f"Speed-up of int8: **{r['speedup']}x** one at a time, **{r[f'speedup_batch{BATCH}']}x** in batches of "
        f"{BATCH}. WER change: {f['wer']:.1%} -> {q['wer']:.1%}; int8 transcripts scored against the float32 ones: "
        f"{r['int8_vs_float32_wer']:.1%} WER, {r['identical_transcripts']}/{r['clips']} identical.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
