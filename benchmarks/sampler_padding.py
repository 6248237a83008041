"""Padding per batch with and without length bucketing, on a real token cache (no model: data only).

    python -m benchmarks.sampler_padding --corpus /tmp/corpus-3h [--checkpoint alm/pretrained/default]

Prints, for each bucket pool size, the share of padded positions and real tokens per 8,192-token batch.
"""

from __future__ import annotations

import argparse

import numpy as np

from alm.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from training.alm_data import ExampleBuilder, ExampleOptions, MultiTaskSampler, build_token_cache


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--batches", type=int, default=300)
    a = p.parse_args()
    model, vocab, codec, units = load_checkpoint(a.checkpoint)
    codec.set_num_codebooks(codec.max_codebooks)
    cache = build_token_cache(a.corpus, codec, units)
    c = model.config
    builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=c.num_codebooks, input_speech=c.input_speech,
                                                          collapse_units=c.collapse_units,
                                                          voice_seconds=c.voice_seconds))
    print("| bucket pool | padding | real tokens per batch | sequences per batch |\n|---|---|---|---|")
    for pool in (0, 16, 64, 256):
        sampler = MultiTaskSampler(builder.groups("train"), builder.build, max_tokens=a.max_tokens,
                                   max_len=c.max_position_embeddings, pad_id=vocab.pad_id, seed=0, bucket_pool=pool)
        batches = [sampler.next_batch() for _ in range(a.batches)]
        real = np.array([int(b.attention_mask.sum()) for b in batches])
        padded = np.array([b.input_ids.numel() for b in batches])
        rows = np.array([b.input_ids.shape[0] for b in batches])
        print(f"| {pool} | {1 - real.sum() / padded.sum():.1%} | {real.mean():.0f} | {rows.mean():.1f} |")


if __name__ == "__main__":
    main()
