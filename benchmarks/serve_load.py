"""Load test of `alm serve`: throughput and latency at 1, 4 and 16 concurrent clients, with and without batching,
and a check that no request is lost or mixed up.

    python -m benchmarks.serve_load --corpus /tmp/corpus-3h [--requests 48] [--time-limit 240] [--quantize int8]

Each mode starts `alm serve` in a subprocess on 127.0.0.1 at a free port (loopback only) and waits for /health;
both servers stay up and the modes take turns level by level, so that the shared machine's load drifts hit both
alike. Each concurrency level sends ``--requests`` transcription requests (POST /v1/transcribe, language en), one per
distinct English test clip of the corpus, from that many async httpx clients at once; no new request starts after
``--time-limit`` seconds. Every clip's transcript is computed beforehand in this process, one at a time through
the Python API, and each response must equal the transcript of the clip it was sent with: a response that equals
another clip's transcript instead counts as *mixed up*; one that is missing or not HTTP 200 counts as *lost*.
The mean batch size comes from the server's /metrics. Writes benchmarks/results/serve_load.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 4, 16)
MODES = {"batching": [], "no batching": ["--no-batching"]}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: list[str], threads: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "alm.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"{url}/health", timeout=2).json().get("status") == "ok":
                return proc, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)  # a benchmark waiting for a subprocess to come up; tests never do this
    proc.terminate()
    raise SystemExit(f"the server did not answer /health within 180 s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def batch_stats(url: str) -> tuple[float, float]:
    """``(sum, count)`` of the server's ``alm_batch_size`` histogram for ASR."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    got = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("alm_batch_size_sum", "alm_batch_size_count") and s.labels.get("task") == "asr":
                got[s.name.rsplit("_", 1)[1]] = s.value
    return got["sum"], got["count"]


async def run_level(url: str, bodies: list[bytes], concurrency: int, time_limit: float) -> dict:
    """Send every body once from ``concurrency`` clients; per request: index, status, latency, text."""
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        todo.put_nowait(i)
    results: list[dict] = []
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        while not todo.empty() and time.perf_counter() - start < time_limit:
            i = todo.get_nowait()
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/transcribe", params={"language": "en"}, content=bodies[i],
                                    headers={"Content-Type": "audio/wav"})
                text = r.json().get("text") if r.status_code == 200 else None
                results.append({"i": i, "status": r.status_code, "latency": time.perf_counter() - t0, "text": text})
            except httpx.HTTPError as e:
                results.append({"i": i, "status": None, "latency": time.perf_counter() - t0, "error": str(e)})

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return {"results": results, "elapsed": time.perf_counter() - start}


