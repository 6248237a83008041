""""Copy, then spell" ASR targets (``AlmConfig.asr_word_phones``): the word-phone lexicon agrees with espeak-ng word
by word, spelled targets read back to the transcript, decoding may write phones only where the format puts them,
and a debug model learns to read with them. Spelled TTS prompts (``AlmConfig.tts_word_phones``): the same
spelling in the prompt, and ``synthesize`` phonemizes the user's text for such a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2BertModel

from alm.config import AlmConfig, alm_debug
from alm.generation import MARKERS, generate_for_task, max_new_tokens_for
from alm.model import AlmForCausalLM
from alm.prompts import (
    Example,
    allowed_next,
    asr_example,
    asr_prompt,
    parse_output,
    spelled_text,
    tts_example,
    tts_prompt,
)
from alm.vocab import Vocabulary, VocabularyError, train_text_tokenizer
from codec.units import UnitConfig, UnitTokenizer, conformer_arch, small_conformer_config
from codec.word_phones import WordPhones, clean_word, phonemize
from training.alm_data import collate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PHONES = ["<blank>", "|", *"abdefgiklmnoprstuvwzðŋɐɑɔəɛɜɡɪɹʃʊʌʒθᵻːɾæ"]


def _phone_units() -> UnitTokenizer:
    cfg = small_conformer_config(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, conv_kernel=3)
    return UnitTokenizer(UnitConfig(kind="phone", num_units=len(PHONES), feature_dim=16, feature_layer=1,
                                    conformer=conformer_arch(cfg), phones=PHONES), conformer=Wav2Vec2BertModel(cfg))


def _vocab(texts: list[str]) -> Vocabulary:
    return Vocabulary(train_text_tokenizer(texts * 5, vocab_size=300), num_units=len(PHONES), num_codebooks=1,
                      cardinality=8)


def test_lexicon_is_espeak_word_by_word_and_cached(tmp_path) -> None:
    units = _phone_units()
    sentences = [("en", "...The big dog, in the well-known house!"), ("es", "¿Dónde está la mesa?"), ("en", "- -")]
    lexicon = WordPhones(units, cache=tmp_path / "words.json")
    lexicon.add(sentences, progress=False)
    index = {p: i for i, p in enumerate(PHONES)}
    for lang, text in sentences:
        words = lexicon(lang, text)
        assert len(words) == len(text.split())
        for word, ids in zip(text.split(), words):
            alone = [index[p] for p in phonemize(clean_word(word), lang) if p in index and p != "|"] \
                if clean_word(word) else []
            assert ids == alone, word  # the batched espeak-ng call gives each word's own phones
    assert lexicon("en", "- -") == [[], []]  # punctuation alone has no phones
    assert PHONES.index("|") not in sum(lexicon(*sentences[0]), [])  # word-internal spaces leave no separator
    assert clean_word("well-known") == "well known" and clean_word("¿Dónde") == "Dónde" and clean_word("...") == ""
    again = WordPhones(units, cache=tmp_path / "words.json")  # read back from the cache, no espeak-ng
    assert again("es", sentences[1][1]) == lexicon("es", sentences[1][1])
    with pytest.raises(KeyError, match="zebra"):
        again("en", "zebra")
    from training.train_units import fit_mfcc_units

    with pytest.raises(ValueError, match="phone"):
        WordPhones(fit_mfcc_units([np.random.default_rng(0).standard_normal(16000).astype(np.float32)] * 2,
                                  n_clusters=4, seed=0))


def test_spelled_target_reads_back_to_the_transcript() -> None:
    text = "the big  dog, in the house."
    vocab = _vocab([text, "la mesa"])
    phones = [[5, 6], [7, 8, 9], [10], [], [11, 12], [13]]  # one word without phones
    ex = asr_example(vocab, "en", [0, 3, 0, 4], text, word_phones=phones)
    target = ex.input_ids[ex.prompt_len:]
    assert target[0] == vocab.token_id("<text>") and target[-2:] == [vocab.token_id("</text>"), vocab.eos_id]
    body = target[1:-2]
    assert body == spelled_text(vocab, text, phones)
    assert vocab.ids_to_units([t for t in body if t in vocab.units]) == sum(phones, [])
    assert body[:2] == vocab.units_to_ids([5, 6]) and body[2] in vocab.text  # phones, then the word
    assert parse_output(vocab, "asr", target).text == "the big dog, in the house."  # units dropped
    assert [t for t in body if t in vocab.text] == vocab.encode_text("the big dog, in the house.")
    plain = asr_example(vocab, "en", [0, 3, 0, 4], text)
    assert not any(t in vocab.units for t in plain.input_ids[plain.prompt_len:])
    with pytest.raises(VocabularyError, match="5 phone sequences for 6 words"):
        spelled_text(vocab, text, phones[:5])


def test_decoding_allows_phones_only_inside_spelled_asr_text() -> None:
    vocab = _vocab(["the big dog"])
    opened = [vocab.token_id("<text>")]
    assert vocab.units not in allowed_next(vocab, "asr", opened)
    assert vocab.units in allowed_next(vocab, "asr", opened, asr_units=True)
    assert vocab.units not in allowed_next(vocab, "slu", opened, asr_units=True)  # SLU's text stays text
    assert allowed_next(vocab, "asr", [], asr_units=True) == allowed_next(vocab, "asr", [])  # <text> first
    assert max_new_tokens_for("asr", 10, asr_phones=True) - MARKERS == 2 * (max_new_tokens_for("asr", 10) - MARKERS)
    assert max_new_tokens_for("slu", 10, asr_phones=True) == max_new_tokens_for("slu", 10)  # phones are ASR's only
    closed = [*opened, vocab.token_id("</text>")]
    assert allowed_next(vocab, "asr", closed, asr_units=True) == allowed_next(vocab, "asr", closed)  # then <eos>


def test_debug_model_learns_to_read_with_spelled_targets(tmp_path) -> None:
    """Words of distinct phones in random orders: a debug decoder trained on spelled targets transcribes word
    orders it never saw, and its greedy output (phones allowed by the model's config) reads back as text."""
    words = {"sun": [5, 6], "moon": [7, 8, 9], "star": [10, 11], "sky": [12, 13, 14]}
    rng = np.random.default_rng(0)
    names = list(words)
    orders = [tuple(rng.permutation(names)[:3]) for _ in range(400)]
    unseen = ("sky", "sun", "moon")
    train = sorted({o for o in orders if o != unseen})
    vocab = _vocab([" ".join(o) for o in train])
    torch.manual_seed(0)
    model = AlmForCausalLM(alm_debug(vocab, asr_word_phones=True))
    assert AlmConfig.from_dict(model.config.to_dict()).asr_word_phones

    def example(order: tuple[str, ...]) -> Example:
        units = [u for w in order for u in (0, *words[w])] + [0]
        return asr_example(vocab, "en", units, " ".join(order), word_phones=[words[w] for w in order])

    batch = collate([example(o) for o in train], vocab.pad_id).model_inputs()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    units = [u for w in unseen for u in (0, *words[w])] + [0]
    new = generate_for_task(model, vocab, "asr", asr_prompt(vocab, "en", units), strategy="greedy")
    assert any(t in vocab.units for t in new)  # it writes the phones (the config allows them) ...
    assert parse_output(vocab, "asr", new).text == "sky sun moon"  # ... and the text it reads is right


def test_tts_prompt_spells_the_text_and_keeps_the_target() -> None:
    text = "the big dog"
    vocab = _vocab([text])
    phones = [[5, 6], [7, 8, 9], [10]]
    codes = np.arange(6).reshape(1, 6) % 8
    spelled = tts_example(vocab, "en", text, None, codes, word_phones=phones)
    plain = tts_example(vocab, "en", text, None, codes)
    prompt = spelled.input_ids[: spelled.prompt_len]
    i, j = prompt.index(vocab.token_id("<text>")), prompt.index(vocab.token_id("</text>"))
    assert prompt[i + 1: j] == spelled_text(vocab, text, phones)  # each word's phones, then the word
    assert prompt[:i] == plain.input_ids[:i]  # <tts> <en>
    assert spelled.input_ids[spelled.prompt_len:] == plain.input_ids[plain.prompt_len:]  # the same audio target
    assert tts_prompt(vocab, "en", text, word_phones=phones) == prompt


def test_synthesize_spells_the_text_for_a_model_trained_so(tmp_path) -> None:
    from alm import load, save_checkpoint
    from codec.neural import CodecConfig, NeuralCodec

    units = _phone_units()
    vocab = _vocab(["the big dog", "la mesa"])
    codec = NeuralCodec(CodecConfig(n_filters=4, dimension=16, num_codebooks=1, cardinality=8)).eval()
    torch.manual_seed(0)
    model = AlmForCausalLM(alm_debug(vocab, tts_word_phones=True, voice_seconds=0.5)).eval()
    m = load(save_checkpoint(tmp_path / "ckpt", model, vocab, codec, units))
    assert m.model.config.tts_word_phones
    lexicon = WordPhones(units)
    for lang, text in (("en", "the big dog"), ("es", "la mesa")):
        lexicon.add([(lang, text)], progress=False)
        prompt = m.prepare("tts", text, language=lang).candidates[lang]
        i, j = prompt.index(vocab.token_id("<text>")), prompt.index(vocab.token_id("</text>"))
        assert prompt[i + 1: j] == spelled_text(vocab, text, lexicon(lang, text))
        assert any(t in vocab.units for t in prompt[i + 1: j])
    out = m.synthesize("the big dog", max_new_tokens=8)
    assert out.sample_rate == 16000 and out.audio.ndim == 1
