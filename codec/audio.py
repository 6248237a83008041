"""Audio I/O: load any common audio file or array as mono float32 at a fixed rate, and save atomically.

The one entry point for audio entering the toolkit is :func:`load_audio`; everything downstream (features,
codec, units, the LM) may assume its contract: a 1-D float32 tensor ``[T]`` in ``[-1, 1]``, finite, non-empty,
at ``sample_rate`` Hz. Anything that cannot meet the contract raises :class:`AudioInputError`, whose message
names the problem and the source.

Decoding: :mod:`soundfile` (libsndfile: WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, ...) first; when it cannot read
a file (M4A/AAC, WMA, some MP3s, video containers), the ``ffmpeg`` command-line tool decodes the first audio
stream at its original rate and channel count to raw float32 PCM, so that downmixing and resampling are the
same code path for every format. Resampling uses :mod:`soxr` (``HQ`` quality).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TypedDict

import numpy as np
import soundfile as sf
import soxr
import torch

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz; the rate every model in the toolkit consumes
# Rates outside these bounds are not audio anyone records (10 Hz is a typo for 10 kHz, 10 MHz is radio);
# 384 kHz is the highest rate shipped by studio converters and 1 kHz is below any telephony codec.
MIN_SAMPLE_RATE = 1000  # Hz
MAX_SAMPLE_RATE = 384000  # Hz
DEFAULT_MAX_SECONDS = 4 * 3600  # 4 hours: 230,400,000 samples (~0.9 GB float32) at 16 kHz
FFMPEG_TIMEOUT_S = 600  # a decode that takes longer than this is treated as a hung ffmpeg
RESAMPLE_QUALITY = "HQ"  # soxr's high quality preset (20-bit precision, 95% passband)
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # ~3.4e38

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | torch.Tensor

# File signatures of audio containers, to tell "corrupt audio" from "not audio at all" once decoding failed.
_AUDIO_MAGIC = (
    b"RIFF",
    b"RIFX",
    b"RF64",
    b"fLaC",
    b"OggS",
    b"ID3",
    b"FORM",
    b"caff",
    b".snd",
    b"wvpk",
    b"MAC ",
    b"#!AMR",
    b"\x30\x26\xb2\x75",
    b"\x1a\x45\xdf\xa3",
)


class AudioInputError(ValueError):
    """Audio that cannot be turned into the ``load_audio`` contract; the message says what and where."""


class AudioInfo(TypedDict):
    """What :func:`audio_info` reports about a file, without decoding it fully."""

    duration: float  # seconds
    sample_rate: int  # Hz, as stored in the file
    channels: int
    frames: int  # samples per channel
    format: str  # container as named by libsndfile or ffprobe, e.g. "WAV", "FLAC", "mov,mp4,m4a,3gp,3g2,mj2"


def load_audio(
    source: AudioSource,
    sample_rate: int = SAMPLE_RATE,
    *,
    source_rate: int | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> torch.Tensor:
    """Load a file, encoded bytes or an array as mono float32 audio at ``sample_rate``.

    Args:
        source: a path (``str`` / ``PathLike``) to an audio file (WAV, FLAC, OGG Vorbis/Opus, MP3, or anything
            ffmpeg decodes), the encoded bytes of such a file, or a waveform array (``np.ndarray`` or
            ``torch.Tensor``) shaped ``[T]``, ``[C, T]`` or ``[T, C]``. For 2-D arrays the channel axis is the
            *smaller* dimension (a tie counts as ``[C, T]``). Integer arrays (int8/16/32, uint8/16) are scaled
            by their full scale to ``[-1, 1]``; int64 is rejected because its full scale is ambiguous.
        sample_rate: rate of the returned waveform in Hz.
        source_rate: rate of an array ``source`` in Hz; defaults to ``sample_rate`` (no resampling). For files
            and bytes the rate is read from the file; passing a different ``source_rate`` is an error.
        max_seconds: longest accepted duration of the source in seconds (``None``: no limit).

    Returns:
        ``[T]`` float32 tensor in ``[-1, 1]``. Channels are averaged. Float samples beyond ``[-1, 1]`` in the
        source are clipped with a logged warning (not peak-normalised: loudness is preserved for valid audio);
        the tiny overshoot the resampler can add near full scale is clipped silently. Silence is valid.

    Raises:
        AudioInputError: missing file, directory, not an audio file, corrupt or unreadable file, empty audio,
            NaN/Inf samples, absurd sample rate, longer than ``max_seconds``, wrong array rank or dtype.
    """
    sample_rate = _check_rate(sample_rate, "target sample_rate")
    if max_seconds is not None and not max_seconds > 0:
        raise AudioInputError(f"max_seconds must be positive or None, got {max_seconds!r}")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        name = f"<{type(source).__name__} {tuple(source.shape)}>"
        rate = _check_rate(sample_rate if source_rate is None else source_rate, f"source_rate of {name}")
        data = _array_to_float(source, name)  # [T, C]
    elif isinstance(source, (str, os.PathLike)):
        name = str(source)
        data, rate = _decode_path(Path(source), name, max_seconds)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        blob = bytes(source)
        name = f"<{len(blob)} bytes>"
        data, rate = _decode_bytes(blob, name, max_seconds)
    else:
        raise AudioInputError(
            f"unsupported audio source type {type(source).__name__}: pass a path, bytes, np.ndarray or tensor"
        )
    if source_rate is not None and not isinstance(source, (np.ndarray, torch.Tensor)) and source_rate != rate:
        raise AudioInputError(f"source_rate={source_rate} contradicts the {rate} Hz stored in {name}")
    return torch.from_numpy(_finish(data, rate, sample_rate, max_seconds, name))


def save_audio(
    path: str | os.PathLike,
    wav: torch.Tensor | np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    subtype: str | None = None,
) -> Path:
    """Write mono audio to WAV, FLAC or OGG (chosen by extension) atomically.

    The file is written to a temporary name in the same directory, fsynced, then renamed over ``path``, so a
    reader never sees a half-written file and a crash leaves no partial output.

    Args:
        path: destination ending in ``.wav``, ``.flac`` or ``.ogg``.
        wav: ``[T]`` or ``[1, T]`` waveform; floats in ``[-1, 1]`` (beyond is clipped with a warning) or
            integer PCM (scaled as in :func:`load_audio`).
        sample_rate: rate of ``wav`` in Hz.
        subtype: libsndfile subtype; ``None`` means ``"PCM_16"`` for WAV/FLAC and ``"VORBIS"`` for OGG.

    Returns:
        The destination path.

    Raises:
        AudioInputError: unknown extension or subtype, wrong shape, empty, NaN/Inf samples, absurd rate.
    """
    path = Path(path)
    formats = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise AudioInputError(f"cannot save {path}: extension must be one of {sorted(formats)}")
    subtype = subtype or ("VORBIS" if fmt == "OGG" else "PCM_16")
    if not sf.check_format(fmt, subtype):
        raise AudioInputError(f"cannot save {path}: subtype {subtype!r} is not valid for {fmt}")
    sample_rate = _check_rate(sample_rate, f"sample_rate for {path}")
    if wav.ndim == 2 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.ndim != 1:
        raise AudioInputError(
            f"cannot save {path}: expected a [T] or [1, T] waveform, got shape {tuple(wav.shape)}"
        )
    data = _array_to_float(wav, str(path))[:, 0]  # [T]
    _check_samples(data, str(path))
    data = _clip(data, str(path))

    # mkstemp creates the file 0600; give the result the old file's mode, or the usual 0644 for a new one
    mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            sf.write(f, data, sample_rate, format=fmt, subtype=subtype)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Duration, rate and channels of an audio file, read from its header (soundfile, else ffprobe).

    Raises:
        AudioInputError: as :func:`load_audio` for missing, non-audio or corrupt files.
    """
    path, name = Path(path), str(path)
    _check_path(path, name)
    try:
        info = sf.info(name)
        return AudioInfo(
            duration=info.frames / info.samplerate,
            sample_rate=info.samplerate,
            channels=info.channels,
            frames=info.frames,
            format=info.format,
        )
    except (sf.SoundFileError, RuntimeError) as e:
        logger.debug("soundfile cannot read %s (%s); probing with ffprobe", name, e)
    rate, channels, duration, fmt = _ffprobe(path, name)
    frames = round(duration * rate) if duration is not None else -1
    return AudioInfo(
        duration=duration if duration is not None else float("nan"),
        sample_rate=rate,
        channels=channels,
        frames=frames,
        format=fmt,
    )


