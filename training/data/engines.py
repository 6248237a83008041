"""Offline speech synthesizers (Debian packages) behind one function: text + speaker -> 16 kHz waveform.

Each engine is driven through its command-line tool in a private temporary directory; the output file is read
back with :func:`codec.load_audio`, which resamples to 16 kHz (RHVoice speaks at 24 kHz, espeak-ng at
22.05 kHz). Missing engines are detected up front by :func:`available_engines` so a corpus recipe can leave
their speakers out with a clear message instead of failing halfway.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from codec.audio import SAMPLE_RATE, load_audio
from training.data.voices import Speaker

log = logging.getLogger(__name__)

MBROLA_DIR = Path("/usr/share/mbrola")
RHVOICE_DIR = Path("/usr/share/RHVoice/voices")
TIMEOUT_S = 60  # one sentence takes well under a second with every engine; this only catches hangs
MIN_RMS = 1e-4  # below this the engine produced silence (a missing voice or diphone): an error, not data

APT_PACKAGES = {
    "espeak": ["espeak-ng"],
    "mbrola": ["espeak-ng", "mbrola", "mbrola-us1", "mbrola-us2", "mbrola-us3", "mbrola-en1", "mbrola-es1",
               "mbrola-es2", "mbrola-mx1", "mbrola-mx2", "mbrola-vz1"],
    "flite": ["flite"],
    "pico": ["libttspico-utils"],
    "rhvoice": ["rhvoice", "rhvoice-english"],
    "asterisk": ["asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav", "asterisk-core-sounds-en",
                 "asterisk-core-sounds-es"],
}


class EngineError(RuntimeError):
    """A synthesizer failed, is missing, or produced no speech."""


@cache
def available_engines() -> frozenset[str]:
    """The engines whose tools and voices are installed on this machine."""
    have = set()
    if shutil.which("espeak-ng"):
        have.add("espeak")
        if shutil.which("mbrola") and MBROLA_DIR.is_dir():
            have.add("mbrola")
    if shutil.which("flite"):
        have.add("flite")
    if shutil.which("pico2wave"):
        have.add("pico")
    if shutil.which("RHVoice-test") and RHVOICE_DIR.is_dir():
        have.add("rhvoice")
    if Path("/usr/share/asterisk/sounds/en").is_dir():
        have.add("asterisk")
    return frozenset(have)


def speaker_available(speaker: Speaker) -> bool:
    """Whether this machine can make this speaker's voice (engine and voice data installed)."""
    if speaker.engine not in available_engines():
        return False
    if speaker.engine == "mbrola":
        return (MBROLA_DIR / speaker.voice / speaker.voice).is_file()
    if speaker.engine == "rhvoice":
        return (RHVOICE_DIR / speaker.voice).is_dir()
    return True


