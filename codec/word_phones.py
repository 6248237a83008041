"""A pronunciation lexicon for "copy, then spell" ASR targets and spelled TTS prompts: each word's espeak-ng phones
as ``"phone"`` unit ids (``AlmConfig.asr_word_phones``, ``AlmConfig.tts_word_phones``; ``synthesize`` uses it at
inference for the latter, which is why it lives beside the units and not in ``training``).

A decoder that reads phone units and writes BPE text must find, at every output step, where in the prompt it is;
measured on the shipped model, it reads one or two words and then writes a likely sentence even from perfect
phones (``benchmarks/alm_reading.py``). With ``AlmConfig.asr_word_phones`` the ASR target spells each word's
phones before the word (:func:`alm.prompts.spelled_text`): copying the next phones out of the prompt is the
induction-style copy a transformer learns easily (the phones just written say where to look), and writing a word
from the phones right before it is a local lookup.

The phones are espeak-ng's for each word said alone (the symbols the ``"phone"`` recognizer was trained on,
:func:`phonemize`), not the sentence's: espeak joins some words (``in the`` -> ``ɪnðə``),
so a sentence's word groups do not always match its words. Words are phonemized in batches, one ``espeak-ng``
process per batch with one word per line (each line a clause of its own), and cached in a JSON file.

Nothing here replaces a library: espeak-ng does the phonemes; this is the bookkeeping around it.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from codec.base import atomic_write_text
from codec.units import UnitTokenizer

log = logging.getLogger(__name__)

BLANK, WORD = "<blank>", "|"  # the "phone" units' CTC blank and word separator symbols
STRESS = set("ˈˌ")  # espeak-ng stress marks: not phones
ESPEAK_VOICE = {"en": "en-us", "es": "es"}
BATCH = 2000  # words per espeak-ng process
_EDGE = re.compile(r"^[^\w']+|[^\w']+$")  # punctuation around a word ("...to", "mute,", "¿qué")
_INNER = re.compile(r"[^\w']+")  # inside a word ("well-known"): said as separate words


def clean_word(word: str) -> str:
    """What espeak-ng is given for one whitespace-separated word: surrounding punctuation removed, inner
    punctuation (hyphens, dots) turned into spaces; ``""`` when nothing speakable is left."""
    return _INNER.sub(" ", _EDGE.sub("", word)).strip(" '")


def _espeak(words: list[str], lang: str) -> list[str] | None:
    """One IPA line per word from one espeak-ng process, or ``None`` when the lines do not pair up."""
    text = "".join(f"{w}.\n" for w in words)
    out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", ESPEAK_VOICE[lang]], input=text, capture_output=True,
                         check=True, text=True).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines if len(lines) == len(words) else None


def _symbols(ipa: str) -> list[str]:
    return [c for c in ipa if c not in STRESS and not c.isspace()]


def phonemize(text: str, lang: str) -> list[str]:
    """IPA phone symbols of the sentence ``text`` spoken in ``lang`` (``"en"``/``"es"``), ``|`` between words.

    One symbol per IPA character (length marks and tie bars included), stress marks dropped: the targets the
    ``"phone"`` recognizer was trained on (``training.finetune_units``) and the input of phoneme TTS baselines
    (``legacy_seq2seq``, ``phonemes``). One ``espeak-ng`` process per call.

    Raises:
        ValueError: no espeak-ng voice for ``lang``.
        FileNotFoundError: the ``espeak-ng`` program is not installed.
    """
    if lang not in ESPEAK_VOICE:
        raise ValueError(f"no espeak-ng voice for language {lang!r} (known: {', '.join(ESPEAK_VOICE)})")
    ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", ESPEAK_VOICE[lang], text], capture_output=True,
                         check=True, text=True).stdout
    out: list[str] = []
    for word in ipa.split():
        if out:
            out.append(WORD)
        out.extend(c for c in word if c not in STRESS)
    return out


class WordPhones:
    """``(lang, word) -> phone unit ids`` for the ``"phone"`` tokenizer ``units``, cached in ``cache`` (JSON).

    Args:
        units: a ``"phone"`` unit tokenizer; its ``config.phones`` inventory gives the ids (blank and the word
            separator are never written: the text's spaces mark words).
        cache: JSON file of ``{"lang\\tword": [IPA symbols]}`` (read if present, extended and rewritten atomically).
    """

    def __init__(self, units: UnitTokenizer, cache: str | Path | None = None) -> None:
        if units.kind != "phone" or not units.config.phones:
            raise ValueError(f"word phones need 'phone' units, not {units.kind!r}")
        self.index = {p: i for i, p in enumerate(units.config.phones) if p not in (BLANK, WORD)}
        self.cache = None if cache is None else Path(cache)
        self.table: dict[str, list[str]] = (json.loads(self.cache.read_text())
                                            if self.cache is not None and self.cache.is_file() else {})

    def add(self, sentences: Iterable[tuple[str, str]], progress: bool = True) -> None:
        """Phonemize every word of ``(lang, text)`` sentences not yet in the table (and save the cache)."""
        todo: dict[str, list[str]] = {}
        for lang, text in sentences:
            for word in map(clean_word, text.split()):
                if word and f"{lang}\t{word}" not in self.table:
                    todo.setdefault(lang, []).append(word)
        todo = {lang: list(dict.fromkeys(words)) for lang, words in todo.items()}
        total = sum(len(w) for w in todo.values())
        with tqdm(total=total, desc="espeak-ng word phones", unit="word", disable=not (progress and total)) as bar:
            for lang, words in todo.items():
                for i in range(0, len(words), BATCH):
                    batch = words[i: i + BATCH]
                    lines = _espeak(batch, lang)
                    if lines is None:  # a word that espeak split into clauses: one process per word instead
                        log.warning("espeak-ng lines did not pair with a batch of %d %s words: one call each",
                                    len(batch), lang)
                        lines = [" ".join(_espeak([w], lang) or []) for w in batch]
                    for word, ipa in zip(batch, lines):
                        self.table[f"{lang}\t{word}"] = _symbols(ipa)
                    bar.update(len(batch))
        if total and self.cache is not None:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.cache, json.dumps(self.table, ensure_ascii=False))

    def word(self, lang: str, word: str) -> list[int]:
        """Phone unit ids of one whitespace-separated word (``[]`` for punctuation alone); call :meth:`add` first."""
        cleaned = clean_word(word)
        if not cleaned:
            return []
        symbols = self.table.get(f"{lang}\t{cleaned}")
        if symbols is None:
            raise KeyError(f"no phones for {lang} word {word!r}: add its sentence first (WordPhones.add)")
        return [self.index[s] for s in symbols if s in self.index]

    def __call__(self, lang: str, text: str) -> list[list[int]]:
        """One phone-id list per word of ``text.split()`` (what :func:`alm.prompts.spelled_text` takes)."""
        return [self.word(lang, w) for w in text.split()]
