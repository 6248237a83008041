"""Property-based (hypothesis) tests of ``codec.load_audio`` on fuzzed and hostile input.

The contract under test (``codec/audio.py``): for *any* input, :func:`load_audio` either returns a finite
float32 ``[T]`` tensor in ``[-1, 1]`` at the asked rate, or raises :class:`AudioInputError` whose message names
the source and the problem. Any other exception type is a crash and fails the property.

Inputs: random bytes (some behind a real container signature), WAV/FLAC/OGG written by soundfile at 8-96 kHz
with 1-16 channels then truncated at random points, RIFF/WAVE headers crafted with ``struct`` (absurd sizes,
channel counts, rates, bit depths and format tags), zero-length files, float samples with NaN/Inf, 1e30 and
denormals, and arrays of every dtype and rank. Each property runs on bytes and, for some examples, on a file.

``ALM_FUZZ_SCALE=10`` multiplies every ``max_examples`` (a longer fuzz run; the default keeps this file well
under a minute). ``pytest --hypothesis-show-statistics`` prints how many examples each property ran.
"""

from __future__ import annotations

import io
import os
import re
import struct
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import codec.audio
from codec.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioInputError, load_audio

SCALE = max(1, int(os.environ.get("ALM_FUZZ_SCALE", "1")))
# A deadline far above the ~0.3 s an ffmpeg fallback takes on a loaded 2-core machine: it exists to flag a
# decode that hangs or goes quadratic, not to time anything.
DEADLINE = timedelta(seconds=30)

