"""`make demo`: synthesize a small bilingual corpus, show what it holds, and pass it through the shipped codec
and unit tokenizers.

Later stages of the project extend this to prompt the shipped model; for now it exercises the data path a
user starts from: the speech synthesizers, the manifest, loading it as a Hugging Face dataset, and turning
speech into the tokens the model reads (codec tokens at several bitrates, decoded back to WAVs, and units).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from training.data import load_corpus, synthesize_corpus

OUT = Path("demo-out")
HOURS = 0.05  # three minutes of speech: a minute or two on two cores


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = synthesize_corpus(OUT / "corpus", hours=HOURS, seed=0, jobs=2)
    c = report.counts
    print(f"\nMade {report.utterances} utterances, {report.hours * 60:.1f} min of 16 kHz speech in "
          f"{report.wall_s:.0f} s, under {report.out_dir}/")
    print(f"  splits:    {c['by_split']}")
    print(f"  languages: {c['by_lang']}")
    print(f"  tasks:     {c['by_task']}")
    print(f"  speakers:  {c['speakers']}; held out for test: {', '.join(c['test_only_speakers'])}")
    ds = load_corpus(OUT / "corpus")
    print(f"\nLoaded as a datasets.DatasetDict: { {k: len(v) for k, v in ds.items()} }")
    shown: set[str] = set()
    for row in ds["train"]:
        kind = row["id"].split("-")[0]
        if kind in shown:
            continue
        shown.add(kind)
        audio = row["audio"].get_all_samples()
        extra = {k: row[k] for k in ("translation", "intent", "slots") if row.get(k)}
        print(f"  [{kind}] {row['speaker']:>16} {row['lang']} {audio.duration_seconds:5.2f}s  {row['text']!r}"
              + (f"  {json.dumps(extra, ensure_ascii=False)}" if extra else ""))
    tokens_demo(ds["test"][0])
    return 0


def tokens_demo(row: dict) -> None:
    """Encode one held-out-speaker utterance with the shipped codec and units; write the decoded WAVs."""
    import codec

    wav = row["audio"].get_all_samples().data[0]
    tok, units = codec.load_codec(), codec.load_units()
    out = OUT / "codec"
    out.mkdir(parents=True, exist_ok=True)
    codec.save_audio(out / "original.wav", wav, 16000)
    print(f"\nShipped codec on a held-out voice ({row['speaker']}, {len(wav) / 16000:.2f} s): {out}/")
    for k in (1, 3, 8):
        tok.set_num_codebooks(k)
        codes = tok.encode(wav)
        back = tok.decode(codes)[0, : len(wav)].clamp(-1, 1)
        codec.save_audio(out / f"codec_{tok.bitrate / 1000:g}kbps.wav", back, 16000)
        print(f"  {tok.bitrate / 1000:g} kbps: codes {tuple(codes.shape)} -> codec_{tok.bitrate / 1000:g}kbps.wav")
    u = units.encode(wav, collapse=True)
    print(f"  units ({units.kind}, {units.num_units} clusters, repeats collapsed): {u[:20].tolist()} ... ({len(u)})")


if __name__ == "__main__":
    sys.exit(main())