def score(level: dict, refs: list[str], n: int) -> dict:
    res = level["results"]
    ok = [r for r in res if r["status"] == 200]
    lat = np.array([r["latency"] for r in ok]) if ok else np.zeros(1)
    others = {t: i for i, t in enumerate(refs)}
    matched = sum(r["text"] == refs[r["i"]] for r in ok)
    mixed = sum(r["text"] != refs[r["i"]] and others.get(r["text"], r["i"]) != r["i"] for r in ok)
    return {
        "sent": len(res), "unsent": n - len(res), "ok": len(ok), "lost": len(res) - len(ok), "matched": matched,
        "mixed_up": mixed, "other_mismatch": len(ok) - matched - mixed,
        "throughput_rps": round(len(ok) / level["elapsed"], 3), "elapsed_s": round(level["elapsed"], 2),
        "p50_s": round(float(np.percentile(lat, 50)), 3), "p90_s": round(float(np.percentile(lat, 90)), 3),
        "p99_s": round(float(np.percentile(lat, 99)), 3), "statuses": sorted({str(r["status"]) for r in res}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("/tmp/corpus-3h"))
    p.add_argument("--requests", type=int, default=48, help="requests per concurrency level (distinct clips)")
    p.add_argument("--time-limit", type=float, default=240.0, help="seconds after which a level sends no more")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--quantize", choices=["int8"], default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()

    import alm
    from alm.quantize import quantize_int8
    from alm.server.protocol import wav_bytes
    from codec import load_audio
    from training.data.corpus import read_manifest
    from training.evaluation.eval_alm import select

    rows = [r for r in select(read_manifest(a.corpus), "test", "asr", 10 * a.requests, 0) if r["lang"] == "en"]
    rows = rows[: a.requests]
    if len(rows) < a.requests:
        raise SystemExit(f"{a.corpus} has only {len(rows)} English ASR test clips; ask for fewer --requests")
    wavs = [load_audio(r["path"]) for r in rows]
    bodies = [wav_bytes(w.numpy()) for w in wavs]
    model = alm.load(watermark=False)
    if a.quantize:
        quantize_int8(model)
    t0 = time.perf_counter()
    refs = [model.transcribe(w, language="en").text for w in wavs]
    alone_s = time.perf_counter() - t0
    del model
    print(f"{len(refs)} reference transcripts ({len(set(refs))} distinct) in {alone_s:.1f} s in-process", flush=True)

    extra = ["--max-batch", str(a.max_batch), "--max-wait-ms", str(a.max_wait_ms)]
    extra += ["--quantize", a.quantize] if a.quantize else []
    report: dict = {"corpus": str(a.corpus), "requests_per_level": a.requests, "levels": list(LEVELS),
                    "max_batch": a.max_batch, "max_wait_ms": a.max_wait_ms, "threads": a.threads,
                    "quantize": a.quantize, "distinct_references": len(set(refs)),
                    "in_process_one_at_a_time_rps": round(len(refs) / alone_s, 3),
                    "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "modes": {}}
    a.out.mkdir(parents=True, exist_ok=True)
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for mode, flags in MODES.items():  # both up at once (an idle server costs nothing), so levels interleave
            servers[mode] = start_server([*extra, *flags], a.threads,
                                         Path(f"/tmp/serve_load_{mode.replace(' ', '_')}.log"))
            asyncio.run(run_level(servers[mode][1], bodies[:2], 1, a.time_limit))  # warm-up, not counted
        report["modes"] = {mode: {} for mode in MODES}
        for n, c in enumerate(LEVELS):  # modes alternate first, so a drift in machine load hits both alike
            for mode in (list(MODES) if n % 2 == 0 else list(reversed(MODES))):
                url = servers[mode][1]
                before = batch_stats(url)
                level = asyncio.run(run_level(url, bodies, c, a.time_limit))
                after = batch_stats(url)
                s = score(level, refs, len(bodies))
                batches = after[1] - before[1]
                s["mean_batch"] = round((after[0] - before[0]) / batches, 2) if batches else None
                report["modes"][mode][str(c)] = s
                print(f"{mode}, {c} clients: {s['throughput_rps']} req/s, p50 {s['p50_s']} s, p90 {s['p90_s']} s, "
                      f"p99 {s['p99_s']} s, mean batch {s['mean_batch']}, ok {s['ok']}/{len(bodies)}, matched "
                      f"{s['matched']}, mixed up {s['mixed_up']}", flush=True)
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    (a.out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (a.out / "serve_load.md").write_text(md)
    print(md)


def markdown(r: dict) -> str:
    lines = [
        "# `alm serve` load test (POST /v1/transcribe, loopback)\n",
        f"{r['requests_per_level']} requests per level, each a distinct English test clip of `{r['corpus']}`; "
        f"server on {r['cpus']} shared CPU cores, OMP_NUM_THREADS={r['threads']}, greedy, "
        f"max_batch {r['max_batch']}, max_wait {r['max_wait_ms']} ms"
        f"{', int8 decoder' if r['quantize'] else ''}. In-process, one at a time: "
        f"{r['in_process_one_at_a_time_rps']} clips/s. *matched*: the response equals the transcript of its own "
        "clip computed one at a time beforehand; *mixed up*: it equals another clip's instead; *lost*: no HTTP 200.\n",
        "| mode | clients | req/s | p50 s | p90 s | p99 s | mean batch | ok | matched | mixed up | lost | unsent |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, levels in r["modes"].items():
        for c, s in levels.items():
            lines.append(f"| {mode} | {c} | {s['throughput_rps']} | {s['p50_s']} | {s['p90_s']} | {s['p99_s']} | "
                         f"{s['mean_batch']} | {s['ok']}/{s['sent']} | {s['matched']} | {s['mixed_up']} | "
                         f"{s['lost']} | {s['unsent']} |")
    modes = list(r["modes"].values())
    if len(modes) == 2 and "16" in modes[0] and "16" in modes[1]:
        ratio = modes[0]["16"]["throughput_rps"] / max(modes[1]["16"]["throughput_rps"], 1e-9)
        lines += ["", f"Batching at 16 clients: {ratio:.2f}x the throughput of one request at a time."]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
