"""Robustness of the keyed watermark (safety.watermark) under attacks, its false-positive rate and its speed.

Speech comes from a corpus (``--corpus DIR``: ``manifest.jsonl`` lists wav paths relative to DIR) or, without one,
from ``safety.attacks.speech_like`` (numpy-made speech-like signals). Each clip gets a random 16-bit payload; every
attack of ``safety.attacks.ATTACKS`` plus a splice (marked clip between two unmarked ones), the splice sped up by
5 % and a second talker 10 dB down is applied, and the detector reports, per attack: detection rate at the
threshold (false-positive rate 1e-3 per clip by design, speed search included), bit accuracy (hard decisions at the
best alignment, over all clips), exact-payload rate, localization IoU of the detected spans with the marked part
(the whole clip, or the marked stretch of a splice), the speed factor found. Also: the false-positive rate measured
on clean clips and on clips marked with another key, the null distribution of the plain scan's and the speed
search's statistics on the clean clips (how conservative the Bonferroni thresholds are), SNR and PESQ (wide band)
of the clean embedding, and detection / embedding speed in x real time (one thread; detection of unmarked audio is
the worst case: it runs the whole speed search). Writes ``OUT/watermark.{md,json}`` (and ``.png`` with matplotlib).

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
from scipy.special import ndtri  # noqa: E402

# Run as a file, this script's folder comes first on sys.path, where benchmarks/codec.py would shadow `codec`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from safety import watermark as wm  # noqa: E402
from safety.attacks import ATTACKS, AttackUnavailableError, mix_talker, neural_codec, speech_like, splice  # noqa: E402
from safety.attacks import speed as speed_attack  # noqa: E402
from safety.keys import WatermarkKey  # noqa: E402
from safety.watermark import FALSE_POSITIVE_RATE, N_BITS, SPEED_THRESHOLD, THRESHOLD, detect, embed  # noqa: E402

SR = 16000
KEY = WatermarkKey.from_secret("benchmark key")
OTHER_KEY = WatermarkKey.from_secret("some other key")
# the attack set of the earlier runs, before the speed search (for a like-for-like mean)
EARLIER_SET = ("white_noise_20dB", "pink_noise_20dB", "lowpass_3500Hz", "highpass_500Hz", "bandpass_300_3400Hz",
               "resample_8kHz", "speed_1.02", "speed_1.05", "echo_100ms", "smooth_5", "boost_6dB", "duck_-10dB",
               "crop_1.5s", "mp3_32kbps", "aac_32kbps", "opus_16kbps", "splice", "mix_talker_10dB")


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


def speed(clips: list[np.ndarray], short: list[np.ndarray], seconds: float = 60.0, codec_layer: bool = True
          ) -> dict[str, float]:
    """x real time on one thread: embedding, and detection of 60 s of marked audio (the plain scan decides), of the
    same audio sped up by 5 % (the speed search decides), of the unmarked audio (the whole search, the worst case),
    and of the short unmarked clips one by one (per-call overheads included), with and without the codec layer's
    test; the codec layer's embedding and its detection after the neural codec on 10 s, once (slow). Measured in
    CPU time of this (single-threaded) process, best of 3, so that other jobs on the machine do not count;
    wall-clock figures too."""
    audio = np.concatenate(clips)
    while len(audio) < seconds * SR:
        audio = np.concatenate([audio, audio])
    audio = audio[: int(seconds * SR)]
    marked = embed(audio, 1234, key=KEY)
    fast = speed_attack(marked, SR, 1.05)
    cases = {"embed": (seconds, lambda: embed(audio, 1234, key=KEY)),
             "detect": (seconds, lambda: detect(marked, key=KEY)),
             "detect_speed_1.05": (len(fast) / SR, lambda: detect(fast, key=KEY)),
             "detect_clean": (seconds, lambda: detect(audio, key=KEY)),
             "detect_short_clean": (sum(map(len, short)) / SR, lambda: [detect(x, key=KEY) for x in short]),
             "detect_clean_no_codec_layer": (seconds, lambda: detect(audio, key=KEY, codec_layer=False)),
             "detect_short_clean_no_codec_layer": (sum(map(len, short)) / SR,
                                                   lambda: [detect(x, key=KEY, codec_layer=False) for x in short])}
    out: dict[str, float] = {"audio_s": seconds, "short_clean_clips": len(short),
                             "short_clean_audio_s": round(sum(map(len, short)) / SR, 1)}
    for name, (audio_s, fn) in cases.items():
        times = [_timed(fn) for _ in range(3)]
        out[f"{name}_x_realtime"] = audio_s / min(cpu for _, cpu in times)
        out[f"{name}_x_realtime_wall"] = audio_s / min(wall for wall, _ in times)
    if codec_layer:
        ten = audio[: 10 * SR]
        wall, cpu = _timed(lambda: embed(ten, 1234, key=KEY, codec_layer=True))
        out["embed_codec_layer_x_realtime"], out["embed_codec_layer_x_realtime_wall"] = 10 / cpu, 10 / wall
        attacked = neural_codec(embed(ten, 1234, key=KEY, codec_layer=True), SR)
        wall, cpu = _timed(lambda: detect(attacked, key=KEY))
        out["detect_codec_attacked_x_realtime"], out["detect_codec_attacked_x_realtime_wall"] = 10 / cpu, 10 / wall
    return out


def _timed(fn) -> tuple[float, float]:  # noqa: ANN001
    """(wall, CPU) seconds of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def null_statistics(x: np.ndarray) -> tuple[float, float]:
    """The plain scan's best score and the best score over the speed search's grid of factors, for unmarked audio
    (the detector stops at the first factor over the threshold; here every factor is scanned)."""
    layout = wm._layout(KEY.seed)
    plain = wm._analyse(x.astype(np.float64), layout).best.score
    fine = wm._fine_spectrum(x.astype(np.float64))
    grid = max(wm._analyse(fine, layout, f).best.score for f in wm.SPEED_FACTORS)
    return plain, grid


