"""Robustness of the keyed watermark (safety.watermark) under attacks, its false-positive rate and its speed.

Speech comes from a corpus (``--corpus DIR``: ``manifest.jsonl`` lists wav paths relative to DIR) or, without one,
from ``safety.attacks.speech_like`` (numpy-made speech-like signals). Each clip gets a random 16-bit payload; every
attack of ``safety.attacks.ATTACKS`` plus a splice (marked clip between two unmarked ones) and a second talker
10 dB down is applied, and the detector reports, per attack: detection rate at the threshold (false-positive rate
1e-3 by design), bit accuracy (hard decisions at the best alignment, over all clips), exact-payload rate.
Also: the false-positive rate measured on clean clips and on clips marked with another key, SNR and PESQ (wide
band) of the clean embedding, localization IoU on the splice, and detection / embedding speed in x real time
(one thread). Writes ``OUT/watermark.{md,json}``.

    python -m benchmarks.watermark --corpus corpus            # full: 100 marked clips, 2000 clean clips
    python -m benchmarks.watermark --quick                    # a smoke run: 12 marked, 200 clean
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

# Run as a file, this script's folder comes first on sys.path, where benchmarks/codec.py would shadow `codec`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from safety.attacks import ATTACKS, AttackUnavailableError, mix_talker, speech_like, splice  # noqa: E402
from safety.keys import WatermarkKey  # noqa: E402
from safety.watermark import FALSE_POSITIVE_RATE, N_BITS, THRESHOLD, detect, embed  # noqa: E402

SR = 16000
KEY = WatermarkKey.from_secret("benchmark key")
OTHER_KEY = WatermarkKey.from_secret("some other key")


def corpus_clips(corpus: Path, n: int, rng: np.random.Generator, min_s: float = 2.0) -> list[np.ndarray]:
    rows = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("duration", min_s) >= min_s]
    if not rows:
        raise SystemExit(f"{corpus}/manifest.jsonl lists no clip of {min_s} s or more")
    picks = rng.choice(len(rows), size=n, replace=n > len(rows))
    return [load(corpus / rows[i]["path"]) for i in picks]


def load(path: Path) -> np.ndarray:
    wav, rate = sf.read(path, dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if rate != SR:
        from codec import load_audio

        wav = load_audio(path, sample_rate=SR).numpy()
    return wav


def synthetic_clips(n: int, rng: np.random.Generator, seed0: int) -> list[np.ndarray]:
    return [speech_like(float(rng.uniform(2.5, 5.0)), SR, seed=seed0 + i) for i in range(n)]


def bits_of(message: int) -> np.ndarray:
    return np.array([(message >> (N_BITS - 1 - j)) & 1 for j in range(N_BITS)])


def iou(spans: list[tuple[float, float]], truth: tuple[float, float]) -> float:
    inter = sum(max(0.0, min(b, truth[1]) - max(a, truth[0])) for a, b in spans)
    union = sum(b - a for a, b in spans) + (truth[1] - truth[0]) - inter
    return inter / union if union > 0 else 0.0


def quality(clean: np.ndarray, marked: np.ndarray) -> tuple[float, float]:
    from pesq import pesq

    noise = marked.astype(np.float64) - clean
    snr = float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / max(np.sum(noise**2), 1e-30)))
    try:
        p = float(pesq(SR, clean, marked, "wb"))
    except Exception:  # pesq refuses clips it finds no speech in
        p = float("nan")
    return snr, p


def speed(clips: list[np.ndarray], seconds: float = 60.0) -> dict[str, float]:
    audio = np.concatenate(clips)
    while len(audio) < seconds * SR:
        audio = np.concatenate([audio, audio])
    audio = audio[: int(seconds * SR)]
    t0 = time.perf_counter()
    marked = embed(audio, 1234, key=KEY)
    t_embed = time.perf_counter() - t0
    t_detect = min(_timed(lambda: detect(marked, key=KEY)) for _ in range(3))
    return {"audio_s": seconds, "detect_x_realtime": seconds / t_detect, "embed_x_realtime": seconds / t_embed}


def _timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=None, help="corpus directory with manifest.jsonl")
    p.add_argument("--quick", action="store_true", help="12 marked clips and 200 clean clips")
    p.add_argument("--clips", type=int, default=None, help="marked clips (default 100, quick 12)")
    p.add_argument("--clean", type=int, default=None, help="clean clips for the false-positive rate (2000 / 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    n_clips = args.clips or (12 if args.quick else 100)
    n_clean = args.clean or (200 if args.quick else 2000)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()

    source = f"corpus {args.corpus}" if args.corpus else "synthetic speech-like signals"
    clips = corpus_clips(args.corpus, n_clips, rng) if args.corpus else synthetic_clips(n_clips, rng, 1000)
    others = corpus_clips(args.corpus, n_clips, rng) if args.corpus else synthetic_clips(n_clips, rng, 5000)
    attacks = dict(ATTACKS)
    names = [*attacks, "splice", "mix_talker_10dB"]
    per: dict[str, list[dict]] = {name: [] for name in names}
    skipped: dict[str, str] = {}
    snrs, pesqs, ious, wrong_key = [], [], [], []
    for i, (clean, other) in enumerate(zip(clips, others)):
        message = int(rng.integers(2**N_BITS))
        marked = embed(clean, message, key=KEY)
        snr, pq = quality(clean, marked)
        snrs.append(snr)
        pesqs.append(pq)
        wrong_key.append(detect(marked, key=OTHER_KEY).detected)
        for name in names:
            if name in skipped:
                continue
            try:
                if name == "splice":  # 1-2 s of unmarked speech on each side
                    a, b = int(rng.uniform(1, 2) * SR), int(rng.uniform(1, 2) * SR)
                    before, after = np.resize(other, a), np.resize(other[::-1], b)
                    attacked = splice(marked, SR, before, after)
                elif name == "mix_talker_10dB":
                    attacked = mix_talker(marked, SR, other, snr_db=10.0)
                else:
                    attacked = attacks[name](marked, SR)
            except AttackUnavailableError as e:
                skipped[name] = str(e)
                continue
            d = detect(attacked, key=KEY)
            per[name].append({"detected": d.detected, "bit_acc": float(np.mean(d.bits == bits_of(message))),
                              "exact": d.payload == message, "score": d.score})
            if name == "splice":
                ious.append(iou(d.spans, (a / SR, (a + len(marked)) / SR)))
        print(f"\rmarked clips {i + 1}/{n_clips}", end="", flush=True)
    print()

    clean_hits = 0
    clean_clips = 0
    for i in range(n_clean):
        if args.corpus and i % 2 == 0:  # random windows of corpus clips
            x = corpus_clips(args.corpus, 1, rng)[0]
            n = min(len(x), int(rng.uniform(1.5, 4.0) * SR))
            start = int(rng.integers(0, len(x) - n + 1))
            x = x[start : start + n]
        else:
            x = speech_like(float(rng.uniform(1.5, 4.0)), SR, seed=100_000 + i)
        clean_hits += detect(x, key=KEY).detected
        clean_clips += 1
        if (i + 1) % 100 == 0:
            print(f"\rclean clips {i + 1}/{n_clean}", end="", flush=True)
    print()
    rtf = speed(clips)

    rows = []
    for name in names:
        if name in skipped or not per[name]:
            rows.append({"attack": name, "skipped": skipped.get(name, "no result")})
            continue
        r = per[name]
        rows.append({"attack": name, "detection_rate": float(np.mean([x["detected"] for x in r])),
                     "bit_accuracy": float(np.mean([x["bit_acc"] for x in r])),
                     "payload_exact": float(np.mean([x["exact"] for x in r])),
                     "mean_score": float(np.mean([x["score"] for x in r]))})
    scored = [r for r in rows if "detection_rate" in r and r["attack"] != "none"]
    summary = {
        "source": source, "marked_clips": n_clips, "marked_audio_s": round(sum(map(len, clips)) / SR, 1),
        "clean_clips": clean_clips, "threshold": THRESHOLD, "target_false_positive_rate": FALSE_POSITIVE_RATE,
        "false_positive_rate_clean": clean_hits / clean_clips, "false_positives_clean": clean_hits,
        "false_positive_rate_other_key": float(np.mean(wrong_key)),
        "snr_db_mean": float(np.mean(snrs)), "snr_db_min": float(np.min(snrs)),
        "pesq_wb_mean": float(np.nanmean(pesqs)), "pesq_wb_min": float(np.nanmin(pesqs)),
        "splice_iou_mean": float(np.mean(ious)) if ious else None,
        "attacks_mean_detection": float(np.mean([r["detection_rate"] for r in scored])),
        "attacks_mean_bit_accuracy": float(np.mean([r["bit_accuracy"] for r in scored])),
        "speed": rtf, "wall_s": round(time.time() - t_start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "watermark.json").write_text(json.dumps({"summary": summary, "attacks": rows}, indent=2) + "\n")
    md = [f"Watermark robustness: {n_clips} marked clips ({summary['marked_audio_s']} s) from {source}; "
          f"threshold T >= {THRESHOLD:.2f} (false-positive rate {FALSE_POSITIVE_RATE:g} by design).", "",
          "| attack | detection rate | bit accuracy | payload exact | mean score |", "|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            md.append(f"| {r['attack']} | skipped: {r['skipped']} | | | |")
        else:
            md.append(f"| {r['attack']} | {r['detection_rate']:.3f} | {r['bit_accuracy']:.3f} | "
                      f"{r['payload_exact']:.3f} | {r['mean_score']:.1f} |")
    md += ["", f"- mean over attacks (excluding none): detection {summary['attacks_mean_detection']:.3f}, "
           f"bit accuracy {summary['attacks_mean_bit_accuracy']:.3f}",
           f"- false positives: {clean_hits}/{clean_clips} clean clips "
           f"({summary['false_positive_rate_clean']:.4f}); marked with another key: "
           f"{summary['false_positive_rate_other_key']:.4f}",
           f"- clean embedding: SNR {summary['snr_db_mean']:.1f} dB (min {summary['snr_db_min']:.1f}), "
           f"PESQ wb {summary['pesq_wb_mean']:.2f} (min {summary['pesq_wb_min']:.2f})",
           f"- splice localization IoU: {summary['splice_iou_mean']:.3f}",
           f"- speed (60 s, one thread): detect {rtf['detect_x_realtime']:.0f}x, "
           f"embed {rtf['embed_x_realtime']:.0f}x real time"]
    (args.out / "watermark.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
