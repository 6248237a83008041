"""The corpus recipe: which sentence is spoken by whom, for which task and split, decided before any audio exists.

The plan is a pure function of ``(hours, seed, langs)``: running it twice gives the same utterances in the same
order with the same ids, which is what makes an interrupted synthesis resumable.

Splits. Every sentence is assigned to ``train``/``valid``/``test`` by a stable hash of its text (5 % valid,
10 % test), and every speaker is a train or a held-out (test) speaker (see :mod:`training.data.voices`).
``test`` utterances are held-out sentences spoken by held-out speakers; ``valid`` utterances are held-out
sentences spoken by training speakers; nothing said by a test speaker, and no test sentence, is in ``train``.

Mix (by estimated speaking time): 45 % monolingual sentences (half natural text, half grammar), 30 % speech
translation pairs (both sides), 20 % English SLU commands, 5 % real recorded prompts. Every utterance serves ASR,
TTS and voice continuation; pairs also serve S2ST and commands SLU.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from training.data import voices
from training.data.broad_text import natural_sentences
from training.data.engines import speaker_available
from training.data.grammar import generate_pairs
from training.data.real import asterisk_prompts, parallel_keys
from training.data.slu import generate_commands

LANGS = ("en", "es")
SPLIT_FRACTIONS = {"valid": 0.05, "test": 0.10}
MIX = {"mono": 0.45, "s2st": 0.30, "slu": 0.20, "real": 0.05}
WORDS_PER_SECOND = 3.3  # measured over a 0.2 h corpus (engines speak 2.5-3.7 words/s), used only for planning
PAUSE_S = 0.4  # the engines' leading/trailing silence after trimming
SAME_VOICE_S2ST = 0.7  # share of translation pairs spoken by one bilingual voice on both sides
RECIPE_VERSION = 2


@dataclass(frozen=True)
class Utterance:
    """One planned utterance (a manifest line before synthesis).

    ``fields`` holds the task fields: ``pair_id``/``translation``/``translation_id`` for S2ST pairs,
    ``intent``/``slots``/``spans`` for SLU commands, ``source_path`` for real recordings.
    """

    id: str
    text: str
    lang: str
    speaker: str
    split: str
    tasks: tuple[str, ...]
    source: str
    pitch_shift: int = 0
    rate_scale: float = 1.0
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d


def sentence_split(text: str) -> str:
    """The split a sentence belongs to, by a stable hash of its lower-cased text (independent of the seed)."""
    h = int.from_bytes(hashlib.sha1(text.lower().encode("utf-8")).digest()[:8], "big") / 2**64
    if h < SPLIT_FRACTIONS["valid"]:
        return "valid"
    if h < SPLIT_FRACTIONS["valid"] + SPLIT_FRACTIONS["test"]:
        return "test"
    return "train"


def estimate_seconds(text: str) -> float:
    return len(text.split()) / WORDS_PER_SECOND + PAUSE_S


class _Voices:
    """Speaker choice with a balanced rotation, so every voice gets a similar share."""

    def __init__(self, rng: random.Random, engines: tuple[str, ...] | None = None):
        self.rng = rng
        self.engines = engines
        self.pools: dict[tuple[str, str, bool], list[voices.Speaker]] = {}
        self.cands: dict[tuple[str, str, bool], list[voices.Speaker]] = {}

    def candidates(self, lang: str, split: str, bilingual: bool = False) -> list[voices.Speaker]:
        """The installed voices of the chosen engines for ``lang`` and the split's speakers (computed once)."""
        key = (lang, "test" if split == "test" else "train", bilingual)
        if key not in self.cands:
            cands = [s for s in voices.speakers(lang=lang, split=key[1], engines=self.engines) if speaker_available(s)]
            self.cands[key] = [s for s in cands if all(s.speaks(x) for x in LANGS)] if bilingual else cands
        return self.cands[key]

    def pick(self, lang: str, split: str, bilingual: bool = False) -> voices.Speaker:
        spk_split = "test" if split == "test" else "train"
        key = (lang, spk_split, bilingual)
        pool = self.pools.get(key)
        if not pool:
            cands = self.candidates(lang, split, bilingual)
            if not cands:
                which = f" of {', '.join(self.engines)}" if self.engines else ""
                raise RuntimeError(f"no installed {spk_split} speaker{which} for {lang!r}; run `make setup` "
                                   "to install the speech synthesizers" + (" or choose more engines"
                                                                           if self.engines else ""))
            pool = cands[:]
            self.rng.shuffle(pool)
            self.pools[key] = pool
        return pool.pop()


