"""The shared vocabulary and the task prompts: ranges, round trips, persistence, labels and the output grammar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alm.prompts import (
    IGNORE_INDEX,
    VOICE_PROMPT_FRAMES,
    Example,
    allowed_next,
    asr_example,
    asr_prompt,
    continue_example,
    continue_prompt,
    parse_output,
    s2st_example,
    s2st_prompt,
    slu_example,
    slu_prompt,
    task_of,
    tts_example,
    tts_prompt,
)
from alm.vocab import SPECIAL_TOKENS, TokenRange, Vocabulary, VocabularyError, train_text_tokenizer
from training.data.slu import format_target, parse_target

SENTENCES = [
    "the quick brown fox jumps over the lazy dog", "set an alarm for seven thirty in the morning",
    "el rápido zorro marrón salta sobre el perro perezoso", "¿dónde está la estación de tren?",
    "play some jazz by Miles Davis", "pon un temporizador de cinco minutos", "good morning, how are you?",
    "buenos días, ¿cómo estás?", "set_alarm | time = seven thirty", "play_music | genre = jazz",
] * 5
K, CARD, UNITS = 4, 32, 20


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(train_text_tokenizer(SENTENCES, vocab_size=400), num_units=UNITS, num_codebooks=K,
                      cardinality=CARD)


def _codes(k: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, CARD, (k, frames), generator=torch.Generator().manual_seed(seed))


# --- vocabulary ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pad_to", [1, 64])
def test_ranges_are_disjoint_and_cover_the_vocabulary(vocab: Vocabulary, pad_to: int) -> None:
    v = Vocabulary(vocab.tokenizer, num_units=UNITS, num_codebooks=K, cardinality=CARD, pad_to_multiple_of=pad_to)
    spans = sorted(v.ranges.values(), key=lambda r: r.start)
    assert spans[0].start == 0 and spans[-1].end == v.size
    assert all(a.end == b.start for a, b in zip(spans, spans[1:]))  # contiguous, so disjoint and covering
    assert all(len(r) > 0 for r in spans)
    assert v.size % pad_to == 0
    assert list(v.ranges)[:3] == ["special", "text", "units"]
    assert [v.describe(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)
    assert len(v.codec) == K * CARD and v.codebook(K - 1).end == v.codec.end


def test_special_ids(vocab: Vocabulary) -> None:
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2)
    assert vocab.token_id("<asr>") == vocab.task_id("asr") and vocab.lang_id("es") == vocab.token_id("<es>")
    with pytest.raises(VocabularyError, match="unsupported language"):
        vocab.lang_id("fr")
    with pytest.raises(VocabularyError, match="unknown task"):
        vocab.task_id("dance")


@pytest.mark.parametrize("text", ["the quick brown fox", "¿Dónde está el niño? ¡Olé!", "set_alarm | time = noon",
                                  "unseen wörds & symbols 123"])
def test_text_round_trip(vocab: Vocabulary, text: str) -> None:
    ids = vocab.encode_text(text)
    assert ids and all(i in vocab.text for i in ids)
    assert vocab.decode_text(ids) == text
    mixed = [vocab.token_id("<text>"), *ids[:2], vocab.units.start, *ids[2:], vocab.codec.start, vocab.eos_id]
    assert vocab.decode_text(mixed) == text  # non-text ids are skipped


def test_units_round_trip(vocab: Vocabulary) -> None:
    units = [0, 5, 5, UNITS - 1, 3]
    ids = vocab.units_to_ids(torch.tensor(units))
    assert all(i in vocab.units for i in ids)
    assert vocab.ids_to_units(ids) == units
    with pytest.raises(VocabularyError, match="out of range"):
        vocab.units_to_ids([UNITS])
    with pytest.raises(VocabularyError, match="outside the unit range"):
        vocab.ids_to_units([vocab.text.start])


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_codes_round_trip(vocab: Vocabulary, k: int) -> None:
    codes = _codes(k, 7, seed=k)
    ids = vocab.codes_to_ids(codes)
    assert len(ids) == 7 * k
    for pos, i in enumerate(ids):  # frame-major, coarse to fine, each codebook in its own range
        frame, cb = divmod(pos, k)
        assert i == vocab.codebook(cb).start + int(codes[cb, frame])
    assert torch.equal(vocab.ids_to_codes(ids, num_codebooks=k), codes)
    assert torch.equal(vocab.ids_to_codes(ids[: 5 * k + k - 1], num_codebooks=k), codes[:, :5])  # partial frame
    assert vocab.ids_to_codes([], num_codebooks=k).shape == (k, 0)


def test_codes_errors(vocab: Vocabulary) -> None:
    ids = vocab.codes_to_ids(_codes(K, 3))
    with pytest.raises(VocabularyError, match="position 1"):
        vocab.ids_to_codes([ids[0], ids[0]] + ids[2:])  # codebook 0's id where codebook 1 belongs
    with pytest.raises(VocabularyError, match="out of range"):
        vocab.codes_to_ids(torch.full((2, 3), CARD))
    with pytest.raises(VocabularyError, match="codebooks"):
        vocab.codes_to_ids(_codes(K + 1, 3))
    with pytest.raises(VocabularyError, match=r"\[K, F\]"):
        vocab.codes_to_ids(_codes(K, 3)[None])


def test_layout_save_load(vocab: Vocabulary, tmp_path: Path) -> None:
    vocab.save(tmp_path / "v")
    back = Vocabulary.load(tmp_path / "v")
    assert back.to_dict() == vocab.to_dict() and back.ranges == vocab.ranges
    assert back.encode_text("¿dónde está?") == vocab.encode_text("¿dónde está?")
    assert json.loads(json.dumps(vocab.to_dict())) == vocab.to_dict()
    # a checkpoint holds the layout in config.json instead
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "tokenizer.json").write_text((tmp_path / "v" / "tokenizer.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({"vocab_layout": vocab.to_dict()}))
    assert Vocabulary.load(ckpt).to_dict() == vocab.to_dict()
    layout_only = Vocabulary.from_dict(vocab.to_dict())
    assert layout_only.size == vocab.size
    with pytest.raises(VocabularyError, match="layout alone"):
        layout_only.encode_text("hi")
    with pytest.raises(VocabularyError, match="version"):
        Vocabulary.from_dict({**vocab.to_dict(), "layout_version": 99})
    with pytest.raises(VocabularyError, match="tokenizer has"):
        Vocabulary.from_dict({**vocab.to_dict(), "text_vocab_size": 7}, vocab.tokenizer)


# --- prompts -------------------------------------------------------------------------------------------------
def _examples(vocab: Vocabulary) -> dict[str, tuple[Example, list[int]]]:
    units = [3, 3, 7, 1, 0, 19]
    voice, target = _codes(K, 4, 1), _codes(K, 5, 2)
    slu_text = format_target("set_alarm", {"time": "seven thirty"})
    return {
        "asr": (asr_example(vocab, "en", units, "good morning"), asr_prompt(vocab, "en", units)),
        "tts": (tts_example(vocab, "es", "buenos días", voice, target), tts_prompt(vocab, "es", "buenos días", voice)),
        "s2st": (s2st_example(vocab, "es", "en", units, voice, "good morning", target),
                 s2st_prompt(vocab, "es", "en", units, voice)),
        "s2st_audio_only": (s2st_example(vocab, "es", "en", units, voice, "good morning", target, with_text=False),
                            s2st_prompt(vocab, "es", "en", units, voice)),
        "slu": (slu_example(vocab, "en", units, slu_text), slu_prompt(vocab, "en", units)),
        "continue": (continue_example(vocab, voice, target), continue_prompt(vocab, voice)),
    }


def test_labels_are_ignored_exactly_on_the_prompt(vocab: Vocabulary) -> None:
    for name, (ex, prompt) in _examples(vocab).items():
        assert ex.input_ids[: ex.prompt_len] == prompt, name
        assert ex.labels[: ex.prompt_len] == [IGNORE_INDEX] * ex.prompt_len, name
        assert ex.labels[ex.prompt_len:] == ex.input_ids[ex.prompt_len:], name
        assert IGNORE_INDEX not in ex.labels[ex.prompt_len:] and ex.input_ids[-1] == vocab.eos_id, name
        assert ex.loss_weights is None and len(ex.labels) == len(ex.input_ids)
        assert task_of(vocab, [vocab.pad_id, vocab.pad_id, *prompt]) == name.split("_")[0]


def test_prompt_structure(vocab: Vocabulary) -> None:
    ex = _examples(vocab)
    t = vocab.token_id
    asr = ex["asr"][0]
    assert asr.input_ids[:3] == [t("<asr>"), t("<en>"), t("<units>")]
    assert asr.input_ids[asr.prompt_len - 1] == t("</units>") and asr.input_ids[asr.prompt_len] == t("<text>")
    assert vocab.decode_text(asr.input_ids[asr.prompt_len:]) == "good morning"
    tts = ex["tts"][0]
    assert tts.input_ids[:3] == [t("<tts>"), t("<es>"), t("<text>")] and tts.input_ids[tts.prompt_len - 1] == t(
        "</voice>")
    assert tts.input_ids[tts.prompt_len] == t("<audio>") and tts.input_ids[-2:] == [t("</audio>"), vocab.eos_id]
    s2st = ex["s2st"][0]
    assert s2st.input_ids[:4] == [t("<s2st>"), t("<es>"), t("<en>"), t("<units>")]
    assert s2st.input_ids[s2st.prompt_len] == t("<text>")
    assert ex["s2st_audio_only"][0].input_ids[s2st.prompt_len] == t("<audio>")
    cont = ex["continue"][0]
    assert cont.input_ids[:2] == [t("<continue>"), t("<audio>")] and cont.input_ids[cont.prompt_len] in vocab.codec


def test_voice_prompt_is_cut_to_three_seconds(vocab: Vocabulary) -> None:
    long_voice = _codes(K, VOICE_PROMPT_FRAMES + 40)
    p = tts_prompt(vocab, "en", "hi", long_voice)
    assert sum(i in vocab.codec for i in p) == VOICE_PROMPT_FRAMES * K
    assert len(tts_prompt(vocab, "en", "hi", None)) == len(tts_prompt(vocab, "en", "hi", long_voice[:, :0]))
    with pytest.raises(VocabularyError, match="same K"):
        tts_example(vocab, "en", "hi", _codes(2, 3), _codes(3, 3))


def test_prompt_weight_scores_the_prompt_lightly(vocab: Vocabulary) -> None:
    ex = asr_example(vocab, "en", [1, 2], "hello", prompt_weight=0.1)
    assert ex.labels == ex.input_ids
    assert ex.loss_weights == [0.1] * ex.prompt_len + [1.0] * (len(ex.input_ids) - ex.prompt_len)


def test_grammar_accepts_every_target_and_parses_it_back(vocab: Vocabulary) -> None:
    for name, (ex, _) in _examples(vocab).items():
        task = name.split("_")[0]
        target = ex.input_ids[ex.prompt_len:]
        for t in range(len(target)):
            assert any(target[t] in r for r in allowed_next(vocab, task, target[:t])), (name, t)
        out = parse_output(vocab, task, target)
        assert out.complete, name
    slu = _examples(vocab)["slu"][0]
    assert parse_target(parse_output(vocab, "slu", slu.input_ids[slu.prompt_len:]).text) == (
        "set_alarm", {"time": "seven thirty"})
    tts = _examples(vocab)["tts"][0]
    assert torch.equal(parse_output(vocab, "tts", tts.input_ids[tts.prompt_len:]).codes, _codes(K, 5, 2))


def test_grammar_rules(vocab: Vocabulary) -> None:
    one = lambda name: TokenRange(vocab.token_id(name), vocab.token_id(name) + 1)  # noqa: E731
    text_id, c0 = vocab.text.start, vocab.codebook(0).start
    assert allowed_next(vocab, "asr", []) == [one("<text>")]
    assert allowed_next(vocab, "slu", [one("<text>").start, text_id]) == [vocab.text, one("</text>")]
    assert allowed_next(vocab, "asr", [one("<text>").start, one("</text>").start]) == [one("<eos>")]
    assert allowed_next(vocab, "tts", []) == [one("<audio>")]
    assert allowed_next(vocab, "s2st", []) == [one("<text>"), one("<audio>")]
    assert allowed_next(vocab, "s2st", [], s2st_text=False) == [one("<audio>")]
    # audio: codebook turn by position, </audio> only at a frame boundary, then <eos>
    frame = vocab.codes_to_ids(_codes(K, 1))
    assert allowed_next(vocab, "continue", []) == [vocab.codebook(0)]
    assert allowed_next(vocab, "continue", frame[:2]) == [vocab.codebook(2)]
    assert allowed_next(vocab, "continue", frame) == [vocab.codebook(0), one("</audio>")]
    assert allowed_next(vocab, "tts", [one("<audio>").start, *frame, one("</audio>").start]) == [one("<eos>")]
    # a budget closes the audio in time: after one frame with 2 ids left only </audio> fits
    assert allowed_next(vocab, "continue", frame, remaining=2) == [one("</audio>")]
    assert allowed_next(vocab, "continue", [c0], remaining=K + 1) == [vocab.codebook(1)]
    assert allowed_next(vocab, "asr", [one("<text>").start], remaining=2) == [one("</text>")]
