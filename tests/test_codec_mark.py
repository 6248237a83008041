"""The watermark's codec layer (safety.codec_mark): it survives re-encoding through the shipped neural codec,
which erases the spread-spectrum layer; its statistic is null on unmarked audio and with another key."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from safety import codec_mark, detect, embed, watermark_hook
from safety import watermark as wm
from safety.attacks import neural_codec, speech_like
from safety.keys import WatermarkKey

SR = 16000
KEY = WatermarkKey.from_secret("codec-layer-test-key")
OTHER = WatermarkKey.from_secret("another-key")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speech_like(2.5, seed=7)


@pytest.fixture(scope="module")
def marked(clip: np.ndarray) -> np.ndarray:
    return embed(clip, 0x1234, key=KEY, codec_layer=True)


def test_green_list_is_keyed() -> None:
    green = codec_mark.green_list(KEY)
    assert green.dtype == bool and green.shape == (1024,) and green.sum() == 256
    assert (codec_mark.green_list(KEY) == green).all()  # deterministic
    other = codec_mark.green_list(OTHER)
    overlap = (green & other).sum()
    assert 30 <= overlap <= 100  # independent draws share GAMMA^2 * 1024 = 64 entries on average


def test_survives_the_neural_codec(clip: np.ndarray, marked: np.ndarray) -> None:
    assert marked.shape == clip.shape and marked.dtype == np.float32 and np.isfinite(marked).all()
    # the change rides on the signal: bounded relative to it, and the spread-spectrum layer still decodes
    snr = 10 * np.log10(np.sum(clip.astype(np.float64) ** 2) / np.sum((marked - clip.astype(np.float64)) ** 2))
    assert snr >= 14.0
    direct = detect(marked, key=KEY)
    assert direct.detected and direct.layer == "spread-spectrum" and direct.payload == 0x1234

    attacked = neural_codec(marked, SR)
    d = detect(attacked, key=KEY)
    assert d.detected and d.layer == "codec" and d.codec_score is not None and d.codec_score > 4
    assert d.payload is None  # the codec layer carries no payload
    assert d.spans and d.spans[0][0] < 0.6 and d.spans[-1][1] > 1.9
    assert len(d.frame_scores) == len(direct.frame_scores)
    assert not detect(attacked, key=OTHER).detected  # another key's green list sees nothing
    # without the layer the same attack leaves nothing: the layer is what survives
    plain = neural_codec(embed(clip, 0x1234, key=KEY), SR)
    p = detect(plain, key=KEY)
    assert not p.detected and p.codec_score is not None and p.codec_score < 3


def test_statistic_counts_distinct_codes_and_is_null_unmarked() -> None:
    # per key the clips share codes, so one key's mean can sit off 0 (on corpus speech the key means have sd
    # 0.28; the exact binomial p-value was conservative over 45,000 key x clip pairs): average over keys
    keys = [WatermarkKey.from_secret(f"null-key-{k}") for k in range(30)]
    zs = []
    for i in range(8):
        x = speech_like(float(1.5 + 0.2 * i), seed=300 + i)
        for audio in (x, neural_codec(x, SR)):
            codes = codec_mark.first_codes(audio)
            s = codec_mark.statistic(audio, KEY)
            assert s.n_codes == len(np.unique(codes)) and 0 <= s.n_green <= s.n_codes
            assert s.frame_green.shape == codes.shape
            assert s.p_value > wm.CODEC_FPR_SHARE * wm.FALSE_POSITIVE_RATE  # never a detection
            zs += [codec_mark.statistic_of_codes(codes, k).z for k in keys]
    assert abs(float(np.mean(zs))) < 0.5 and 0.5 < float(np.std(zs)) < 1.5


def test_silence_and_short_input() -> None:
    silent = np.zeros(SR // 4, np.float32)
    assert (codec_mark.embed(silent, KEY) == 0).all()  # a relative change: silence stays silent
    tiny = speech_like(0.01, seed=1)  # shorter than one codec frame: unchanged
    assert (codec_mark.embed(tiny, KEY) == tiny).all()


def test_chunked_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec_mark, "CHUNK_S", 1.2)  # two chunks of a 2 s clip, each with codec context
    x = speech_like(2.0, seed=11)
    y = codec_mark.embed(x, KEY)
    assert y.shape == x.shape and np.isfinite(y).all()
    assert codec_mark.statistic(neural_codec(y, SR), KEY).z > 4


def test_unavailable_layer_is_skipped_with_a_warning(monkeypatch: pytest.MonkeyPatch, caplog, clip) -> None:  # noqa: ANN001
    def missing() -> None:
        raise codec_mark.CodecLayerUnavailableError("no codec here")

    monkeypatch.setattr(codec_mark, "_codec", missing)
    wm._warn_no_codec_layer.cache_clear()
    with caplog.at_level(logging.WARNING, logger="safety.watermark"):
        d = detect(clip, key=KEY)
        assert not d.detected and d.codec_score is None and d.layer == ""
        out = watermark_hook(clip, SR)  # the spread-spectrum layer alone, at its usual SNR
    assert "codec watermark layer is unavailable" in caplog.text
    snr = 10 * np.log10(np.sum(clip.astype(np.float64) ** 2) / np.sum((out - clip.astype(np.float64)) ** 2))
    assert snr >= 25.0
    wm._warn_no_codec_layer.cache_clear()


def test_cli_codec_layer(tmp_path, clip: np.ndarray) -> None:  # noqa: ANN001
    import soundfile as sf
    from typer.testing import CliRunner

    from safety.cli import app

    runner = CliRunner()
    key_file = tmp_path / "key.txt"
    key_file.write_text("codec-layer-cli")
    clean, out, coded = tmp_path / "clean.wav", tmp_path / "marked.wav", tmp_path / "coded.wav"
    sf.write(clean, clip, SR, subtype="FLOAT")
    args = ["--key-file", str(key_file)]
    result = runner.invoke(app, ["embed", str(clean), "-o", str(out), "--message", "7", "--codec-layer", *args])
    assert result.exit_code == 0, result.output
    sf.write(coded, neural_codec(sf.read(out, dtype="float32")[0], SR), SR, subtype="FLOAT")
    result = runner.invoke(app, ["detect", str(coded), *args])
    assert result.exit_code == 0 and "found by the codec layer" in result.stdout, result.output
    result = runner.invoke(app, ["detect", str(coded), "--no-codec-layer", *args])
    assert result.exit_code == 1 and "not watermarked" in result.stdout


def test_hook_codec_layer_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, caplog, clip) -> None:  # noqa: ANN001
    monkeypatch.setenv(wm.CODEC_LAYER_ENV, "0")
    wm._warn_codec_layer_off.cache_clear()
    with caplog.at_level(logging.WARNING, logger="safety.watermark"):
        out = watermark_hook(clip, SR)
    assert f"{wm.CODEC_LAYER_ENV} is off" in caplog.text
    assert np.array_equal(out, embed(clip, wm.DEFAULT_MESSAGE))  # exactly the spread-spectrum layer
    wm._warn_codec_layer_off.cache_clear()
