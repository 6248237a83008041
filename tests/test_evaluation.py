"""Evaluation: metric values on known strings, the speaker scorer on real corpus voices, ``alm eval`` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alm.checkpoint import save_checkpoint
from alm.config import alm_debug
from alm.model import AlmForCausalLM
from alm.vocab import Vocabulary, train_text_tokenizer
from codec import load_audio, load_codec, load_units
from training.data import read_manifest
from training.evaluation.eval_alm import EvalConfig, evaluate, select
from training.evaluation.metrics import bleu, char_error_rate, intent_accuracy, slot_f1, word_error_rate
from training.evaluation.speaker import SpeakerSimilarity, equal_error_rate


def test_error_rates_on_known_strings() -> None:
    assert word_error_rate(["the cat sat"], ["the dog sat"]) == pytest.approx(1 / 3)
    assert word_error_rate(["The cat, sat!"], ["the cat sat"]) == 0.0  # normalized: case and punctuation
    assert word_error_rate(["Dr. Smith paid $5."], ["doctor smith paid five dollars"]) == 0.0
    assert word_error_rate(["a b", "c d e f"], ["a b", ""]) == pytest.approx(4 / 6)  # corpus-level
    assert char_error_rate(["abcd"], ["abce"]) == pytest.approx(1 / 4)
    assert word_error_rate(["¿Dónde está?"], ["donde esta"], "es") == 1.0  # accents are kept in Spanish
    with pytest.raises(ValueError, match="hypotheses"):
        word_error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        word_error_rate(["?!"], ["x"])


def test_bleu_intent_and_slots() -> None:
    ref = "our uncle needed two cheap lamps last weekend"
    assert bleu([ref], [ref]) == pytest.approx(100.0)
    assert bleu([ref], ["completely different words here"]) < 5.0
    assert intent_accuracy(["play", "stop", "play"], ["play", "play", "play"]) == pytest.approx(2 / 3)
    assert slot_f1([{}], [{}]) == 1.0
    assert slot_f1([{"city": "Boston"}], [{"city": "boston"}]) == 1.0  # values compared normalized
    # 1 right, 1 wrong value (a miss and a false alarm), 1 spurious: tp 1, fp 2, fn 1
    refs = [{"city": "Boston", "day": "monday"}]
    hyps = [{"city": "Boston", "day": "friday", "artist": "x"}]
    assert slot_f1(refs, hyps) == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))


def test_equal_error_rate_extremes() -> None:
    assert equal_error_rate([0.9, 0.8, 0.95], [0.1, 0.2, 0.0]) == 0.0
    assert 0.4 <= equal_error_rate([0.1, 0.9], [0.1, 0.9]) <= 0.6


def test_speaker_scorer_separates_real_voices(tiny_corpus: Path) -> None:
    records = read_manifest(tiny_corpus)
    train = [r for r in records if r["split"] == "train"]
    test = [r for r in records if r["split"] == "test"]
    scorer = SpeakerSimilarity().fit([load_audio(r["path"]).numpy() for r in train], [r["speaker"] for r in train])
    ref = scorer.reference_scores([load_audio(r["path"]).numpy() for r in test], [r["speaker"] for r in test])
    assert ref["same_speaker"] > ref["different_speaker"] + 0.2, ref  # held-out speakers, never fitted on
    a = load_audio(test[0]["path"]).numpy()
    assert scorer.score(a, a) == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="fit"):
        SpeakerSimilarity().embed(a)


def test_selection_alternates_languages(tiny_corpus: Path) -> None:
    records = read_manifest(tiny_corpus)
    chosen = select(records, "test", "asr", 4, seed=0)
    assert len({r["id"] for r in chosen}) == len(chosen) == 4 and all(r["split"] == "test" for r in chosen)
    assert {r["lang"] for r in chosen} == {"en", "es"}
    assert select(records, "test", "asr", 4, seed=0) == chosen  # deterministic


@pytest.fixture(scope="module")
def debug_checkpoint(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained debug decoder over the shipped codec (2 codebooks) and units: every task runs end to end."""
    texts = [r["text"] for r in read_manifest(tiny_corpus)]
    codec, units = load_codec(), load_units()
    vocab = Vocabulary(train_text_tokenizer(texts, vocab_size=300), num_units=units.num_units, num_codebooks=2,
                       cardinality=codec.cardinality)
    torch.manual_seed(0)
    model = AlmForCausalLM(alm_debug(vocab, num_codebooks=2, voice_seconds=1.0, max_position_embeddings=4096)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("eval") / "ckpt", model, vocab, codec, units)


