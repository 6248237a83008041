"""The codec watermark layer's statistic on unmarked speech: is its exact binomial p-value honest?

Under "not marked with this key" the count of green distinct first-codebook codes is binomial only over the
randomness of the key; for one fixed key, clips share common codes, so the per-key mean can sit off zero. This
script encodes unmarked corpus clips (as they are, and re-encoded through the neural codec, as an attacker's
output would be), evaluates ``--keys`` random keys on each, and compares the share of (key, clip) pairs under each
p-value level with the level itself (at or under it: the test is conservative), plus the spread of per-key means
of z. Writes ``OUT/codec_mark_null.{md,json}``.

    python -m benchmarks.codec_mark_null --corpus corpus --clips 300 --keys 100
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

_HERE = Path(__file__).resolve().parent  # run as a file, benchmarks/codec.py would shadow `codec`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from safety import codec_mark  # noqa: E402
from safety.attacks import neural_codec  # noqa: E402
from safety.keys import WatermarkKey  # noqa: E402

LEVELS = (1e-2, 1e-3, 1e-4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--clips", type=int, default=300, help="test-split clips (half of them also re-encoded)")
    p.add_argument("--keys", type=int, default=100)
    p.add_argument("--out", type=Path, default=_HERE / "results")
    args = p.parse_args()
    t0 = time.time()
    rows = [json.loads(x) for x in (args.corpus / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("split") == "test"][: args.clips]
    codes = []
    for i, r in enumerate(rows):
        x, rate = sf.read(args.corpus / r["path"], dtype="float32")
        if rate != codec_mark.SAMPLE_RATE:
            raise SystemExit(f"{r['path']}: {rate} Hz, expected {codec_mark.SAMPLE_RATE}")
        codes.append(codec_mark.first_codes(x))
        if i % 2 == 0:
            codes.append(codec_mark.first_codes(neural_codec(x, rate)))
        print(f"\rencoded {i + 1}/{len(rows)}", end="", flush=True)
    print()
    p_values, key_means = [], []
    for k in range(args.keys):
        key = WatermarkKey.from_secret(f"null-study-key-{k}")
        stats = [codec_mark.statistic_of_codes(c, key) for c in codes]
        p_values += [s.p_value for s in stats]
        key_means.append(float(np.mean([s.z for s in stats])))
    p_values = np.array(p_values)
    tail = {str(level): float(np.mean(p_values <= level)) for level in LEVELS}
    summary = {"clips": len(rows), "audio_items": len(codes), "keys": args.keys, "pairs": len(p_values),
               "share_at_or_below_level": tail, "key_mean_z_sd": float(np.std(key_means)),
               "key_mean_z_min": float(np.min(key_means)), "key_mean_z_max": float(np.max(key_means)),
               "distinct_codes_per_item": float(np.mean([len(np.unique(c)) for c in codes])),
               "wall_s": round(time.time() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codec_mark_null.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = [f"Codec watermark layer on unmarked speech: {len(rows)} test clips of {args.corpus} (every other one also "
          f"re-encoded through the neural codec: {len(codes)} items, "
          f"{summary['distinct_codes_per_item']:.0f} distinct codes each), {args.keys} keys, {len(p_values)} pairs.",
          "", "| p-value level | share of pairs at or below it |", "|---|---|"]
    md += [f"| {float(level):g} | {share:.5f} |" for level, share in tail.items()]
    md += ["", f"- per-key mean z: sd {summary['key_mean_z_sd']:.3f}, range {summary['key_mean_z_min']:.2f} .. "
           f"{summary['key_mean_z_max']:.2f}", f"- wall time {summary['wall_s']:.0f} s"]
    (args.out / "codec_mark_null.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
