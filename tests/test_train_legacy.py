"""The baseline trainer (``python -m training.train_legacy``) on the tiny corpus: each model's debug run writes a
loadable ``final`` (LAS with the shipped recipe's joint CTC-attention loss), CTC resumes to the same weights, shipped
configs load, alignment PNGs, inference and CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from codec.audio import load_audio
from codec.features import FeatureConfig
from legacy_seq2seq.cli import legacy_app
from legacy_seq2seq.inference import load_legacy, set_output_hook, synthesize, transcribe, translate
from legacy_seq2seq.translatotron import Translatotron
from training.config import load_config, read_yaml
from training.data import read_manifest
from training.legacy.config import MODELS, LegacyTrainConfig, model_config
from training.legacy.data import file_fingerprint
from training.legacy.prosody import f0_autocorrelation
from training.legacy.steps import LossModule, evaluate, make_batch
from training.train_legacy import LegacyResult, main, prepare_data, train

ROOT = Path(__file__).resolve().parents[1]
LAS_CTC = {"ctc_weight": 0.3, "ctc_upsample": 2, "guided_attention_weight": 2.0}  # as training/configs/legacy_las.yaml
CLASSES = {"ctc": "CTCModel", "rnnt": "RNNTModel", "las": "LASModel", "tacotron2": "Tacotron2",
           "fastspeech2": "FastSpeech2", "hifigan": "HiFiGANGenerator", "translatotron": "Translatotron"}
STEPS = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _argv(kind: str, corpus: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    args = [kind, "--corpus", str(corpus), "--out", str(out), "--cache-dir", str(cache), "--preset", "debug",
            "--steps", str(STEPS), "--lr", "0.003", "--warmup-steps", "1", "--weight-decay", "0",
            "--log-every", "1", "--eval-every", str(STEPS), "--ckpt-every", "2", "--keep-checkpoints", "2",
            "--batch-seconds", "8", "--max-batch-size", "4", "--max-seconds", "5", "--num-samples", "2",
            "--eval-utterances", "2", "--engine", "plain", "--device", "cpu", "--threads", "1", "--no-progress"]
    if kind == "hifigan":
        # two warm-up steps (generator alone), then GAN steps
        args += ["--vocoder-segment-s", "0.25", "--batch-seconds", "1", "--vocoder-gan-start-step", "2"]
    return args + list(extra)


class Runs:
    """Each model trained once per module (FastSpeech 2 reads the Tacotron 2 run's alignments)."""

    def __init__(self, corpus: Path, root: Path) -> None:
        self.corpus, self.root, self.done = corpus, root, {}

    def __call__(self, kind: str) -> LegacyResult:
        if kind not in self.done:
            extra = ("--durations-from", str(self(kind="tacotron2").final)) if kind == "fastspeech2" else ()
            if kind == "las":
                extra = ("--model-overrides", json.dumps(LAS_CTC))
            self.done[kind] = main(_argv(kind, self.corpus, self.root / kind, self.root / "cache", *extra))
        return self.done[kind]


@pytest.fixture(scope="module")
def runs(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tiny_corpus, tmp_path_factory.mktemp("legacy"))


@pytest.fixture(scope="module")
def valid_wav(tiny_corpus: Path) -> Path:
    return Path(next(r["path"] for r in read_manifest(tiny_corpus) if r["split"] == "valid"))


@pytest.mark.parametrize("path", sorted((ROOT / "training" / "configs").glob("legacy_*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path, LegacyTrainConfig)
    kind = path.stem.removeprefix("legacy_")
    assert kind in MODELS and read_yaml(path)["corpus"] == "corpus-3h" and cfg.preset == "cpu"
    config = model_config(kind, cfg.preset, 40, 80, cfg.model_overrides)
    if kind == "las":  # the recipe trains with joint CTC-attention
        assert (config.ctc_weight, config.ctc_upsample) == (LAS_CTC["ctc_weight"], LAS_CTC["ctc_upsample"])
        assert config.guided_attention_weight == LAS_CTC["guided_attention_weight"]  # and guided attention
        assert 0 < cfg.guided_attention_start < cfg.guided_attention_steps < cfg.steps  # after CTC has a start
    if kind == "fastspeech2":
        assert cfg.durations_from


def test_every_model_has_a_shipped_config() -> None:
    assert {p.stem.removeprefix("legacy_") for p in (ROOT / "training" / "configs").glob("legacy_*.yaml")} \
        == set(MODELS)


@pytest.mark.parametrize("kind", MODELS)
def test_debug_run_writes_a_loadable_final(kind: str, runs: Runs) -> None:
    result = runs(kind)
    out = result.final.parent
    losses = [h["loss"] for h in result.history if h.get("loss") is not None]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    evals = [h for h in result.history if h.get("eval")]
    assert evals and evals[-1]["step"] == STEPS
    loaded = load_legacy(result.final)
    assert loaded.kind == CLASSES[kind] and not loaded.model.training
    assert (loaded.vocab is None) == (kind == "hifigan")
    assert (result.final / "features.json").is_file() and (result.final / "training.json").is_file()
    assert (out / "training_curves.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    if kind in ("ctc", "rnnt", "las"):
        assert {"cer", "wer", "valid_loss"} <= set(evals[-1])
        samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 2 and all(isinstance(s["hypothesis"], str) for s in samples)
    elif kind != "translatotron":  # the tiny corpus has no valid S2ST pair: its eval is tested below
        assert "mel_l1" in evals[-1] and math.isfinite(evals[-1]["mel_l1"])
    if kind in ("las", "tacotron2"):
        assert (out / "alignments" / f"step-{STEPS}.png").stat().st_size > 0
    if kind == "las":  # joint CTC-attention: both parts logged, the CTC head's transcripts checked at evaluation
        assert loaded.model.config.ctc_weight == LAS_CTC["ctc_weight"] and loaded.model.ctc_head is not None
        logged = [h for h in result.history if h.get("loss") is not None]
        assert all(h["ctc_loss"] > 0 and math.isfinite(h["attention_loss"]) for h in logged)
        assert all(0 <= h["guided_loss"] <= 1 for h in logged)  # guided attention (the default 1000 steps)
        assert {"valid_ctc_loss", "valid_attention_loss", "valid_guided_loss", "ctc_cer", "ctc_wer"} <= set(evals[-1])
        assert all(isinstance(s["ctc_hypothesis"], str) for s in samples)
    if kind == "hifigan":  # two warm-up steps (generator alone), then two GAN steps
        logged = [h for h in result.history if h.get("loss") is not None]
        assert ["d_loss" in h for h in logged] == [False, False, True, True]
        assert all("train_stft" in h for h in logged[:2])


def test_translatotron_pairs_spanish_sources_with_their_english_translations(tiny_corpus: Path,
                                                                             tmp_path: Path) -> None:
    records = {r["id"]: r for r in read_manifest(tiny_corpus)}
    cfg = LegacyTrainConfig(preset="debug", max_seconds=5, cache_dir=str(tmp_path))
    data = prepare_data("translatotron", tiny_corpus, cfg, None, FeatureConfig(), False)
    assert data.train
    for u in data.train + data.valid:
        target = data.targets[u.id]
        assert u.lang == "es" and target.lang == "en" and records[u.id]["translation_id"] == target.id
        assert data.ids[u.id] and data.ids[target.id]  # both sides feed an auxiliary decoder
    batch = make_batch(data, [u.id for u in data.train[:2]], torch.device("cpu"))
    assert batch["src_mel"].shape[0] == batch["tgt_mel"].shape[0] == batch["target_ids"].shape[0] == 2
    # validation on a pair: teacher-forced mel L1, valid loss and the alignment plot
    data.valid = data.train[:1]
    model = Translatotron(model_config("translatotron", "debug", len(data.vocab), 80))
    metrics, _ = evaluate(data, LossModule("translatotron", model), 7, tmp_path, cfg, torch.device("cpu"))
    assert math.isfinite(metrics["mel_l1"]) and math.isfinite(metrics["valid_loss"])
    assert (tmp_path / "alignments" / "step-7.png").stat().st_size > 0


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_ctc_resume_equals_uninterrupted(runs: Runs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    straight = runs("ctc")
    ckpts = straight.final.parent / "checkpoints"
    # "killed" after the step-2 checkpoint; the step-4 one half-written (truncated weights): skipped with a warning
    shutil.copytree(ckpts, tmp_path / "b" / "checkpoints")
    weights = tmp_path / "b" / "checkpoints" / "step-0000004" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="training.legacy.checkpoints"):
        resumed = main(_argv("ctc", runs.corpus, tmp_path / "b", runs.root / "cache"))
    assert resumed.start_step == 2 and _same_weights(resumed.model, straight.model)
    assert any("step-0000004 is damaged" in r.getMessage() for r in caplog.records)
    assert [h["loss"] for h in resumed.history if "loss" in h] == [h["loss"] for h in straight.history if "loss" in h]


def test_bad_setups_fail_before_any_work(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain engine"):
        train("hifigan", tiny_corpus, tmp_path, LegacyTrainConfig(engine="deepspeed", preset="debug"))
    with pytest.raises(ValueError, match="durations_from"):
        train("fastspeech2", tiny_corpus, tmp_path, LegacyTrainConfig(preset="debug"))
    with pytest.raises(ValueError, match="preset"):
        LegacyTrainConfig(preset="huge")
    with pytest.raises(ValueError, match="guided_attention_start=5"):
        LegacyTrainConfig(guided_attention_start=5, guided_attention_steps=3)


def test_inference_transcribes_and_synthesizes(runs: Runs, valid_wav: Path) -> None:
    for kind in ("ctc", "rnnt", "las"):
        assert isinstance(transcribe(runs(kind).final, valid_wav), str)
        assert isinstance(transcribe(load_legacy(runs(kind).final), load_audio(valid_wav)), str)
    calls = []

    def hook(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        calls.append(sample_rate)
        return audio * 0.5

    previous = set_output_hook(hook)
    try:
        for kind in ("tacotron2", "fastspeech2"):
            audio = synthesize(runs(kind).final, "hola mundo", runs("hifigan").final)
            assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) % 160 == 0 and len(audio) > 0
            assert np.isfinite(audio).all() and np.abs(audio).max() <= 0.5
        audio = translate(runs("translatotron").final, valid_wav, runs("hifigan").final)
        assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) % 160 == 0 and len(audio) > 0
    finally:
        set_output_hook(previous)
    assert calls == [16000, 16000, 16000]
    with pytest.raises(ValueError, match="not a speech recognizer"):
        transcribe(runs("hifigan").final, valid_wav)


def test_cli_exit_codes(runs: Runs, valid_wav: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    ok = cli.invoke(legacy_app, ["transcribe", str(valid_wav), "--model", str(runs("ctc").final)])
    assert ok.exit_code == 0, ok.output
    missing = cli.invoke(legacy_app, ["transcribe", str(valid_wav), "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "is not a directory" in missing.output
    wav = tmp_path / "out.wav"
    ok = cli.invoke(legacy_app, ["synthesize", "hello", "--model", str(runs("fastspeech2").final), "--vocoder",
                                 str(runs("hifigan").final), "-o", str(wav)])
    assert ok.exit_code == 0 and len(load_audio(wav)) > 0, ok.output
    missing = cli.invoke(legacy_app, ["synthesize", "hello", "--model", str(tmp_path / "nope"), "--vocoder",
                                      str(runs("hifigan").final), "-o", str(wav)])
    assert missing.exit_code == 1 and "Error" in missing.output
    ok = cli.invoke(legacy_app, ["translate", str(valid_wav), "--model", str(runs("translatotron").final),
                                 "--vocoder", str(runs("hifigan").final), "-o", str(wav)])
    assert ok.exit_code == 0 and len(load_audio(wav)) > 0, ok.output
    wrong = cli.invoke(legacy_app, ["translate", str(valid_wav), "--model", str(runs("ctc").final),
                                    "--vocoder", str(runs("hifigan").final), "-o", str(wav)])
    assert wrong.exit_code == 1 and "not a Translatotron" in wrong.output
    half = cli.invoke(legacy_app, ["export", str(runs("fastspeech2").final), str(tmp_path / "fs2-half")])
    assert half.exit_code == 0 and "MB of weights" in half.output, half.output
    ok = cli.invoke(legacy_app, ["synthesize", "hello", "--model", str(tmp_path / "fs2-half"), "--vocoder",
                                 str(runs("hifigan").final), "-o", str(wav)])
    assert ok.exit_code == 0 and len(load_audio(wav)) > 0, ok.output
    bad = cli.invoke(legacy_app, ["export", str(tmp_path / "nope"), str(tmp_path / "x")])
    assert bad.exit_code == 1 and "not a saved model directory" in bad.output


def test_autocorrelation_f0_of_harmonic_tones() -> None:
    t = np.arange(16000) / 16000
    for f in (90.0, 220.0, 350.0):
        f0 = f0_autocorrelation(0.5 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(4 * np.pi * f * t), 16000, 160, 101)
        assert abs(float(np.median(f0[5:-5])) / f - 1) < 0.03
    assert f0_autocorrelation(np.zeros(16000), 16000, 160, 101).max() == 0.0


def test_comparison_report_measures_every_baseline(runs: Runs, tiny_corpus: Path, tmp_path: Path) -> None:
    from training.evaluation.eval_legacy import ALL, evaluate

    report = evaluate(tiny_corpus, tmp_path, {k: runs(k).final for k in ALL}, with_alm=False, max_per_task=2,
                      las_beam=2, progress=False)
    m = report["metrics"]
    assert report["absent"] == []
    for kind in ("ctc", "rnnt", "las", "las_beam2"):
        assert m[kind]["wer_en"] >= 0 and m[kind]["rtf"] > 0
    for key in ("tacotron2+hifigan", "fastspeech2+hifigan"):  # untrained models may stop at once: MCD needs 50 ms
        assert m[key]["rtf"] > 0 and report["outputs"][key]
        assert all(math.isfinite(r["mcd"]) == (r["seconds"] >= 0.05) for r in report["outputs"][key])
    assert m["hifigan_resynthesis"]["mcd_db"] > 0 and m["hifigan_resynthesis"]["mean_seconds"] > 0
    assert all(report["models"][k]["params_m"] > 0 and report["models"][k]["train_steps"] == STEPS for k in ALL)
    table = (tmp_path / "results.md").read_text()
    assert "| ctc |" in table and "| fastspeech2+hifigan |" in table and (tmp_path / "legacy_vs_alm.png").is_file()


def test_fastspeech2_trains_on_ctc_durations(tiny_corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ctc = main(_argv("ctc", tiny_corpus, tmp_path / "ctc", cache))
    fs2 = main(_argv("fastspeech2", tiny_corpus, tmp_path / "fs2", cache, "--durations-from", str(ctc.final)))
    losses = [h["loss"] for h in fs2.history if h.get("loss") is not None]
    assert losses and all(math.isfinite(x) for x in losses)
    assert (fs2.final / "vocab.json").read_text() == (ctc.final / "vocab.json").read_text()
    cached = sorted((cache).glob("durations-*/*.npy"))
    assert cached and all(np.load(p).sum() > 0 for p in cached)


def test_multi_speaker_warm_start_speaks_in_named_voices(runs: Runs, tiny_corpus: Path, tmp_path: Path) -> None:
    """`--speaker-ids --init-from DIR`: a FastSpeech 2 that starts from a single-voice run, learns one voice per
    training speaker, and speaks in the voice a user names (synthesize, CLI)."""
    single = runs("fastspeech2").final
    run = main(_argv("fastspeech2", tiny_corpus, tmp_path / "fs2-voices", runs.root / "cache", "--durations-from",
                     str(runs("tacotron2").final), "--speaker-ids", "--init-from", str(single)))
    speakers = sorted({r["speaker"] for r in read_manifest(tiny_corpus) if r["split"] == "train"
                       and "tts" in (r.get("tasks") or [])})
    model = load_legacy(run.final).model
    assert list(model.config.speakers) == speakers and len(speakers) > 1
    assert float(model.speaker_table.embedding.weight.detach().abs().sum()) > 0  # trained away from its zero start
    before, after = load_legacy(single).model.state_dict(), model.state_dict()
    assert set(after) - set(before) == {"speaker_table.embedding.weight"}
    previous = set_output_hook(None)
    try:
        voices = [synthesize(run.final, "hola mundo", runs("hifigan").final, speaker=name) for name in speakers[:2]]
        with pytest.raises(ValueError, match="unknown speaker"):
            synthesize(run.final, "hola mundo", runs("hifigan").final, speaker="nobody")
        with pytest.raises(ValueError, match="one voice"):
            synthesize(single, "hola mundo", runs("hifigan").final, speaker=speakers[0])
    finally:
        set_output_hook(previous)
    assert all(v.ndim == 1 and len(v) > 0 and np.isfinite(v).all() for v in voices)
    cli = CliRunner()
    listed = cli.invoke(legacy_app, ["speakers", "--model", str(run.final)])
    assert listed.exit_code == 0 and listed.output.split() == speakers, listed.output
    wav = tmp_path / "voice.wav"
    ok = cli.invoke(legacy_app, ["synthesize", "hello", "--model", str(run.final), "--vocoder",
                                 str(runs("hifigan").final), "-o", str(wav), "--speaker", speakers[-1]])
    assert ok.exit_code == 0 and len(load_audio(wav)) > 0, ok.output
    bad = cli.invoke(legacy_app, ["synthesize", "hello", "--model", str(run.final), "--vocoder",
                                  str(runs("hifigan").final), "-o", str(wav), "--speaker", "nobody"])
    assert bad.exit_code == 1 and "unknown speaker" in bad.output
    with pytest.raises(ValueError, match="holds a FastSpeech2, not a Tacotron2"):
        main(_argv("tacotron2", tiny_corpus, tmp_path / "t2", runs.root / "cache", "--init-from", str(single)))


def test_stand_in_voice_prefers_the_same_engine_in_the_same_language() -> None:
    from training.evaluation.eval_legacy import stand_in_voice, training_voices

    records = [{"speaker": s, "lang": lang, "split": "train"} for s, lang in
               [("espeak-m3", "en"), ("espeak-m3", "es"), ("flite-kal16", "en"), ("mbrola-es1", "es"),
                ("mbrola-us1", "en")]] + [{"speaker": "mbrola-us3", "lang": "en", "split": "test"}]
    voices, records = ("espeak-m3", "flite-kal16", "mbrola-es1", "mbrola-us1"), training_voices(records)
    assert stand_in_voice(voices, "mbrola-us3", "en", records) == 3  # not mbrola-es1: it speaks Spanish
    assert stand_in_voice(voices, "mbrola-mx2", "es", records) == 2
    assert stand_in_voice(voices, "pico-en-gb", "en", records) == 0  # no pico voice: the first English one
    assert stand_in_voice(voices, "flite-awb", "es", records) == 0
    assert stand_in_voice((), "flite-awb", "en", records) is None


def test_phoneme_tts_reads_espeak_phones_aligned_by_the_phone_recognizer(runs: Runs, tiny_corpus: Path,
                                                                         tmp_path: Path) -> None:
    """`--phonemes`: Tacotron 2 and FastSpeech 2 read espeak-ng IPA phones; FastSpeech 2 takes its durations from
    the shipped phone recognizer's forced alignment (no baseline aligner needed) and may warm-start from a letters
    model (all but the symbol embedding carry over); synthesis phonemizes the user's text in its language."""
    from legacy_seq2seq.inference import encode_input, phonemes_of

    units = ROOT / "codec" / "pretrained" / "units" / "phone"
    cache = runs.root / "cache"
    letters = runs("fastspeech2").final
    run = main(_argv("fastspeech2", tiny_corpus, tmp_path / "fs2-phones", cache, "--phonemes", "--durations-from",
                     str(units), "--init-from", str(letters)))
    assert [h["loss"] for h in run.history if h.get("loss") is not None]
    loaded, before = load_legacy(run.final), load_legacy(letters)
    assert loaded.model.config.phonemes and not before.model.config.phonemes
    assert "|" in loaded.vocab.chars and {"ɪ", "ə"} & set(loaded.vocab.chars)  # IPA, words separated
    assert loaded.model.config.vocab_size == len(loaded.vocab) != len(before.vocab)
    assert set(loaded.model.state_dict()) == set(before.model.state_dict())
    table = json.loads((cache / "phonemes.json").read_text(encoding="utf-8"))  # the phone strings, cached
    assert table and all(s and " " not in s for s in table.values())
    phone_runs = sorted(cache.glob(f"durations-{file_fingerprint(units / 'model.safetensors')}/*.npy"))
    assert phone_runs
    mels = {p.stem: p for p in cache.glob("logmel-*/*.npy")}
    for path in phone_runs:
        d = np.load(path)
        assert d.sum() == np.load(mels[path.stem]).shape[0]  # every frame belongs to one phone
        assert (d > 0).mean() > 0.8  # the recognizer places nearly every phone on frames of its own

    ids = encode_input(loaded, "Hello world", "en")
    assert loaded.vocab.decode(ids) == phonemes_of("hello world", "en") and "|" in phonemes_of("hello world", "en")
    assert phonemes_of("hola mundo", "es") != phonemes_of("hola mundo", "en")
    previous = set_output_hook(None)
    try:
        audio = synthesize(run.final, "hola mundo", runs("hifigan").final, language="es")
        assert audio.ndim == 1 and len(audio) > 0 and np.isfinite(audio).all()
        with pytest.raises(ValueError, match="espeak-ng voice"):
            synthesize(run.final, "hola mundo", runs("hifigan").final, language="xx")
        with pytest.raises(ValueError, match="empty"):
            synthesize(run.final, "   ", runs("hifigan").final)
    finally:
        set_output_hook(previous)
    wav = tmp_path / "phones.wav"
    ok = CliRunner().invoke(legacy_app, ["synthesize", "buenos días", "--model", str(run.final), "--vocoder",
                                         str(runs("hifigan").final), "-o", str(wav), "--language", "es"])
    assert ok.exit_code == 0 and len(load_audio(wav)) > 0, ok.output

    t2 = main(_argv("tacotron2", tiny_corpus, tmp_path / "t2-phones", cache, "--phonemes"))
    assert load_legacy(t2.final).model.config.phonemes and "|" in t2.vocab.chars
    with pytest.raises(ValueError, match="aligns phonemes but this run reads letters: add --phonemes"):
        train("fastspeech2", tiny_corpus, tmp_path / "x", LegacyTrainConfig(preset="debug", durations_from=str(units)))
    with pytest.raises(ValueError, match="aligns letters but this run reads phonemes"):
        train("fastspeech2", tiny_corpus, tmp_path / "x", LegacyTrainConfig(
            preset="debug", durations_from=str(runs("tacotron2").final), phonemes=True))
    with pytest.raises(ValueError, match="phonemes is for the TTS models"):
        train("ctc", tiny_corpus, tmp_path / "x", LegacyTrainConfig(preset="debug", phonemes=True))
