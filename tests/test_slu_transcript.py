"""SLU through the words (``AlmConfig.slu_transcript``): the target writes the transcript, ``<slu>``, then the
intent and slots; decoding keeps that order (no close before ``<slu>``, phones only among the words of a spelled
model, a budget that always reaches the understanding); the output reads back as both parts; and a debug model
learns to understand commands in word orders it never saw, through ``understand``'s parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alm.api import parse_slu
from alm.config import AlmConfig, alm_debug
from alm.generation import MARKERS, generate_for_task, max_new_tokens_for
from alm.model import AlmForCausalLM
from alm.prompts import allowed_next, parse_output, slu_example, slu_prompt, spelled_text
from alm.vocab import TokenRange, Vocabulary, VocabularyError, train_text_tokenizer
from training.alm_data import collate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NUM_UNITS = 16


def _vocab(texts: list[str]) -> Vocabulary:
    return Vocabulary(train_text_tokenizer(texts * 5, vocab_size=300), num_units=NUM_UNITS, num_codebooks=1,
                      cardinality=8)


def _one(vocab: Vocabulary, name: str) -> TokenRange:
    return TokenRange(vocab.token_id(name), vocab.token_id(name) + 1)


def test_target_is_words_then_understanding_and_reads_back() -> None:
    vocab = _vocab(["play jazz", "play_music | genre = jazz"])
    ex = slu_example(vocab, "en", [1, 2, 3], "play_music | genre = jazz", transcript="play jazz")
    target = ex.input_ids[ex.prompt_len:]
    sep = vocab.token_id("<slu>")
    assert target[0] == vocab.token_id("<text>") and target[-2:] == [vocab.token_id("</text>"), vocab.eos_id]
    assert target[1: target.index(sep)] == vocab.encode_text("play jazz")
    assert target[target.index(sep) + 1: -2] == vocab.encode_text("play_music | genre = jazz")
    assert ex.input_ids[: ex.prompt_len] == slu_prompt(vocab, "en", [1, 2, 3])  # the prompt does not change
    out = parse_output(vocab, "slu", target)
    assert (out.text, out.transcript, out.complete) == ("play_music | genre = jazz", "play jazz", True)
    assert parse_slu(out.text) == ("play_music", {"genre": "jazz"})
    spelled = slu_example(vocab, "en", [1, 2, 3], "play_music | genre = jazz", transcript="play jazz",
                          word_phones=[[4, 5], [6]])
    body = spelled.input_ids[spelled.prompt_len + 1: -2]
    assert body[: body.index(sep)] == spelled_text(vocab, "play jazz", [[4, 5], [6]])
    assert parse_output(vocab, "slu", spelled.input_ids[spelled.prompt_len:]).transcript == "play jazz"
    plain = slu_example(vocab, "en", [1, 2, 3], "play_music | genre = jazz")
    assert sep not in plain.input_ids[plain.prompt_len:]
    assert parse_output(vocab, "slu", plain.input_ids[plain.prompt_len:]).transcript is None
    with pytest.raises(VocabularyError, match="give the transcript"):
        slu_example(vocab, "en", [1], "stop_music", word_phones=[[4]])


def test_decoding_writes_the_words_then_slu_then_the_understanding() -> None:
    vocab = _vocab(["play jazz"])
    opened = [vocab.token_id("<text>")]
    words = [*opened, *vocab.encode_text("play")]
    after = [*words, vocab.token_id("<slu>")]
    for out in (opened, words):
        ranges = allowed_next(vocab, "slu", out, slu_transcript=True)
        assert _one(vocab, "<slu>") in ranges and vocab.text in ranges
        assert _one(vocab, "</text>") not in ranges and vocab.units not in ranges  # no close before the <slu>
        assert vocab.units in allowed_next(vocab, "slu", out, slu_transcript=True, asr_units=True)
    ranges = allowed_next(vocab, "slu", after, slu_transcript=True, asr_units=True)
    assert ranges == allowed_next(vocab, "slu", opened)  # then plain SLU text: no second <slu>, no phones
    assert _one(vocab, "<slu>") not in allowed_next(vocab, "slu", opened)  # a plain model never writes one
    # a nearly spent budget forces the <slu>, then the close
    assert allowed_next(vocab, "slu", words, slu_transcript=True, remaining=3) == [_one(vocab, "<slu>")]
    assert allowed_next(vocab, "slu", after, slu_transcript=True, remaining=2) == [_one(vocab, "</text>")]
    plain, both = max_new_tokens_for("slu", 10), max_new_tokens_for("slu", 10, slu_transcript=True)
    spelled = max_new_tokens_for("slu", 10, asr_phones=True, slu_transcript=True)
    assert both == 2 * (plain - MARKERS) + MARKERS + 1 and spelled == 3 * (plain - MARKERS) + MARKERS + 1


def test_debug_model_understands_through_the_words() -> None:
    """Commands whose words each have their own unit: a debug decoder trained on transcript-first SLU targets (the
    words spelled, as the shipped model's) understands a command it never heard, writing its words, then the
    intent and the slot read from them."""
    verbs = {"play": ("play_music", "genre"), "stop": ("stop_music", None)}
    genres = ["jazz", "rock", "pop", "soul", "funk", "blues", "folk", "disco"]
    endings = ["now", "please", "today", "again"]
    unit_of = {w: i + 1 for i, w in enumerate(["play", "stop", *endings, *genres])}
    rng = np.random.default_rng(0)

    def command(verb: str, genre: str | None, ending: str) -> tuple[str, str]:
        intent, slot = verbs[verb]
        return " ".join([verb, *([genre] if genre else []), ending]), intent + (f" | {slot} = {genre}" if slot else "")

    items = {command("play", g, e) for g in genres for e in endings} | {command("stop", None, e) for e in endings}
    unseen = command("play", "soul", "please")
    train = sorted(items - {unseen})
    vocab = _vocab([t for pair in train for t in pair])
    torch.manual_seed(0)
    model = AlmForCausalLM(alm_debug(vocab, slu_transcript=True, asr_word_phones=True))
    assert AlmConfig.from_dict(model.config.to_dict()).slu_transcript

    def units(text: str) -> list[int]:
        return [u for w in text.split() for u in (0, unit_of[w])] + [0]

    examples = [slu_example(vocab, "en", units(t), target, transcript=t, word_phones=[[unit_of[w]] for w in t.split()])
                for t, target in train]
    batch = collate([examples[i] for i in rng.permutation(len(examples))], vocab.pad_id).model_inputs()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(250):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    new = generate_for_task(model, vocab, "slu", slu_prompt(vocab, "en", units(unseen[0])), strategy="greedy")
    out = parse_output(vocab, "slu", new)
    assert vocab.token_id("<slu>") in new and out.complete and any(i in vocab.units for i in new)
    assert out.transcript == unseen[0]
    assert parse_slu(out.text) == ("play_music", {"genre": "soul"})