def plot(rows: list[dict], path: Path) -> None:
    """Bar chart of detection rate and bit accuracy per attack (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [r for r in rows if "detection_rate" in r]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.bar(x - 0.2, [r["detection_rate"] for r in rows], 0.4, label="detection rate")
    ax.bar(x + 0.2, [r["bit_accuracy"] for r in rows], 0.4, label="bit accuracy")
    ax.set_xticks(x, [r["attack"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left")
    ax.set_title("keyed watermark under attacks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=None, help="corpus directory with manifest.jsonl")
    p.add_argument("--quick", action="store_true", help="12 marked clips and 200 clean clips")
    p.add_argument("--clips", type=int, default=None, help="marked clips (default 100, quick 12)")
    p.add_argument("--clean", type=int, default=None, help="clean clips for the false-positive rate (2000 / 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-codec-layer", action="store_true",
                   help="embed the spread-spectrum layer only (the codec layer's test still runs at detection)")
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
    names = [*attacks, "splice", "splice_speed_1.05", "mix_talker_10dB"]
    per: dict[str, list[dict]] = {name: [] for name in names}
    skipped: dict[str, str] = {}
    snrs, pesqs, wrong_key = [], [], []
    for i, (clean, other) in enumerate(zip(clips, others)):
        message = int(rng.integers(2**N_BITS))
        marked = embed(clean, message, key=KEY, codec_layer=not args.no_codec_layer)
        snr, pq = quality(clean, marked)
        snrs.append(snr)
        pesqs.append(pq)
        wrong_key.append(detect(marked, key=OTHER_KEY).detected)
        for name in names:
            if name in skipped:
                continue
            try:
                truth = None  # the marked part of the attacked clip, in seconds (None: all of it)
                if name.startswith("splice"):  # 1-2 s of unmarked speech on each side
                    a, b = int(rng.uniform(1, 2) * SR), int(rng.uniform(1, 2) * SR)
                    before, after = np.resize(other, a), np.resize(other[::-1], b)
                    attacked = splice(marked, SR, before, after)
                    truth = (a / SR, (a + len(marked)) / SR)
                    if name == "splice_speed_1.05":
                        attacked = speed_attack(attacked, SR, 1.05)
                        truth = (truth[0] / 1.05, truth[1] / 1.05)
                elif name == "mix_talker_10dB":
                    attacked = mix_talker(marked, SR, other, snr_db=10.0)
                else:
                    attacked = attacks[name](marked, SR)
            except AttackUnavailableError as e:
                skipped[name] = str(e)
                continue
            d = detect(attacked, key=KEY)
            per[name].append({"detected": d.detected, "bit_acc": float(np.mean(d.bits == bits_of(message))),
                              "exact": d.payload == message, "score": d.score, "speed": d.speed,
                              "codec": d.layer == "codec",
                              "iou": iou(d.spans, truth or (0.0, len(attacked) / SR))})
        print(f"\rmarked clips {i + 1}/{n_clips}", end="", flush=True)
    print()

    clean_hits, clean_speed_hits, clean_codec_hits, clean_clips, nulls, short = 0, 0, 0, 0, [], []
    for i in range(n_clean):
        if args.corpus and i % 2 == 0:  # random windows of corpus clips
            x = corpus_clips(args.corpus, 1, rng)[0]
            n = min(len(x), int(rng.uniform(1.5, 4.0) * SR))
            start = int(rng.integers(0, len(x) - n + 1))
            x = x[start : start + n]
        else:
            x = speech_like(float(rng.uniform(1.5, 4.0)), SR, seed=100_000 + i)
        d = detect(x, key=KEY)
        clean_hits += d.detected
        clean_speed_hits += d.detected and d.speed != 1.0
        clean_codec_hits += d.layer == "codec"
        clean_clips += 1
        nulls.append(null_statistics(x))
        if len(short) < 100:
            short.append(x)
        if (i + 1) % 100 == 0:
            print(f"\rclean clips {i + 1}/{n_clean}", end="", flush=True)
    print()
    rtf = speed(clips, short, codec_layer=not args.no_codec_layer)
    plain_null, grid_null = np.array(nulls).T
    # empirical tail of each stage's Bonferroni p-value against its nominal level (<= nominal: conservative)
    null_tail = {}
    for level in (0.1, 0.01, 1e-3):
        plain_t = float(-ndtri(level / wm.N_ALIGNMENTS))
        grid_t = float(-ndtri(level / (wm.N_ALIGNMENTS * len(wm.SPEED_FACTORS))))
        null_tail[str(level)] = {"plain": float(np.mean(plain_null >= plain_t)),
                                 "speed_search": float(np.mean(grid_null >= grid_t))}

    rows = []
    for name in names:
        if name in skipped or not per[name]:
            rows.append({"attack": name, "skipped": skipped.get(name, "no result")})
            continue
        r = per[name]
        found = [x["speed"] for x in r if x["detected"]]
        rows.append({"attack": name, "detection_rate": float(np.mean([x["detected"] for x in r])),
                     "bit_accuracy": float(np.mean([x["bit_acc"] for x in r])),
                     "payload_exact": float(np.mean([x["exact"] for x in r])),
                     "iou": float(np.mean([x["iou"] for x in r])),
                     "speed_found": float(np.mean(found)) if found else None,
                     "by_codec_layer": float(np.mean([x["codec"] for x in r])),
                     "mean_score": float(np.mean([x["score"] for x in r]))})
    scored = [r for r in rows if "detection_rate" in r and r["attack"] != "none"]
    earlier = [r for r in scored if r["attack"] in EARLIER_SET]
    summary = {
        "source": source, "marked_clips": n_clips, "marked_audio_s": round(sum(map(len, clips)) / SR, 1),
        "clean_clips": clean_clips, "threshold": THRESHOLD,
        "speed_threshold": SPEED_THRESHOLD, "speed_factors": list(wm.SPEED_FACTORS),
        "target_false_positive_rate": FALSE_POSITIVE_RATE,
        "false_positive_rate_clean": clean_hits / clean_clips, "false_positives_clean": clean_hits,
        "false_positives_clean_by_speed_search": clean_speed_hits,
        "false_positives_clean_by_codec_layer": clean_codec_hits, "codec_layer_embedded": not args.no_codec_layer,
        "codec_fpr_share": wm.CODEC_FPR_SHARE,
        "null_clean_plain_max_score": float(plain_null.max()), "null_clean_speed_search_max_score":
        float(np.nanmax(grid_null)), "null_tail_rate_at_nominal_level": null_tail,
        "false_positive_rate_other_key": float(np.mean(wrong_key)),
        "snr_db_mean": float(np.mean(snrs)), "snr_db_min": float(np.min(snrs)),
        "pesq_wb_mean": float(np.nanmean(pesqs)), "pesq_wb_min": float(np.nanmin(pesqs)),
        "splice_iou_mean": next((r["iou"] for r in scored if r["attack"] == "splice"), None),
        "attacks_mean_detection": float(np.mean([r["detection_rate"] for r in scored])),
        "attacks_mean_bit_accuracy": float(np.mean([r["bit_accuracy"] for r in scored])),
        "attacks_mean_iou": float(np.mean([r["iou"] for r in scored])),
        "earlier_set_mean_detection": float(np.mean([r["detection_rate"] for r in earlier])),
        "earlier_set_mean_bit_accuracy": float(np.mean([r["bit_accuracy"] for r in earlier])),
        "speed": rtf, "wall_s": round(time.time() - t_start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "watermark.json").write_text(json.dumps({"summary": summary, "attacks": rows}, indent=2) + "\n")
    md = [f"Watermark robustness: {n_clips} marked clips ({summary['marked_audio_s']} s) from {source}; "
          f"threshold T >= {THRESHOLD:.2f} for the plain scan, T >= {SPEED_THRESHOLD:.2f} for the speed search "
          f"({len(wm.SPEED_FACTORS)} factors 0.90..1.10; false-positive rate {FALSE_POSITIVE_RATE:g} per clip by "
          "design, all stages together, the codec layer's test with a tenth of it). Codec layer "
          f"{'embedded' if not args.no_codec_layer else 'NOT embedded'}. IoU: detected spans against the marked "
          "part; speed found: mean factor over the detected clips; by codec layer: share of clips the codec layer's "
          "test decided (it carries no payload).", "",
          "| attack | detection rate | bit accuracy | payload exact | IoU | speed found | by codec layer "
          "| mean score |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            md.append(f"| {r['attack']} | skipped: {r['skipped']} | | | | | | |")
        else:
            found = "-" if r["speed_found"] is None else f"{r['speed_found']:.3f}"
            md.append(f"| {r['attack']} | {r['detection_rate']:.3f} | {r['bit_accuracy']:.3f} | "
                      f"{r['payload_exact']:.3f} | {r['iou']:.3f} | {found} | {r['by_codec_layer']:.2f} | "
                      f"{r['mean_score']:.1f} |")
    tails = "; ".join(f"{float(level):g}: {t['plain']:.2%} / {t['speed_search']:.2%}" for level, t in null_tail.items())
    md += ["", f"- mean over attacks (excluding none): detection {summary['attacks_mean_detection']:.3f}, "
           f"bit accuracy {summary['attacks_mean_bit_accuracy']:.3f}, IoU {summary['attacks_mean_iou']:.3f}; "
           f"over the earlier set ({len(earlier)} attacks, no added speed factors): detection "
           f"{summary['earlier_set_mean_detection']:.3f}, bit accuracy {summary['earlier_set_mean_bit_accuracy']:.3f}",
           f"- false positives: {clean_hits}/{clean_clips} clean clips "
           f"({summary['false_positive_rate_clean']:.4f}; {clean_speed_hits} of them by the speed search, "
           f"{clean_codec_hits} by the codec layer); "
           f"marked with another key: {summary['false_positive_rate_other_key']:.4f}",
           f"- null statistics on the clean clips: best plain score {summary['null_clean_plain_max_score']:.2f} "
           f"(threshold {THRESHOLD:.2f}), best over the speed grid {summary['null_clean_speed_search_max_score']:.2f} "
           f"(threshold {SPEED_THRESHOLD:.2f}); share of clean clips over each stage's Bonferroni threshold at a "
           f"nominal level (plain / speed search): {tails}",
           f"- clean embedding: SNR {summary['snr_db_mean']:.1f} dB (min {summary['snr_db_min']:.1f}), "
           f"PESQ wb {summary['pesq_wb_mean']:.2f} (min {summary['pesq_wb_min']:.2f})",
           f"- speed (x real time, CPU time of one thread; wall clock on this shared machine in brackets): "
           f"detect marked 60 s {rtf['detect_x_realtime']:.0f}x ({rtf['detect_x_realtime_wall']:.0f}x), "
           f"marked and sped up 5 % {rtf['detect_speed_1.05_x_realtime']:.0f}x "
           f"({rtf['detect_speed_1.05_x_realtime_wall']:.0f}x), unmarked 60 s (whole speed search) "
           f"{rtf['detect_clean_x_realtime']:.0f}x ({rtf['detect_clean_x_realtime_wall']:.0f}x), unmarked short "
           f"clips ({rtf['short_clean_clips']} clips, {rtf['short_clean_audio_s']} s) "
           f"{rtf['detect_short_clean_x_realtime']:.0f}x ({rtf['detect_short_clean_x_realtime_wall']:.0f}x); "
           f"embed {rtf['embed_x_realtime']:.0f}x ({rtf['embed_x_realtime_wall']:.0f}x); without the codec layer's "
           f"test: unmarked 60 s {rtf['detect_clean_no_codec_layer_x_realtime']:.0f}x, short clips "
           f"{rtf['detect_short_clean_no_codec_layer_x_realtime']:.0f}x"
           + (f"; codec layer: embedding {rtf['embed_codec_layer_x_realtime']:.2f}x "
              f"({rtf['embed_codec_layer_x_realtime_wall']:.2f}x), detection after the neural codec "
              f"{rtf['detect_codec_attacked_x_realtime']:.0f}x" if "embed_codec_layer_x_realtime" in rtf else ""),
           f"- wall time {summary['wall_s']:.0f} s"]
    plot(rows, args.out / "watermark.png")
    (args.out / "watermark.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