# Every problem load_audio is documented to report; an AudioInputError must name one of them.
PROBLEM = re.compile(
    r"empty|not an audio file|corrupt or unreadable|NaN/Inf|absurd sample rate|longer than the limit|"
    r"no audio stream|non-numeric dtype|must be 1-D|unsupported audio source type|must be a number of Hz|"
    r"no such file|is a directory|permission denied|not installed|contradicts|took longer than"
)
RATES = st.one_of(
    st.sampled_from([8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000]),
    st.integers(8000, 96000),
)
TARGET_RATES = st.sampled_from([8000, 16000, 24000, 44100, 48000, 96000])
SUBTYPES = {
    "WAV": ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"],
    "FLAC": ["PCM_S8", "PCM_16", "PCM_24"],
    "OGG": ["VORBIS", "OPUS"],
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates an Opus stream can have
FLAC_MAX_CHANNELS = 8


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=DEADLINE, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def quiet_clipping_warnings():
    """Clipping 1e30 samples is logged as a warning per example; keep the test log readable."""
    logger = codec.audio.logger
    level = logger.level
    logger.setLevel("ERROR")
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_audio")


def check_load(source, sample_rate: int = 16000, name: str | None = None, **kwargs) -> torch.Tensor | None:
    """Load ``source``; assert the contract; return the waveform, or ``None`` after a clear AudioInputError."""
    try:
        y = load_audio(source, sample_rate, **kwargs)
    except AudioInputError as e:
        message = str(e)
        assert PROBLEM.search(message), f"AudioInputError without a named problem: {message}"
        if name is not None:
            assert name in message, f"AudioInputError does not name the source {name}: {message}"
        return None
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.ndim == 1, (type(y), y.dtype, y.shape)
    assert y.numel() > 0
    assert bool(torch.isfinite(y).all()) and float(y.abs().max()) <= 1.0
    return y


def load_both_ways(blob: bytes, workdir: Path, as_file: bool, sample_rate: int = 16000) -> torch.Tensor | None:
    """Load encoded bytes directly, or from a file holding them (the path branch of load_audio)."""
    if not as_file:
        return check_load(blob, sample_rate, name=f"<{len(blob)} bytes>")
    path = workdir / f"input-{os.getpid()}.bin"
    path.write_bytes(blob)
    return check_load(path, sample_rate, name=str(path))


def resampled_length(frames: int, rate: int, target: int) -> int:
    return round(frames * target / rate)


# --------------------------------------------------------------------------------------------- strategies


@st.composite
def encoded_audio(draw: st.DrawFn) -> tuple[bytes, str, int, int, int]:
    """``(file bytes, format, rate, channels, frames)`` of a WAV/FLAC/OGG file written by soundfile."""
    fmt = draw(st.sampled_from(sorted(SUBTYPES)))
    subtype = draw(st.sampled_from(SUBTYPES[fmt]))
    rate = draw(st.sampled_from(OPUS_RATES) if subtype == "OPUS" else RATES)
    if fmt == "FLAC" and rate > 65535:
        rate -= rate % 10  # FLAC's streamable subset stores rates above 65535 Hz in tens of Hz
    channels = draw(st.integers(1, FLAC_MAX_CHANNELS if fmt == "FLAC" else 16))
    frames = draw(st.integers(1, 3000))
    kind = draw(st.sampled_from(["sine", "noise", "silence", "full_scale"]))
    t = np.arange(frames)[:, None] / rate
    if kind == "sine":
        freq = draw(st.floats(20, rate / 2 - 1))
        data = 0.5 * np.sin(2 * np.pi * freq * t + np.arange(channels))
    elif kind == "noise":
        seed = draw(st.integers(0, 2**32 - 1))
        data = np.random.default_rng(seed).uniform(-1, 1, (frames, channels))
    elif kind == "silence":
        data = np.zeros((frames, channels))
    else:
        data = np.sign(np.sin(2 * np.pi * 440 * t + np.arange(channels))) * np.ones((1, channels))
    buf = io.BytesIO()
    sf.write(buf, data.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buf.getvalue(), fmt, rate, channels, frames


WAVE_FORMAT_TAGS = st.one_of(st.sampled_from([0, 1, 2, 3, 6, 7, 0x11, 0x55, 0xFFFE, 0x1234]), st.integers(0, 0xFFFF))
U32_EDGES = [0, 1, 7, 8, 44, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF]


@st.composite
def crafted_wav(draw: st.DrawFn) -> bytes:
    """A RIFF/WAVE file built field by field: plausible values mixed with absurd ones."""
    tag = draw(WAVE_FORMAT_TAGS)
    channels = draw(st.one_of(st.integers(1, 16), st.sampled_from([0, 17, 255, 256, 1024, 1025, 0xFFFF]),
                              st.integers(0, 0xFFFF)))
    rate = draw(st.one_of(RATES, st.sampled_from([0, 1, MIN_SAMPLE_RATE - 1, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE,
                                                  MAX_SAMPLE_RATE + 1, 2**31, 2**32 - 1]),
                          st.integers(0, 2**32 - 1)))
    bits = draw(st.one_of(st.sampled_from([8, 16, 24, 32, 64]), st.sampled_from([0, 1, 7, 12, 33, 0xFFFF]),
                          st.integers(0, 0xFFFF)))
    block_align = (channels * bits // 8) & 0xFFFF
    if draw(st.booleans()):
        block_align = draw(st.integers(0, 0xFFFF))
    byte_rate = (rate * block_align) & 0xFFFFFFFF
    if draw(st.booleans()):
        byte_rate = draw(st.integers(0, 2**32 - 1))
    fmt_body = struct.pack("<HHIIHH", tag, channels & 0xFFFF, rate, byte_rate, block_align, bits & 0xFFFF)
    if tag == 0xFFFE or draw(st.booleans()):  # WAVE_FORMAT_EXTENSIBLE: cbSize 22 + valid bits, mask, GUID
        sub_tag = draw(st.sampled_from([1, 3, 0x1234]))
        guid = struct.pack("<H", sub_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_body += struct.pack("<HHI", 22, bits & 0xFFFF, draw(st.integers(0, 2**32 - 1))) + guid
    fmt_size = len(fmt_body) if draw(st.booleans()) else draw(st.sampled_from([0, 2, 14, 16, 18, 40, 0xFFFFFFFF]))
    payload_kind = draw(st.sampled_from(["random", "zeros", "floats"]))
    n = draw(st.integers(0, 4096))
    if payload_kind == "random":
        payload = draw(st.binary(min_size=0, max_size=n))
    elif payload_kind == "zeros":
        payload = bytes(n)
    else:
        values = draw(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=n // 4))
        payload = np.asarray(values, dtype="<f4").tobytes()
    data_size = len(payload) if draw(st.booleans()) else draw(st.sampled_from(U32_EDGES))
    chunks = b"fmt " + struct.pack("<I", fmt_size) + fmt_body + b"data" + struct.pack("<I", data_size) + payload
    riff_size = 4 + len(chunks) if draw(st.booleans()) else draw(st.sampled_from(U32_EDGES))
    head = draw(st.sampled_from([b"RIFF", b"RIFF", b"RIFF", b"RIFX", b"RF64"]))
    blob = head + struct.pack("<I", riff_size) + b"WAVE" + chunks
    cut = draw(st.one_of(st.none(), st.integers(0, len(blob))))
    return blob if cut is None else blob[:cut]


MAGICS = st.sampled_from([b"", *codec.audio._AUDIO_MAGIC, b"\x00\x00\x00\x20ftypM4A ", b"\xff\xfb", b"\xff\xf1"])


# --------------------------------------------------------------------------------------------- properties


@fuzz_settings(30)
@given(magic=MAGICS, body=st.binary(max_size=2048), as_file=st.booleans())
def test_random_bytes_load_or_fail_clearly(workdir: Path, magic: bytes, body: bytes, as_file: bool) -> None:
    load_both_ways(magic + body, workdir, as_file)


@fuzz_settings(60)
@given(audio=encoded_audio(), target=TARGET_RATES, cut=st.one_of(st.none(), st.floats(0, 1)),
       as_file=st.booleans())
def test_encoded_files_truncated_anywhere(workdir: Path, audio, target: int, cut: float | None,
                                          as_file: bool) -> None:
    blob, fmt, rate, channels, frames = audio
    if cut is not None:
        blob = blob[: int(cut * len(blob))]
    y = load_both_ways(blob, workdir, as_file, sample_rate=target)
    if cut is None:  # an intact file always loads, at the asked rate
        expected = resampled_length(frames, rate, target)
        assert y is not None or expected == 0, f"intact {fmt} {rate} Hz x{channels} failed to load"
        if y is not None and fmt != "OGG":  # lossy codecs may pad or trim a few frames
            assert abs(len(y) - expected) <= 1, (len(y), expected)
        elif y is not None:
            assert abs(len(y) - expected) <= max(2, 0.05 * expected) + 0.02 * target, (len(y), expected)


@fuzz_settings(40)
@given(blob=crafted_wav(), as_file=st.booleans(), max_seconds=st.sampled_from([None, 1.0, 3600.0]))
def test_crafted_wav_headers(workdir: Path, blob: bytes, as_file: bool, max_seconds: float | None) -> None:
    if not as_file:
        check_load(blob, name=f"<{len(blob)} bytes>", max_seconds=max_seconds)
        return
    path = workdir / "crafted.wav"
    path.write_bytes(blob)
    check_load(path, name=str(path), max_seconds=max_seconds)


@st.composite
def float_samples(draw: st.DrawFn) -> np.ndarray:
    """``[T, C]`` float32/float64 samples mixing ordinary values, NaN, +-Inf, 1e30 (1e300) and denormals."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    frames, channels = draw(st.integers(1, 400)), draw(st.integers(1, 16))
    width = 32 if dtype == np.float32 else 64
    big = 1e30 if dtype == np.float32 else 1e300
    tiny = float(np.finfo(dtype).smallest_subnormal)
    special = st.sampled_from([np.nan, np.inf, -np.inf, big, -big, tiny, -tiny, 1.0, -1.0, 0.0])
    base = draw(st.sampled_from(["ordinary", "extreme", "anything"]))
    if base == "ordinary":
        x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-1, 1, (frames, channels))
    elif base == "extreme":
        x = np.full((frames, channels), draw(special))
    else:
        x = draw(arrays(dtype, (frames, channels), elements=st.floats(width=width)))
    x = np.array(x, dtype=dtype)
    for _ in range(draw(st.integers(0, 4))):  # sprinkle special values
        x[draw(st.integers(0, frames - 1)), draw(st.integers(0, channels - 1))] = draw(special)
    return x


@fuzz_settings(100)
@given(x=float_samples(), rate=RATES, target=TARGET_RATES, how=st.sampled_from(["wav", "array", "tensor"]))
def test_float_samples_nan_inf_and_extremes(x: np.ndarray, rate: int, target: int, how: str) -> None:
    if how == "wav":
        buf = io.BytesIO()
        sf.write(buf, x, rate, format="WAV", subtype="FLOAT" if x.dtype == np.float32 else "DOUBLE")
        source, name = buf.getvalue(), f"<{len(buf.getvalue())} bytes>"
    else:
        source = x.T if how == "array" else torch.from_numpy(x.T.copy())  # [C, T]: the channel-first layout
        name = f"<{type(source).__name__} {tuple(source.shape)}>"
    y = check_load(source, target, name=name, source_rate=None if how == "wav" else rate)
    if not np.isfinite(x).all():
        assert y is None, "NaN/Inf samples must be rejected"
        return
    length = resampled_length(len(x), rate, target)
    if how != "wav" and x.shape[0] < x.shape[1]:
        # load_audio takes the smaller axis as channels: a [C, T] array with T < C reads as T channels
        length = resampled_length(x.shape[1], rate, target)
    assert y is not None or length == 0, "finite samples (however large or small) are valid audio"
    if y is not None:
        assert abs(len(y) - length) <= 1
        if rate == target and x.shape[0] >= x.shape[1]:  # no resampling: exactly the clipped channel mean
            expected = np.clip(x, -1, 1).astype(np.float32).mean(axis=1, dtype=np.float32)
            np.testing.assert_allclose(y.numpy(), expected, atol=1e-6)


DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
                          np.uint16, np.uint32, np.bool_, np.complex64])


@fuzz_settings(120)
@given(x=DTYPES.flatmap(lambda d: arrays(d, array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40))),
       source_rate=st.one_of(st.none(), st.integers(-10, 10**6), st.sampled_from([8000, 96000])),
       target=st.one_of(TARGET_RATES, st.integers(-10, 10**6)), as_tensor=st.booleans())
def test_arrays_of_any_dtype_and_rank(x: np.ndarray, source_rate: int | None, target: int, as_tensor: bool) -> None:
    source = x
    if as_tensor:
        if x.dtype in (np.uint16, np.uint32):
            return  # torch has no such tensors
        source = torch.from_numpy(x.copy())
    check_load(source, target, source_rate=source_rate)


@fuzz_settings(40)
@given(source=st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.floats(), max_size=5),
                        st.text(max_size=20).map(lambda s: f"/nonexistent/{s}")),
       target=st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)))
def test_wrong_source_and_rate_types(source, target) -> None:
    check_load(source, target)


# --------------------------------------------------------------------------------------------- edge cases


def test_zero_length_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioInputError, match=r"empty \(0 bytes\)"):
        load_audio(empty)
    with pytest.raises(AudioInputError, match=r"<0 bytes> is empty"):
        load_audio(b"")
    header_only = io.BytesIO()
    sf.write(header_only, np.zeros((0, 1), np.float32), 16000, format="WAV")
    with pytest.raises(AudioInputError, match="zero samples"):
        load_audio(header_only.getvalue())
    with pytest.raises(AudioInputError, match="zero samples"):
        load_audio(np.zeros((2, 0), np.float32))
    with pytest.raises(AudioInputError, match="is a directory"):
        load_audio(tmp_path)


def test_one_sample_resampled_to_nothing_is_empty() -> None:
    with pytest.raises(AudioInputError, match="resample to 0"):
        load_audio(np.array([0.5], np.float32), 8000, source_rate=96000)


def test_float64_beyond_float32_range_is_clipped_not_called_inf() -> None:
    x = np.array([0.0, 1e300, -1e300, 0.25])
    np.testing.assert_array_equal(load_audio(x).numpy(), [0.0, 1.0, -1.0, 0.25])
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="DOUBLE")
    np.testing.assert_array_equal(load_audio(buf.getvalue()).numpy(), [0.0, 1.0, -1.0, 0.25])
    with pytest.raises(AudioInputError, match="NaN/Inf"):
        load_audio(np.array([0.0, np.inf]))


def test_ffmpeg_errors_name_the_source_not_a_temp_file() -> None:
    blob = b"RIFF" + bytes(40)  # soundfile refuses it, so ffmpeg sees it through a temporary file
    with pytest.raises(AudioInputError) as info:
        load_audio(blob)
    assert "<44 bytes>" in str(info.value) and "alm-audio-" not in str(info.value)
