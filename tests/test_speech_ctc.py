"""The auxiliary CTC loss on the decoder's speech positions: spans, the loss itself, and a run that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import N_UNITS, TINY_CODEC

from alm.prompts import asr_example, s2st_example, tts_example
from alm.vocab import Vocabulary, train_text_tokenizer
from codec import load_codec, load_units
from training.alm_data import ExampleBuilder, ExampleOptions, MultiTaskSampler, build_token_cache, collate
from training.speech_ctc import speech_ctc_loss, speech_spans
from training.train_alm import TrainAlmConfig, train


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    texts = ["hello there my friend", "hola mi amigo que tal", "play some jazz now"] * 5
    return Vocabulary(train_text_tokenizer(texts, vocab_size=300), num_units=N_UNITS, num_codebooks=2,
                      cardinality=TINY_CODEC.cardinality)


def test_spans_cover_exactly_the_speech_segment(vocab: Vocabulary) -> None:
    units = [3, 1, 4, 1, 5]
    asr = asr_example(vocab, "en", units, "hello there", context="my friend")
    codes = np.zeros((2, 4), dtype=np.int64)
    s2st = s2st_example(vocab, "es", "en", units[:3], codes, "hello", codes, with_text=True)
    tts = tts_example(vocab, "en", "hello", codes, codes)
    batch = collate([asr, s2st, tts], vocab.pad_id)
    spans = speech_spans(batch.input_ids, vocab)
    assert spans[2] is None  # TTS reads text, not speech
    for row, span, n in zip(batch.input_ids.tolist(), spans[:2], (5, 3)):
        start, end = span
        assert end - start == n and vocab.ids_to_units(row[start:end]) == units[:n]


def test_loss_is_torch_ctc_over_text_plus_blank(vocab: Vocabulary) -> None:
    torch.manual_seed(0)
    a = asr_example(vocab, "en", [1, 2, 3, 4, 5, 6], "hello there")
    b = asr_example(vocab, "en", [7, 8, 9, 10], "play")
    batch = collate([a, b, tts_example(vocab, "en", "hi", None, np.zeros((2, 3), dtype=np.int64))], vocab.pad_id)
    targets = [vocab.encode_text("hello there"), vocab.encode_text("play"), None]
    logits = torch.randn(*batch.input_ids.shape, vocab.size, requires_grad=True)
    loss, rows = speech_ctc_loss(logits, batch.input_ids, targets, vocab)
    assert rows == 2
    # by hand, one row at a time: the speech positions, columns [pad] + text range, blank 0
    cols = [vocab.pad_id, *range(vocab.text.start, vocab.text.end)]
    expected = []
    for b_i, span in enumerate(speech_spans(batch.input_ids, vocab)[:2]):
        lp = logits[b_i, span[0]:span[1]][:, cols].log_softmax(-1)[:, None]
        tgt = torch.tensor([t - vocab.text.start + 1 for t in targets[b_i]])
        expected.append(F.ctc_loss(lp, tgt[None], [lp.shape[0]], [len(tgt)], blank=0, reduction="sum") / len(tgt))
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-5)
    loss.backward()
    grad = logits.grad
    assert grad[2].abs().sum() == 0  # the TTS row is not scored
    start, end = speech_spans(batch.input_ids, vocab)[0]
    assert grad[0, start:end].abs().sum() > 0 and grad[0, :start].abs().sum() == 0 and grad[0, end:].abs().sum() == 0

    none_loss, none_rows = speech_ctc_loss(logits, batch.input_ids, [None, None, None], vocab)
    assert none_rows == 0 and float(none_loss.detach()) == 0.0 and none_loss.requires_grad
    with pytest.raises(ValueError, match="text ids"):
        speech_ctc_loss(logits, batch.input_ids, [[vocab.eos_id], None, None], vocab)


def test_builder_attaches_transcripts_and_sampler_state_keeps_them(
        tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    cache = build_token_cache(tiny_corpus, load_codec(tokenizer_dirs[0]), load_units(tokenizer_dirs[1]),
                              tmp_path / "cache", progress=False)
    texts = [r["text"] for r in cache.records.values()]
    vocab = Vocabulary(train_text_tokenizer(texts, vocab_size=400), num_units=N_UNITS, num_codebooks=2,
                       cardinality=TINY_CODEC.cardinality)
    builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=2, ctc_targets=True))
    rng = np.random.default_rng(0)
    seen = set()
    for (task, _), ids in builder.groups("train").items():
        ex = builder.build(task, ids[0], rng)
        if task in ("asr", "slu", "s2st"):
            assert ex.ctc_targets == vocab.encode_text(cache.records[ids[0]]["text"])
            seen.add(task)
        else:
            assert ex.ctc_targets is None
    assert {"asr", "s2st"} <= seen
    plain = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=2))
    asr_id = builder.groups("train")[("asr", "en")][0]
    assert plain.build("asr", asr_id, rng).ctc_targets is None

    sampler = MultiTaskSampler(builder.groups("train", ("asr",)), builder.build, max_tokens=256, bucket_pool=8)
    sampler.next_batch()
    again = MultiTaskSampler(builder.groups("train", ("asr",)), builder.build, max_tokens=256, bucket_pool=8)
    again.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    a, b = sampler.next_batch(), again.next_batch()
    assert a.ctc_targets == b.ctc_targets and all(a.ctc_targets)


def test_training_with_ctc_lowers_it_and_reports_it(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    common = dict(preset="debug", max_tokens=1024, lr=1e-2, warmup_steps=2, num_codebooks=2, text_vocab_size=500,
                  log_every=1, eval_every=20, ckpt_every=20, num_samples=0, threads=1, tasks="asr,slu",
                  codec=str(tokenizer_dirs[0]), units=str(tokenizer_dirs[1]), cache_dir=str(tmp_path / "cache"))
    run = train(tiny_corpus, tmp_path / "run", TrainAlmConfig(steps=40, ctc_weight=0.5, **common), progress=False)
    ctc = [h["ctc_loss"] for h in run.history if "ctc_loss" in h]
    assert len(ctc) == 40 and np.mean(ctc[-5:]) < np.mean(ctc[:5]) - 3, ctc  # per transcript token
    valid = [h for h in run.history if "valid_loss" in h]
    assert all("valid_ctc" in h for h in valid) and valid[-1]["valid_ctc"] < np.mean(ctc[:5]) - 3
    meta = json.loads((run.checkpoint / "training_state.json").read_text())
    assert meta["train_config"]["ctc_weight"] == 0.5 and meta["data"]["ctc_targets"]
    # without the weight nothing of it runs
    plain = train(tiny_corpus, tmp_path / "plain", TrainAlmConfig(steps=2, **common), progress=False)
    assert not any("ctc_loss" in h or "valid_ctc" in h for h in plain.history)
    with pytest.raises(ValueError, match="ctc_weight"):
        TrainAlmConfig(ctc_weight=-1.0).validate()
