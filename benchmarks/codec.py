"""Our neural codec against real peers (Codec2, Opus) on the corpus' held-out test speakers.

For each bitrate of ours (1..8 codebooks = 0.5..4 kbps), Codec2 (1.3, 1.6, 3.2 kbps; Debian's c2enc/c2dec at
8 kHz) and Opus through ffmpeg (6, 8, 12 kbps): STOI, wide-band PESQ and log-mel distance against the original,
averaged over test clips. Then the encode and decode real-time factor for 60 s of audio on this CPU and the
process' peak memory. Prints a table, writes ``OUT/codec_benchmark.{json,md,png}``.

    python -m benchmarks.codec --corpus corpus --clips 30
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this script's folder comes first on sys.path and its name would shadow the `codec` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402
import torch  # noqa: E402
from pesq import pesq  # noqa: E402
from pystoi import stoi  # noqa: E402

import codec  # noqa: E402
from training.codec_losses import mel_distance  # noqa: E402

OURS_K = (1, 2, 3, 4, 6, 8)
CODEC2_MODES = (1300, 1600, 3200)
OPUS_KBPS = (6, 8, 12)
SR = 16000


def test_clips(corpus: Path, n: int, min_s: float = 2.0) -> list[np.ndarray]:
    rows = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["split"] == "test" and r["duration"] >= min_s]
    rows = rows[:: max(1, len(rows) // n)][:n]  # spread over speakers and sources
    return [sf.read(corpus / r["path"], dtype="float32")[0] for r in rows]


def run_codec2(wav: np.ndarray, mode: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw, bit, out = Path(tmp) / "in.raw", Path(tmp) / "c.bit", Path(tmp) / "out.raw"
        x8 = soxr.resample(wav, SR, 8000)
        raw.write_bytes((np.clip(x8, -1, 1) * 32767).astype("<i2").tobytes())
        subprocess.run(["c2enc", str(mode), str(raw), str(bit)], check=True, capture_output=True)
        subprocess.run(["c2dec", str(mode), str(bit), str(out)], check=True, capture_output=True)
        y8 = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    return soxr.resample(y8, 8000, SR)


def run_opus(wav: np.ndarray, kbps: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        src, enc, out = Path(tmp) / "in.wav", Path(tmp) / "c.opus", Path(tmp) / "out.wav"
        sf.write(src, wav, SR)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps}k",
                        "-application", "voip", str(enc)], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(enc), "-ar", str(SR), "-ac", "1", str(out)],
                       check=True)
        y, _ = sf.read(out, dtype="float32")
    return y


def scores(ref: np.ndarray, deg: np.ndarray) -> dict[str, float]:
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    try:
        p = float(pesq(SR, ref, deg, "wb"))
    except Exception:  # pesq refuses clips it finds no speech in
        p = float("nan")
    return {"stoi": float(stoi(ref, deg, SR, extended=False)), "pesq": p,
            "mel": mel_distance(torch.from_numpy(deg)[None], torch.from_numpy(ref)[None])}


def speed(model: codec.AudioTokenizer, clips: list[np.ndarray], seconds: float = 60.0) -> dict[str, float]:
    audio = np.concatenate(clips)
    while len(audio) < seconds * SR:
        audio = np.concatenate([audio, audio])
    x = torch.from_numpy(audio[: int(seconds * SR)])
    model.set_num_codebooks(model.max_codebooks)
    t0 = time.perf_counter()
    codes = model.encode(x)
    t1 = time.perf_counter()
    model.decode(codes)
    t2 = time.perf_counter()
    return {"audio_s": seconds, "encode_x_realtime": seconds / (t1 - t0), "decode_x_realtime": seconds / (t2 - t1),
            "encode_decode_x_realtime": seconds / (t2 - t0), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--codec", default=None, help="saved codec directory (default: the shipped one)")
    p.add_argument("--clips", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = codec.load_codec(args.codec)
    clips = test_clips(args.corpus, args.clips)
    if not clips:
        raise SystemExit(f"{args.corpus} has no test clips of 2 s or more")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rtf = speed(model, clips)
    rtf["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rtf["peak_rss_increase_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024

    systems: list[tuple[str, float, object]] = []
    for k in OURS_K:
        systems.append(("ours", k * model.frame_rate * np.log2(model.cardinality) / 1000, k))
    systems += [("codec2", m / 1000, m) for m in CODEC2_MODES] + [("opus", float(b), b) for b in OPUS_KBPS]
    rows = []
    for name, kbps, arg in systems:
        per = []
        for wav in clips:
            if name == "ours":
                model.set_num_codebooks(int(arg))
                deg = model.decode(model.encode(torch.from_numpy(wav)))[0].numpy()
            elif name == "codec2":
                deg = run_codec2(wav, int(arg))
            else:
                deg = run_opus(wav, int(arg))
            per.append(scores(wav, deg))
        row = {"system": name, "kbps": round(kbps, 2)}
        for m in ("stoi", "pesq", "mel"):
            row[m] = float(np.nanmean([s[m] for s in per]))
        rows.append(row)
        print(f"{name:7s} {kbps:5.2f} kbps  STOI {row['stoi']:.3f}  PESQ {row['pesq']:.2f}  mel {row['mel']:.3f}",
              flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"clips": len(clips), "test_audio_s": round(sum(len(c) for c in clips) / SR, 1), "rows": rows,
              "speed": rtf}
    (args.out / "codec_benchmark.json").write_text(json.dumps(result, indent=2))
    md = ["| system | kbps | STOI | PESQ (wb) | log-mel dist |", "|---|---|---|---|---|"]
    md += [f"| {r['system']} | {r['kbps']:g} | {r['stoi']:.3f} | {r['pesq']:.2f} | {r['mel']:.3f} |" for r in rows]
    md.append("")
    md.append(f"Speed, 60 s of audio, {rtf['threads']} threads: encode {rtf['encode_x_realtime']:.1f}x, decode "
              f"{rtf['decode_x_realtime']:.1f}x, encode+decode {rtf['encode_decode_x_realtime']:.1f}x real time; "
              f"peak RSS {rtf['peak_rss_mb']:.0f} MB.")
    (args.out / "codec_benchmark.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    plot(rows, args.out / "codec_benchmark.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, metric, label in zip(axes, ("stoi", "pesq", "mel"), ("STOI (higher is better)",
                                                               "PESQ wb (higher is better)",
                                                               "log-mel distance (lower is better)")):
        for name, style in (("ours", "o-"), ("codec2", "s--"), ("opus", "^--")):
            pts = [(r["kbps"], r[metric]) for r in rows if r["system"] == name]
            ax.plot([a for a, _ in pts], [b for _, b in pts], style, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("kbps")
        ax.set_title(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
