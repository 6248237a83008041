"""Natural sentences from offline text, so models learn a language and not only our templates.

Source: Debian's ``fortunes`` (English quotations, jokes and sayings) and ``fortunes-es`` (Spanish). Each
fortune is split into sentences, normalized to spoken form (numbers, abbreviations, symbols) and kept when a
TTS engine can say it and a listener could follow it: 4-20 words, letters and plain punctuation only.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

from alm.textnorm import is_speakable, normalize_text

log = logging.getLogger(__name__)

FORTUNE_DIRS = {"en": Path("/usr/share/games/fortunes"), "es": Path("/usr/share/games/fortunes/es")}
MIN_WORDS, MAX_WORDS = 4, 20
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'¿¡A-ZÁÉÍÓÚÑ])")
# After normalization a sentence may hold only letters, spaces and plain punctuation.
_ALLOWED = re.compile(r"[A-Za-zÁÉÍÓÚÜÑáéíóúüñ¿¡ ,.;:'!?-]+")


def _fortunes(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [" ".join(chunk.split()) for chunk in re.split(r"^%$", text, flags=re.MULTILINE)]


def _clean_sentence(sentence: str, lang: str) -> str | None:
    sentence = sentence.strip().strip("\"'`").strip()
    # Fortunes sign off with attributions ("-- Mark Twain"): the quotation is the sentence.
    sentence = sentence.split(" -- ")[0].strip()
    if not sentence or not sentence[0].isupper() and sentence[0] not in "¿¡":
        return None
    if sentence[-1] not in ".!?":
        return None
    spoken = normalize_text(sentence, lang)
    if not _ALLOWED.fullmatch(spoken):
        return None
    if not is_speakable(spoken, lang, min_words=MIN_WORDS, max_words=MAX_WORDS):
        return None
    return spoken


@lru_cache(maxsize=4)
def natural_sentences(lang: str) -> tuple[str, ...]:
    """All speakable sentences in ``lang`` from the installed fortune files, sorted, distinct.

    Returns an empty tuple (with a warning naming the package) when the files are not installed.
    """
    root = FORTUNE_DIRS.get(lang)
    if root is None:
        raise ValueError(f"no natural text source for language {lang!r}; known: {sorted(FORTUNE_DIRS)}")
    if not root.is_dir():
        pkg = "fortunes" if lang == "en" else "fortunes-es"
        log.warning("no %s natural text: %s is missing (apt-get install %s)", lang, root, pkg)
        return ()
    # English files have no suffix, Spanish ones end in ".fortunes"; ".dat" indexes and ".u8" links are skipped.
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink()
                   and p.suffix in ("", ".fortunes") and not p.name.startswith("."))
    out: set[str] = set()
    for path in files:
        for fortune in _fortunes(path):
            for sentence in _SENTENCE_END.split(fortune):
                cleaned = _clean_sentence(sentence, lang)
                if cleaned:
                    out.add(cleaned)
    log.info("%d natural %s sentences from %d files in %s", len(out), lang, len(files), root)
    return tuple(sorted(out))