# --------------------------------------------------------------------------------------------- validation


def _check_rate(rate: object, what: str) -> int:
    """Return ``rate`` as int if it is a plausible audio rate, else raise an "absurd sample rate" error."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise AudioInputError(f"{what} must be a number of Hz, got {rate!r}")
    if not (MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE) or rate != int(rate):
        raise AudioInputError(
            f"absurd sample rate {rate} Hz for {what}: expected an integer in "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    return int(rate)


def _check_path(path: Path, name: str) -> None:
    if not path.exists():
        raise AudioInputError(f"no such file: {name}")
    if path.is_dir():
        raise AudioInputError(f"{name} is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{name} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioInputError(f"cannot read {name}: permission denied")


def _check_samples(data: np.ndarray, name: str) -> None:
    """Reject empty and non-finite float audio."""
    if data.size == 0:
        raise AudioInputError(f"{name} is empty: it holds zero samples")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise AudioInputError(f"{name} contains NaN/Inf samples ({bad} of {data.size})")


def _check_duration(frames: int, rate: int, max_seconds: float | None, name: str) -> None:
    if max_seconds is not None and frames / rate > max_seconds:
        raise AudioInputError(
            f"{name} is longer than the limit of {max_seconds:g} s ({frames / rate:.1f} s); "
            "split it or raise max_seconds"
        )


def _clip(data: np.ndarray, name: str) -> np.ndarray:
    """Clip to [-1, 1], warning when source samples (not resampler ripple) are out of range."""
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if peak > 1.0:
        hint = " (looks like integer PCM stored as float: divide by 32768)" if peak > 2.0 else ""
        logger.warning(
            "%s: clipping %d samples beyond [-1, 1], peak %.3g%s",
            name,
            int(np.count_nonzero(np.abs(data) > 1.0)),
            peak,
            hint,
        )
        data = np.clip(data, -1.0, 1.0)
    return data


# --------------------------------------------------------------------------------------------- arrays


def _array_to_float(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Convert a waveform array to float32 ``[T, C]``, scaling integer PCM by its full scale."""
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise AudioInputError(f"{name} has non-numeric dtype {x.dtype}: audio must be float or int PCM")
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # numpy has no bfloat16
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    kind, bits = x.dtype.kind, 8 * x.dtype.itemsize
    if kind not in "fiu" or (kind in "iu" and bits > 32):
        detail = " (int64 has no agreed full scale: convert to int16/int32 or float)" if kind in "iu" else ""
        raise AudioInputError(
            f"{name} has non-numeric dtype {x.dtype}: audio must be float or int8/16/32 PCM{detail}"
        )
    if x.ndim not in (1, 2):
        raise AudioInputError(f"{name} must be 1-D [T] or 2-D [C, T] / [T, C], got {x.ndim}-D {x.shape}")
    if x.ndim == 1:
        x = x[:, None]
    elif x.shape[0] <= x.shape[1]:  # channel axis = the smaller dimension; [C, T] wins a tie
        x = x.T
    if x.shape[1] > 32:
        logger.warning("%s: treating the smaller axis as %d channels", name, x.shape[1])
    if kind == "f":
        return _to_float32(x)
    full_scale = float(2 ** (bits - 1))
    offset = full_scale if kind == "u" else 0.0  # unsigned PCM is centred on half its range
    return ((x.astype(np.float64) - offset) / full_scale).astype(np.float32)


