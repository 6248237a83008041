"""Real human speech that Debian ships: the asterisk IVR prompts in English and Spanish.

One female speaker per language, recorded for telephone use (8 kHz). The same prompt id exists in both
languages, which gives real English/Spanish speech pairs for translation. Transcripts come from the packages'
``core-sounds-XX.txt.gz``; prompts whose transcript is a description (``[ascending tones]``) are skipped.
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alm.textnorm import normalize_text

log = logging.getLogger(__name__)

SOUNDS_DIR = Path("/usr/share/asterisk/sounds")
TRANSCRIPTS = {lang: Path(f"/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz")
               for lang in ("en", "es")}
LICENSE = "CC-BY-SA-3.0 (asterisk core sounds)"


@dataclass(frozen=True)
class Prompt:
    """One recorded prompt: ``key`` is the asterisk sound name shared across languages."""

    key: str
    lang: str
    text: str
    path: Path


_LINE = re.compile(r"^([\w/-]+):\s*(.+)$")


@lru_cache(maxsize=4)
def asterisk_prompts(lang: str) -> tuple[Prompt, ...]:
    """Prompts of one language with an existing recording and a speakable transcript (sorted by key)."""
    transcript = TRANSCRIPTS.get(lang)
    if transcript is None:
        raise ValueError(f"asterisk prompts exist for {sorted(TRANSCRIPTS)}, not {lang!r}")
    if not transcript.is_file():
        log.warning("no real %s speech: %s is missing (apt-get install asterisk-core-sounds-%s "
                    "asterisk-core-sounds-%s-wav)", lang, transcript, lang, lang)
        return ()
    prompts: dict[str, Prompt] = {}
    with gzip.open(transcript, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _LINE.match(line.strip())
            if not m or "[" in m.group(2):
                continue
            key, text = m.group(1), " ".join(m.group(2).split())
            path = SOUNDS_DIR / lang / f"{key}.wav"
            if not path.is_file() or key in prompts:  # a key listed twice keeps its first transcript
                continue
            spoken = normalize_text(text, lang)
            if len(spoken.split()) >= 1:
                prompts[key] = Prompt(key=key, lang=lang, text=spoken, path=path)
    return tuple(sorted(prompts.values(), key=lambda p: p.key))


def parallel_keys() -> list[str]:
    """Prompt keys recorded in both English and Spanish (real speech translation pairs)."""
    en = {p.key for p in asterisk_prompts("en")}
    es = {p.key for p in asterisk_prompts("es")}
    return sorted(en & es)
