"""The keyed watermark: round trip, keys, false positives, robustness, localization, input errors, CLI.

Signals are numpy-made speech-like clips (``safety.attacks.speech_like``: formant-shaped harmonics with a moving
f0, fricative bursts, pauses) with fixed seeds, so every number here is reproducible.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from codec import load_audio
from safety import Detection, WatermarkInputError, WatermarkKey, detect, embed, load_key, watermark_hook
from safety import keys as keys_module
from safety import watermark as wm
from safety.attacks import ATTACKS, crop, mix_talker, speech_like, speed, splice, white_noise
from safety.cli import app
from safety.watermark import DEFAULT_MESSAGE, FRAME_HOP_S, N_BITS, SAMPLE_RATE

SR = SAMPLE_RATE
KEY = WatermarkKey.from_secret("test-key")
OTHER = WatermarkKey.from_secret("another-key")
MESSAGE = 0xBEEF


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speech_like(4.0, seed=0)


@pytest.fixture(scope="module")
def marked(clip: np.ndarray) -> np.ndarray:
    return embed(clip, MESSAGE, key=KEY)


def snr_db(clean: np.ndarray, marked: np.ndarray) -> float:
    noise = marked.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2)))


def test_round_trip(clip: np.ndarray, marked: np.ndarray) -> None:
    assert marked.shape == clip.shape and marked.dtype == np.float32 and np.isfinite(marked).all()
    d = detect(marked, key=KEY)
    assert isinstance(d, Detection)
    assert d.detected and d.probability > 0.999 and d.score > d.threshold
    assert d.payload == MESSAGE
    assert d.bit_confidence.shape == (N_BITS,) and (d.bit_confidence > 0.5).all()
    assert d.frame_hop_s == FRAME_HOP_S <= 0.02
    assert len(d.frame_scores) == pytest.approx(len(clip) / (FRAME_HOP_S * SR), abs=2)
    assert d.spans and d.spans[0][0] < 0.5 and d.spans[-1][1] > 3.5


def test_imperceptibility(clip: np.ndarray, marked: np.ndarray) -> None:
    from pesq import pesq

    assert snr_db(clip, marked) >= 25.0
    assert pesq(SR, clip, marked, "wb") >= 4.0


def test_wrong_key_and_forgery(clip: np.ndarray, marked: np.ndarray) -> None:
    assert not detect(marked, key=OTHER).detected  # another key finds nothing
    forged = embed(clip, MESSAGE, key=OTHER)  # a mark made with another key is not accepted
    d = detect(forged, key=KEY)
    assert not d.detected and d.payload is None and d.spans == []


def test_false_positives_on_clean_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    searches = []  # unmarked audio runs the whole speed search: the rate covers it
    search = wm._speed_search
    monkeypatch.setattr(wm, "_speed_search", lambda *a: searches.append(1) or search(*a))
    rng = np.random.default_rng(1234)
    hits = 0
    for i in range(120):
        x = speech_like(float(rng.uniform(1.0, 3.0)), seed=10_000 + i)
        hits += detect(x, key=KEY).detected
    assert hits <= 1  # FPR 1e-3 per clip: 0.12 expected; more than 1 in 120 has probability ~0.007
    assert len(searches) == 120


def test_localization_on_splice() -> None:
    x = speech_like(6.0, seed=501)
    start, end = int(1.5 * SR), int(4.5 * SR)
    spliced = x.copy()
    spliced[start:end] = embed(x[start:end], MESSAGE, key=KEY)  # clean - marked - clean, one utterance
    d = detect(spliced, key=KEY)
    assert d.detected and d.payload == MESSAGE
    assert len(d.spans) == 1
    assert abs(d.spans[0][0] - 1.5) <= 0.1 and abs(d.spans[0][1] - 4.5) <= 0.1
    # and with separate clips joined around the marked one
    marked = embed(speech_like(3.0, seed=2), MESSAGE, key=KEY)
    joined = splice(marked, SR, speech_like(1.0, seed=3), speech_like(1.0, seed=4))
    assert detect(joined, key=KEY).detected


def test_crop_still_decodes() -> None:
    # continuous speech: a 1.5 s crop holds one period (1.28 s) plus 3 symbols, so every bit is seen about once;
    # a crop that falls on a pause loses the bits there (the benchmark reports how often)
    marked = embed(speech_like(4.0, seed=0, pauses=False), MESSAGE, key=KEY)
    cropped = crop(marked, SR, seconds=1.5, start_s=1.234)  # starts mid-frame, mid-symbol
    assert len(cropped) == int(1.5 * SR)
    d = detect(cropped, key=KEY)
    assert d.detected and d.payload == MESSAGE


def test_white_noise_20db_still_detected(marked: np.ndarray) -> None:
    d = detect(white_noise(marked, SR, snr_db=20.0), key=KEY)
    assert d.detected


@pytest.mark.parametrize("factor", [0.93, 0.97, 1.03, 1.07])
def test_speed_change_detected(factor: float) -> None:
    marked = embed(speech_like(4.0, seed=21), MESSAGE, key=KEY)
    changed = speed(marked, SR, factor)  # duration / factor, pitch x factor
    duration = len(changed) / SR
    assert not detect(changed, key=KEY, search_speed=False).detected  # the plain scan alone misses it
    d = detect(changed, key=KEY)
    assert d.detected and d.payload == MESSAGE and d.threshold == wm.SPEED_THRESHOLD
    assert abs(d.speed - factor) <= 0.004 and d.to_dict()["speed"] == pytest.approx(d.speed)
    # frame scores and spans are on the input's timeline
    assert len(d.frame_scores) == pytest.approx(duration / FRAME_HOP_S, abs=2)
    assert len(d.spans) == 1 and d.spans[0][0] < 0.3 and duration - 0.3 < d.spans[0][1] <= duration + 1e-3


def test_speed_change_localization_and_keys() -> None:
    x = speech_like(7.0, seed=502)
    start, end = int(2.0 * SR), int(5.5 * SR)
    spliced = x.copy()
    spliced[start:end] = embed(x[start:end], MESSAGE, key=KEY)
    slow = speed(spliced, SR, 0.93)  # the marked stretch moves to 2.15-5.91 s
    d = detect(slow, key=KEY)
    assert d.detected and d.payload == MESSAGE and abs(d.speed - 0.93) <= 0.004
    assert len(d.spans) == 1  # on the input's timeline (spans of the undone signal would be 0.15 and 0.41 s early)
    assert abs(d.spans[0][0] - 2.0 / 0.93) <= 0.1 and abs(d.spans[0][1] - 5.5 / 0.93) <= 0.1
    assert not detect(slow, key=OTHER).detected  # another key still finds nothing after a speed change
    forged = speed(embed(x, MESSAGE, key=OTHER), SR, 1.05)
    d = detect(forged, key=KEY)
    assert not d.detected and d.payload is None and d.spans == [] and d.speed == 1.0


def test_speed_search_internals() -> None:
    # the fine spectrum at factor 1 is the plain features; the tabulated half-normal map matches scipy
    from scipy.special import ndtr, ndtri

    x = speech_like(3.0, seed=7).astype(np.float64)
    feats, audible = wm._features(x)
    fine_feats, fine_audible = wm._features_at(wm._fine_spectrum(x), 1.0)
    np.testing.assert_allclose(fine_feats, feats, atol=1e-4)
    assert (fine_audible == audible).all()
    y = np.concatenate([np.linspace(0, 35, 20001), np.abs(np.random.default_rng(0).standard_normal(5000)) * 3])
    np.testing.assert_allclose(wm._half_normal_to_normal(y), np.maximum(-ndtri(2 * ndtr(-y)), -8.0), atol=1e-4)


@pytest.mark.parametrize("seconds", [2.0, 11.0])  # 11 s: more symbols than one cycle of patterns (10.24 s)
def test_scan_matches_reference(seconds: float) -> None:
    """The vectorized scan against a direct computation of every alignment's sums, counts and score."""
    from scipy.special import ndtr, ndtri

    layout = wm._layout(KEY.seed)
    feats, _ = wm._features(embed(speech_like(seconds, seed=8), MESSAGE, key=KEY).astype(np.float64))
    best, _ = wm._scan(feats, layout)
    P, S, C = wm.SYMBOLS_PER_PERIOD, wm.FRAMES_PER_SYMBOL, wm.N_PATTERNS
    top = (-np.inf, None)
    for offset in range(S):
        n_sym = (len(feats) - offset) // S
        v = feats[offset : offset + n_sym * S].reshape(n_sym, S, -1).sum(axis=1)  # [K, N_BANDS]
        norms = np.linalg.norm(v, axis=1)
        for phase in range(C):
            sums, counts = np.zeros(P), np.zeros(P)
            for k in range(n_sym):
                pattern = (phase + k) % C
                if norms[k] > wm._ACTIVE:
                    sums[pattern % P] += v[k] @ layout.patterns[pattern] / norms[k]
                    counts[pattern % P] += 1
            data, pilots = layout.symbol_of_bit, layout.bit_of_symbol < 0
            n_bit = counts[data]
            u = np.maximum(-ndtri(2 * ndtr(-np.abs(sums[data]) / np.sqrt(np.maximum(n_bit, 1)))), -8.0)
            score = (sums[pilots].sum() + (np.sqrt(n_bit) * np.where(n_bit > 0, u, 0)).sum()) / np.sqrt(counts.sum())
            if score > top[0]:
                top = (score, (offset, phase, sums, counts))
    assert best.score == pytest.approx(top[0], abs=1e-3)
    assert (best.offset, best.phase) == top[1][:2]
    np.testing.assert_allclose(best.sums, top[1][2], atol=1e-4)
    np.testing.assert_array_equal(best.counts, top[1][3])


