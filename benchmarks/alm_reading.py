"""Where the ALM's recognition errors come from: the phone units it reads, or the decoder reading them.

    python -m benchmarks.alm_reading --corpus /tmp/corpus-3h [--checkpoint DIR] [--max-utts 60] [--threads 2]

For a checkpoint that reads ``"phone"`` units (the shipped one):

1. Unit phone error rate per split, language and voice: the token cache's units of every utterance (collapsed,
   blanks dropped) against the espeak-ng phones of its transcript (the recognizer's training targets). Low on the
   training voices and high on held-out ones means the unit recognizer, not the decoder, is what fails to
   generalise.
2. Reading test: greedy ASR of the same test utterances as ``alm eval`` (held-out speakers) from (a) their real
   units, (b) clean simulated units of the transcript's espeak-ng phones (what a perfect phone recognizer would
   give: :class:`training.phone_sim.PhoneSimulator` without corruption) and (c) simulated units with the training
   corruption. If (b) is no better than (a), the decoder has not learned to read phones yet.
3. A PNG of the decoder's attention from the transcript positions to the unit positions, per layer and head, on
   one test utterance: a head that reads shows a diagonal.

Writes benchmarks/results/alm_reading.{md,json,png} (``--out`` elsewhere). Nothing here is written for a
library's lack: the alignments are jiwer's, the phones espeak-ng's (through the token cache's phone table).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import jiwer  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from alm.checkpoint import load_checkpoint  # noqa: E402
from alm.generation import generate_for_task  # noqa: E402
from alm.prompts import asr_example, parse_output  # noqa: E402
from codec.units import without_blanks  # noqa: E402
from codec.word_phones import WordPhones  # noqa: E402
from training.alm_data import build_token_cache, collapse  # noqa: E402
from training.evaluation.eval_alm import select  # noqa: E402
from training.evaluation.metrics import char_error_rate, word_error_rate  # noqa: E402
from training.finetune_units import phone_table  # noqa: E402
from training.phone_sim import BLANK, PhoneSimulator, SimConfig  # noqa: E402
from training.plots import png_figure  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLEAN = SimConfig(blank_prob=0.7, sub_prob=0.0, del_prob=0.0, ins_prob=0.0)  # 0.7: the measured blank rate


def unit_phone_errors(units: dict[str, np.ndarray], records: dict[str, dict[str, Any]],
                      table: dict[str, list[str]], inventory: list[str]) -> dict[str, dict[str, float]]:
    """Phone error rate of the units against espeak-ng phones, by ``split``, ``split/lang`` and ``split/voice``.

    Args:
        units: ``[F]`` uncollapsed frame units by utterance id (``"phone"`` kind: index into ``inventory``).
        records: manifest records by id (``split``, ``lang``, ``speaker``, ``text``).
        table: ``{lang + tab + text: espeak-ng phones}`` (:func:`training.finetune_units.phone_table`).
        inventory: the units' phone names (``units.config.phones``; index 0 is the blank).

    Returns:
        ``{group: {"phones", "per", "sub", "del", "ins"}}`` (rates per reference phone).
    """
    known = set(inventory[1:])
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(4))  # reference phones, sub, del, ins
    for utt_id, frames in units.items():
        r = records[utt_id]
        ref = [p for p in table.get(f"{r['lang']}\t{r['text']}", []) if p in known]
        if not ref:
            continue
        hyp = [inventory[u] for u in collapse(frames.astype(np.int64)) if u != BLANK]
        out = jiwer.process_words(" ".join(ref), " ".join(hyp) or "")
        for group in (r["split"], f"{r['split']}/{r['lang']}", f"{r['split']}/{r['speaker']}"):
            counts[group] += (len(ref), out.substitutions, out.deletions, out.insertions)
    return {g: {"phones": int(c[0]), "per": float(c[1:].sum() / c[0]), "sub": float(c[1] / c[0]),
                "del": float(c[2] / c[0]), "ins": float(c[3] / c[0])} for g, c in sorted(counts.items())}


@torch.no_grad()
def transcribe_units(model: torch.nn.Module, vocab: Any, lang: str, units: np.ndarray) -> str:
    """Greedy transcript of one collapsed unit sequence ``[F']`` (the ASR prompt as built for training)."""
    ex = asr_example(vocab, lang, units, "")
    prompt = ex.input_ids[: ex.prompt_len]
    spelled = getattr(model.config, "asr_word_phones", False)  # it writes each word's phones too
    new = generate_for_task(model, vocab, "asr", prompt, strategy="greedy",
                            max_new_tokens=(2 if spelled else 1) * len(units) + 16)
    return parse_output(vocab, "asr", new).text or ""


@torch.no_grad()
def attention_png(model: torch.nn.Module, vocab: Any, lang: str, units: np.ndarray, text: str, path: Path,
                  word_phones: list[list[int]] | None = None) -> None:
    """Teacher-forced attention from the transcript positions (rows) to the unit positions (columns), one panel
    per layer and head (``word_phones``: the spelled target of an ``asr_word_phones`` model)."""
    ex = asr_example(vocab, lang, units, text, word_phones=word_phones)
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # SDPA returns no attention weights
    try:
        att = model(torch.tensor([ex.input_ids]), output_attentions=True).attentions  # L x [1, H, N, N]
    finally:
        model.set_attn_implementation(previous)
    pos = [i for i, t in enumerate(ex.input_ids) if t in vocab.units]
    a0, a1, p = pos[0], pos[-1] + 1, ex.prompt_len
    layers, heads = len(att), att[0].shape[1]
    with png_figure(path, layers, heads, figsize=(2.6 * heads, 2.2 * layers)) as (fig, ax):
        ax = np.asarray(ax).reshape(layers, heads)
        for li in range(layers):
            for h in range(heads):
                a = att[li][0, h, p:, a0:a1].float().numpy()
                ax[li, h].imshow(a, aspect="auto", origin="lower", interpolation="nearest")
                ax[li, h].set_title(f"layer {li} head {h}: mass {a.sum(1).mean():.2f}", fontsize=7)
                ax[li, h].tick_params(labelsize=6)
        fig.suptitle(f"transcript tokens (rows) -> units (columns): {text[:60]}", fontsize=8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="manifest corpus with a test split (its token cache is reused)")
    p.add_argument("--checkpoint", default="alm/pretrained/default", help="an ALM reading 'phone' units")
    p.add_argument("--max-utts", type=int, default=60, help="test utterances of the reading test (alm eval's pick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "alm_reading"), help="writes OUT.md, OUT.json, OUT.png")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, vocab, codec, units = load_checkpoint(args.checkpoint)
    if units.kind != "phone":
        raise SystemExit(f"{args.checkpoint} reads {units.kind!r} units; this test needs 'phone' units")
    cache = build_token_cache(args.corpus, codec, units)
    records = cache.records
    inventory = list(units.config.phones)
    table = phone_table(list(records.values()), cache.directory / "phones.json")
    per = unit_phone_errors(cache.units, records, table, inventory)

    sim = PhoneSimulator(units)
    clean, noisy = PhoneSimulator(units, config=CLEAN), PhoneSimulator(units, config=SimConfig())
    index = sim.index
    rng = np.random.default_rng(args.seed)
    picked = select(list(records.values()), "test", "asr", args.max_utts, args.seed)
    rows, by = [], defaultdict(lambda: ([], []))
    for r in tqdm(picked, desc="reading test", unit="utt"):
        ids = [index[q] for q in table.get(f"{r['lang']}\t{r['text']}", []) if q in index]
        if not ids:
            continue
        inputs = {"real": collapse(cache.units[r["id"]].astype(np.int64)), "clean_sim": clean.simulate(ids, rng),
                  "noisy_sim": noisy.simulate(ids, rng)}
        if model.config.drop_unit_blanks:  # the prompt format this checkpoint was trained on
            inputs = {name: without_blanks(u) for name, u in inputs.items()}
        row = {"id": r["id"], "lang": r["lang"], "speaker": r["speaker"], "reference": r["text"]}
        for name, u in inputs.items():
            row[name] = transcribe_units(model, vocab, r["lang"], u)
            by[(name, r["lang"])][0].append(r["text"])
            by[(name, r["lang"])][1].append(row[name])
        rows.append(row)
    reading = {f"{name}/{lang}": {"utts": len(refs), "wer": word_error_rate(refs, hyps, lang),
                                  "cer": char_error_rate(refs, hyps, lang)}
               for (name, lang), (refs, hyps) in sorted(by.items())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    first = picked[0]
    first_units = collapse(cache.units[first["id"]].astype(np.int64))
    first_units = without_blanks(first_units) if model.config.drop_unit_blanks else first_units
    word_phones = None
    if getattr(model.config, "asr_word_phones", False):
        lexicon = WordPhones(units, cache.directory / "word_phones.json")
        lexicon.add([(first["lang"], first["text"])], progress=False)
        word_phones = lexicon(first["lang"], first["text"])
    attention_png(model, vocab, first["lang"], first_units, first["text"], out.with_suffix(".png"), word_phones)
    result = {"checkpoint": args.checkpoint, "corpus": args.corpus, "unit_per": per, "reading": reading,
              "transcripts": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    lines = [f"Checkpoint `{args.checkpoint}`, corpus `{args.corpus}`.", "",
             "**Unit phone error rate** (units against the transcript's espeak-ng phones)", "",
             "| group | phones | PER | sub | del | ins |", "|---|---|---|---|---|---|"]
    lines += [f"| {g} | {v['phones']} | {v['per']:.1%} | {v['sub']:.1%} | {v['del']:.1%} | {v['ins']:.1%} |"
              for g, v in per.items()]
    lines += ["", "**Reading test** (greedy ASR of the same test utterances from each input)", "",
              "| input / language | utterances | WER | CER |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['utts']} | {v['wer']:.1%} | {v['cer']:.1%} |" for k, v in reading.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