def _to_float32(x: np.ndarray) -> np.ndarray:
    """Float samples as contiguous float32. Finite values beyond float32's range (a float64 ``1e300``) are first
    limited to its largest value, so they reach the clip to ``[-1, 1]`` instead of overflowing to Inf and being
    reported as non-finite; NaN and Inf stay what they are."""
    if x.dtype.itemsize > 4 and x.size:
        finite = np.isfinite(x)
        if np.abs(x[finite]).max(initial=0.0) > _FLOAT32_MAX:
            x = np.where(finite, np.clip(x, -_FLOAT32_MAX, _FLOAT32_MAX), x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _finish(
    data: np.ndarray, rate: int, sample_rate: int, max_seconds: float | None, name: str
) -> np.ndarray:
    """Validate, clip, downmix and resample ``[T, C]`` float32 at ``rate`` to ``[T']`` at ``sample_rate``."""
    _check_samples(data, name)
    _check_duration(data.shape[0], rate, max_seconds, name)
    mono = _clip(data, name).mean(axis=1, dtype=np.float32)  # [T]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality=RESAMPLE_QUALITY)
        mono = np.clip(mono, -1.0, 1.0)  # resampler ripple near full scale
        if mono.size == 0:
            raise AudioInputError(f"{name} is empty: {data.shape[0]} samples resample to 0 at {sample_rate}")
    return np.ascontiguousarray(mono, dtype=np.float32)


# --------------------------------------------------------------------------------------------- files


def _decode_path(path: Path, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode a file to ``([T, C] float32, rate)``: soundfile first, ffmpeg when soundfile cannot read it."""
    _check_path(path, name)
    try:
        with sf.SoundFile(str(path)) as f:
            return _read_soundfile(f, name, max_seconds)
    except (sf.SoundFileError, RuntimeError) as e:
        logger.debug("soundfile cannot read %s (%s); trying ffmpeg", name, e)
        error = str(e)
    return _decode_ffmpeg(path, name, max_seconds, error)


def _decode_bytes(blob: bytes, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Decode an in-memory file; the ffmpeg fallback goes through a temp file (MP4 needs seekable input)."""
    if not blob:
        raise AudioInputError(f"{name} is empty (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(blob)) as f:
            return _read_soundfile(f, name, max_seconds)
    except (sf.SoundFileError, RuntimeError) as e:
        logger.debug("soundfile cannot read %s (%s); trying ffmpeg", name, e)
        error = str(e)
    with tempfile.TemporaryDirectory(prefix="alm-audio-") as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(blob)
        return _decode_ffmpeg(path, name, max_seconds, error)


def _read_soundfile(f: sf.SoundFile, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    rate = _check_rate(f.samplerate, f"{name} (stored in the file)")
    if f.frames > 0:  # check before decoding, so a 10-hour file costs nothing
        _check_duration(f.frames, rate, max_seconds, name)
    # [T, C]; int PCM is scaled to [-1, 1) by libsndfile. 64-bit float files are read as float64 so that huge
    # finite samples are clipped like any other instead of overflowing to Inf in libsndfile's own cast.
    dtype = "float64" if f.subtype == "DOUBLE" else "float32"
    return _to_float32(f.read(dtype=dtype, always_2d=True)), rate


def _looks_like_audio(path: Path) -> bool:
    """Whether the file starts with a known audio container signature or an MPEG audio frame sync."""
    with path.open("rb") as f:
        head = f.read(12)
    mpeg_sync = len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MP3 / ADTS AAC
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp" or mpeg_sync


def _undecodable(path: Path, name: str, detail: str) -> AudioInputError:
    if _looks_like_audio(path):
        return AudioInputError(f"{name} is corrupt or unreadable audio (soundfile and ffmpeg: {detail})")
    return AudioInputError(f"{name} is not an audio file (soundfile and ffmpeg: {detail})")


def _run(cmd: list[str], name: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise AudioInputError(f"{name}: {cmd[0]} took longer than {FFMPEG_TIMEOUT_S} s to decode it") from e


def _ffprobe(path: Path, name: str, sf_error: str = "") -> tuple[int, int, float | None, str]:
    """``(rate, channels, duration or None, format name)`` of the first audio stream, via ffprobe."""
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        raise AudioInputError(
            f"soundfile cannot read {name} ({sf_error or 'unsupported format'}) and ffmpeg/ffprobe is not "
            "installed to try instead"
        )
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate,channels:format=duration,format_name",
        "-of",
        "json",
        str(path),
    ]
    proc = _run(cmd, name)
    if proc.returncode != 0:
        raise _undecodable(path, name, _last_line(proc.stderr, path, name) or sf_error)
    try:
        probe = json.loads(proc.stdout or b"{}")
    except ValueError as e:
        raise _undecodable(path, name, f"ffprobe wrote no readable report ({e})") from e
    streams = (probe.get("streams") if isinstance(probe, dict) else None) or []
    if not streams:
        raise AudioInputError(f"{name} is not an audio file: it has no audio stream")
    try:
        rate, channels = int(streams[0]["sample_rate"]), int(streams[0]["channels"])
    except (KeyError, ValueError) as e:
        raise _undecodable(path, name, f"ffprobe reports no sample rate/channels ({e})") from e
    rate = _check_rate(rate, f"{name} (stored in the file)")
    if channels < 1:
        raise _undecodable(path, name, f"ffprobe reports {channels} audio channels")
    fmt = probe.get("format") or {}  # probe is a dict: it had streams
    try:
        duration: float | None = float(fmt["duration"])
    except (KeyError, ValueError, TypeError):
        duration = None
    if duration is not None and not 0 <= duration < float("inf"):  # NaN, Inf or negative: unknown
        duration = None
    return rate, channels, duration, str(fmt.get("format_name", "unknown"))


def _decode_ffmpeg(path: Path, name: str, max_seconds: float | None, sf_error: str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with ffmpeg at its own rate and channels to ``[T, C]`` float32."""
    rate, channels, duration, _ = _ffprobe(path, name, sf_error)
    if duration is not None:
        _check_duration(round(duration * rate), rate, max_seconds, name)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0"]
    if max_seconds is not None:  # bound the decode; one extra second lets the length check below fire
        cmd += ["-t", f"{max_seconds + 1.0:g}"]
    cmd += ["-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    proc = _run(cmd, name)
    if proc.returncode != 0:
        raise _undecodable(path, name, _last_line(proc.stderr, path, name))
    if not proc.stdout:
        raise _undecodable(path, name, "ffmpeg decoded zero samples")
    pcm = np.frombuffer(proc.stdout, dtype="<f4")
    if pcm.size % channels:
        raise _undecodable(path, name, f"{pcm.size} samples do not split into {channels} channels")
    return pcm.reshape(-1, channels).astype(np.float32), rate  # [T, C], interleaved frames


def _last_line(stderr: bytes, path: Path, name: str) -> str:
    """The last line of a tool's stderr, with the file it read called by the caller's name for the source (for
    bytes, ``path`` is a temporary file the user never saw)."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].replace(str(path), name) if lines else ""


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