def _reference_first_over_threshold(fine: wm._FineSpectrum, layout: wm._Layout) -> float | None:
    """The grid scanned one factor at a time with :func:`wm._analyse`, stopping at the first over the threshold."""
    for factor in wm.SPEED_FACTORS:
        if wm._analyse(fine, layout, factor).best.score >= wm.SPEED_THRESHOLD:
            return factor
    return None


@pytest.mark.parametrize(("seconds", "factor"), [(3.0, 0.97), (3.0, None), (11.0, 1.04)])
def test_batched_speed_scores_match_per_factor(seconds: float, factor: float | None) -> None:
    """The speed search scores a group of factors at once: every factor's best score (and alignment) is what a
    scan of that factor alone gives, for any grouping; 11 s holds more symbols than one block of patterns."""
    layout = wm._layout(KEY.seed)
    x = speech_like(seconds, seed=31)
    if factor is not None:
        x = speed(embed(x, MESSAGE, key=KEY), SR, factor)
    fine = wm._fine_spectrum(x.astype(np.float64))
    alone = [wm._analyse(fine, layout, f) for f in wm.SPEED_FACTORS]
    expected = np.array([a.best.score for a in alone])
    assert (expected.max() >= wm.SPEED_THRESHOLD) == (factor is not None)
    for size in (20, 7, 3):
        groups = [wm.SPEED_FACTORS[i : i + size] for i in range(0, len(wm.SPEED_FACTORS), size)]
        scores = np.concatenate([wm._speed_scores(fine, layout, group) for group in groups])
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    feats, audible, n_frames = wm._features_batch(fine, wm.SPEED_FACTORS)
    best, corr = wm._scan_batch(feats, n_frames, layout)
    for g, a in enumerate(alone):
        n = n_frames[g]
        assert n == len(a.feats) and (feats[g, n:] == 0).all() and not audible[g, n:].any()
        np.testing.assert_allclose(feats[g, :n], a.feats, rtol=0, atol=1e-6)
        assert (audible[g, :n] == a.audible).all()
        np.testing.assert_allclose(corr[g, :n], a.corr, rtol=0, atol=1e-5)
        assert (best[g].offset, best[g].phase) == (a.best.offset, a.best.phase)
        np.testing.assert_allclose(best[g].sums, a.best.sums, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(best[g].counts, a.best.counts)
    assert wm._first_over_threshold(fine, layout) == _reference_first_over_threshold(fine, layout)


def test_sum_by_position_batched_matches_alone() -> None:
    """Rows of different lengths (zero past their end), across more than one block of N_PATTERNS symbols."""
    rng = np.random.default_rng(5)
    n_sym = np.array([341, 330, 321, 160, 47, 40, 1, 0])
    z = rng.standard_normal((len(n_sym), n_sym.max(), wm.N_PATTERNS)).astype(np.float32)
    z[np.arange(n_sym.max()) >= n_sym[:, None]] = 0.0
    batched = wm._sum_by_position(z, n_sym)
    for g, n in enumerate(n_sym):
        alone = wm._sum_by_position(z[g, :n]) if n else np.zeros((wm.N_PATTERNS, wm.SYMBOLS_PER_PERIOD))
        np.testing.assert_allclose(batched[g], alone, rtol=0, atol=1e-9)


def test_detect_same_with_batched_speed_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """detect with the batched grid reports exactly what the factor-by-factor search reports."""
    marked = embed(speech_like(4.0, seed=33), MESSAGE, key=KEY)
    cases = [speech_like(2.5, seed=34), speed(marked, SR, 0.98), speed(marked, SR, 1.06), marked]
    batched = [detect(x, key=KEY) for x in cases]
    monkeypatch.setattr(wm, "_first_over_threshold", _reference_first_over_threshold)
    for x, got in zip(cases, batched):
        want = detect(x, key=KEY)
        for name in ("detected", "payload", "spans", "threshold", "speed"):
            assert getattr(got, name) == getattr(want, name), name
        assert got.score == pytest.approx(want.score, abs=1e-6)
        assert got.probability == pytest.approx(want.probability, abs=1e-9)
        np.testing.assert_array_equal(got.bits, want.bits)
        for name in ("bit_confidence", "frame_scores"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=0, atol=1e-6)
    assert [d.detected for d in batched] == [False, True, True, True]
    assert batched[1].speed != 1.0 and batched[2].speed != 1.0 and batched[3].speed == 1.0


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_run(name: str, marked: np.ndarray) -> None:
    out = ATTACKS[name](marked, SR)
    assert out.ndim == 1 and out.dtype == np.float32 and np.isfinite(out).all()
    if name.startswith("speed"):
        factor = float(name.split("_")[1])
        assert abs(len(out) - len(marked) / factor) <= 2
    elif name.startswith("crop"):
        assert len(out) == int(1.5 * SR)
    else:
        assert len(out) == len(marked)


def test_two_signal_attacks(marked: np.ndarray) -> None:
    other = speech_like(2.0, seed=9)
    mixed = mix_talker(marked, SR, other, snr_db=10.0)
    assert mixed.shape == marked.shape and np.isfinite(mixed).all()
    joined = splice(marked, SR, other, other[:SR])
    assert len(joined) == len(marked) + len(other) + SR


def test_codec_attack_reports_missing_ffmpeg(monkeypatch: pytest.MonkeyPatch, marked: np.ndarray) -> None:
    from safety import attacks

    monkeypatch.setattr(attacks.shutil, "which", lambda name: None)
    with pytest.raises(attacks.AttackUnavailableError, match="ffmpeg is not installed"):
        attacks.mp3(marked, SR)


def test_keys_env_file_default(monkeypatch: pytest.MonkeyPatch, tmp_path, caplog) -> None:
    secret = "correct horse battery staple"
    monkeypatch.delenv(keys_module.ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(keys_module.ENV_KEY, secret)
    from_env = keys_module.configured_key()
    assert from_env.source == "env" and not from_env.is_default
    assert from_env == WatermarkKey.from_secret(secret)
    key_file = tmp_path / "wm.key"
    key_file.write_text(secret + "\n")
    assert load_key(key_file) == from_env  # same secret, same key; whitespace stripped
    monkeypatch.setenv(keys_module.ENV_KEY, "00ff10")  # hex: its bytes are the secret
    assert keys_module.configured_key() == WatermarkKey.from_secret(bytes.fromhex("00ff10"))
    monkeypatch.delenv(keys_module.ENV_KEY)
    monkeypatch.setenv(keys_module.ENV_KEY_FILE, str(key_file))
    assert keys_module.configured_key() == from_env
    monkeypatch.delenv(keys_module.ENV_KEY_FILE)
    default = keys_module.configured_key()
    assert default.is_default and default != from_env
    for key in (from_env, default, load_key(key_file)):
        shown = repr(key) + str(key)
        assert secret not in shown and key.seed.hex() not in shown and key.seed.hex()[:16] not in shown
        assert "seed" not in shown
    # the default key warns once, without key material
    monkeypatch.setattr(keys_module, "_warned_default", False)
    with caplog.at_level(logging.WARNING, logger="safety.keys"):
        embed(speech_like(1.0, seed=5), 1)
        embed(speech_like(1.0, seed=6), 1)
    warnings = [r for r in caplog.records if "DEFAULT development key" in r.getMessage()]
    assert len(warnings) == 1 and default.seed.hex() not in caplog.text
    with pytest.raises(keys_module.WatermarkKeyError, match="empty"):
        (tmp_path / "empty.key").write_text("  \n")
        load_key(tmp_path / "empty.key")
    with pytest.raises(keys_module.WatermarkKeyError, match="does not exist"):
        load_key(tmp_path / "missing.key")


def test_bad_input(marked: np.ndarray) -> None:
    with pytest.raises(WatermarkInputError, match="empty"):
        embed(np.zeros(0, np.float32), 1, key=KEY)
    with pytest.raises(WatermarkInputError, match="NaN"):
        detect(np.array([0.0, np.nan, 0.1] * 1000, np.float32), key=KEY)
    with pytest.raises(WatermarkInputError, match="mono"):
        embed(np.zeros((2, 16000), np.float32), 1, key=KEY)
    with pytest.raises(WatermarkInputError, match="floating"):
        detect(np.zeros(16000, np.int16), key=KEY)
    with pytest.raises(ValueError, match="message"):
        embed(marked, 70000, key=KEY)
    with pytest.raises(WatermarkInputError, match="sample_rate"):
        detect(marked, key=KEY, sample_rate=10)
    two_d = embed(marked[None], 5, key=KEY)  # [1, T] in, [1, T] out
    assert two_d.shape == (1, len(marked))
    silent = np.zeros(SR * 2, np.float32)
    out = embed(silent, 5, key=KEY)  # silence stays silent, and carries no mark
    assert np.isfinite(out).all() and np.abs(out).max() == 0.0
    d = detect(silent, key=KEY)
    assert not d.detected and d.payload is None and np.isfinite(d.frame_scores).all()


def test_watermark_hook(monkeypatch: pytest.MonkeyPatch, clip: np.ndarray) -> None:
    monkeypatch.setenv(keys_module.ENV_KEY, "hook-test-secret")
    out = watermark_hook(clip, SR)
    assert out.shape == clip.shape and np.isfinite(out).all()
    assert detect(out).payload == DEFAULT_MESSAGE  # the configured key, the project's message
    empty = np.zeros(0, np.float32)
    assert watermark_hook(empty, SR).shape == (0,)  # a generation with no frame passes through
    sr = 24000  # other rates: the 16 kHz mark is carried over, and detection resamples
    up = np.interp(np.arange(int(len(clip) * sr / SR)) * SR / sr, np.arange(len(clip)), clip).astype(np.float32)
    marked_up = watermark_hook(up, sr)  # both layers: the codec layer costs about 10 dB of SNR (see codec_mark)
    assert marked_up.shape == up.shape and snr_db(up, marked_up) >= 14.0
    assert snr_db(clip, out) >= 14.0 and snr_db(clip, embed(clip, DEFAULT_MESSAGE)) >= 25.0
    assert detect(marked_up, sample_rate=sr).payload == DEFAULT_MESSAGE


def test_cli(tmp_path, clip: np.ndarray) -> None:
    runner = CliRunner()
    key_file = tmp_path / "key.txt"
    key_file.write_text("cli secret")
    clean, out = tmp_path / "clean.wav", tmp_path / "marked.wav"
    sf.write(clean, clip, SR, subtype="PCM_16")
    result = runner.invoke(app, ["embed", str(clean), "-o", str(out), "--message", "4321", "--key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert "SNR" in result.stdout
    result = runner.invoke(app, ["detect", str(out), "--key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert "WATERMARKED" in result.stdout and "4321" in result.stdout and "spans" in result.stdout
    result = runner.invoke(app, ["detect", str(clean), "--key-file", str(key_file)])
    assert result.exit_code == 1 and "not watermarked" in result.stdout
    result = runner.invoke(app, ["detect", str(out), str(clean), "--json", "--key-file", str(key_file)])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [r["watermarked"] for r in rows] == [True, False] and rows[0]["payload"] == 4321
    assert len(rows[0]["bit_confidence"]) == N_BITS and rows[0]["spans"] and rows[0]["speed"] == 1.0
    faster = tmp_path / "faster.wav"  # a speed change is undone by the search and named; without it, missed
    sf.write(faster, speed(load_audio(out, sample_rate=SR).numpy(), SR, 1.05), SR, subtype="PCM_16")
    result = runner.invoke(app, ["detect", str(faster), "--key-file", str(key_file)])
    assert result.exit_code == 0 and "4321" in result.stdout and "speed change undone" in result.stdout
    result = runner.invoke(app, ["detect", str(faster), "--key-file", str(key_file), "--no-speed-search"])
    assert result.exit_code == 1 and "not watermarked" in result.stdout
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio")
    for bad in (tmp_path / "missing.wav", bogus):
        result = runner.invoke(app, ["detect", str(out), str(bad), "--key-file", str(key_file)])
        assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["detect", str(out), "--key-file", str(tmp_path / "nokey")])
    assert result.exit_code == 2 and "key file" in result.output
    result = runner.invoke(app, ["embed", str(clean), "-o", str(out), "--message", "70000"])
    assert result.exit_code == 2


def test_neural_codec_attack_resynthesises_through_the_shipped_codec(marked: np.ndarray) -> None:
    from safety import attacks

    out = attacks.neural_codec(marked, SR)
    assert out.shape == marked.shape and out.dtype == np.float32
    assert not np.allclose(out, marked, atol=1e-3)  # re-synthesised, not passed through
    from codec.features import log_mel

    def mel_distance(y: np.ndarray) -> float:  # the codec keeps the spectrum, not the phase
        return float((log_mel(y) - log_mel(marked)).abs().mean())

    fewer = attacks.neural_codec(marked, SR, num_codebooks=2)
    assert mel_distance(fewer) > mel_distance(out)  # fewer codebooks: a coarser copy
    at_8k = attacks.neural_codec(attacks.resample(marked, SR)[::2].copy(), SR // 2)
    assert len(at_8k) == len(marked) // 2  # other rates go through the codec's 16 kHz and come back


def test_neural_codec_attack_reports_a_missing_codec(tmp_path) -> None:  # noqa: ANN001
    from safety import attacks

    with pytest.raises(attacks.AttackUnavailableError, match="neural codec could not be loaded"):
        attacks.neural_codec(np.zeros(1600, np.float32), SR, path=str(tmp_path / "nothing-here"))
