"""Audio frames as "unit, then codes" (``AlmConfig.audio_units``): the stream's layout, its grammar and budget,
and the user's surface on a debug checkpoint that writes and reads such frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alm
from alm import AlmForCausalLM, Vocabulary, alm_debug, save_checkpoint, train_text_tokenizer
from alm.generation import MARKERS, max_new_tokens_for
from alm.prompts import (
    allowed_next,
    audio_ids,
    continue_example,
    parse_output,
    s2st_example,
    tts_example,
)
from alm.vocab import VocabularyError

SR, HOP = 16000, 320
K, CARD, UNITS = 2, 16, 6


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    tok = train_text_tokenizer(["good morning", "hello world", "buenos días", "hola mundo"] * 5, vocab_size=300)
    return Vocabulary(tok, num_units=UNITS, num_codebooks=K, cardinality=CARD)


def _stream(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, CARD, (K, frames)), rng.integers(0, UNITS, frames)


def test_each_frame_is_its_unit_then_its_codes(vocab: Vocabulary) -> None:
    codes, units = _stream(0, 7)
    ids = audio_ids(vocab, codes, units)
    assert len(ids) == 7 * (K + 1)
    frames = np.array(ids).reshape(7, K + 1)
    assert vocab.ids_to_units(frames[:, 0].tolist()) == units.tolist()
    assert frames[:, 1:].reshape(-1).tolist() == vocab.codes_to_ids(codes)
    assert audio_ids(vocab, codes) == vocab.codes_to_ids(codes)  # no units: the plain codec stream
    with pytest.raises(VocabularyError, match="one unit per frame"):
        audio_ids(vocab, codes, units[:-1])


def _accepted(vocab: Vocabulary, task: str, target: list[int], **kw: object) -> bool:
    """Every id of ``target`` lies in a range the grammar allows after the ids before it."""
    return all(any(i in r for r in allowed_next(vocab, task, target[:n], num_codebooks=K, **kw))
               for n, i in enumerate(target))


@pytest.mark.parametrize("task", ["tts", "s2st", "continue"])
def test_training_targets_follow_the_grammar_and_read_back(vocab: Vocabulary, task: str) -> None:
    codes, units = _stream(1, 9)
    voice = _stream(2, 4)[0]
    if task == "tts":
        ex = tts_example(vocab, "en", "hello world", voice, codes, target_units=units)
    elif task == "s2st":
        ex = s2st_example(vocab, "es", "en", [1, 2, 3], voice, "hello world", codes, target_units=units)
    else:
        head, head_units = _stream(3, 5)
        ex = continue_example(vocab, head, codes, prompt_units=head_units, target_units=units)
        prompt_audio = ex.input_ids[2: ex.prompt_len]  # <continue> <audio> u c c u c c ...
        assert prompt_audio == audio_ids(vocab, head, head_units)
    target = ex.input_ids[ex.prompt_len:]
    assert _accepted(vocab, task, target, audio_units=True)
    assert not _accepted(vocab, task, target)  # a unit where a codec id must be
    out = parse_output(vocab, task, target, K)
    assert out.complete and np.array_equal(out.codes.numpy(), codes)
    if task == "s2st":
        assert out.text == "hello world"
    voice_ids = ex.input_ids[ex.input_ids.index(vocab.token_id("<voice>")) + 1:
                             ex.input_ids.index(vocab.token_id("</voice>"))] if task != "continue" else []
    assert all(i in vocab.codec for i in voice_ids)  # voice prompts stay codec only


def test_continuation_needs_units_on_both_sides(vocab: Vocabulary) -> None:
    codes, units = _stream(4, 4)
    with pytest.raises(VocabularyError, match="both"):
        continue_example(vocab, codes, codes, prompt_units=units)


@pytest.mark.parametrize("budget", [3, 8, 11, 12, 20, 41])
def test_any_budget_ends_on_a_whole_frame(vocab: Vocabulary, budget: int) -> None:
    # a random walk through the allowed ids under a budget: the audio always closes after whole u c c frames
    rng = np.random.default_rng(budget)
    for task in ("tts", "s2st", "continue"):
        out: list[int] = []
        while vocab.eos_id not in out and len(out) < budget:
            ranges = allowed_next(vocab, task, out, num_codebooks=K, remaining=budget - len(out), audio_units=True)
            r = ranges[rng.integers(len(ranges))]
            out.append(int(rng.integers(r.start, r.end)))
        audio = [i for i in out if i in vocab.codec or i in vocab.units]
        if budget >= 2 * (K + 1) + 4:  # room for a text segment and a frame: the grammar keeps the budget
            assert out[-1] == vocab.eos_id and len(out) <= budget, (task, out)
        if out[-1] == vocab.eos_id:
            assert len(audio) % (K + 1) == 0 and len(audio) >= K + 1
            assert parse_output(vocab, task, out, K).codes.shape == (K, len(audio) // (K + 1))


def test_budget_counts_the_unit_of_each_frame() -> None:
    for task, n in (("tts", 5), ("s2st", 12), ("continue", 30)):
        plain = max_new_tokens_for(task, n, K)
        with_units = max_new_tokens_for(task, n, K, audio_units=True)
        text = max_new_tokens_for("asr", n) - MARKERS if task == "s2st" else 0
        markers = (2 if task == "s2st" else 1) * MARKERS
        assert (with_units - text - markers) * K == (plain - text - markers) * (K + 1)
    assert max_new_tokens_for("asr", 10, K, audio_units=True) == max_new_tokens_for("asr", 10, K)


def test_debug_checkpoint_writes_and_reads_unit_frames(vocab: Vocabulary, tmp_path) -> None:
    from codec.neural import CodecConfig, NeuralCodec
    from training.train_units import fit_mfcc_units

    torch.manual_seed(0)
    t = np.arange(SR) / SR
    wav = (0.3 * np.sin(2 * np.pi * 200 * (t + 0.02 * np.sin(2 * np.pi * 4 * t)))
           + 0.03 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    units = fit_mfcc_units([wav], n_clusters=UNITS, seed=0)
    codec = NeuralCodec(CodecConfig(n_filters=4, dimension=16, num_codebooks=K, cardinality=CARD))
    codec.train()
    codec(torch.from_numpy(wav[None]))  # one training-mode pass initializes the codebooks
    codec.eval()
    model = AlmForCausalLM(alm_debug(vocab, audio_units=True, voice_seconds=0.5)).eval()
    m = alm.load(save_checkpoint(tmp_path / "ckpt", model, vocab, codec, units))
    assert m.model.config.audio_units

    job = m.prepare("continue", wav[: SR // 2], seconds=0.2)
    prompt = job.candidates[None]
    frames = np.array(prompt[2:]).reshape(-1, K + 1)  # <continue> <audio>, then u c c per frame
    assert all(i in vocab.units for i in frames[:, 0]) and all(i in vocab.codec for i in frames[:, 1:].ravel())
    assert job.max_new_tokens == 10 * (K + 1) + 2

    c = m.continue_speech(wav[: SR // 2], seconds=0.2)
    assert len(c.audio) == 10 * HOP  # exactly 10 frames: the units took their own ids, not frames
    s = m.synthesize("hello world", language="en", voice=wav, max_new_tokens=7 * (K + 1) + 3)
    assert 0 < len(s.audio) <= 7 * HOP and len(s.audio) % HOP == 0
    raw = m.generate(m.prepare("tts", "hola", language="es").candidates["es"], max_new_tokens=4 * (K + 1) + 3)
    body = raw[raw.index(vocab.token_id("<audio>")) + 1: raw.index(vocab.token_id("</audio>"))]
    assert len(body) % (K + 1) == 0 and all(i in vocab.units for i in body[:: K + 1])