def _augment(rng: random.Random) -> dict[str, Any]:
    # Small pitch/rate jitter: variety within a speaker, never a new speaker.
    return {"pitch_shift": rng.randint(-4, 4), "rate_scale": round(rng.uniform(0.9, 1.1), 3)}


def plan_corpus(hours: float, seed: int, langs: tuple[str, ...] = LANGS,
                engines: tuple[str, ...] | None = None) -> list[Utterance]:
    """Plan about ``hours`` hours of speech (estimated from word counts).

    Args:
        hours: target total duration; the real total lands within ~20 % of it.
        seed: fixes sentence choice, speakers and augmentation.
        langs: subset of ``("en", "es")``; S2ST needs both, SLU needs English.
        engines: only these engines' voices (``None``: all). The real recorded prompts come with ``asterisk``;
            without a bilingual voice (espeak-ng) every translation pair gets two voices. This is how a corpus
            gives the engines that the full mix under-represents more hours.

    Returns:
        Utterances in a stable order; ids are unique and encode the kind (``mono``, ``s2st``, ``slu``, ``real``).
    """
    if hours <= 0:
        raise ValueError(f"hours must be positive, got {hours}")
    unknown = set(langs) - set(LANGS)
    if unknown or not langs:
        raise ValueError(f"langs must be a non-empty subset of {LANGS}, got {langs}")
    if engines is not None:
        bad = sorted(set(engines) - set(voices.ENGINES))
        if bad or not engines:
            raise ValueError(f"unknown engine(s) {bad or engines}: choose from {', '.join(voices.ENGINES)}")
        engines = tuple(e for e in voices.ENGINES if e in engines)
    rng = random.Random(seed)
    picker = _Voices(random.Random(seed + 1), engines)
    budget_s = hours * 3600.0
    mix = dict(MIX)
    if not ("en" in langs and "es" in langs):
        mix["mono"] += mix.pop("s2st")
    if "en" not in langs:
        mix["mono"] += mix.pop("slu")
    plan: list[Utterance] = []
    plan += _plan_mono(budget_s * mix["mono"], langs, rng, picker)
    if "s2st" in mix:
        plan += _plan_s2st(budget_s * mix["s2st"], rng, picker)
    if "slu" in mix:
        plan += _plan_slu(budget_s * mix["slu"], rng, picker)
    if engines is None or "asterisk" in engines:
        plan += _plan_real(budget_s * mix["real"], langs, rng)
    ids = [u.id for u in plan]
    assert len(ids) == len(set(ids)), "duplicate utterance ids in plan"
    return plan


def _plan_mono(budget_s: float, langs: tuple[str, ...], rng: random.Random, picker: _Voices) -> list[Utterance]:
    out: list[Utterance] = []
    for lang in langs:
        natural = list(natural_sentences(lang))
        rng.shuffle(natural)
        grammar_n = max(50, int(budget_s / len(langs) / 3.0))
        grammar = [getattr(p, lang) for p in generate_pairs(grammar_n, seed=rng.randrange(2**31))]
        # Interleave natural and grammar sentences half and half.
        sources = [("natural", s) for s in natural] if natural else []
        pool: list[tuple[str, str]] = []
        for i in range(max(len(sources), len(grammar))):
            if i < len(sources):
                pool.append(sources[i])
            if i < len(grammar):
                pool.append(("grammar", grammar[i]))
        spent = 0.0
        for n, (source, text) in enumerate(pool):
            if spent >= budget_s / len(langs):
                break
            split = sentence_split(text)
            spk = picker.pick(lang, split)
            out.append(Utterance(id=f"mono-{lang}-{n:06d}", text=text, lang=lang, speaker=spk.id, split=split,
                                 tasks=("asr", "tts", "continue"), source=source, **_augment(rng)))
            spent += estimate_seconds(text)
    return out


