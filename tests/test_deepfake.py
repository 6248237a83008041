"""The deepfake detector (safety.deepfake): front end and network shapes, the EER, training on a tiny made-up task,
save/load, input errors and ``alm detect-fake``'s exit codes.

The tiny task: "bona fide" clips are noisy harmonic tones with vibrato (energy up to 8 kHz); "generated" clips are the
same kind of tones band-limited at 3.5 kHz, the way a low-rate vocoder or codec loses the top band.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import butter, sosfilt
from typer.testing import CliRunner

from codec import AudioInputError
from safety.deepfake import (
    DeepfakeConfig,
    DeepfakeDetector,
    DeepfakeInputError,
    DeepfakeModelError,
    eer_threshold,
    equal_error_rate,
    prepare,
    score,
    train_detector,
)
from safety.deepfake_model import LCNN, LFCC, compute_deltas, linear_filterbank

SR = 16000
TINY = DeepfakeConfig(n_filters=20, n_lfcc=10, channels=(4, 8), hidden=8, crop_seconds=0.5, window_hop_seconds=0.25)
LOWPASS = butter(8, 3500, fs=SR, output="sos")


def tone(rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """``[T]`` float32: a harmonic tone (f0 100-250 Hz, 2 % vibrato, harmonics to 7.8 kHz) plus noise at -34 dBFS."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 250) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 26))
    return (0.5 * x / np.abs(x).max() + rng.normal(0, 0.01, t.size)).astype(np.float32)


def band_limited(x: np.ndarray) -> np.ndarray:
    return sosfilt(LOWPASS, x).astype(np.float32)


@pytest.fixture(scope="module")
def trained() -> DeepfakeDetector:
    rng = np.random.default_rng(0)
    bona = [tone(rng, rng.uniform(0.8, 1.5)) for _ in range(24)]
    spoof = [band_limited(tone(rng, rng.uniform(0.8, 1.5))) for _ in range(24)]
    return train_detector(bona, spoof, config=TINY, steps=60, batch_size=16, seed=0, progress=False)


