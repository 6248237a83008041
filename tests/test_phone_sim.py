"""Text-only ASR examples from simulated phone units: the simulation looks like real phone units, and a builder
serves the items through the ordinary ASR prompt format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rapidfuzz.distance import Levenshtein
from transformers import Wav2Vec2BertModel

from codec.units import UnitConfig, UnitTokenizer, conformer_arch, small_conformer_config, without_blanks
from training.phone_sim import BLANK, PhoneSimulator, SimConfig

PHONES = ["<blank>", "a", "b", "|", "k", "s", "t", "o", "e", "l", "n", "m", "i", "ɾ", "ð", "ə", "ɡ", "ʊ", "p", "ɪ"]


def _phone_units() -> UnitTokenizer:
    cfg = small_conformer_config(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, conv_kernel=5)
    return UnitTokenizer(UnitConfig(kind="phone", num_units=len(PHONES), feature_dim=32, feature_layer=2,
                                    conformer=conformer_arch(cfg), phones=PHONES), conformer=Wav2Vec2BertModel(cfg))


def test_simulated_units_are_the_phones_with_blanks_and_noise(tmp_path) -> None:
    sim = PhoneSimulator(_phone_units(), cache=tmp_path / "phones.json")
    pairs = sim.phonemize([("es", "la mesa es bonita"), ("en", "the big dog")], progress=False)
    assert (tmp_path / "phones.json").is_file()
    again = PhoneSimulator(_phone_units(), cache=tmp_path / "phones.json")
    assert again.phonemize(list(pairs), progress=False) == pairs  # from the cache
    ids = pairs[("es", "la mesa es bonita")]
    assert all(0 < i < len(PHONES) for i in ids) and PHONES.index("|") in ids
    clean = PhoneSimulator(_phone_units(), config=SimConfig(blank_prob=1.0, sub_prob=0, del_prob=0, ins_prob=0))
    u = clean.simulate(ids, np.random.default_rng(0))
    assert [x for x in u.tolist() if x != BLANK] == ids  # a blank after every phone keeps doubled phones apart
    assert u[-1] == BLANK and np.all(u[1:] != u[:-1])  # collapsed
    rng = np.random.default_rng(1)
    errs = [Levenshtein.distance([x for x in sim.simulate(ids, rng).tolist() if x != BLANK], ids) / len(ids)
            for _ in range(300)]
    assert 0.08 < float(np.mean(errs)) < 0.3  # about a recognizer's phone error rate (0.16 by the defaults)
    with pytest.raises(ValueError, match="phone"):
        from training.train_units import fit_mfcc_units

        PhoneSimulator(fit_mfcc_units([np.random.default_rng(0).standard_normal(16000).astype(np.float32)] * 2,
                                      n_clusters=4, seed=0))


def test_builder_serves_simulated_asr_items(tmp_path) -> None:
    from alm.prompts import IGNORE_INDEX
    from alm.vocab import Vocabulary, train_text_tokenizer
    from training.alm_data import SIM_PREFIX, ExampleBuilder, ExampleOptions, TokenCache

    texts = ["la mesa es bonita", "the big dog"]
    vocab = Vocabulary(train_text_tokenizer(texts * 5, vocab_size=300), num_units=len(PHONES), num_codebooks=1,
                       cardinality=8)
    cache = TokenCache(tmp_path, "fp", {"codec": {"max_codebooks": 1, "cardinality": 8, "frame_rate": 50},
                                        "units": {"num_units": len(PHONES), "frame_rate": 50}}, {}, {}, {})
    builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=1))
    sim = PhoneSimulator(_phone_units())
    items = builder.add_simulated_asr(sim, sim.phonemize([("es", texts[0]), ("en", texts[1])], progress=False))
    assert set(items) == {"es", "en"} and all(i.startswith(SIM_PREFIX) for v in items.values() for i in v)
    a = builder.build("asr", items["es"][0], np.random.default_rng(0))
    b = builder.build("asr", items["es"][0], np.random.default_rng(1))
    target = [t for t in a.labels if t != IGNORE_INDEX]
    assert vocab.decode_text(target).strip() == texts[0]  # the transcript is the target
    units_a = [t for t in a.input_ids[: a.prompt_len] if t in vocab.units]
    assert len(units_a) > 5 and a.input_ids[: a.prompt_len] != b.input_ids[: b.prompt_len]  # fresh noise each time
    with pytest.raises(ValueError, match="ASR only"):
        builder.build("slu", items["es"][0], np.random.default_rng(0))
    assert torch.tensor(a.input_ids).max() < vocab.size


def test_builder_serves_simulated_slu_items(tmp_path) -> None:
    # text-only SLU items: simulated units of the command's phones in the prompt; the target is the SLU target,
    # after the transcript for an slu_transcript builder
    from alm.prompts import IGNORE_INDEX, parse_output
    from alm.vocab import Vocabulary, train_text_tokenizer
    from training.alm_data import SIM_SLU_PREFIX, ExampleBuilder, ExampleOptions, TokenCache

    text, target = "play some jazz", "play_music | genre = jazz"
    vocab = Vocabulary(train_text_tokenizer([text, target] * 5, vocab_size=300), num_units=len(PHONES),
                       num_codebooks=1, cardinality=8)
    cache = TokenCache(tmp_path, "fp", {"codec": {"max_codebooks": 1, "cardinality": 8, "frame_rate": 50},
                                        "units": {"num_units": len(PHONES), "frame_rate": 50}}, {}, {}, {})
    sim = PhoneSimulator(_phone_units())
    phones = sim.phonemize([("en", text)], progress=False)
    for words in (False, True):
        builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=1, slu_transcript=words))
        items = builder.add_simulated_slu(sim, {("en", text): (phones[("en", text)], target)})
        assert list(items) == ["en"] and items["en"][0].startswith(SIM_SLU_PREFIX)
        assert builder.simulated_texts() == [("en", text)]
        a = builder.build("slu", items["en"][0], np.random.default_rng(0))
        b = builder.build("slu", items["en"][0], np.random.default_rng(1))
        assert a.input_ids[0] == vocab.task_id("slu") and a.input_ids[: a.prompt_len] != b.input_ids[: b.prompt_len]
        assert len([t for t in a.input_ids[: a.prompt_len] if t in vocab.units]) > 5
        out = parse_output(vocab, "slu", [t for t in a.labels if t != IGNORE_INDEX])
        assert out.text == target and out.complete and out.transcript == (text if words else None)
        with pytest.raises(ValueError, match="SLU only"):
            builder.build("asr", items["en"][0], np.random.default_rng(0))


def test_blank_free_prompts_from_real_and_simulated_units(tmp_path) -> None:
    """``drop_unit_blanks``: the tokenizer, a builder's real and simulated ASR prompts and the model config agree
    on prompts without the CTC blank, and kinds without a blank refuse it."""
    from alm.config import AlmConfig, alm_debug
    from alm.vocab import Vocabulary, train_text_tokenizer
    from training.alm_data import ExampleBuilder, ExampleOptions, TokenCache, collapse

    tok = _phone_units()
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    collapsed = tok.encode(wav, collapse=True)
    dropped = tok.encode(wav, collapse=True, drop_blanks=True)
    assert torch.equal(dropped, collapsed[collapsed != BLANK]) and BLANK not in dropped.tolist()
    assert torch.equal(without_blanks(collapsed), dropped)
    assert without_blanks(np.array([0, 5, 0, 7, 7])).tolist() == [5, 7, 7]  # numpy in, numpy out
    from training.train_units import fit_mfcc_units

    mfcc = fit_mfcc_units([np.random.default_rng(1).standard_normal(16000).astype(np.float32)] * 2, n_clusters=4,
                          seed=0)
    with pytest.raises(ValueError, match="phone"):
        mfcc.encode(wav, drop_blanks=True)

    texts = ["la mesa es bonita", "the big dog"]
    vocab = Vocabulary(train_text_tokenizer(texts * 5, vocab_size=300), num_units=len(PHONES), num_codebooks=1,
                       cardinality=8)
    frames = np.array([0, 0, 5, 5, 0, 7, 7, 7, 0, 0, 7, 3, 0], dtype=np.int16)  # "s _ o _ o |" as frames
    records = {"u1": {"id": "u1", "split": "train", "lang": "es", "speaker": "s1", "text": texts[0], "tasks": ["asr"]}}
    cache = TokenCache(tmp_path, "fp", {"codec": {"max_codebooks": 1, "cardinality": 8, "frame_rate": 50},
                                        "units": {"num_units": len(PHONES), "frame_rate": 50}},
                       records, {"u1": np.zeros((1, 13), dtype=np.int16)}, {"u1": frames})
    sim = PhoneSimulator(_phone_units())
    prompts = {}
    for drop in (False, True):
        builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=1, drop_unit_blanks=drop))
        ex = builder.build("asr", "u1", np.random.default_rng(0))
        prompts[drop] = vocab.ids_to_units([t for t in ex.input_ids[: ex.prompt_len] if t in vocab.units])
        items = builder.add_simulated_asr(sim, sim.phonemize([("es", texts[0])], progress=False))
        s = builder.build("asr", items["es"][0], np.random.default_rng(0))
        sim_units = vocab.ids_to_units([t for t in s.input_ids[: s.prompt_len] if t in vocab.units])
        assert (BLANK in sim_units) != drop and len(sim_units) > 5
    assert prompts[False] == collapse(frames.astype(np.int64)).tolist() == [0, 5, 0, 7, 0, 7, 3, 0]
    assert prompts[True] == [5, 7, 7, 3]  # a phone said twice across a blank stays two units
    cfg = alm_debug(vocab, drop_unit_blanks=True)
    cfg.save_pretrained(tmp_path / "model")
    assert AlmConfig.from_pretrained(tmp_path / "model").drop_unit_blanks
    assert not alm_debug(vocab).drop_unit_blanks  # configs saved before the field read as blanks kept