def _run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(
            cmd, input=None if stdin is None else stdin.encode("utf-8"), capture_output=True, timeout=TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as e:
        raise EngineError(f"{cmd[0]} is not installed: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise EngineError(f"{cmd[0]} did not finish within {TIMEOUT_S} s") from e
    if proc.returncode != 0:
        raise EngineError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc


# espeak-ng's Spanish phoneme names that the Spanish MBROLA databases spell without the modifier.
_PHO_MODIFIER = re.compile(r"^([A-Za-z;]+[0-9]?)[/^]+\t", re.MULTILINE)


def _mbrola_spanish(speaker: Speaker, text: str, pitch: int, rate: int, out: Path) -> None:
    # `espeak-ng -v mb-es1 TEXT` leaves holes of silence where espeak's phoneme names (`a/`, `l^`) are not in the
    # database; asking espeak for the phoneme list, rewriting the names and running mbrola ourselves works.
    pho = _run(["espeak-ng", "-v", f"mb-{speaker.voice}", "-p", str(pitch), "-s", str(rate), "-q", "--pho"],
               stdin=text).stdout.decode("utf-8", errors="replace")
    pho_path = out.with_suffix(".pho")
    pho_path.write_text(_PHO_MODIFIER.sub(r"\1\t", pho), encoding="utf-8")
    _run(["mbrola", "-e", str(MBROLA_DIR / speaker.voice / speaker.voice), str(pho_path), str(out)])


def _clean(text: str) -> str:
    # Engines read a leading '-' as an option and some choke on control characters.
    text = " ".join(text.replace("\x00", " ").split())
    return text.lstrip("-").strip()


def synthesize(speaker: Speaker, text: str, lang: str, *, pitch_shift: int = 0, rate_scale: float = 1.0
               ) -> np.ndarray:
    """Speak ``text`` in ``lang`` with ``speaker``'s voice.

    Args:
        speaker: a synthetic :class:`~training.data.voices.Speaker` that speaks ``lang``.
        text: the sentence, already in spoken form (numbers as words).
        lang: ``"en"`` or ``"es"``.
        pitch_shift: added to the speaker's espeak pitch (espeak and MBROLA only); augmentation, not identity.
        rate_scale: multiplies the speaking rate (espeak, MBROLA and flite).

    Returns:
        float32 waveform ``[T]`` at 16 kHz.

    Raises:
        EngineError: the engine is missing, fails, or returns silence.
    """
    if not speaker.speaks(lang):
        raise EngineError(f"speaker {speaker.id} does not speak {lang!r}")
    if speaker.real:
        raise EngineError(f"speaker {speaker.id} is a recording, not a synthesizer")
    if not speaker_available(speaker):
        raise EngineError(f"speaker {speaker.id} needs {speaker.engine}: apt-get install "
                          + " ".join(APT_PACKAGES[speaker.engine]))
    text = _clean(text)
    if not text:
        raise EngineError("empty text")
    pitch = min(99, max(0, (speaker.pitch or 50) + pitch_shift))
    rate = int(round((speaker.rate or 165) * rate_scale))
    with tempfile.TemporaryDirectory(prefix="alm-tts-") as tmp:
        out = Path(tmp) / "out.wav"
        if speaker.engine == "espeak":
            _run(["espeak-ng", "-v", f"{lang}+{speaker.voice}", "-p", str(pitch), "-s", str(rate), "-w", str(out)],
                 stdin=text)
        elif speaker.engine == "mbrola" and lang == "es":
            _mbrola_spanish(speaker, text, pitch, rate, out)
        elif speaker.engine == "mbrola":
            _run(["espeak-ng", "-v", f"mb-{speaker.voice}", "-p", str(pitch), "-s", str(rate), "-w", str(out)],
                 stdin=text)
        elif speaker.engine == "flite":
            stretch = f"{1.0 / rate_scale:.3f}"
            _run(["flite", "-voice", speaker.voice, "--setf", f"duration_stretch={stretch}", "-t", text,
                  "-o", str(out)])
        elif speaker.engine == "pico":
            _run(["pico2wave", "-l", speaker.voice, "-w", str(out), text])
        elif speaker.engine == "rhvoice":
            _run(["RHVoice-test", "-p", speaker.voice, "-o", str(out)], stdin=text)
        else:
            raise EngineError(f"unknown engine {speaker.engine!r}")
        if not out.is_file() or out.stat().st_size <= 44:
            raise EngineError(f"{speaker.engine} wrote no audio for {text[:40]!r}")
        wav = load_audio(out, SAMPLE_RATE).numpy()
    wav = trim_silence(wav)
    rms = float(np.sqrt(np.mean(wav**2))) if wav.size else 0.0
    if rms < MIN_RMS:
        raise EngineError(f"{speaker.id} produced silence for {text[:40]!r}")
    return wav.astype(np.float32)


def trim_silence(wav: np.ndarray, threshold: float = 1e-3, pad_s: float = 0.1) -> np.ndarray:
    """Trim leading/trailing near-silence, keeping ``pad_s`` seconds of margin. ``[T] -> [T']``."""
    loud = np.flatnonzero(np.abs(wav) > threshold)
    if loud.size == 0:
        return wav[:0]
    pad = int(pad_s * SAMPLE_RATE)
    return wav[max(0, loud[0] - pad): loud[-1] + 1 + pad]


def engine_versions() -> dict[str, str]:
    """Engine tool versions, recorded in the corpus' summary so a corpus can be traced to its tools."""
    versions: dict[str, str] = {}
    for name, cmd in {"espeak": ["espeak-ng", "--version"], "flite": ["flite", "--version"]}.items():
        if name in available_engines():
            try:
                out = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
                versions[name] = out.stdout.decode(errors="replace").strip().splitlines()[0]
            except (OSError, subprocess.TimeoutExpired, IndexError):
                versions[name] = "unknown"
    return versions