def test_alm_eval_end_to_end(debug_checkpoint: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    # the tiny corpus' test split is too small to hold every task, its train split holds all five
    cfg = EvalConfig(split="train", max_per_task=2, max_new_tokens=40, speaker_fit_utterances=60, speed_tokens=20,
                     save_samples=1)
    report = evaluate(debug_checkpoint, tiny_corpus, tmp_path, cfg, progress=False)
    m = report.metrics
    assert set(m) >= {"asr", "tts", "s2st", "slu", "continue", "speed", "peer"}
    for task in ("asr", "tts", "s2st", "slu", "continue"):
        assert m[task]["n"] == 2 and m[task]["rtf"] > 0, task
    assert m["asr"]["wer"] >= 0 and 0 <= m["slu"]["intent_accuracy"] <= 1 and 0 <= m["slu"]["slot_f1"] <= 1
    assert 0 <= m["s2st"]["asr_bleu"] <= 100
    assert m["peer"]["pocketsphinx_wer_en"] >= 0
    assert m["tts"]["pocketsphinx_wer_en"] >= 0 and m["tts"]["resynth_pocketsphinx_wer_en"] >= 0
    assert m["speed"]["tokens_per_s_kv_cache"] > 0 and m["speed"]["tokens_per_s_no_cache"] > 0
    sim = report.reference["speaker_similarity_real"]
    assert sim["same_speaker"] > sim["different_speaker"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"]["asr"]["wer"] == pytest.approx(m["asr"]["wer"])
    assert len(saved["outputs"]["asr"]) == 2 and {"reference", "hypothesis"} <= set(saved["outputs"]["asr"][0])
    table = (tmp_path / "results.md").read_text()
    assert "| asr | wer |" in table and "| slu | intent_accuracy |" in table
    assert (tmp_path / "eval.png").stat().st_size > 0
    for wav in (tmp_path / "samples").glob("*.wav"):
        audio = load_audio(wav).numpy()
        assert audio.size and np.isfinite(audio).all()
    assert all(math.isfinite(v) or math.isnan(v) for ms in m.values() for v in ms.values())


def test_eval_config_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match="unknown"):
        EvalConfig(tasks=("asr", "dance"))


def test_alm_eval_command(debug_checkpoint: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from alm.cli import app

    runner = CliRunner()
    out = tmp_path / "report"
    r = runner.invoke(app, ["eval", str(debug_checkpoint), "--corpus", str(tiny_corpus), "--out", str(out),
                            "--split", "train", "--tasks", "asr,slu", "--max-per-task", "1", "--no-peer"])
    assert r.exit_code == 0, r.output
    assert "| asr | wer |" in r.output and (out / "results.md").is_file() and (out / "results.json").is_file()
    assert set(json.loads((out / "results.json").read_text())["metrics"]) == {"asr", "slu", "speed"}
    bad = runner.invoke(app, ["eval", str(debug_checkpoint), "--corpus", str(tiny_corpus), "--out", str(out),
                              "--tasks", "asr,dance"])
    assert bad.exit_code == 2 and "dance" in bad.output
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope"), "--corpus", str(tiny_corpus), "--out", str(out)])
    assert missing.exit_code == 1 and "nope" in missing.output
