"""Text-only ASR examples from simulated phone units: the simulation looks like real phone units, and a builder
serves the items through the ordinary ASR prompt format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rapidfuzz.distance import Levenshtein
from transformers import Wav2Vec2BertModel

from codec.units import UnitConfig, UnitTokenizer, conformer_arch, small_conformer_config
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
