"""Property-based (hypothesis) tests of text handling on arbitrary Unicode: normalization, tokenization, prompts.

Inputs: any Unicode text (all planes and categories but lone surrogates), control and format characters, emoji
with ZWJ sequences and skin tones, right-to-left scripts with bidi controls, runs of combining marks, number-heavy
text (digits in several scripts, currency, percent, ordinals, separators), very long repetitions, and the empty
string. Properties:

* ``normalize_text`` / ``normalize_for_eval`` / ``is_speakable`` never raise on a ``str``; the spoken form is NFC,
  trimmed, single-spaced and has no digit left in any script.
* What round-trips through the shipped vocabulary (``alm/pretrained/default``, a byte-level BPE: every Unicode
  string is inside its alphabet, none needs ``<unk>``): for every ``str`` ``s`` without lone surrogates,
  ``decode_text(encode_text(s)) == N(s)``, less one leading space when ``N(s)`` starts with a space, where ``N`` is
  the tokenizer's NFC (Rust ``tokenizers``). ``N`` equals Python's ``unicodedata`` NFC on text whose characters
  were all assigned by Unicode 3.2 (Latin, Greek, Cyrillic, Hebrew, Arabic, CJK ...); the two disagree only on
  combining marks newer than the tokenizer's tables (hypothesis found U+10F82 OLD UYGHUR COMBINING DOT ABOVE,
  Unicode 14, which Python reorders and the tokenizer does not). The spoken form is NFC and never starts with a
  space, so ``decode_text(encode_text(normalize_text(s))) == normalize_text(s)`` exactly whenever its characters
  are in Unicode 3.2, and equals ``N`` of it always.
* ``decode_text`` of any integers reads only those in the text range; prompts and training examples built from
  any text stay inside the vocabulary's ranges, follow the output grammar and give the text back.

``ALM_FUZZ_SCALE=10`` multiplies every ``max_examples``; ``pytest --hypothesis-show-statistics`` counts them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import timedelta

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alm.checkpoint import DEFAULT_CHECKPOINT
from alm.prompts import allowed_next, asr_example, parse_output, s2st_example, slu_example, tts_example, tts_prompt
from alm.textnorm import LANGS, is_speakable, normalize_for_eval, normalize_text
from alm.vocab import Vocabulary, VocabularyError

SCALE = max(1, int(os.environ.get("ALM_FUZZ_SCALE", "1")))
DEADLINE = timedelta(seconds=20)  # flags a normalizer gone quadratic on long input; times nothing


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=DEADLINE, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.load(DEFAULT_CHECKPOINT)


# --------------------------------------------------------------------------------------------- strategies

EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇪🇸", "❤️", "🤷‍♀️", "🫠", "\u200d", "\ufe0f"]
BIDI = ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2069"]
NUMERIC = "0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９¹²½.,:-/$€£%ºª° stndrhKMBkgmh"
WORDS = ["Dr.", "Sr.", "Mr.", "etc.", "e.g.", "EE.UU.", "a.m.", "p.m.", "km/h", "°C", "March", "de", "the", "¿",
         "¡", "'", '"', "—", "…", "&", "+", "@", "#", "\t", "\n", "\r\n", "\u00a0", "\u3000"]

any_text = st.text(max_size=200)  # every Unicode category but surrogates
controls = st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn"]), max_size=50)
combining = st.text(st.characters(categories=["Mn", "Mc", "Me"]), max_size=30)
rtl = st.text(st.one_of(st.characters(min_codepoint=0x0590, max_codepoint=0x06FF), st.sampled_from(BIDI)),
              max_size=60)
emoji = st.lists(st.sampled_from(EMOJI), max_size=20).map("".join)
numeric = st.text(st.sampled_from(NUMERIC), max_size=80)
pieces = st.one_of(any_text, controls, combining, rtl, emoji, numeric, st.sampled_from(WORDS))
mixed = st.lists(pieces, max_size=8).map(" ".join) | st.lists(pieces, max_size=8).map("".join)
# a short piece repeated up to a few thousand times: long digit runs, long separator runs, long words
long_text = st.tuples(st.one_of(numeric, any_text, st.sampled_from(["1", "1.", "9,", "$1", "1 ", "á"])).filter(bool),
                      st.integers(100, 4000)).map(lambda t: (t[0] * t[1])[:20_000])
TEXT = st.one_of(st.just(""), any_text, controls, combining, rtl, emoji, numeric, mixed, long_text)
LANG = st.sampled_from(LANGS)


def strip_one_space(text: str) -> str:
    return text[1:] if text.startswith(" ") else text


def in_unicode_3_2(text: str) -> bool:
    """Every character was assigned by Unicode 3.2: Python's NFC and the tokenizer's agree on it."""
    return all(unicodedata.ucd_3_2_0.category(c) != "Cn" for c in text)


# --------------------------------------------------------------------------------------------- normalization


@fuzz_settings(250)
@given(text=TEXT, lang=LANG)
def test_normalization_never_crashes_and_gives_a_clean_spoken_form(text: str, lang: str) -> None:
    spoken = normalize_text(text, lang)
    assert isinstance(spoken, str)
    assert spoken == spoken.strip() and not re.search(r"\s\s", spoken)
    assert unicodedata.is_normalized("NFC", spoken)
    assert not re.search(r"\d", spoken), f"digits left in the spoken form: {spoken[:200]!r}"
    ev = normalize_for_eval(text, lang)
    assert isinstance(ev, str) and ev == ev.strip() and not re.search(r"\s\s", ev)
    assert isinstance(is_speakable(spoken, lang), bool)


def test_normalization_rejects_non_text_and_unknown_languages() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        normalize_text(b"bytes", "en")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported language"):
        normalize_text("hola", "fr")


@pytest.mark.parametrize(
    ("text", "lang", "spoken"),
    [
        ("$1.2.3", "en", "one dollar and twenty cents.three"),  # raised ValueError: int("2.")
        ("1,2,3 €", "es", "un euro con veinte céntimos,tres"),
        ("4" * 30, "es", " ".join(["cuatro"] * 30)),  # num2words refuses Spanish numbers >= 10**27
        ("1" * 5000 + "st", "en", " ".join(["one"] * 5000)),  # int() refuses more than 4300 digits
        ("5" * 30 + "º", "es", " ".join(["cinco"] * 30)),
    ],
)
def test_numbers_too_long_or_malformed_for_num2words_are_still_read(text: str, lang: str, spoken: str) -> None:
    assert normalize_text(text, lang) == spoken


# --------------------------------------------------------------------------------------------- tokenization


@fuzz_settings(250)
@given(text=TEXT)
def test_text_round_trip_through_the_shipped_vocabulary(vocab: Vocabulary, text: str) -> None:
    ids = vocab.encode_text(text)
    assert all(i in vocab.text for i in ids)  # byte-level: nothing falls outside, no <unk>
    decoded = vocab.decode_text(ids)
    assert decoded == strip_one_space(vocab.tokenizer.normalizer.normalize_str(text))
    if in_unicode_3_2(text):
        assert decoded == strip_one_space(unicodedata.normalize("NFC", text))


@fuzz_settings(150)
@given(text=TEXT, lang=LANG)
def test_normalized_text_round_trips_exactly(vocab: Vocabulary, text: str, lang: str) -> None:
    spoken = normalize_text(text, lang)
    decoded = vocab.decode_text(vocab.encode_text(spoken))
    assert decoded == vocab.tokenizer.normalizer.normalize_str(spoken)
    if in_unicode_3_2(spoken):
        assert decoded == spoken


@fuzz_settings(150)
@given(ids=st.lists(st.one_of(st.integers(-(2**70), 2**70), st.integers(-5, 3300)), max_size=200))
def test_decode_reads_only_text_ids(vocab: Vocabulary, ids: list[int]) -> None:
    text_only = [i for i in ids if i in vocab.text]
    out = vocab.decode_text(ids)
    assert isinstance(out, str) and out == vocab.decode_text(text_only)
    assert vocab.decode_text(torch.tensor([i for i in ids if abs(i) < 2**62], dtype=torch.long)) == out
    for i in ids[:10]:
        try:
            assert isinstance(vocab.describe(i), str)
        except VocabularyError as e:
            assert str(i) in str(e)


def test_non_text_fails_with_a_named_problem(vocab: Vocabulary) -> None:
    with pytest.raises(VocabularyError, match=r"lone surrogate U\+D800 at position 2"):
        vocab.encode_text("ab\ud800c")
    with pytest.raises(VocabularyError, match="must be a str, got bytes"):
        vocab.encode_text(b"abc")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- prompts


@fuzz_settings(120)
@given(text=TEXT, lang=LANG, tgt=LANG, data=st.data())
def test_prompts_from_any_text_stay_inside_the_vocabulary(vocab: Vocabulary, text: str, lang: str, tgt: str,
                                                          data: st.DataObject) -> None:
    k = data.draw(st.integers(1, vocab.num_codebooks))
    codes = st.lists(st.integers(0, vocab.cardinality - 1), min_size=k, max_size=k)
    voice = torch.tensor(data.draw(st.lists(codes, min_size=1, max_size=20))).T  # [K, F]
    target = torch.tensor(data.draw(st.lists(codes, min_size=1, max_size=20))).T
    units = data.draw(st.lists(st.integers(0, vocab.num_units - 1), max_size=30))
    text_ids = vocab.encode_text(text)
    t = vocab.token_id

    prompt = tts_prompt(vocab, lang, text, voice)
    assert all(0 <= i < vocab.size for i in prompt)
    assert prompt[:3] == [vocab.task_id("tts"), vocab.lang_id(lang), t("<text>")]
    assert prompt[3: 3 + len(text_ids)] == text_ids and prompt[3 + len(text_ids)] == t("</text>")
    assert all(i in vocab.codec for i in prompt[5 + len(text_ids): -1])  # the voice codes

    examples = {
        "asr": asr_example(vocab, lang, units, text),
        "slu": slu_example(vocab, lang, units, text),
        "s2st": s2st_example(vocab, lang, tgt, units, voice, text, target),
        "tts": tts_example(vocab, lang, text, voice, target),
    }
    for task, ex in examples.items():
        assert all(0 <= i < vocab.size for i in ex.input_ids), task
        out_ids = ex.input_ids[ex.prompt_len:]
        # the target is one the constrained decoder could write (each check rescans the prefix: for a text of
        # thousands of tokens, the first and last 40 positions cover every segment boundary)
        positions = sorted({*range(min(40, len(out_ids))), *range(max(0, len(out_ids) - 40), len(out_ids))})
        for n in positions:
            assert any(out_ids[n] in r for r in allowed_next(vocab, task, out_ids[:n], num_codebooks=k)), (task, n)
        parsed = parse_output(vocab, task, out_ids, num_codebooks=k)
        assert parsed.complete, task
        if task != "tts":
            assert parsed.text == vocab.decode_text(text_ids), task