def _plan_s2st(budget_s: float, rng: random.Random, picker: _Voices) -> list[Utterance]:
    n_pairs = max(4, int(budget_s / 5.0))  # generate generously; the budget decides how many are used
    out: list[Utterance] = []
    spent = 0.0
    for n, pair in enumerate(generate_pairs(n_pairs, seed=rng.randrange(2**31))):
        if spent >= budget_s:
            break
        split = sentence_split(pair.en)  # the pair's split follows its English side
        pair_id = f"s2st-{n:06d}"
        if rng.random() < SAME_VOICE_S2ST and picker.candidates("en", split, bilingual=True):
            spk = picker.pick("en", split, bilingual=True)
            spk_en, spk_es = spk, spk
        else:
            spk_en, spk_es = picker.pick("en", split), picker.pick("es", split)
        aug = _augment(rng)
        for lang, text, other, spk in (("en", pair.en, pair.es, spk_en), ("es", pair.es, pair.en, spk_es)):
            other_lang = "es" if lang == "en" else "en"
            out.append(Utterance(
                id=f"{pair_id}-{lang}", text=text, lang=lang, speaker=spk.id, split=split,
                tasks=("asr", "tts", "continue", "s2st"), source="grammar", **aug,
                fields={"pair_id": pair_id, "translation": other, "translation_id": f"{pair_id}-{other_lang}"},
            ))
            spent += estimate_seconds(text)
    return out


def _plan_slu(budget_s: float, rng: random.Random, picker: _Voices) -> list[Utterance]:
    n_cmds = max(8, int(budget_s / 2.0))
    out: list[Utterance] = []
    spent = 0.0
    for n, cmd in enumerate(generate_commands(n_cmds, seed=rng.randrange(2**31))):
        if spent >= budget_s:
            break
        split = sentence_split(cmd.text)
        spk = picker.pick("en", split)
        out.append(Utterance(
            id=f"slu-en-{n:06d}", text=cmd.text, lang="en", speaker=spk.id, split=split,
            tasks=("asr", "tts", "continue", "slu"), source="slu", **_augment(rng),
            fields={"intent": cmd.intent, "slots": dict(cmd.slots), "spans": [list(s) for s in cmd.spans]},
        ))
        spent += estimate_seconds(cmd.text)
    return out


def _plan_real(budget_s: float, langs: tuple[str, ...], rng: random.Random) -> list[Utterance]:
    # Real speakers are training voices: their prompts go to train or valid, never test.
    both = set(parallel_keys()) if set(LANGS) <= set(langs) else set()
    out: list[Utterance] = []
    for lang in langs:
        prompts = list(asterisk_prompts(lang))
        rng.shuffle(prompts)
        spent = 0.0
        for p in prompts:
            if spent >= budget_s / len(langs):
                break
            split = "valid" if sentence_split(p.key) != "train" else "train"
            fields: dict[str, Any] = {"source_path": str(p.path), "prompt_key": p.key}
            if p.key in both:
                other = "es" if lang == "en" else "en"
                fields.update(pair_id=f"real-{p.key}", translation_id=f"real-{other}-{p.key}".replace("/", "_"))
            out.append(Utterance(
                id=f"real-{lang}-{p.key}".replace("/", "_"), text=p.text, lang=lang, speaker=f"asterisk-{lang}",
                split=split, tasks=("asr", "continue") + (("s2st",) if p.key in both else ()), source="asterisk",
                fields=fields,
            ))
            spent += estimate_seconds(p.text)
    return out
