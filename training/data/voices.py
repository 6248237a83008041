"""The speaker catalogue of the synthetic corpus: which engine, voice and settings make each speaker.

A *speaker* is one person as a listener (or a speaker-ID model) would hear it. What makes speakers distinct was
measured on this machine (see NOTES-data.md in the shared notes):

- espeak-ng: the timbre comes from the *variant* (``+m3``), not the language, so ``en+m3`` and ``es+m3`` are
  the same person. These are our bilingual speakers: speech translation and continuation can keep their voice.
- MBROLA voices driven by espeak-ng: each database is one person; male voices get their own pitch so they do not
  all sit at ~100 Hz. ``es3`` lacks diphones that espeak-ng's Spanish uses (``L``, diphthongs) and ``es4`` gives
  noise, so neither is used.
- flite (kal16, awb, rms, slt), pico (en-US, en-GB, es-ES) and RHVoice (alan, bdl, clb, slt). RHVoice's ``slt``
  is the same recorded person as flite's ``slt``: both copies share one ``person`` and therefore one split.
- Real human speech: the asterisk IVR prompts (one English and one Spanish speaker, 8 kHz telephone band).

Pitch or rate changes alone do not make a new speaker, so they are used as per-utterance augmentation
(``pitch_jitter``/``rate_jitter``), never as extra speakers.

Held-out speakers (``split == "test"``) are whole persons, with every engine's copy of them: 7 English and
4 Spanish voices, so the test split measures generalization to unseen voices.
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("espeak", "mbrola", "flite", "pico", "rhvoice", "asterisk")


@dataclass(frozen=True)
class Speaker:
    """One voice of the corpus.

    Attributes:
        id: stable speaker id used in manifests (``espeak-m3``), the same in both languages.
        engine: one of :data:`ENGINES`.
        voice: the engine's voice name (``m3``, ``us1``, ``kal16``, ``en-GB``, ``alan``).
        langs: languages this speaker can speak (``("en", "es")`` for bilingual espeak variants).
        gender: ``"f"`` or ``"m"`` as the voice is perceived.
        pitch: espeak-ng base pitch 0-99 (espeak and MBROLA only; ``None`` keeps the voice default).
        rate: espeak-ng words per minute (espeak and MBROLA only).
        person: who this is; copies of one person across engines share it (and their split).
        split: ``"train"`` or ``"test"`` (held out of training entirely).
        real: recorded human speech rather than a synthesizer.
    """

    id: str
    engine: str
    voice: str
    langs: tuple[str, ...]
    gender: str
    pitch: int | None = None
    rate: int | None = None
    person: str = ""
    split: str = "train"
    real: bool = False

    def speaks(self, lang: str) -> bool:
        return lang in self.langs


def _espeak(variant: str, gender: str, pitch: int, rate: int, split: str = "train") -> Speaker:
    return Speaker(
        id=f"espeak-{variant.lower()}", engine="espeak", voice=variant, langs=("en", "es"), gender=gender,
        pitch=pitch, rate=rate, person=f"espeak-{variant.lower()}", split=split,
    )


def _mbrola(voice: str, lang: str, gender: str, pitch: int, rate: int, split: str = "train") -> Speaker:
    return Speaker(
        id=f"mbrola-{voice}", engine="mbrola", voice=voice, langs=(lang,), gender=gender, pitch=pitch, rate=rate,
        person=f"mbrola-{voice}", split=split,
    )


def _simple(engine: str, voice: str, lang: str, gender: str, person: str = "", split: str = "train") -> Speaker:
    sid = f"{engine}-{voice.lower()}"
    return Speaker(id=sid, engine=engine, voice=voice, langs=(lang,), gender=gender, person=person or sid,
                   split=split)


SPEAKERS: tuple[Speaker, ...] = (
    # espeak-ng variants: bilingual speakers. Pitch/rate spread so that no two sound alike.
    _espeak("m1", "m", 40, 165),
    _espeak("m2", "m", 30, 175),
    _espeak("m3", "m", 50, 160),
    _espeak("m4", "m", 45, 170),
    _espeak("m5", "m", 35, 155),
    _espeak("m6", "m", 55, 180),
    _espeak("m7", "m", 42, 165, split="test"),
    _espeak("f1", "f", 60, 165),
    _espeak("f2", "f", 65, 170),
    _espeak("f3", "f", 55, 160),
    _espeak("f4", "f", 70, 165, split="test"),
    _espeak("f5", "f", 62, 175),
    _espeak("klatt2", "m", 48, 160),
    _espeak("klatt3", "m", 40, 170, split="test"),
    _espeak("Andy", "m", 50, 165),
    _espeak("Alicia", "f", 58, 165),
    _espeak("steph", "f", 60, 160),
    _espeak("Denis", "m", 45, 160),
    # MBROLA, English.
    _mbrola("us1", "en", "f", 60, 160),
    _mbrola("us2", "en", "m", 35, 160),
    _mbrola("us3", "en", "m", 50, 165, split="test"),
    _mbrola("en1", "en", "m", 42, 155),
    # MBROLA, Spanish (spoken through the rewritten phoneme route, see engines.py).
    _mbrola("es1", "es", "m", 40, 165),
    _mbrola("es2", "es", "m", 52, 160),
    _mbrola("mx1", "es", "m", 45, 165),
    _mbrola("mx2", "es", "f", 60, 160, split="test"),
    _mbrola("vz1", "es", "m", 35, 160),
    # flite (English only).
    _simple("flite", "kal16", "en", "m"),
    _simple("flite", "awb", "en", "m", split="test"),
    _simple("flite", "rms", "en", "m"),
    _simple("flite", "slt", "en", "f", person="slt"),
    # pico: one voice per language, the most natural of the engines.
    _simple("pico", "en-US", "en", "f"),
    _simple("pico", "en-GB", "en", "f", split="test"),
    _simple("pico", "es-ES", "es", "f"),
    # RHVoice (English; 24 kHz output, resampled). Its slt is flite's slt.
    _simple("rhvoice", "alan", "en", "m"),
    _simple("rhvoice", "bdl", "en", "m", split="test"),
    _simple("rhvoice", "clb", "en", "f"),
    _simple("rhvoice", "slt", "en", "f", person="slt"),
)

# Real human speech (asterisk IVR prompts): a fixed set of recordings rather than a voice we can drive.
REAL_SPEAKERS: tuple[Speaker, ...] = (
    Speaker(id="asterisk-en", engine="asterisk", voice="en", langs=("en",), gender="f", person="asterisk-en",
            real=True),
    Speaker(id="asterisk-es", engine="asterisk", voice="es", langs=("es",), gender="f", person="asterisk-es",
            real=True),
)


def speakers(lang: str | None = None, split: str | None = None, engines: tuple[str, ...] | None = None
             ) -> list[Speaker]:
    """Synthetic speakers filtered by language, split and engine (``None`` means any)."""
    return [
        s for s in SPEAKERS
        if (lang is None or s.speaks(lang)) and (split is None or s.split == split)
        and (engines is None or s.engine in engines)
    ]


def by_id(speaker_id: str) -> Speaker:
    """Look a speaker up by id (synthetic or real); KeyError names the unknown id."""
    for s in SPEAKERS + REAL_SPEAKERS:
        if s.id == speaker_id:
            return s
    raise KeyError(f"unknown speaker id {speaker_id!r}")


def _check_catalogue() -> None:
    ids = [s.id for s in SPEAKERS + REAL_SPEAKERS]
    assert len(ids) == len(set(ids)), "duplicate speaker ids"
    split_of: dict[str, str] = {}
    for s in SPEAKERS:
        assert split_of.setdefault(s.person, s.split) == s.split, f"person {s.person} on both sides of the split"


_check_catalogue()
