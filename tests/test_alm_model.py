"""The decoder on tiny models: config, causality, KV cache, loss, constrained decoding, save/load, learning."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from alm.config import AlmConfig, alm_base, alm_debug, alm_small, alm_tiny
from alm.generation import (
    TaskConstraintLogitsProcessor,
    generate_for_task,
    generation_config_for,
    max_new_tokens_for,
)
from alm.model import AlmForCausalLM
from alm.prompts import Example, asr_example, asr_prompt, parse_output, tts_example, tts_prompt
from alm.vocab import Vocabulary, train_text_tokenizer

K, CARD, UNITS = 4, 16, 16
LETTERS = "abcdefgh"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(LETTERS) for _ in range(6)) for _ in range(200)]
    sentences += ["good morning how are you", "buenos días cómo estás", "set_alarm | time = seven"] * 10
    return Vocabulary(train_text_tokenizer(sentences, vocab_size=320), num_units=UNITS, num_codebooks=K,
                      cardinality=CARD)


@pytest.fixture(scope="module")
def model(vocab: Vocabulary) -> AlmForCausalLM:
    torch.manual_seed(0)
    return AlmForCausalLM(alm_debug(vocab)).eval()


def _ids(vocab: Vocabulary, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab.size, (1, n), generator=torch.Generator().manual_seed(seed))


def _batch(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask``, ``labels`` ``[B, L]``."""
    n = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), n), pad_id)
    labels = torch.full((len(examples), n), -100)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --- config --------------------------------------------------------------------------------------------------
def test_config_presets_and_json_round_trip(vocab: Vocabulary) -> None:
    for preset in (alm_debug, alm_tiny, alm_small, alm_base):
        cfg = preset(vocab)
        assert cfg.model_type == "alm" and cfg.vocab_size == vocab.size and cfg.num_codebooks == K
        assert (cfg.pad_token_id, cfg.eos_token_id) == (vocab.pad_id, vocab.eos_id)
        back = AlmConfig.from_dict(cfg.to_dict())
        assert back.to_dict() == cfg.to_dict() and back.vocabulary().ranges == vocab.ranges
    assert alm_debug(vocab).hidden_size == 32 and alm_debug(vocab).num_hidden_layers == 2
    assert alm_debug(vocab, num_codebooks=2).num_codebooks == 2
    with pytest.raises(ValueError, match="num_codebooks"):
        alm_debug(vocab, num_codebooks=K + 1)
    with pytest.raises(ValueError, match="input_speech"):
        alm_debug(vocab, input_speech="wav")


def test_preset_sizes() -> None:
    # the shipped layout: a 4k BPE, 500 units, 4 x 1024 codec ids; built on the meta device (no memory, no time)
    layout = Vocabulary(None, text_vocab_size=4000, num_units=500, num_codebooks=4, cardinality=1024).to_dict()
    sizes = {}
    for preset in (alm_debug, alm_tiny, alm_small, alm_base):
        with torch.device("meta"):
            sizes[preset.__name__] = sum(p.numel() for p in AlmForCausalLM(preset(layout)).parameters())
    assert sizes["alm_debug"] < 1e6
    assert 5e6 <= sizes["alm_tiny"] <= 10e6
    assert sizes["alm_tiny"] < sizes["alm_small"] < sizes["alm_base"]


# --- model invariants ----------------------------------------------------------------------------------------
def test_causality_by_gradient(model: AlmForCausalLM, vocab: Vocabulary) -> None:
    ids = _ids(vocab, 10)
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # [1, L, H]
    logits = model(inputs_embeds=emb).logits  # [1, L, V]
    for t in (0, 4, 9):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), emb, retain_graph=True)
        assert grad[0, t + 1:].abs().sum() == 0, f"position {t} sees the future"
        assert grad[0, : t + 1].abs().sum() > 0


def test_kv_cache_matches_full_forward(model: AlmForCausalLM, vocab: Vocabulary) -> None:
    ids = _ids(vocab, 12, seed=1)
    with torch.no_grad():
        full = model(ids).logits  # [1, 12, V]
        out = model(ids[:, :5], use_cache=True)
        torch.testing.assert_close(out.logits, full[:, :5], atol=1e-5, rtol=1e-5)
        cache = out.cache
        for t in range(5, 12):
            step = model(ids[:, t:t + 1], cache=cache, use_cache=True)
            cache = step.cache
            torch.testing.assert_close(step.logits[:, -1], full[:, t], atol=1e-5, rtol=1e-5)


