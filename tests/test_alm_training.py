"""ALM training on the tiny synthesized corpus: token cache, task examples, temperature sampler, train/resume."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import N_UNITS, TINY_CODEC

from alm.model import AlmForCausalLM
from alm.prompts import IGNORE_INDEX, Example, parse_output
from alm.vocab import TASKS, Vocabulary, train_text_tokenizer
from codec import load_audio, load_codec, load_units
from training.alm_data import (
    ExampleBuilder,
    ExampleOptions,
    MultiTaskSampler,
    TokenCache,
    build_token_cache,
    collapse,
    temperature_probs,
)
from training.data import read_manifest
from training.data.slu import format_target
from training.train_alm import TRAINER_STATE, TrainAlmConfig, parse_args, train

K = 2  # codebooks the model uses (of the codec's 4)
SHARD = 8  # utterances per cache shard: several shards, so resumption is tested


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("token_cache")


@pytest.fixture(scope="module")
def cache(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path], cache_root: Path) -> TokenCache:
    return build_token_cache(tiny_corpus, load_codec(tokenizer_dirs[0]), load_units(tokenizer_dirs[1]), cache_root,
                             shard_size=SHARD, progress=False)


@pytest.fixture(scope="module")
def vocab(cache: TokenCache) -> Vocabulary:
    texts = [r["text"] for r in cache.records.values()]
    return Vocabulary(train_text_tokenizer(texts, vocab_size=400), num_units=N_UNITS, num_codebooks=K,
                      cardinality=TINY_CODEC.cardinality)


# --- token cache -----------------------------------------------------------------------------------------------
def test_cache_builds_reuses_resumes_and_invalidates(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                                                     cache_root: Path, cache: TokenCache,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    records = read_manifest(tiny_corpus)
    assert cache.encoded == len(records) and set(cache.codes) == {r["id"] for r in records}
    codec, units = load_codec(tokenizer_dirs[0]), load_units(tokenizer_dirs[1])
    for r in records:
        c, u = cache.codes[r["id"]], cache.units[r["id"]]
        assert c.dtype == np.uint16 and u.dtype == np.uint16 and c.shape[0] == TINY_CODEC.num_codebooks
        assert c.shape[1] == u.shape[0] and abs(u.shape[0] - r["duration"] * 50) <= 1
        assert isinstance(c, np.memmap) and isinstance(u, np.memmap) and not c.flags.writeable  # mapped, not loaded
    wav = load_audio(records[0]["path"])
    assert np.array_equal(cache.codes[records[0]["id"]], codec.encode(wav[None])[0].numpy())
    assert np.array_equal(cache.units[records[0]["id"]], units.encode(wav).numpy())

    # reuse: nothing is encoded (an encode call would raise)
    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    with monkeypatch.context() as m:
        m.setattr(type(codec), "encode", refuse)
        m.setattr(type(units), "encode", refuse)
        again = build_token_cache(tiny_corpus, codec, units, cache_root, shard_size=SHARD, progress=False)
    assert again.encoded == 0 and again.fingerprint == cache.fingerprint
    assert all(np.array_equal(again.codes[i], cache.codes[i]) for i in cache.codes)

    # resume: a build killed before its last shard and before cache.json redoes only what is missing
    (cache.directory / "cache.json").unlink()
    lost = sorted(cache.directory.glob("train-*"))[-1]
    n_lost = len(json.loads((lost / "index.json").read_text())["ids"])
    shutil.rmtree(lost)
    resumed = build_token_cache(tiny_corpus, codec, units, cache_root, shard_size=SHARD, progress=False)
    assert resumed.encoded == n_lost < len(records)
    assert all(np.array_equal(resumed.codes[i], cache.codes[i]) for i in cache.codes)

    # a changed codec is a different cache
    with torch.no_grad():
        next(codec.encoder.parameters()).add_(0.05)
    changed = build_token_cache(tiny_corpus, codec, units, cache_root, shard_size=SHARD, progress=False)
    assert changed.fingerprint != cache.fingerprint and changed.encoded == len(records)
    assert (cache.directory / "cache.json").is_file()  # the old one is left alone

    # a cache written in the older single-file form (.npz shards) is still read
    old = cache_root / "npz-form" / cache.fingerprint
    shutil.copytree(cache.directory, old)
    meta = json.loads((old / "cache.json").read_text())
    for name in meta["shards"]:
        ids = json.loads((old / name / "index.json").read_text())["ids"]
        codes, unit_seqs = [cache.codes[i] for i in ids], [cache.units[i] for i in ids]
        np.savez(old / f"{name}.npz", ids=np.array(ids, dtype=str),
                 n_frames=np.array([u.shape[0] for u in unit_seqs]), codes=np.concatenate(codes, axis=1),
                 units=np.concatenate(unit_seqs))
        shutil.rmtree(old / name)
    meta["shards"] = [f"{n}.npz" for n in meta["shards"]]
    (old / "cache.json").write_text(json.dumps(meta))
    with monkeypatch.context() as m:
        m.setattr(type(codec), "encode", refuse)
        legacy = build_token_cache(tiny_corpus, load_codec(tokenizer_dirs[0]), load_units(tokenizer_dirs[1]),
                                   cache_root / "npz-form", shard_size=SHARD, progress=False)
    assert legacy.encoded == 0 and all(np.array_equal(legacy.codes[i], cache.codes[i]) for i in cache.codes)


# --- examples --------------------------------------------------------------------------------------------------
def _segment(vocab: Vocabulary, ids: list[int], name: str) -> list[int] | None:
    open_, close = vocab.token_id(f"<{name}>"), vocab.token_id(f"</{name}>")
    if open_ not in ids:
        return None
    i = ids.index(open_)
    return ids[i + 1: ids.index(close, i)]


def _check_masking(ex: Example, vocab: Vocabulary, task: str) -> None:
    assert len(ex.input_ids) == len(ex.labels) and ex.loss_weights is None
    assert ex.input_ids[0] == vocab.task_id(task) and ex.input_ids[-1] == vocab.eos_id
    assert all(label == IGNORE_INDEX for label in ex.labels[: ex.prompt_len])
    assert ex.labels[ex.prompt_len:] == ex.input_ids[ex.prompt_len:]


def _is_window_of(window: np.ndarray, codes: np.ndarray) -> bool:
    n = window.shape[1]
    return any(np.array_equal(codes[:, s: s + n], window) for s in range(codes.shape[1] - n + 1))


def test_examples_for_every_task(cache: TokenCache, vocab: Vocabulary) -> None:
    builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K))
    groups = builder.groups("train")
    assert {task for task, _ in groups} == set(TASKS) and {lang for _, lang in groups} == {"en", "es"}
    rng = np.random.default_rng(0)
    voices = 0
    for (task, _), ids in groups.items():
        for utt in ids[:4]:
            r, ex = cache.records[utt], builder.build(task, utt, rng)
            _check_masking(ex, vocab, task)
            prompt, target = ex.input_ids[: ex.prompt_len], ex.input_ids[ex.prompt_len:]
            codes = cache.codes[utt][:K].astype(np.int64)
            if task in ("asr", "slu", "s2st"):  # collapsed units of the source in the prompt
                units = vocab.ids_to_units(_segment(vocab, prompt, "units"))
                assert units == collapse(cache.units[utt].astype(np.int64)).tolist()
            if task == "asr":
                assert parse_output(vocab, task, target).text == r["text"]
            elif task == "slu":
                slots = r["slots"] if isinstance(r["slots"], dict) else json.loads(r["slots"])
                assert parse_output(vocab, task, target).text == format_target(r["intent"], slots)
            elif task in ("tts", "s2st"):
                out_id = utt if task == "tts" else r["translation_id"]
                out = parse_output(vocab, task, target, num_codebooks=K)
                assert np.array_equal(out.codes.numpy(), cache.codes[out_id][:K])
                if task == "s2st":
                    assert out.text in (None, cache.records[out_id]["text"])
                voice = _segment(vocab, prompt, "voice")
                if voice:  # a window of another utterance of the output's speaker, same split
                    voices += 1
                    window = vocab.ids_to_codes(voice, K).numpy()
                    assert window.shape[1] <= 150
                    speaker = cache.records[out_id]["speaker"]
                    assert any(_is_window_of(window, cache.codes[o["id"]][:K]) for o in cache.split(r["split"])
                               if o["speaker"] == speaker and o["id"] != out_id)
            else:  # continue: prompt and continuation are the utterance split at continue_at
                cut = round(r["continue_at"] * 50)
                head = vocab.ids_to_codes(prompt[2:], K).numpy()
                tail = vocab.ids_to_codes([i for i in target if i in vocab.codec], K).numpy()
                assert head.shape[1] == cut and np.array_equal(np.concatenate([head, tail], 1), codes)
    assert voices > 0

    # codec / both input speech: the same target, an <audio> segment of the utterance in the prompt
    utt = groups[("asr", "en")][0]
    base = builder.build("asr", utt, rng)
    for mode in ("codec", "both"):
        ex = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, input_speech=mode)).build("asr", utt, rng)
        _check_masking(ex, vocab, "asr")
        assert ex.input_ids[ex.prompt_len:] == base.input_ids[base.prompt_len:]
        audio = vocab.ids_to_codes(_segment(vocab, ex.input_ids[: ex.prompt_len], "audio"), K).numpy()
        assert np.array_equal(audio, cache.codes[utt][:K])
        assert (_segment(vocab, ex.input_ids, "units") is not None) == (mode == "both")
    # ASR context: another sentence of the same language and split (its last words) between <lang> and <units>
    ctx = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, asr_context_prob=1.0))
    r = cache.records[utt]
    texts = {o["text"] for o in cache.split(r["split"]) if o["lang"] == r["lang"] and o["id"] != utt}
    for seed in range(5):
        ex = ctx.build("asr", utt, np.random.default_rng(seed))
        _check_masking(ex, vocab, "asr")
        assert ex.input_ids[ex.prompt_len:] == base.input_ids[base.prompt_len:]
        assert ex.input_ids[:2] == base.input_ids[:2] and ex.input_ids[2] == vocab.token_id("<text>")
        context = vocab.decode_text(_segment(vocab, ex.input_ids[: ex.prompt_len], "text")).strip()
        assert context and any(t.endswith(context) for t in texts), context
        assert _segment(vocab, ex.input_ids, "units") == _segment(vocab, base.input_ids, "units")
    assert ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, asr_context_prob=0.0)).build(
        "asr", utt, np.random.default_rng(0)).input_ids == base.input_ids
    with pytest.raises(ValueError, match="asr_context_prob"):
        ExampleOptions(num_codebooks=K, asr_context_prob=1.5)
    weighted = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, input_speech="codec", prompt_weight=0.1))
    ex = weighted.build("asr", utt, rng)
    assert ex.labels == ex.input_ids and ex.loss_weights[: ex.prompt_len] == [0.1] * ex.prompt_len
    assert ex.loss_weights[ex.prompt_len:] == [1.0] * (len(ex.input_ids) - ex.prompt_len)


def test_audio_unit_frames_are_the_cached_units_of_the_same_audio(cache: TokenCache, vocab: Vocabulary) -> None:
    # audio_units: each output frame is the utterance's own (uncollapsed) unit at that frame, then its codes;
    # the continuation prompt's frames too; the grammar with audio_units accepts every target
    from alm.prompts import allowed_next

    plain = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K))
    builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, audio_units=True))
    groups = builder.groups("train", ("tts", "s2st", "continue"))
    for task in ("tts", "s2st", "continue"):
        utt = groups[(task, "en")][0]
        r = cache.records[utt]
        ex = builder.build(task, utt, np.random.default_rng(0))
        base = plain.build(task, utt, np.random.default_rng(0))
        _check_masking(ex, vocab, task)
        out_id = r["translation_id"] if task == "s2st" else utt
        stream = [i for i in ex.input_ids if i in vocab.codec or i in vocab.units]
        if task in ("tts", "s2st"):
            assert ex.input_ids[: ex.prompt_len] == base.input_ids[: base.prompt_len]  # the same prompt
            stream = _segment(vocab, ex.input_ids[ex.prompt_len:], "audio")
        frames = np.array(stream).reshape(-1, K + 1)
        assert vocab.ids_to_units(frames[:, 0].tolist()) == cache.units[out_id].astype(np.int64).tolist()
        assert np.array_equal(vocab.ids_to_codes(frames[:, 1:].reshape(-1).tolist(), K).numpy(),
                              cache.codes[out_id][:K])
        target = ex.input_ids[ex.prompt_len:]
        assert all(any(i in rg for rg in allowed_next(vocab, task, target[:n], num_codebooks=K, audio_units=True))
                   for n, i in enumerate(target))


def test_tts_word_phones_spell_the_prompt_text_from_the_lexicon(cache: TokenCache, vocab: Vocabulary) -> None:
    # tts_word_phones: the TTS prompt's text is spelled from the builder's lexicon; the target and every other
    # task stay as they were (ASR spells only with asr_word_phones)
    from alm.prompts import spelled_text

    def lexicon(lang: str, text: str) -> list[list[int]]:
        return [[len(w) % 4 + 1, 2] for w in text.split()]  # any phones: what matters is where they go

    plain = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K))
    builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, tts_word_phones=True))
    utt = builder.groups("train", ("tts",))[("tts", "en")][0]
    with pytest.raises(ValueError, match="lexicon"):
        builder.build("tts", utt, np.random.default_rng(0))
    builder.set_lexicon(lexicon)
    ex, base = builder.build("tts", utt, np.random.default_rng(0)), plain.build("tts", utt, np.random.default_rng(0))
    _check_masking(ex, vocab, "tts")
    text = cache.records[utt]["text"]
    assert _segment(vocab, ex.input_ids[: ex.prompt_len], "text") == spelled_text(vocab, text, lexicon("en", text))
    assert ex.input_ids[ex.prompt_len:] == base.input_ids[base.prompt_len:]
    asr = builder.groups("train", ("asr",))[("asr", "en")][0]
    assert builder.build("asr", asr, np.random.default_rng(0)).input_ids == plain.build(
        "asr", asr, np.random.default_rng(0)).input_ids


def test_slu_transcript_targets_write_the_words_first(cache: TokenCache, vocab: Vocabulary) -> None:
    # slu_transcript: the SLU target is the utterance's transcript, <slu>, then what the plain target said; with
    # asr_word_phones the words are spelled from the lexicon as ASR targets are
    from alm.prompts import parse_output, spelled_text

    def lexicon(lang: str, text: str) -> list[list[int]]:
        return [[len(w) % 4 + 1, 2] for w in text.split()]

    plain = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K))
    groups = plain.groups("train", ("slu",))
    utt = next(iter(groups.values()))[0]
    rec = cache.records[utt]
    base = plain.build("slu", utt, np.random.default_rng(0))
    words = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, slu_transcript=True))
    ex = words.build("slu", utt, np.random.default_rng(0))
    _check_masking(ex, vocab, "slu")
    assert ex.input_ids[: ex.prompt_len] == base.input_ids[: base.prompt_len]  # the prompt is unchanged
    sep = vocab.token_id("<slu>")
    body = _segment(vocab, ex.input_ids[ex.prompt_len:], "text")
    assert body[: body.index(sep)] == vocab.encode_text(rec["text"])
    assert body[body.index(sep) + 1:] == _segment(vocab, base.input_ids[base.prompt_len:], "text")
    out = parse_output(vocab, "slu", ex.input_ids[ex.prompt_len:])
    assert out.text == parse_output(vocab, "slu", base.input_ids[base.prompt_len:]).text and out.complete
    assert out.transcript == vocab.decode_text(vocab.encode_text(rec["text"]))
    spelled = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K, slu_transcript=True,
                                                          asr_word_phones=True))
    spelled.set_lexicon(lexicon)
    body = _segment(vocab, spelled.build("slu", utt, np.random.default_rng(0)).input_ids[ex.prompt_len:], "text")
    assert body[: body.index(sep)] == spelled_text(vocab, rec["text"], lexicon(rec["lang"], rec["text"]))


# --- sampler ---------------------------------------------------------------------------------------------------
COUNTS = {("asr", "en"): 6000, ("asr", "es"): 2000, ("tts", "en"): 3000, ("tts", "es"): 1000, ("s2st", "en"): 300,
          ("s2st", "es"): 300, ("slu", "en"): 400, ("continue", "en"): 900, ("continue", "es"): 100}


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_sampler_follows_temperature(temperature: float) -> None:
    sampler = MultiTaskSampler({k: range(n) for k, n in COUNTS.items()}, temperature=temperature, seed=1)
    task_n = {t: sum(n for (tt, _), n in COUNTS.items() if tt == t) for t in TASKS}
    total = sum(task_n.values())
    z = sum((n / total) ** (1 / temperature) for n in task_n.values())
    expected = {t: (n / total) ** (1 / temperature) / z for t, n in task_n.items()}
    assert sampler.task_probs == pytest.approx(expected)
    assert temperature_probs({"a": 1, "b": 3}, temperature)["b"] == pytest.approx(
        3 ** (1 / temperature) / (1 + 3 ** (1 / temperature)))
    draws = [sampler.sample_group() for _ in range(20000)]
    for task, p in expected.items():
        assert sum(t == task for t, _ in draws) / len(draws) == pytest.approx(p, abs=0.015)
    asr = [lang for t, lang in draws if t == "asr"]
    p_en = 3 ** (1 / temperature) / (1 + 3 ** (1 / temperature))  # asr: en 6000 vs es 2000
    assert asr.count("en") / len(asr) == pytest.approx(p_en, abs=0.03)
    if temperature > 1:  # flattening: the rarest task gains, the commonest loses
        assert expected["s2st"] > task_n["s2st"] / total and expected["asr"] < task_n["asr"] / total


def test_task_weights_scale_the_task_mix() -> None:
    groups = {k: range(n) for k, n in COUNTS.items()}
    plain = MultiTaskSampler(groups, temperature=2.0).task_probs
    weighted = MultiTaskSampler(groups, temperature=2.0, task_weights={"asr": 3.0, "tts": 0.0}, seed=2)
    z = sum(p * {"asr": 3.0, "tts": 0.0}.get(t, 1.0) for t, p in plain.items())
    assert "tts" not in weighted.task_probs and weighted.task_probs["asr"] == pytest.approx(3 * plain["asr"] / z)
    draws = [weighted.sample_group()[0] for _ in range(5000)]
    assert "tts" not in draws and draws.count("asr") / 5000 == pytest.approx(weighted.task_probs["asr"], abs=0.03)
    assert TrainAlmConfig(task_weights="asr=2, slu=1.5").task_weight_map() == {"asr": 2.0, "slu": 1.5}
    for bad in ("asr", "dance=2", "asr=x"):
        with pytest.raises(ValueError, match="task_weights"):
            TrainAlmConfig(task_weights=bad)
    with pytest.raises(ValueError, match="unknown task"):
        MultiTaskSampler({("asr", "en"): range(3)}, task_weights={"tts": 2.0})


def test_sampler_batches_bounded_padded_and_drops_too_long() -> None:
    lengths = {"asr": 30, "tts": 90, "slu": 500}  # slu never fits max_len

    def build(task: str, item: int, rng: np.random.Generator) -> Example:
        n = lengths[task] + item % 7
        return Example(list(range(5, 5 + n)), [IGNORE_INDEX] * 4 + list(range(9, 5 + n)), 4)

    groups = {(t, "en"): range(50) for t in lengths}
    sampler = MultiTaskSampler(groups, build, temperature=1.0, max_tokens=400, max_len=200, pad_id=0, seed=0)
    seen = set()
    for _ in range(30):
        b = sampler.next_batch()
        seen.update(b.tasks)
        assert b.input_ids.shape[0] * b.input_ids.shape[1] <= 400 and b.input_ids.shape[1] <= 200
        real = b.attention_mask.bool()
        assert (b.input_ids[~real] == 0).all() and (b.labels[~real] == IGNORE_INDEX).all()
        assert (b.labels[:, :4] == IGNORE_INDEX).all() and b.num_targets > 0
    assert seen == {"asr", "tts"} and sampler.dropped["slu"] > 0
    state = sampler.state_dict()
    nxt = sampler.next_batch()
    sampler.load_state_dict(json.loads(json.dumps(state)))
    assert torch.equal(sampler.next_batch().input_ids, nxt.input_ids)  # resumable


def test_length_buckets_cut_padding_and_resume_mid_pool() -> None:
    def build(task: str, item: int, rng: np.random.Generator) -> Example:
        n = {"asr": 20, "tts": 150}[task] + int(rng.integers(0, 40))
        return Example(list(range(5, 5 + n)), [IGNORE_INDEX] * 4 + list(range(9, 5 + n)), 4)

    groups = {(t, "en"): range(50) for t in ("asr", "tts")}

    def padding(sampler: MultiTaskSampler) -> float:
        batches = [sampler.next_batch() for _ in range(200)]
        return 1 - sum(int(b.attention_mask.sum()) for b in batches) / sum(b.input_ids.numel() for b in batches)

    plain = MultiTaskSampler(groups, build, temperature=1.0, max_tokens=800, seed=0)
    bucketed = MultiTaskSampler(groups, build, temperature=1.0, max_tokens=800, seed=0, bucket_pool=64)
    assert padding(bucketed) < padding(plain) / 2  # similar lengths share a batch
    for _ in range(5):
        b = bucketed.next_batch()
        assert b.input_ids.numel() <= 800 and (b.labels[~b.attention_mask.bool()] == IGNORE_INDEX).all()
    state = json.loads(json.dumps(bucketed.state_dict()))  # mid-pool: served batches are not replayed
    after = [bucketed.next_batch().input_ids for _ in range(20)]
    again = MultiTaskSampler(groups, build, temperature=1.0, max_tokens=800, seed=5, bucket_pool=64)
    again.load_state_dict(state)
    assert all(torch.equal(a, again.next_batch().input_ids) for a in after)


def test_curriculum_serves_short_examples_first() -> None:
    from training.train_alm import curriculum_limit

    cfg = TrainAlmConfig(curriculum_steps=100, curriculum_start_len=50)
    assert [curriculum_limit(s, cfg, 250) for s in (0, 50, 99, 100, 5000)] == [50, 150, 248, None, None]
    assert curriculum_limit(0, TrainAlmConfig(), 250) is None

    def build(task: str, item: int, rng: np.random.Generator) -> Example:
        n = 10 + 10 * item
        return Example(list(range(5, 5 + n)), [IGNORE_INDEX] + list(range(6, 5 + n)), 1)

    sampler = MultiTaskSampler({("asr", "en"): range(20)}, build, max_tokens=400, max_len=1000, seed=0)
    sampler.length_limit = 60
    lengths = [len(r) for _ in range(20) for r in sampler.next_batch().attention_mask.bool().tolist()]
    assert max(lengths) <= 60 and sampler.deferred > 0 and not sampler.dropped  # deferred, not dropped
    sampler.length_limit = None
    assert max(sampler.next_batch().input_ids.shape[1] for _ in range(30)) > 60
    with pytest.raises(ValueError, match="curriculum"):
        TrainAlmConfig(curriculum_steps=-1)


# --- training --------------------------------------------------------------------------------------------------
def test_train_checkpoint_and_resume(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path], cache_root: Path,
                                     cache: TokenCache, tmp_path: Path) -> None:
    out = tmp_path / "run"
    caches_before = sorted(p.name for p in cache_root.iterdir())
    common = dict(preset="debug", max_tokens=2048, lr=3e-3, warmup_steps=3, num_codebooks=K, text_vocab_size=500,
                  log_every=1, eval_every=10, ckpt_every=10, num_samples=2, threads=1, codec=str(tokenizer_dirs[0]),
                  units=str(tokenizer_dirs[1]), cache_dir=str(cache_root))
    first = train(tiny_corpus, out, TrainAlmConfig(steps=10, **common), progress=False)
    assert first.start_step == 0 and [h["step"] for h in first.history if "loss" in h] == list(range(1, 11))
    ckpt = out / "checkpoints" / "step-0000010"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.json", "codec/config.json",
                 "codec/model.safetensors", "units/config.json", "units/model.safetensors", "training_state.json",
                 TRAINER_STATE):
        assert (ckpt / name).is_file(), name
    assert sorted(p.name for p in cache_root.iterdir()) == caches_before  # the cache was reused, not rebuilt

    # "killed" after step 10: the next call resumes there and runs to its own step count
    shutil.rmtree(out / "final")
    second = train(tiny_corpus, out, TrainAlmConfig(steps=30, **common), progress=False)
    assert second.start_step == 10
    assert [h["step"] for h in second.history if "loss" in h] == list(range(1, 31))
    losses = [h["loss"] for h in second.history if "loss" in h]
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.5, losses  # it learns
    valid = [h for h in second.history if "valid_loss" in h]
    assert [h["step"] for h in valid] == [10, 20, 30] and "valid_loss/asr" in valid[-1]
    audio = [t for t in ("tts", "s2st", "continue") if f"valid_loss/{t}" in valid[-1]]
    assert "tts" in audio and all(valid[-1][f"valid_codec_loss/{t}"] > 0 for t in audio)  # codec ids alone
    assert "valid_codec_loss/asr" not in valid[-1]

    # the exported checkpoint rebuilds everything on its own
    final = second.checkpoint
    assert final == out / "final" and not (final / TRAINER_STATE).exists()
    model = AlmForCausalLM.from_pretrained(final)
    vocab = Vocabulary.load(final)
    assert model.config.vocab_size == vocab.size and model.config.num_codebooks == K
    assert load_codec(final / "codec").max_codebooks == TINY_CODEC.num_codebooks
    assert load_units(final / "units").num_units == N_UNITS
    sd = second.model.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    meta = json.loads((final / "training_state.json").read_text())
    assert meta["step"] == 30 and meta["data"]["collapse_units"] and meta["data"]["input_speech"] == "units"
    trainer = torch.load(out / "checkpoints" / "step-0000030" / TRAINER_STATE, weights_only=True)
    assert trainer["step"] == 30
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000020", "step-0000030"]
    assert (out / "training_curves.png").is_file()
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 3 and all({"reference", "hypothesis"} <= set(s) for s in samples)


def test_command_line_arguments() -> None:
    corpus, out, cfg, progress = parse_args(["--corpus", "c", "--out", "o", "--preset", "debug", "--steps", "5",
                                             "--no-collapse-units", "--codec", "x", "--lr", "1e-4", "--no-progress",
                                             "--model-overrides", '{"max_position_embeddings": 2048}'])
    assert not progress and (corpus, out, cfg.preset, cfg.steps, cfg.collapse_units, cfg.codec, cfg.lr, cfg.units) == (
        "c", "o", "debug", 5, False, "x", 1e-4, None)
    assert cfg.model_overrides == {"max_position_embeddings": 2048}
    assert cfg.task_list() == ("asr", "tts", "s2st", "slu", "continue")
    assert parse_args(["--corpus", "c", "--out", "o", "--tasks", "asr, slu"])[2].task_list() == ("asr", "slu")
    with pytest.raises(ValueError, match="dance"):
        parse_args(["--corpus", "c", "--out", "o", "--tasks", "asr,dance"])[2].task_list()


def _common(tokenizer_dirs: tuple[Path, Path], cache_root: Path, **kw: object) -> dict[str, object]:
    return {**dict(preset="debug", max_tokens=1024, lr=3e-3, warmup_steps=2, num_codebooks=K, text_vocab_size=500,
                   log_every=1, eval_every=100, ckpt_every=3, keep_checkpoints=5, num_samples=0, threads=1,
                   codec=str(tokenizer_dirs[0]), units=str(tokenizer_dirs[1]), cache_dir=str(cache_root)), **kw}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_killed_run_resumes_to_the_same_weights_and_skips_damaged_checkpoints(
        tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path], cache: TokenCache, cache_root: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = TrainAlmConfig(steps=6, **_common(tokenizer_dirs, cache_root))
    straight = train(tiny_corpus, tmp_path / "a", cfg, progress=False)
    ckpts = tmp_path / "a" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000003", "step-0000006"]

    # killed after its step-3 checkpoint, while writing the step-6 one: what is on disk is that checkpoint and a
    # half-written temporary directory; the same command resumes from step 3 and ignores (then replaces) the rest
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpts / "step-0000003", tmp_path / "b" / "checkpoints" / "step-0000003")
    half = tmp_path / "b" / "checkpoints" / ".tmp-step-0000006"
    shutil.copytree(ckpts / "step-0000006", half)
    (half / "trainer_state.pt").unlink()
    (half / "model.safetensors").write_bytes(b"partial")
    resumed = train(tiny_corpus, tmp_path / "b", cfg, progress=False)
    assert resumed.start_step == 3 and _same_weights(resumed.model, straight.model)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]

    # the newest checkpoint truncated on disk: reported, passed over, the one before it is used
    shutil.copytree(ckpts, tmp_path / "c" / "checkpoints")
    weights = tmp_path / "c" / "checkpoints" / "step-0000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="training.train_alm"):
        again = train(tiny_corpus, tmp_path / "c", cfg, progress=False)
    assert again.start_step == 3 and _same_weights(again.model, straight.model)
    assert any("step-0000006 is damaged" in r.getMessage() for r in caplog.records)

    # nothing readable: a clear error, nothing overwritten
    for d in (tmp_path / "c" / "checkpoints").iterdir():
        (d / "trainer_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="can be read"):
        train(tiny_corpus, tmp_path / "c", cfg, progress=False)


def test_non_finite_steps_are_skipped_then_stop_the_run(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                                                        cache: TokenCache, cache_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    poisoned: set[int] = {2}  # training forward calls (1-based) whose outputs (so loss) become NaN
    forward = AlmForCausalLM.forward

    def nan_sometimes(self: AlmForCausalLM, *args: object, **kwargs: object) -> object:
        out = forward(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] in poisoned:
                out.logits = out.logits * float("nan")
        return out

    monkeypatch.setattr(AlmForCausalLM, "forward", nan_sometimes)
    cfg = TrainAlmConfig(steps=5, max_bad_steps=2, **_common(tokenizer_dirs, cache_root))
    result = train(tiny_corpus, tmp_path / "one-bad", cfg, progress=False)
    logged = [h for h in result.history if "skipped_steps" in h]
    assert [h["skipped_steps"] for h in logged] == [0, 1, 1, 1, 1] and logged[1]["loss"] is None
    per_task = [h["loss_per_task"] for h in logged if h["loss"] is not None]
    assert all(p and set(p) <= set(TASKS) and all(math.isfinite(v) and v > 0 for v in p.values()) for p in per_task)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())  # the NaN step changed nothing

    calls["n"], poisoned = 0, set(range(3, 100))
    monkeypatch.setattr(AlmForCausalLM, "forward", nan_sometimes)
    with pytest.raises(FloatingPointError, match="2 steps in a row"):
        train(tiny_corpus, tmp_path / "all-bad", cfg, progress=False)


def test_fine_tune_starts_from_a_released_checkpoint(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                                                     cache: TokenCache, cache_root: Path, tmp_path: Path) -> None:
    base = train(tiny_corpus, tmp_path / "base", TrainAlmConfig(steps=6, **_common(tokenizer_dirs, cache_root)),
                 progress=False)
    # zero steps of fine-tuning exports the starting point unchanged: weights, vocabulary and format are its own
    # (the preset and K given here are ignored: the checkpoint's config decides)
    same = train(tiny_corpus, tmp_path / "ft0", TrainAlmConfig(
        steps=0, init_from=str(base.checkpoint), **_common(tokenizer_dirs, cache_root, preset="tiny")),
        progress=False)
    assert same.start_step == 0 and _same_weights(same.model, base.model)
    assert Vocabulary.load(same.checkpoint).to_dict() == Vocabulary.load(base.checkpoint).to_dict()
    # a few steps on: it keeps learning from where the base model stopped, not from scratch
    tuned = train(tiny_corpus, tmp_path / "ft", TrainAlmConfig(
        steps=3, init_from=str(base.checkpoint), **_common(tokenizer_dirs, cache_root, warmup_steps=1)),
        progress=False)
    first_base = next(h["loss"] for h in base.history if "loss" in h)
    first_tuned = next(h["loss"] for h in tuned.history if "loss" in h)
    assert first_tuned < first_base - 0.5 and not _same_weights(tuned.model, base.model)
    # fine-tuning into "unit, then codes" audio frames: the flag is saved with the weights, decoding follows it
    framed = train(tiny_corpus, tmp_path / "framed", TrainAlmConfig(
        steps=2, init_from=str(base.checkpoint), audio_units=True, **_common(tokenizer_dirs, cache_root)),
        progress=False)
    assert not base.model.config.audio_units and framed.model.config.audio_units
    assert AlmForCausalLM.from_pretrained(framed.checkpoint).config.audio_units
    with pytest.raises(ValueError, match="tts_word_phones needs 'phone' units"):  # these are MFCC units
        train(tiny_corpus, tmp_path / "spelled", TrainAlmConfig(
            steps=1, init_from=str(base.checkpoint), tts_word_phones=True, **_common(tokenizer_dirs, cache_root)),
            progress=False)


def test_replacing_the_units_keeps_every_other_embedding_row(vocab: Vocabulary) -> None:
    from alm.config import alm_debug
    from training.train_alm import replace_units

    torch.manual_seed(0)
    model = AlmForCausalLM(alm_debug(vocab)).eval()
    old = model.get_input_embeddings().weight.detach().clone()
    new = replace_units(model, vocab, vocab.num_units + 7, seed=1)
    emb = model.get_input_embeddings().weight.detach().clone()
    assert new.num_units == vocab.num_units + 7 and emb.shape[0] == new.size == model.config.vocab_size
    assert Vocabulary.from_dict(model.config.vocab_layout).to_dict() == new.to_dict()
    for name in ("special", "text", *(f"codec_{k}" for k in range(K))):
        a, b = vocab.ranges[name], new.ranges[name]
        assert torch.equal(emb[b.start: b.end], old[a.start: a.end]), name  # moved, not changed
    assert new.codebook(0).start == vocab.codebook(0).start + 7
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    ids = torch.tensor([[vocab.bos_id, *new.units_to_ids([0, new.num_units - 1]), new.codebook(K - 1).end - 1]])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, 4, new.size) and torch.isfinite(logits).all()
    # same count, new meaning: the unit rows are drawn afresh, the rest stays
    again = replace_units(model, new, new.num_units, seed=2)
    emb2 = model.get_input_embeddings().weight.detach()
    assert not torch.equal(emb2[again.units.start: again.units.end], emb[new.units.start: new.units.end])
    assert torch.equal(emb2[again.text.start: again.text.end], emb[new.text.start: new.text.end])


def test_fine_tune_onto_units_of_another_count(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                                               cache: TokenCache, cache_root: Path, tmp_path: Path) -> None:
    from training.train_units import fit_mfcc_units

    base = train(tiny_corpus, tmp_path / "base", TrainAlmConfig(steps=3, **_common(tokenizer_dirs, cache_root)),
                 progress=False)
    wavs = [load_audio(r["path"]) for r in read_manifest(tiny_corpus)[:6]]
    fit_mfcc_units(wavs, n_clusters=N_UNITS - 5, seed=3).save_pretrained(tmp_path / "units11")
    common = _common(tokenizer_dirs, cache_root, warmup_steps=1)
    common["units"] = str(tmp_path / "units11")
    tuned = train(tiny_corpus, tmp_path / "ft", TrainAlmConfig(steps=2, init_from=str(base.checkpoint), **common),
                  progress=False)
    v_base, v_tuned = Vocabulary.load(base.checkpoint), Vocabulary.load(tuned.checkpoint)
    assert v_tuned.num_units == N_UNITS - 5 and v_tuned.size == tuned.model.config.vocab_size
    assert load_units(tuned.checkpoint / "units").num_units == N_UNITS - 5
    assert v_tuned.text == v_base.text and v_tuned.codec.start == v_base.codec.start - 5
    import alm

    m = alm.load(tuned.checkpoint, watermark=False)
    r = m.transcribe(wavs[0].numpy(), language="en", max_new_tokens=4)
    assert isinstance(r.text, str)


def test_text_only_asr_items_join_the_asr_groups(tiny_corpus: Path, tokenizer_dirs: tuple[Path, Path],
                                                 cache_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``asr_sim_sentences``: held-out sentences never become training items; the ASR groups grow by them."""
    from transformers import Wav2Vec2BertModel

    from codec.units import UnitConfig, UnitTokenizer, conformer_arch, small_conformer_config
    from training.alm_data import SIM_PREFIX
    from training.train_alm import _same_units, simulated_asr_items

    ccfg = small_conformer_config(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, conv_kernel=3)
    phones = ["<blank>", "a", "e", "i", "o", "u", "|", "s", "t", "n", "l", "ð", "ə", "ɪ", "k", "m", "d", "ɹ"]
    UnitTokenizer(UnitConfig(kind="phone", num_units=len(phones), feature_dim=16, feature_layer=1,
                             conformer=conformer_arch(ccfg), phones=phones),
                  conformer=Wav2Vec2BertModel(ccfg)).save_pretrained(tmp_path / "phone")
    common = _common(tokenizer_dirs, cache_root, tasks="asr")
    common["units"] = str(tmp_path / "phone")
    cfg = TrainAlmConfig(steps=2, asr_sim_sentences=6, **common)
    result = train(tiny_corpus, tmp_path / "run", cfg, progress=False)
    state = json.loads((result.checkpoint / "training_state.json").read_text())
    records = read_manifest(tiny_corpus)
    real = Counter(r["lang"] for r in records if r["split"] == "train" and "asr" in r.get("tasks", ()))
    assert {k: v for k, v in state["data"]["examples"].items()} == {f"asr/{lang}": n + 6 for lang, n in real.items()}
    # a retrained recognizer (new weights, the same phones): fine-tuning onto it keeps the unit embeddings
    retrained = load_units(tmp_path / "phone")
    with torch.no_grad():
        for p in retrained.parameters():
            p.add_(0.01)
    retrained.save_pretrained(tmp_path / "phone2")
    moved = train(tiny_corpus, tmp_path / "run2", TrainAlmConfig(
        steps=0, init_from=str(result.checkpoint), **{**common, "units": str(tmp_path / "phone2")}), progress=False)
    v = Vocabulary.load(result.checkpoint)
    emb_a = result.model.get_input_embeddings().weight[v.units.start: v.units.end]
    emb_b = moved.model.get_input_embeddings().weight[v.units.start: v.units.end]
    assert torch.equal(emb_a, emb_b) and Vocabulary.load(moved.checkpoint).to_dict() == v.to_dict()
    assert _same_units(load_units(moved.checkpoint / "units"), load_units(tmp_path / "phone2"))  # saved with it
    assert not _same_units(retrained, load_units(tmp_path / "phone"))

    records_by_split = {r["split"]: r for r in records}
    natural = {"en": ("A natural sentence about the sea.", records_by_split["test"]["text"]),
               "es": ("Una frase natural sobre el mar.",)}
    monkeypatch.setattr("training.data.broad_text.natural_sentences", lambda lang: natural.get(lang, ()))
    units = load_units(tmp_path / "phone")
    cache = build_token_cache(tiny_corpus, load_codec(tokenizer_dirs[0]), units, cache_root, progress=False)
    texts = [r["text"] for r in cache.records.values()]
    vocab = Vocabulary(train_text_tokenizer(texts, vocab_size=400), num_units=len(phones), num_codebooks=K,
                       cardinality=TINY_CODEC.cardinality)
    builder = ExampleBuilder(vocab, cache, ExampleOptions(num_codebooks=K))
    big = TrainAlmConfig(asr_sim_sentences=100_000, **common)  # every sentence of the pool
    items = simulated_asr_items(builder, units, big, progress=False)
    held_out = {r["text"] for r in records if r["split"] != "train"}
    train_texts = {r["text"] for r in records if r["split"] == "train"}
    chosen = [builder._simulated[i][1] for v in items.values() for i in v]
    assert all(i.startswith(SIM_PREFIX) for v in items.values() for i in v)
    assert not held_out & set(chosen)  # held-out text never
    assert set(chosen) == (train_texts | {"A natural sentence about the sea.", "Una frase natural sobre el mar."}) \
        - held_out
    ex = builder.build("asr", items["en"][0], np.random.default_rng(0))
    assert all(t in vocab.units for t in ex.input_ids[: ex.prompt_len] if t not in vocab.special)
    # slu_sim_commands: commands of the SLU grammar, never a held-out one, join the SLU groups
    from training.alm_data import SIM_SLU_PREFIX
    from training.data.slu import parse_target
    from training.train_alm import simulated_slu_items

    slu = simulated_slu_items(builder, units, TrainAlmConfig(slu_sim_commands=40, **common), progress=False)
    assert list(slu) == ["en"] and 30 <= len(slu["en"]) <= 40 and slu["en"][0].startswith(SIM_SLU_PREFIX)
    commands = [builder._simulated_slu[i] for i in slu["en"]]
    assert not held_out & {text for _, text, _, _ in commands}
    assert all(parse_target(target)[0] for _, _, _, target in commands)  # every target parses strictly
    assert len({parse_target(target)[0] for _, _, _, target in commands}) > 5  # intents in rotation
