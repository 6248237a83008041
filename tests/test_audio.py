"""Tests for codec.audio: loading every supported source, resampling, downmix, errors and atomic saves.

All audio is synthesised in tmp_path (sine tones via soundfile; MP3/OGG/Opus/M4A encoded by the ffmpeg CLI).
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import codec.audio
from codec import SAMPLE_RATE, AudioInputError, audio_info, load_audio, save_audio

PCM16_STEP = 1.0 / 32768  # one int16 quantisation step in float units



def tone(freq: float, sample_rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    """``[T]`` float32 sine."""
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray | torch.Tensor, sample_rate: int) -> float:
    """Frequency in Hz of the largest FFT bin (resolution 1 / duration)."""
    x = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sample_rate / len(x))


@pytest.fixture(scope="module")
def encoders() -> str:
    if shutil.which("ffmpeg") is None:
        return ""
    return subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


def encode(src: Path, dst: Path, codec_name: str, encoders: str) -> Path:
    """Encode ``src`` with ffmpeg to ``dst`` (setup installs an ffmpeg with every encoder these tests use)."""
    assert f" {codec_name} " in encoders, f"ffmpeg encoder {codec_name} not available"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", codec_name, str(dst)], check=True
    )
    return dst


# --------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_save_load_round_trip_within_pcm16(tmp_path: Path, ext: str) -> None:
    x = tone(440, SAMPLE_RATE, 0.5, amp=0.9)
    path = save_audio(tmp_path / f"a.{ext}", torch.from_numpy(x))
    y = load_audio(path)
    assert y.dtype == torch.float32 and y.shape == (len(x),)
    assert np.max(np.abs(y.numpy() - x)) <= PCM16_STEP
    assert audio_info(path) == {
        "duration": 0.5,
        "sample_rate": SAMPLE_RATE,
        "channels": 1,
        "frames": len(x),
        "format": ext.upper(),
    }


def test_save_accepts_one_by_t_and_ogg(tmp_path: Path) -> None:
    x = tone(440, SAMPLE_RATE, 0.5)
    save_audio(tmp_path / "a.wav", x[None, :])
    assert load_audio(tmp_path / "a.wav").shape == (len(x),)
    save_audio(tmp_path / "a.ogg", x)  # Vorbis by default
    y = load_audio(tmp_path / "a.ogg")
    assert abs(len(y) - len(x)) <= 0.03 * len(x)
    assert abs(dominant_freq(y, SAMPLE_RATE) - 440) <= 3


@pytest.mark.parametrize(
    ("ext", "codec_name"),
    [("mp3", "libmp3lame"), ("ogg", "libvorbis"), ("opus", "libopus"), ("m4a", "aac")],
)
def test_compressed_formats_length_and_pitch(
    tmp_path: Path, encoders: str, ext: str, codec_name: str
) -> None:
    sf.write(tmp_path / "src.wav", tone(440, 44100, 1.0), 44100)
    path = encode(tmp_path / "src.wav", tmp_path / f"a.{ext}", codec_name, encoders)
    y = load_audio(path)
    assert y.dtype == torch.float32 and y.ndim == 1
    assert abs(len(y) - SAMPLE_RATE) <= 0.03 * SAMPLE_RATE
    assert abs(dominant_freq(y, SAMPLE_RATE) - 440) <= 3
    assert y.abs().max() <= 1.0
    assert load_audio(path.read_bytes()).shape == y.shape  # same file given as bytes


def test_ffmpeg_fallback_is_what_reads_m4a(tmp_path: Path, encoders: str) -> None:
    sf.write(tmp_path / "src.wav", tone(1000, 22050, 0.5), 22050)
    path = encode(tmp_path / "src.wav", tmp_path / "a.m4a", "aac", encoders)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))  # so the load below really went through ffmpeg
    info = audio_info(path)
    assert info["sample_rate"] == 22050 and info["channels"] == 1
    assert abs(dominant_freq(load_audio(path), SAMPLE_RATE) - 1000) <= 3


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(tmp_path: Path, rate: int) -> None:
    x = tone(1000, rate, 0.5)
    sf.write(tmp_path / "a.wav", x, rate, subtype="FLOAT")
    for y in (load_audio(tmp_path / "a.wav"), load_audio(x, source_rate=rate)):
        assert abs(len(y) - SAMPLE_RATE // 2) <= 1
        assert abs(dominant_freq(y, SAMPLE_RATE) - 1000) <= 2
        mid = y[2000:-2000]  # amplitude survives away from the filter's edge transients
        assert abs(float(mid.abs().max()) - 0.5) < 0.01


def test_resample_to_other_target_rate() -> None:
    x = tone(440, SAMPLE_RATE, 1.0)
    y = load_audio(x, sample_rate=24000, source_rate=SAMPLE_RATE)
    assert len(y) == 24000 and abs(dominant_freq(y, 24000) - 440) <= 2
    # an array without source_rate is taken to be at the target rate already: no resampling
    np.testing.assert_array_equal(load_audio(x, sample_rate=24000).numpy(), x)


# --------------------------------------------------------------------------------------------- arrays


def test_stereo_downmix_averages_channels(tmp_path: Path) -> None:
    left, right = tone(440, SAMPLE_RATE, 0.25, amp=0.4), tone(440, SAMPLE_RATE, 0.25, amp=0.2)
    stereo = np.stack([left, right], axis=1)  # [T, 2], soundfile's layout
    sf.write(tmp_path / "s.wav", stereo, SAMPLE_RATE, subtype="FLOAT")
    expected = (left + right) / 2
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav").numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo).numpy(), expected, atol=1e-6)  # [T, C]
    np.testing.assert_allclose(load_audio(torch.from_numpy(stereo.T)).numpy(), expected, atol=1e-6)  # [C, T]


def test_integer_pcm_arrays_are_scaled_to_unit_range() -> None:
    np.testing.assert_allclose(
        load_audio(np.array([0, 16384, -32768, 32767], np.int16)).numpy(), [0.0, 0.5, -1.0, 32767 / 32768]
    )
    np.testing.assert_allclose(load_audio(np.array([0, 2**30], np.int32)).numpy(), [0.0, 0.5])
    np.testing.assert_allclose(load_audio(np.array([128, 0, 192], np.uint8)).numpy(), [0.0, -1.0, 0.5])
    x = (tone(440, SAMPLE_RATE, 0.1) * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(torch.from_numpy(x)).numpy(), x / 32768, atol=1e-7)


def test_float_beyond_unit_range_is_clipped_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="codec.audio"):
        y = load_audio(np.array([0.5, 1.5, -3.0], np.float32))
    np.testing.assert_array_equal(y.numpy(), [0.5, 1.0, -1.0])
    assert "clipping 2 samples" in caplog.text


def test_half_precision_tensor() -> None:
    y = load_audio(torch.tensor([0.25, -0.5], dtype=torch.bfloat16))
    assert y.dtype == torch.float32 and y.tolist() == [0.25, -0.5]


@pytest.mark.parametrize("rate", [SAMPLE_RATE, 44100])
def test_silence_is_valid(tmp_path: Path, rate: int) -> None:
    sf.write(tmp_path / "z.wav", np.zeros(rate // 2, np.float32), rate)
    for y in (load_audio(tmp_path / "z.wav"), load_audio(np.zeros(rate // 2), source_rate=rate)):
        assert len(y) == SAMPLE_RATE // 2 and torch.count_nonzero(y) == 0


# --------------------------------------------------------------------------------------------- errors


def _write_wav(path: Path, seconds: float = 0.1, rate: int = SAMPLE_RATE) -> Path:
    sf.write(path, tone(440, rate, seconds), rate)
    return path


def _truncated_header(tmp: Path) -> Path:
    path = _write_wav(tmp / "t.wav")
    path.write_bytes(path.read_bytes()[:20])
    return path


def _garbage_after_riff(tmp: Path) -> Path:
    path = tmp / "g.wav"
    path.write_bytes(b"RIFF\x24\x08\x00\x00WAVE" + bytes(range(256)) * 8)
    return path


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.wav"  # the extension lies
    path.write_text("these are meeting notes, not audio\n" * 20)
    return path


def _empty_wav(tmp: Path) -> Path:
    sf.write(tmp / "e.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    return tmp / "e.wav"


def _zero_bytes(tmp: Path) -> Path:
    (tmp / "z.wav").touch()
    return tmp / "z.wav"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.wav", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (_text_file, "not an audio file"),
        (_truncated_header, "corrupt or unreadable"),
        (_garbage_after_riff, "corrupt or unreadable"),
        (_empty_wav, "empty"),
        (_zero_bytes, "empty"),
        (lambda tmp: _write_wav(tmp / "r.wav", rate=10), "absurd sample rate 10 Hz"),
        (lambda tmp: _write_wav(tmp / "r.wav", rate=10_000_000), "absurd sample rate 10000000 Hz"),
    ],
    ids=["missing", "directory", "text", "truncated", "garbage", "empty_wav", "zero_bytes", "10Hz", "10MHz"],
)
def test_bad_files_raise_named_errors(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(AudioInputError, match=message) as err:
        load_audio(path)
    assert str(path) in str(err.value)
    if path.is_file() and path.stat().st_size:  # the same bytes in memory fail the same way
        with pytest.raises(AudioInputError, match=message):
            load_audio(path.read_bytes())


def test_bad_files_error_from_audio_info(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="no such file"):
        audio_info(tmp_path / "missing.wav")
    with pytest.raises(AudioInputError, match="corrupt or unreadable"):
        audio_info(_truncated_header(tmp_path))


@pytest.mark.parametrize(
    ("array", "kwargs", "message"),
    [
        (np.array([0.1, np.nan, 0.2], np.float32), {}, "contains NaN/Inf samples"),
        (np.full(8, np.nan), {}, "contains NaN/Inf samples \\(8 of 8\\)"),
        (torch.tensor([0.0, float("inf")]), {}, "contains NaN/Inf samples"),
        (np.zeros(0, np.float32), {}, "empty"),
        (np.zeros((2, 0), np.float32), {}, "empty"),
        (np.zeros((2, 3, 100), np.float32), {}, "got 3-D"),
        (np.zeros(()), {}, "got 0-D"),
        (np.array(["a", "b"]), {}, "non-numeric dtype"),
        (np.zeros(4, np.complex64), {}, "non-numeric dtype"),
        (torch.zeros(4, dtype=torch.bool), {}, "non-numeric dtype"),
        (np.zeros(4, np.int64), {}, "non-numeric dtype int64"),
        (np.zeros(100), {"source_rate": 10}, "absurd sample rate 10 Hz"),
        (np.zeros(100), {"source_rate": 10_000_000}, "absurd sample rate 10000000 Hz"),
        (np.zeros(100), {"sample_rate": 10}, "absurd sample rate 10 Hz for target sample_rate"),
        (np.zeros(100), {"source_rate": 16000.5}, "absurd sample rate"),
        (np.zeros(16000), {"max_seconds": 0.5}, "longer than the limit of 0.5 s"),
        (np.zeros(100), {"max_seconds": 0}, "max_seconds must be positive"),
    ],
)
def test_bad_arrays_raise_named_errors(array: object, kwargs: dict, message: str) -> None:
    with pytest.raises(AudioInputError, match=message):
        load_audio(array, **kwargs)  # type: ignore[arg-type]


def test_too_long_file_is_rejected_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_wav(tmp_path / "long.wav", seconds=2.0)
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded a too-long file"))
    with pytest.raises(AudioInputError, match=r"longer than the limit of 1 s \(2.0 s\)"):
        load_audio(path, max_seconds=1)


def test_too_long_file_via_ffmpeg(tmp_path: Path, encoders: str) -> None:
    _write_wav(tmp_path / "src.wav", seconds=2.0)
    path = encode(tmp_path / "src.wav", tmp_path / "long.m4a", "aac", encoders)
    with pytest.raises(AudioInputError, match="longer than the limit of 1 s"):
        load_audio(path, max_seconds=1)


def test_other_source_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="unsupported audio source type list"):
        load_audio([0.0, 0.1])  # type: ignore[arg-type]
    with pytest.raises(AudioInputError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioInputError, match="contradicts the 16000 Hz"):
        load_audio(_write_wav(tmp_path / "a.wav"), source_rate=44100)
    assert len(load_audio(_write_wav(tmp_path / "a.wav"), source_rate=SAMPLE_RATE)) == 1600


def test_error_is_a_value_error() -> None:
    assert issubclass(AudioInputError, ValueError)


# --------------------------------------------------------------------------------------------- saving


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    save_audio(path, tone(440, SAMPLE_RATE, 0.1))
    save_audio(path, np.zeros(800, np.float32))  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
    assert torch.count_nonzero(load_audio(path)) == 0 and len(load_audio(path)) == 800
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600


def test_failed_save_keeps_old_file_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_audio(tmp_path / "out.wav", tone(440, SAMPLE_RATE, 0.1))
    before = path.read_bytes()

    def crash(file: object, *args: object, **kwargs: object) -> None:
        file.write(b"RIFF partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(codec.audio.sf, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        save_audio(path, np.zeros(800, np.float32))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


@pytest.mark.parametrize(
    ("wav", "name", "message"),
    [
        (np.array([0.0, np.nan], np.float32), "a.wav", "contains NaN/Inf samples"),
        (torch.tensor([0.0, float("-inf")]), "a.flac", "contains NaN/Inf samples"),
        (np.zeros(0, np.float32), "a.wav", "empty"),
        (np.zeros((2, 100), np.float32), "a.wav", r"expected a \[T\] or \[1, T\] waveform"),
        (np.zeros(100, np.float32), "a.mp4", "extension must be one of"),
    ],
)
def test_save_rejects_bad_input(tmp_path: Path, wav: object, name: str, message: str) -> None:
    with pytest.raises(AudioInputError, match=message):
        save_audio(tmp_path / name, wav)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_bad_rate_and_subtype(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="absurd sample rate"):
        save_audio(tmp_path / "a.wav", np.zeros(10, np.float32), sample_rate=10)
    with pytest.raises(AudioInputError, match="not valid for FLAC"):
        save_audio(tmp_path / "a.flac", np.zeros(10, np.float32), subtype="VORBIS")
    assert list(tmp_path.iterdir()) == []


def test_save_clips_and_writes_float_subtype(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "a.wav", np.array([0.25, 2.0, -2.0], np.float32), subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path).numpy(), [0.25, 1.0, -1.0])
    assert math.isclose(audio_info(path)["duration"], 3 / SAMPLE_RATE)