def test_loss_only_on_labels_and_weighted(model: AlmForCausalLM, vocab: Vocabulary) -> None:
    ex = asr_example(vocab, "en", [1, 2, 3, 4], "a b c d")
    batch = _batch([ex], vocab.pad_id)
    out = model(**batch)
    logits, labels = out.logits[0, :-1], batch["labels"][0, 1:]
    keep = labels != -100
    assert int(keep.sum()) == len(ex.input_ids) - ex.prompt_len
    manual = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, manual)
    ones = torch.ones_like(batch["labels"], dtype=torch.float)
    torch.testing.assert_close(model(**batch, loss_weights=ones).loss, manual)
    # what the training loop computes from the logits alone (once per step) is the model's own loss
    from alm.model import token_losses, weighted_causal_lm_loss

    ce = token_losses(out.logits, batch["labels"])
    assert ce.shape == (1, batch["labels"].shape[1] - 1) and bool((ce[0][~keep] == 0).all())
    torch.testing.assert_close(weighted_causal_lm_loss(out.logits, batch["labels"], ce=ce), manual)
    # a prompt weighted 0.5 adds the prompt's loss at half weight
    wex = asr_example(vocab, "en", [1, 2, 3, 4], "a b c d", prompt_weight=0.5)
    wb = _batch([wex], vocab.pad_id)
    w = torch.tensor([wex.loss_weights])
    ce = torch.nn.functional.cross_entropy(logits, wb["labels"][0, 1:], reduction="none")
    expected = (ce * w[0, 1:]).sum() / w[0, 1:].sum()
    torch.testing.assert_close(model(**wb, loss_weights=w).loss, expected)


# --- generation ----------------------------------------------------------------------------------------------
def test_constrained_sampling_never_emits_a_forbidden_token(model: AlmForCausalLM, vocab: Vocabulary) -> None:
    t = vocab.token_id
    asr = asr_prompt(vocab, "en", list(range(UNITS)) * 3)
    tts = tts_prompt(vocab, "en", "a b c d e f", torch.randint(0, CARD, (K, 10)))
    for seed in range(3):
        gen = generate_for_task(model, vocab, "asr", asr, strategy="sample", temperature=1.5, generator_seed=seed)
        assert len(gen) <= max_new_tokens_for("asr", 3 * UNITS)
        assert gen[0] == t("<text>") and gen[-2:] == [t("</text>"), vocab.eos_id]
        assert all(i in vocab.text for i in gen[1:-2])
        # at least 30 frames, at most 150 ids: the budget, not the model, ends the audio at a frame boundary
        gen = generate_for_task(model, vocab, "tts", tts, strategy="sample", temperature=1.5, generator_seed=seed,
                                min_frames=30, max_new_tokens=150)
        assert len(gen) <= 150 and gen[0] == t("<audio>") and gen[-2:] == [t("</audio>"), vocab.eos_id]
        codec = gen[1:-2]
        assert len(codec) % K == 0 and len(codec) >= 30 * K
        assert all(i in vocab.codebook(j % K) for j, i in enumerate(codec))
        proc = TaskConstraintLogitsProcessor(vocab, "tts", 0, num_codebooks=K, max_new_tokens=150, min_frames=30)
        assert all(any(i in r for r in proc.allowed(gen[:j])) for j, i in enumerate(gen))


@pytest.mark.parametrize("strategy", ["greedy", "beam", "top_p", "top_k"])
def test_strategies_run_and_respect_max_new_tokens(model: AlmForCausalLM, vocab: Vocabulary, strategy: str) -> None:
    prompt = tts_prompt(vocab, "en", "a b", None)
    gen = generate_for_task(model, vocab, None, prompt, strategy=strategy, max_new_tokens=11, generator_seed=0)
    assert 0 < len(gen) <= 11
    out = parse_output(vocab, "tts", gen)
    assert out.complete and out.codes is not None and out.codes.shape[0] == K  # closed within the budget
    cfg = generation_config_for(vocab, "asr", 20, strategy=strategy, repetition_penalty=1.2)
    assert cfg.max_new_tokens == max_new_tokens_for("asr", 20) and cfg.repetition_penalty == 1.2
    with pytest.raises(ValueError, match="strategy"):
        generation_config_for(vocab, "asr", 20, strategy="telepathy")