# --- front end and network -------------------------------------------------------------------------------------
def test_lfcc_shapes_and_filterbank() -> None:
    cfg = DeepfakeConfig()
    feats = LFCC(cfg)(torch.randn(2, SR))
    assert feats.shape == (2, cfg.n_features, 1 + SR // cfg.hop_length) == (2, 60, 101)
    assert torch.isfinite(feats).all()
    fb = linear_filterbank(cfg.n_filters, cfg.n_fft, SR)  # [40, 257]
    assert fb.shape == (40, 257) and float(fb.max()) <= 1.0 + 1e-6 and float(fb.min()) >= 0.0
    centres = fb.argmax(1).float() * SR / cfg.n_fft  # Hz
    spacing = centres.diff()
    assert float(spacing.std()) < 0.1 * float(spacing.mean())  # linear, not mel: equal spacing in Hz
    first, last = int(fb[0].argmax()) + 1, int(fb[-1].argmax())  # bins strictly between the outer centres
    assert torch.allclose(fb[:, first:last].sum(0), torch.ones(last - first), atol=1e-5)  # overlapping halves sum to 1


def test_deltas_of_a_ramp_are_its_slope() -> None:
    x = torch.arange(20.0).repeat(3, 1) * 0.5  # [3, 20], slope 0.5
    d = compute_deltas(x)
    assert d.shape == x.shape
    assert torch.allclose(d[:, 2:-2], torch.full((3, 16), 0.5))
    assert float(d[0, 0]) < 0.5  # replicated edges flatten the ends


def test_lcnn_shapes_and_size() -> None:
    model = LCNN(DeepfakeConfig()).eval()
    assert 10_000 < model.num_parameters() < 300_000  # "a few hundred K parameters at most"
    for frames in (100, 137, 300):
        assert model(torch.randn(3, 60, frames)).shape == (3,)
    tiny = LCNN(TINY).eval()
    assert tiny(tiny.features(torch.randn(2, SR // 2))).shape == (2,)


def test_config_validation_and_round_trip() -> None:
    assert DeepfakeConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ValueError, match="n_lfcc"):
        DeepfakeConfig(n_filters=10, n_lfcc=20)
    with pytest.raises(ValueError, match="crop_seconds"):
        DeepfakeConfig(crop_seconds=0.05)
    with pytest.raises(ValueError, match="unknown"):
        DeepfakeConfig.from_dict({**TINY.to_dict(), "colour": "red"})


# --- equal error rate ------------------------------------------------------------------------------------------
def test_eer_hand_worked() -> None:
    # Threshold 0.4 (score >= 0.4 is "generated"): bona 0.4 is a false alarm (1/4), spoof 0.35 a miss (1/4).
    bona, spoof = [0.1, 0.2, 0.3, 0.4], [0.35, 0.5, 0.6, 0.7]
    assert equal_error_rate(bona, spoof) == pytest.approx(0.25)
    assert eer_threshold(bona, spoof) == pytest.approx(0.4)
    # Separable classes: EER 0, threshold halfway between them.
    assert equal_error_rate([0.1, 0.2], [0.8, 0.9]) == 0.0
    assert eer_threshold([0.1, 0.2], [0.8, 0.9]) == pytest.approx(0.5)
    # Swapped classes: every threshold errs; identical scores: chance.
    assert equal_error_rate([0.8, 0.9], [0.1, 0.2]) == pytest.approx(1.0)
    assert equal_error_rate([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        equal_error_rate([], [0.5])


# --- training --------------------------------------------------------------------------------------------------
def test_trained_detector_separates_held_out_clips(trained: DeepfakeDetector) -> None:
    rng = np.random.default_rng(123)  # clips the detector never saw
    bona = [trained.score(tone(rng, rng.uniform(0.6, 2.5))) for _ in range(10)]
    spoof = [trained.score(band_limited(tone(rng, rng.uniform(0.6, 2.5)))) for _ in range(10)]
    assert all(0.0 <= s <= 1.0 for s in bona + spoof)
    assert equal_error_rate(bona, spoof) <= 0.1
    assert np.mean(spoof) - np.mean(bona) > 0.3
    facts = trained.info["training"]
    assert 0.0 < trained.threshold < 1.0 and facts["valid_clips"] == {"bona": 4, "spoof": 4}
    assert facts["final_loss"] < 0.6  # chance is ln 2 = 0.69


def test_training_is_reproducible_and_leaves_global_rng_alone() -> None:
    rng = np.random.default_rng(1)
    bona, spoof = [tone(rng) for _ in range(6)], [band_limited(tone(rng)) for _ in range(6)]
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    a = train_detector(bona, spoof, config=TINY, steps=5, batch_size=4, seed=3, progress=False)
    assert torch.equal(torch.rand(1), before)  # the caller's generator was not reseeded or advanced
    b = train_detector(bona, spoof, config=TINY, steps=5, batch_size=4, seed=3, progress=False)
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k


def test_training_rejects_bad_input() -> None:
    rng = np.random.default_rng(2)
    good = [tone(rng) for _ in range(3)]
    with pytest.raises(ValueError, match="both classes"):
        train_detector(good, [], config=TINY, steps=1, progress=False)
    with pytest.raises(DeepfakeInputError, match=r"spoof\[1\].*silent"):
        train_detector(good, [good[0], np.zeros(SR, np.float32)], config=TINY, steps=1, progress=False)


# --- scoring, input checks, persistence ------------------------------------------------------------------------
def test_long_clips_are_scored_over_windows(trained: DeepfakeDetector) -> None:
    rng = np.random.default_rng(5)
    d = trained.detect(tone(rng, 3.0))
    # 0.5 s windows every 0.25 s over 301 frames: starts 0, 25, ..., 250, plus one ending with the clip (251).
    assert len(d.window_scores) == 12
    assert d.score == pytest.approx(np.mean(d.window_scores), abs=1e-6)
    assert d.generated == (d.score >= trained.threshold)
    assert len(trained.detect(tone(rng, 0.2)).window_scores) == 1  # shorter than a window: repeated to fill it


def test_input_errors(trained: DeepfakeDetector) -> None:
    with pytest.raises(AudioInputError, match="empty"):
        trained.score(np.zeros(0, np.float32))
    bad = np.ones(SR, np.float32) * 0.1
    bad[100] = np.nan
    with pytest.raises(AudioInputError, match="NaN"):
        trained.score(bad)
    with pytest.raises(DeepfakeInputError, match="silent"):
        trained.score(np.full(SR, 1e-5, np.float32))
    with pytest.raises(DeepfakeInputError, match="at least"):
        trained.score(tone(np.random.default_rng(0), 0.05))
    with pytest.raises(ValueError, match="threshold"):
        trained.detect(tone(np.random.default_rng(0)), threshold=2.0)


def test_other_sample_rates_are_resampled(trained: DeepfakeDetector) -> None:
    from scipy.signal import resample_poly

    wav = tone(np.random.default_rng(9), 1.5)
    at_8k = resample_poly(wav, 1, 2).astype(np.float32)
    assert prepare(at_8k, trained.config, sample_rate=8000).numel() > 0.9 * prepare(wav, trained.config).numel()
    assert 0.0 <= trained.score(at_8k, sample_rate=8000) <= 1.0
    with pytest.raises(AudioInputError, match="source_rate"):
        trained.score(wav, sample_rate=5)


def test_save_load_identity(trained: DeepfakeDetector, tmp_path: Path) -> None:
    trained.save(tmp_path / "det")
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["config.json", "model.safetensors"]
    loaded = DeepfakeDetector.load(tmp_path / "det")
    assert loaded.config == trained.config and loaded.threshold == trained.threshold and loaded.info == trained.info
    for (k, v), w in zip(trained.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(v, w), k
    wav = tone(np.random.default_rng(4), 2.0)
    assert loaded.score(wav) == trained.score(wav)
    assert score(wav, detector=loaded) == trained.score(wav)


def test_load_errors(trained: DeepfakeDetector, tmp_path: Path) -> None:
    with pytest.raises(DeepfakeModelError, match="no detector directory"):
        DeepfakeDetector.load(tmp_path / "nothing")
    d = trained.save(tmp_path / "det")
    (d / "config.json").write_text("{not json")
    with pytest.raises(DeepfakeModelError, match="config.json"):
        DeepfakeDetector.load(d)
    other = DeepfakeDetector(LCNN(DeepfakeConfig(n_filters=20, n_lfcc=10, channels=(4, 16), hidden=8)))
    other.save(tmp_path / "other")
    (tmp_path / "other" / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    with pytest.raises(DeepfakeModelError, match="does not fit"):
        DeepfakeDetector.load(tmp_path / "other")


def test_shipped_detector_scores() -> None:
    s = score(tone(np.random.default_rng(0), 2.0))
    assert 0.0 <= s <= 1.0


# --- the command line ------------------------------------------------------------------------------------------
def test_cli_exit_codes(trained: DeepfakeDetector, tmp_path: Path) -> None:
    from alm.cli import app

    model = trained.save(tmp_path / "det")
    rng = np.random.default_rng(77)
    real, fake, silent = tmp_path / "real.wav", tmp_path / "fake.wav", tmp_path / "silent.wav"
    sf.write(real, tone(rng, 2.0), SR)
    sf.write(fake, band_limited(tone(rng, 2.0)), SR)
    sf.write(silent, np.zeros(SR, np.float32), SR)
    (tmp_path / "notes.wav").write_text("not audio")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, ["detect-fake", *args, "--model", str(model)])
        return r.exit_code, r.output

    code, out = run(str(real))
    assert code == 0 and "bona fide" in out, out
    code, out = run(str(fake))
    assert code == 1 and "generated" in out, out
    code, out = run(str(real), str(fake), "--json")
    rows = json.loads(out)
    assert code == 1 and [r["decision"] for r in rows] == ["bona fide", "generated"]
    assert rows[1]["score"] > rows[0]["score"] and rows[0]["threshold"] == pytest.approx(trained.threshold, abs=1e-6)
    assert run(str(real), "--threshold", "0")[0] == 1  # everything is "generated" at threshold 0
    assert run(str(fake), str(tmp_path / "missing.wav"))[0] == 2  # bad input wins over "generated"
    assert run(str(silent))[0] == 2
    assert run(str(tmp_path / "notes.wav"))[0] == 2
    assert run(str(real), "--threshold", "1.5")[0] == 2
    r = runner.invoke(app, ["detect-fake", str(real), "--model", str(tmp_path / "no-model")])
    assert r.exit_code == 2 and "no detector directory" in r.output
    assert runner.invoke(app, ["detect-fake"]).exit_code == 2  # no FILE: typer's usage error
