"""`make demo`: synthesize a small bilingual corpus, show what it holds, pass it through the shipped codec and
unit tokenizers, then prompt the shipped audio-language model with all five tasks.

The data path a user starts from (the speech synthesizers, the manifest, loading it as a Hugging Face dataset,
codec tokens at several bitrates decoded back to WAVs, units), then ``alm.load()`` on utterances of held-out
speakers: transcribe, synthesize, translate, understand and continue, each output written under ``demo-out/alm``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
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
    alm_demo(OUT / "corpus")
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


def alm_demo(corpus: Path) -> None:
    """Prompt the shipped model with each task on held-out-speaker utterances of the demo corpus."""
    import alm
    from training.data.corpus import read_manifest

    rows = read_manifest(corpus)
    test = [r for r in rows if r["split"] == "test"] or rows
    pick = lambda pred: next((r for r in test if pred(r)), None) or next(r for r in rows if pred(r))  # noqa: E731
    out = OUT / "alm"
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    model = alm.load()
    print(f"\nShipped model: {model} (loaded in {time.perf_counter() - t:.1f} s); outputs in {out}/")

    def timed(what: str, fn):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        result = fn()
        print(f"  {what} ({time.perf_counter() - t:.1f} s)")
        return result

    en = pick(lambda r: r["lang"] == "en" and "asr" in r["tasks"])
    es = pick(lambda r: r["lang"] == "es" and "asr" in r["tasks"])
    for r in (en, es):
        res = timed(f"transcribe [{r['lang']}, {r['speaker']}]", lambda r=r: model.transcribe(r["path"], r["lang"]))
        print(f"    reference:  {r['text']}\n    transcript: {res.text}")
    text = "The weather is nice today, let us go for a walk."
    res = timed(f"synthesize {text!r} in the voice of {en['speaker']}",
                lambda: model.synthesize(text, "en", voice=en["path"]))
    res.save(out / "synthesize.wav")
    print(f"    -> {out / 'synthesize.wav'} ({res.duration:.2f} s)")
    src = pick(lambda r: "s2st" in r["tasks"] and r["lang"] == "en")
    res = timed(f"translate to Spanish: {src['text']!r}",
                lambda: model.translate_speech(src["path"], "es", source_language="en"))
    res.save(out / "translate.wav")
    print(f"    target text: {res.text!r}\n    -> {out / 'translate.wav'} ({res.duration:.2f} s)")
    cmd = pick(lambda r: bool(r.get("intent")))
    res = timed(f"understand {cmd['text']!r}", lambda: model.understand(cmd["path"], cmd["lang"]))
    print(f"    intent {res.intent!r} slots {res.slots} (reference {cmd['intent']!r} {cmd.get('slots') or {}})")
    res = timed(f"continue 2 s of {en['speaker']}", lambda: model.continue_speech(en["path"], seconds=2.0,
                                                                                include_prompt=True))
    res.save(out / "continue.wav")
    print(f"    -> {out / 'continue.wav'} ({res.duration:.2f} s, prompt included)")


if __name__ == "__main__":
    sys.exit(main())