def test_budgets_grow_with_the_source_and_are_capped() -> None:
    assert max_new_tokens_for("asr", 10) < max_new_tokens_for("asr", 100) <= max_new_tokens_for("asr", 10**6)
    assert max_new_tokens_for("asr", 10**6) == max_new_tokens_for("asr", 10**7)
    assert max_new_tokens_for("tts", 5, num_codebooks=8) == 8 * max_new_tokens_for("tts", 5) - 7 * 4
    assert max_new_tokens_for("tts", 10**5) == max_new_tokens_for("tts", 10**6)


def test_save_pretrained_from_pretrained_identity(model: AlmForCausalLM, vocab: Vocabulary, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path)
    vocab.save(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    assert isinstance(AutoConfig.from_pretrained(tmp_path), AlmConfig)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is AlmForCausalLM
    assert loaded.config.vocab_layout == vocab.to_dict() and loaded.config.num_codebooks == K
    ids = _ids(vocab, 9, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    back = Vocabulary.load(tmp_path)
    assert back.encode_text("a b c") == vocab.encode_text("a b c")


# --- learning ------------------------------------------------------------------------------------------------
def test_a_debug_model_learns_a_toy_two_task_mix(vocab: Vocabulary) -> None:
    """ "ASR": units u -> letters LETTERS[u]; "TTS": letters -> one codec frame each. Greedy output must match."""
    def text_of(units: tuple[int, ...]) -> str:
        return " ".join(LETTERS[u] for u in units)

    def codes_of(units: tuple[int, ...]) -> torch.Tensor:  # [K, F]
        return torch.tensor([[(u * (k + 1) + k) % CARD for u in units] for k in range(K)])

    rng = random.Random(0)
    seqs: set[tuple[int, ...]] = set()
    while len(seqs) < 24:
        seqs.add(tuple(rng.randrange(len(LETTERS)) for _ in range(rng.randint(2, 4))))
    asr_seqs, tts_seqs = sorted(seqs)[:12], sorted(seqs)[12:]
    examples = [asr_example(vocab, "en", list(s), text_of(s)) for s in asr_seqs]
    examples += [tts_example(vocab, "en", text_of(s), None, codes_of(s)) for s in tts_seqs]
    batch = _batch(examples, vocab.pad_id)

    torch.manual_seed(0)
    model = AlmForCausalLM(alm_debug(vocab, hidden_size=64, intermediate_size=128))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(200):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    model.eval()
    for s in asr_seqs:
        out = parse_output(vocab, "asr", generate_for_task(model, vocab, "asr", asr_prompt(vocab, "en", list(s))))
        assert out.complete and out.text == text_of(s)
    for s in tts_seqs:
        out = parse_output(vocab, "tts", generate_for_task(model, vocab, "tts", tts_prompt(vocab, "en", text_of(s))))
        assert out.complete and torch.equal(out.codes, codes_of(s))


def test_source_length_of_units_and_codec_speech(vocab: Vocabulary) -> None:
    from alm.generation import source_length
    from alm.prompts import s2st_prompt, with_speech_input

    units, codes, voice = list(range(7)), torch.zeros(K, 5, dtype=torch.long), torch.ones(K, 9, dtype=torch.long)
    assert source_length(vocab, "asr", asr_prompt(vocab, "en", units), K) == 7
    codec_asr = with_speech_input(vocab, asr_prompt(vocab, "en", units), "codec", codes)
    assert source_length(vocab, "asr", codec_asr, K) == 5  # frames of the speech, no units left
    both = with_speech_input(vocab, asr_prompt(vocab, "en", units), "both", codes)
    assert source_length(vocab, "asr", both, K) == 7  # units are counted when present
    s2st = with_speech_input(vocab, s2st_prompt(vocab, "en", "es", units, voice), "codec", codes)
    assert source_length(vocab, "s2st", s2st, K) == 5  # the voice prompt's 9 frames are not the source
    with pytest.raises(ValueError, match="codes"):
        with_speech_input(vocab, asr_prompt(vocab, "en", units), "codec")
