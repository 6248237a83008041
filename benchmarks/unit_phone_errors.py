"""Phone error rate of a ``"phone"`` unit tokenizer per split, language and voice, straight from the audio.

    python -m benchmarks.unit_phone_errors --corpus /tmp/corpus-3h --units runs/units-phone-aug/units \
        [--splits test] [--threads 1] [--out benchmarks/results/unit_phone_errors]

For comparing phone recognizers (say, one trained with augmentation against the shipped one) without building an
ALM token cache: each utterance of the chosen splits is encoded by the tokenizer, collapsed, stripped of blanks and
aligned with the espeak-ng phones of its transcript (:func:`benchmarks.alm_reading.unit_phone_errors`; the
phones are cached in ``CORPUS/phones.json``). Held-out voices are the test split's. Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.alm_reading import unit_phone_errors  # noqa: E402
from codec import load_units  # noqa: E402
from codec.audio import load_audio  # noqa: E402
from training.data.corpus import read_manifest  # noqa: E402
from training.finetune_units import phone_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="manifest corpus (manifest.jsonl beside its wavs/)")
    p.add_argument("--units", required=True, help="a 'phone' unit tokenizer directory")
    p.add_argument("--splits", default="test", help="comma-separated splits to score")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "unit_phone_errors"), help="writes OUT.md and OUT.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tok = load_units(a.units)
    if tok.kind != "phone":
        raise SystemExit(f"{a.units} holds {tok.kind!r} units; the phone error rate needs 'phone' units")
    corpus, splits = Path(a.corpus), set(a.splits.split(","))
    records = {r["id"]: r for r in read_manifest(corpus) if r.get("split") in splits and "asr" in r.get("tasks", ())}
    if not records:
        raise SystemExit(f"no ASR utterances of split(s) {sorted(splits)} in {corpus}")
    units = {i: tok.encode(load_audio(r["path"])).numpy() for i, r in tqdm(records.items(), desc="units", unit="utt")}
    table = phone_table(list(records.values()), corpus / "phones.json", True)
    per = unit_phone_errors(units, records, table, list(tok.config.phones))
    lines = [f"Units `{a.units}`, corpus `{a.corpus}`, splits {', '.join(sorted(splits))}.", "",
             "| group | phones | PER | sub | del | ins |", "|---|---|---|---|---|---|"]
    lines += [f"| {g} | {v['phones']} | {v['per']:.1%} | {v['sub']:.1%} | {v['del']:.1%} | {v['ins']:.1%} |"
              for g, v in per.items()]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"units": a.units, "corpus": a.corpus, "per": per}, indent=1),
                                        encoding="utf-8")
    print("\n".join(lines))  # noqa: T201 - the command's output
    return per


if __name__ == "__main__":
    main()
