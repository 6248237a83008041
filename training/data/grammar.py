"""Templated English/Spanish sentence pairs that mean the same thing, in spoken form.

Why hand-written: no library provides aligned bilingual templated sentences (sentence generators and
grammars exist per language, translation corpora are not templated and carry digits and symbols), so the
templates here and the lexicon in ``lexicon.py`` are written and checked by hand.

Design. A template is a render function plus a *slot space*. The space is a list of blocks; a block is a
list of independent groups, each group a list of partial slot assignments (``{"noun": "dog"}``), and the
block's pairs are the Cartesian product of its groups. Blocks carry the dependencies ("this adjective fits
this noun", "this place can hold it"): one block per noun, say, with the adjectives and places that fit it.
So a template's size is the sum over its blocks of the product of group sizes, and index ``i`` decodes in
mixed radix into one slot assignment without ever enumerating the product.

Rendering is injective: every slot value shows up as its own words in both languages and the lexicon has no
synonyms, so two different assignments give two different English and two different Spanish sentences, and
the fixed words make templates differ from each other. ``capacity()`` therefore counts distinct pairs.

``generate_pairs`` splits n evenly over the templates (a template smaller than its share passes the rest
on), draws distinct indices per template with ``random.Random(seed).sample(range(size), k)`` and renders
them; a duplicate sentence, which injectivity rules out, would be replaced by a bounded number of fresh
draws. Spanish agreement (articles, "al"/"del", adjectives, "un"/"una", verbs, "gustar") and English
agreement (a/an, plurals, third person -s) are applied by the small helpers below.

Text is spoken form: numbers as words, no digits or symbols, a capital first letter, a final "." or "?",
and "¿" opening Spanish questions.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache, partial

from num2words import num2words

from training.data.lexicon import (
    ACTIVITIES,
    ADJ_BY_EN,
    ADJECTIVES,
    CITIES,
    CITY_ES,
    COLOURS,
    CURRENCIES,
    DAYS,
    EVENTS,
    FAMILY,
    FUTURE_TIMES,
    HABITUAL,
    MASS_NOUNS,
    MONTHS,
    NAMES,
    NOUN_BY_EN,
    NOUNS,
    PAST_TIMES,
    PEOPLE,
    PLACE_BY_EN,
    PLACES,
    PLURAL_PEOPLE,
    STATE_BY_EN,
    STATES,
    TRAIT_BY_EN,
    TRAITS,
    TRANSPORT_MODES,
    UNIT_BY_EN,
    UNITS,
    VERB_BY_EN,
    VERBS,
    WANT,
    WEATHER,
    WEATHER_NOW_TIMES,
    WEATHER_PAST_TIMES,
    Adjective,
    Gender,
    Noun,
    adjective_fits,
)

MAX_COUNT = 12  # "three red cars": counted nouns go from one to twelve
MAX_PRICE = 100  # prices go from one to one hundred
DUPLICATE_RETRIES = 1000  # fresh draws per template to replace duplicates (none are expected)


@dataclass(frozen=True)
class SentencePair:
    """An English sentence, its Spanish translation and the name of the template that made them."""

    en: str
    es: str
    template: str


# --- Word-level helpers -----------------------------------------------------------------------------------
@cache
def number_en(n: int) -> str:
    """English cardinal in words: 21 -> "twenty-one"."""
    return num2words(n, lang="en")


@cache
def number_es(n: int, gender: Gender | None = None) -> str:
    """Spanish cardinal in words; before a noun of ``gender`` "uno" becomes "un"/"una" (21 -> "veintiún")."""
    words = num2words(n, lang="es")
    if gender is None or not words.endswith("uno"):
        return words
    if gender == "f":
        return words[:-3] + "una"
    return words[:-3] + ("ún" if words.endswith("iuno") else "un")


@cache
def _ordinal_en(n: int) -> str:
    return num2words(n, lang="en", to="ordinal")


def _a(word: str) -> str:
    """English indefinite article for ``word``: "a" or "an"."""
    w = word.lower()
    if w.startswith(("uni", "use", "eu", "one")):
        return "a"
    if w.startswith(("hour", "honest", "honor")):
        return "an"
    return "an" if w[0] in "aeiou" else "a"


def _y(next_word: str) -> str:
    """Spanish "and": "e" before an i- sound ("Ana e Irene"), else "y"."""
    w = next_word.lower()
    if w.startswith(("i", "í")) or (w.startswith("hi") and w[2:3] not in ("a", "e", "o", "u")):
        return "e"
    return "y"


def _idx(gender: Gender, plural: bool) -> int:
    return (gender == "f") + 2 * plural


# English (singular, plural) and Spanish (m sg, f sg, m pl, f pl) determiners.
_DETS: dict[str, tuple[tuple[str, str], tuple[str, str, str, str]]] = {
    "the": (("the", "the"), ("el", "la", "los", "las")),
    "my": (("my", "my"), ("mi", "mi", "mis", "mis")),
    "your": (("your", "your"), ("tu", "tu", "tus", "tus")),
    "our": (("our", "our"), ("nuestro", "nuestra", "nuestros", "nuestras")),
    "this": (("this", "these"), ("este", "esta", "estos", "estas")),
    "that": (("that", "those"), ("ese", "esa", "esos", "esas")),
}
_ALL_DETS = ("the", "my", "your", "our", "this", "that")


def _core(noun: Noun, plural: bool, adj: Adjective | None) -> tuple[str, str]:
    """Noun with its adjective, no determiner: ("red cars", "coches rojos")."""
    en = noun.en_pl if plural else noun.en
    es = noun.es_pl if plural else noun.es
    if adj is None:
        return en, es
    es_adj = adj.es(noun.gender, plural)
    return f"{adj.en} {en}", (f"{es} {es_adj}" if adj.after else f"{es_adj} {es}")


def _np(noun: Noun, plural: bool, det: str, adj: Adjective | None = None) -> tuple[str, str]:
    """Determiner + noun phrase: ("these red cars", "estos coches rojos")."""
    en_dets, es_dets = _DETS[det]
    en, es = _core(noun, plural, adj)
    return f"{en_dets[plural]} {en}", f"{es_dets[_idx(noun.gender, plural)]} {es}"


def _count_np(noun: Noun, count: int, adj: Adjective | None = None) -> tuple[str, str]:
    """Counted noun phrase: ("a red car", "un coche rojo"), ("three red cars", "tres coches rojos")."""
    en, es = _core(noun, count != 1, adj)
    en_num = _a(en) if count == 1 else number_en(count)
    return f"{en_num} {en}", f"{number_es(count, noun.gender)} {es}"


def _the(noun: Noun) -> tuple[str, str]:
    return _np(noun, False, "the")


_CONTRACTION = re.compile(r"\b(a|de) el\b")


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _done(en: str, es: str, question: bool = False) -> tuple[str, str]:
    """Contract "a el"/"de el", capitalize and punctuate both sides."""
    es = _CONTRACTION.sub(lambda m: "al" if m.group(1) == "a" else "del", es)
    if question:
        return _cap(en) + "?", "¿" + _cap(es) + "?"
    return _cap(en) + ".", _cap(es) + "."


# --- Subjects -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Subject:
    en: str
    es: str  # "" where Spanish drops the subject pronoun
    person: str  # "yo", "tu", "el", "nos" or "ellos"
    gender: Gender

    @property
    def plural(self) -> bool:
        return self.person in ("nos", "ellos")

    @property
    def third(self) -> bool:
        return self.person == "el"


_EN_BE = {"yo": "am", "tu": "are", "el": "is", "nos": "are", "ellos": "are"}
_TENER = {"yo": "tengo", "tu": "tienes", "el": "tiene", "nos": "tenemos", "ellos": "tienen"}
_ESTAR = {"yo": "estoy", "tu": "estás", "el": "está", "nos": "estamos", "ellos": "están"}
_SER = {"yo": "soy", "tu": "eres", "el": "es", "nos": "somos", "ellos": "son"}
_IR = {"yo": "voy", "tu": "vas", "el": "va", "nos": "vamos", "ellos": "van"}
_VIAJAR = {"yo": "viajo", "tu": "viajas", "el": "viaja", "nos": "viajamos", "ellos": "viajan"}
_DATIVE = {"yo": "me", "tu": "te", "el": "le", "nos": "nos", "ellos": "les"}
_PRONOUNS = ("I", "you", "we", "they")
_NAME_KEYS = frozenset(n.en for n in NAMES)


@lru_cache(maxsize=1)
def _subjects() -> dict[str, _Subject]:
    """Every subject by its English text: pronouns, names, "my sister", "the teacher", "my parents"."""
    subs: dict[str, _Subject] = {}
    for en, person in zip(_PRONOUNS, ("yo", "tu", "nos", "ellos"), strict=True):
        subs[en] = _Subject(en, "", person, "m")  # Spanish drops the pronoun; masculine by default
    for name in NAMES:
        subs[name.en] = _Subject(name.en, name.es, "el", name.gender)
    noun_phrases = [(n, pl, det) for n in FAMILY for det in ("my", "your", "our") for pl in _numbers(n)]
    noun_phrases += [(n, True, det) for n in PLURAL_PEOPLE for det in ("my", "your", "our")]
    noun_phrases += [(n, pl, "the") for n in PEOPLE for pl in (False, True)]
    for noun, plural, det in noun_phrases:
        en, es = _np(noun, plural, det)
        subs[en] = _Subject(en, es, "ellos" if plural else "el", noun.gender)
    for i, a in enumerate(NAMES):
        for b in NAMES[i + 1 : i + 3]:
            gender: Gender = "f" if a.gender == b.gender == "f" else "m"
            en = f"{a.en} and {b.en}"
            subs[en] = _Subject(en, f"{a.es} {_y(b.es)} {b.es}", "ellos", gender)
    return subs


def _pool(*, third: bool = True, plural: bool = True, pronouns: Iterable[str] = ()) -> tuple[str, ...]:
    """Subject keys: third-person singular NPs, plural NPs and the named pronouns."""
    subs = _subjects()
    keys = [k for k, s in subs.items() if k not in _PRONOUNS and third and s.third]
    keys += [k for k, s in subs.items() if k not in _PRONOUNS and plural and s.person == "ellos"]
    return tuple(keys) + tuple(pronouns)


def _s(key: str) -> _Subject:
    return _subjects()[key]


def _en_verb(subj: _Subject, base: str, third: str) -> str:
    return third if subj.third else base


def _dative(subj: _Subject) -> tuple[str, str]:
    """Spanish experiencer of "gustar": ("a Ana", "le"), ("", "me"), ("a mis padres", "les")."""
    return (f"a {subj.es}" if subj.es else ""), _DATIVE[subj.person]


# --- Times and dates ------------------------------------------------------------------------------------
_MINUTES = {
    0: ("o'clock", "en punto"),
    5: ("oh five", "y cinco"),
    10: ("ten", "y diez"),
    15: ("fifteen", "y cuarto"),
    20: ("twenty", "y veinte"),
    30: ("thirty", "y media"),
    40: ("forty", "menos veinte"),  # Spanish counts down to the next hour: 7:40 is "las ocho menos veinte"
    45: ("forty-five", "menos cuarto"),
    50: ("fifty", "menos diez"),
}
# Period of the day: English, Spanish, and the clock hours it may follow.
_PERIODS = {
    "": ("", "", range(1, 13)),
    "morning": ("in the morning", "de la mañana", range(6, 12)),
    "afternoon": ("in the afternoon", "de la tarde", range(1, 6)),
    "night": ("at night", "de la noche", range(9, 12)),
}


def _clock(hour: int, minute: int, period: str) -> tuple[str, str]:
    """("seven thirty in the morning", "las siete y media de la mañana"); Spanish keeps its article."""
    en_min, es_min = _MINUTES[minute]
    spoken = hour if minute <= 30 else hour % 12 + 1
    es_hour = "la una" if spoken == 1 else f"las {number_es(spoken)}"
    en_per, es_per, _ = _PERIODS[period]
    return _join(number_en(hour), en_min, en_per), _join(es_hour, es_min, es_per)


def _times() -> tuple[dict[str, object], ...]:
    return tuple(
        {"hour": h, "minute": m, "period": p}
        for p, (_, _, hours) in _PERIODS.items()
        for h in hours
        for m in _MINUTES
    )


# --- Templates ------------------------------------------------------------------------------------------
Slots = dict[str, object]
Group = tuple[Slots, ...]
Block = tuple[Group, ...]


def _g(name: str, values: Iterable[object]) -> Group:
    return tuple({name: v} for v in values)


@cache
def _adjs(noun: Noun, optional: bool = True, prenominal: bool = False) -> tuple[str | None, ...]:
    """Adjectives that fit ``noun`` (None first when optional); prenominal ones only where allowed."""
    found = [a.en for a in COLOURS + ADJECTIVES if adjective_fits(a, noun) and (a.after or prenominal)]
    return ((None,) if optional else ()) + tuple(found)


def _numbers(noun: Noun) -> tuple[bool, ...]:
    return (False,) if "sg_only" in noun.tags else (False, True)


def _dets(noun: Noun) -> tuple[str, ...]:
    if noun.kind == "family":
        return ("my", "your", "our")
    if noun.kind in ("person", "wild"):
        return ("the", "this", "that")
    if noun.kind in ("building", "outdoor"):
        return ("the", "this", "that", "our")
    return _ALL_DETS


@cache
def _np_group(noun: Noun, dets: tuple[str, ...] | None = None, adj_required_with_the: bool = False) -> Group:
    """All (det, adj, plural) for ``noun``; the prenominal "last" only after "the"."""
    out: list[Slots] = []
    for det in dets if dets is not None else _dets(noun):
        for adj in _adjs(
            noun, optional=not (adj_required_with_the and det == "the"), prenominal=det == "the"
        ):
            for plural in _numbers(noun):
                out.append({"det": det, "adj": adj, "plural": plural})
    return tuple(out)


def _adj(key: str | None) -> Adjective | None:
    return None if key is None else ADJ_BY_EN[key]


def _noun_np(noun: str, plural: bool, det: str, adj: str | None) -> tuple[str, str]:
    return _np(NOUN_BY_EN[noun], plural, det, _adj(adj))


def _holders(noun: Noun) -> tuple[str, ...]:
    return tuple(p.en for p in PLACES if noun.fits(p.holds))


# 1. "The small dog is in the kitchen." / "El perro pequeño está en la cocina."
def _r_location(noun: str, det: str, adj: str | None, plural: bool, place: str) -> tuple[str, str]:
    en, es = _noun_np(noun, plural, det, adj)
    p = PLACE_BY_EN[place]
    p_en, p_es = _the(p)
    return _done(
        f"{en} {'are' if plural else 'is'} {p.prep} {p_en}", f"{es} {'están' if plural else 'está'} en {p_es}"
    )


def _b_location() -> list[Block]:
    return [
        (_g("noun", [n.en]), _np_group(n), _g("place", _holders(n)))
        for n in NOUNS
        if n.kind != "event" and _holders(n)
    ]


# 2. "Where are my red shoes?" / "¿Dónde están mis zapatos rojos?"
def _r_where(
    noun: str | None = None,
    det: str = "the",
    adj: str | None = None,
    plural: bool = False,
    subject: str | None = None,
    nearest: bool = False,
) -> tuple[str, str]:
    if subject is not None:
        s = _s(subject)
        en, es, plural = s.en, s.es, s.plural
    elif nearest:
        p = NOUN_BY_EN[str(noun)]
        en, es = _the(p)
        en, es = f"the nearest {p.en}", f"{es} más {'cercana' if p.gender == 'f' else 'cercano'}"
    else:
        en, es = _noun_np(str(noun), plural, det, adj)
    return _done(
        f"where {'are' if plural else 'is'} {en}", f"dónde {'están' if plural else 'está'} {es}", True
    )


_WHERE_KINDS = frozenset({"pet", "object", "clothes", "vehicle", "plant"})


def _b_where() -> list[Block]:
    blocks: list[Block] = [
        (_g("noun", [n.en]), _np_group(n, ("the", "my", "your", "our")))
        for n in NOUNS
        if n.kind in _WHERE_KINDS
    ]
    blocks.append((_g("subject", _pool()),))
    landmarks = [p.en for p in PLACES if "landmark" in p.tags]
    blocks.append((_g("noun", landmarks), _g("nearest", (False, True))))
    return blocks


# 3. "My sister has three red cars." / "Mi hermana tiene tres coches rojos."
_OWNABLE = frozenset({"pet", "farm", "object", "clothes", "car", "plant", "fruit", "food"})


def _r_possession(subject: str, count: int, noun: str, adj: str | None) -> tuple[str, str]:
    s, n = _s(subject), NOUN_BY_EN[noun]
    en, es = _count_np(n, count, _adj(adj))
    return _done(f"{s.en} {_en_verb(s, 'have', 'has')} {en}", _join(s.es, _TENER[s.person], es))


def _b_possession() -> list[Block]:
    subjects = _g("subject", _pool(pronouns=_PRONOUNS))
    counts = _g("count", range(1, MAX_COUNT + 1))
    return [(subjects, counts, _g("noun", [n.en]), _g("adj", _adjs(n))) for n in NOUNS if n.fits(_OWNABLE)]


# 4. "How many cats does Ana have?" / "¿Cuántos gatos tiene Ana?"
def _r_how_many(subject: str, noun: str, adj: str | None) -> tuple[str, str]:
    s, n = _s(subject), NOUN_BY_EN[noun]
    en, es = _core(n, True, _adj(adj))
    how_many = "cuántas" if n.gender == "f" else "cuántos"
    return _done(
        f"how many {en} {_en_verb(s, 'do', 'does')} {s.en} have",
        _join(how_many, es, _TENER[s.person], s.es),
        question=True,
    )


def _b_how_many() -> list[Block]:
    subjects = _g("subject", _pool(pronouns=("you", "we", "they")))
    return [(subjects, _g("noun", [n.en]), _g("adj", _adjs(n))) for n in NOUNS if n.fits(_OWNABLE)]


# 5/6. "Carlos buys two apples every Monday." / "Carlos bought two apples yesterday."
def _r_action(
    subject: str, verb: str, count: int, noun: str, adj: str | None, when: str, past: bool
) -> tuple[str, str]:
    s, v, n = _s(subject), VERB_BY_EN[verb], NOUN_BY_EN[noun]
    when_es = (_PAST if past else _HABITUAL)[when]
    en, es = _count_np(n, count, _adj(adj))
    if past:
        en_v, es_v = v.en_past, v.pret_el
    else:
        en_v, es_v = _en_verb(s, v.en, v.en_3sg), v.present(s.person)
    return _done(f"{s.en} {en_v} {en} {when}", _join(s.es, es_v, es, when_es))


def _action_blocks(subjects: Group, times: Iterable[tuple[str, str]]) -> list[Block]:
    counts = _g("count", range(1, MAX_COUNT + 1))
    whens = _g("when", (en for en, _ in times))
    return [
        (subjects, _g("verb", [v.en]), counts, _g("noun", [n.en]), _g("adj", _adjs(n)), whens)
        for v in VERBS
        for n in NOUNS
        if n.kind not in ("family", "person", "event") and n.fits(v.objects)
    ]


def _b_action_present() -> list[Block]:
    return _action_blocks(_g("subject", _pool(pronouns=("I", "we", "they"))), HABITUAL)


def _b_action_past() -> list[Block]:
    return _action_blocks(_g("subject", _pool(plural=False)), PAST_TIMES)


# 7. "The meeting is on Monday, the fifth of March." / "La reunión es el lunes cinco de marzo."
_HABITUAL, _PAST, _FUTURE = dict(HABITUAL), dict(PAST_TIMES), dict(FUTURE_TIMES)
_MONTH = {en: (es, days) for en, es, days in MONTHS}
_DAY = {en: (es, es_pl) for en, es, es_pl in DAYS}


def _date(day: int, month: str) -> tuple[str, str]:
    return f"the {_ordinal_en(day)} of {month}", f"{number_es(day)} de {_MONTH[month][0]}"


def _r_date(noun: str, det: str, weekday: str, day: int, month: str) -> tuple[str, str]:
    en, es = _noun_np(noun, False, det, None)
    d_en, d_es = _date(day, month)
    return _done(f"{en} is on {weekday}, {d_en}", f"{es} es el {_DAY[weekday][0]} {d_es}")


def _b_date() -> list[Block]:
    events = tuple({"noun": n.en, "det": d} for n in EVENTS for d in ("the", "my", "our", "your"))
    weekdays = _g("weekday", (en for en, _, _ in DAYS))
    return [(events, weekdays, _g("day", range(1, days + 1)), _g("month", [m])) for m, _, days in MONTHS]


# 8. "Ana's birthday is on the fifth of March." / "El cumpleaños de Ana es el cinco de marzo."
def _r_birthday(owner: str, day: int, month: str) -> tuple[str, str]:
    if owner in ("I", "you"):
        en, es = ("my birthday", "mi cumpleaños") if owner == "I" else ("your birthday", "tu cumpleaños")
    else:
        s = _s(owner)
        en, es = f"{s.en}'s birthday", f"el cumpleaños de {s.es}"
    d_en, d_es = _date(day, month)
    return _done(f"{en} is on {d_en}", f"{es} es el {d_es}")


def _b_birthday() -> list[Block]:
    owners = _g("owner", _pool(plural=False, pronouns=("I", "you")))
    return [(owners, _g("day", range(1, days + 1)), _g("month", [m])) for m, _, days in MONTHS]


# 9/10. "The train leaves at seven thirty." / "El tren sale a las siete y media."
_SCHEDULE_VERBS = {
    "leaves": ("leave", "sale"),
    "arrives": ("arrive", "llega"),
    "starts": ("start", "empieza"),
    "ends": ("end", "termina"),
    "opens": ("open", "abre"),
    "closes": ("close", "cierra"),
}


def _scheduled(thing: str, verb: str, city: str | None) -> tuple[str, str]:
    en, es = _the(NOUN_BY_EN[thing])
    if city is not None:
        to = verb == "leaves"
        en += f" {'to' if to else 'from'} {city}"
        es += f" {'a' if to else 'de'} {CITY_ES[city]}"
    return en, es


def _schedule_group() -> Group:
    out: list[Slots] = []
    for n in NOUNS:
        if "transport" in n.tags:
            for verb in ("leaves", "arrives"):
                out += [{"thing": n.en, "verb": verb, "city": c} for c in (None, *(en for en, _ in CITIES))]
        elif "timed" in n.tags:
            out += [{"thing": n.en, "verb": v, "city": None} for v in ("starts", "ends")]
        elif "opens" in n.tags:
            out += [{"thing": n.en, "verb": v, "city": None} for v in ("opens", "closes")]
    return tuple(out)


def _r_schedule(
    thing: str, verb: str, city: str | None, hour: int, minute: int, period: str
) -> tuple[str, str]:
    en, es = _scheduled(thing, verb, city)
    t_en, t_es = _clock(hour, minute, period)
    return _done(f"{en} {verb} at {t_en}", f"{es} {_SCHEDULE_VERBS[verb][1]} a {t_es}")


def _b_schedule() -> list[Block]:
    return [(_schedule_group(), _times())]


def _r_schedule_question(thing: str, verb: str, city: str | None) -> tuple[str, str]:
    en, es = _scheduled(thing, verb, city)
    base, es_verb = _SCHEDULE_VERBS[verb]
    return _done(f"what time does {en} {base}", f"a qué hora {es_verb} {es}", question=True)


def _b_schedule_question() -> list[Block]:
    return [(_schedule_group(),)]


# 11. "It is seven thirty in the morning." / "Son las siete y media de la mañana."
def _r_clock(hour: int, minute: int, period: str) -> tuple[str, str]:
    en, es = _clock(hour, minute, period)
    return _done(f"it is {en}", f"{'es' if es.startswith('la una') else 'son'} {es}")


def _b_clock() -> list[Block]:
    return [(_times(),)]


# 12/13. "The red shirt costs twenty euros." / "How much do these shoes cost?"
_PRICED = frozenset({"object", "clothes", "fruit", "vegetable", "food", "plant"})
_CURRENCY = {c[0]: c for c in CURRENCIES}


def _r_price(
    noun: str, det: str, adj: str | None, plural: bool, amount: int, currency: str
) -> tuple[str, str]:
    en, es = _noun_np(noun, plural, det, adj)
    c_en, c_en_pl, c_es, c_es_pl, c_gender = _CURRENCY[currency]
    many = amount != 1
    return _done(
        f"{en} {'cost' if plural else 'costs'} {number_en(amount)} {c_en_pl if many else c_en}",
        f"{es} {'cuestan' if plural else 'cuesta'} {number_es(amount, c_gender)} {c_es_pl if many else c_es}",
    )


def _b_price() -> list[Block]:
    amounts, currencies = _g("amount", range(1, MAX_PRICE + 1)), _g("currency", _CURRENCY)
    return [
        (_g("noun", [n.en]), _np_group(n, ("the", "this", "that")), amounts, currencies)
        for n in NOUNS
        if n.fits(_PRICED)
    ]


def _r_price_question(noun: str, det: str, adj: str | None, plural: bool) -> tuple[str, str]:
    en, es = _noun_np(noun, plural, det, adj)
    return _done(
        f"how much {'do' if plural else 'does'} {en} cost",
        f"cuánto {'cuestan' if plural else 'cuesta'} {es}",
        True,
    )


def _b_price_question() -> list[Block]:
    return [(_g("noun", [n.en]), _np_group(n, ("the", "this", "that"))) for n in NOUNS if n.fits(_PRICED)]


# 14. "We need two kilos of tomatoes." / "Necesitamos dos kilos de tomates."
@cache
def _goods(unit: str) -> dict[str, str]:
    """English -> Spanish for what ``unit`` measures: mass nouns as they are, countable nouns in plural."""
    wanted = UNIT_BY_EN[unit].goods
    goods = {m.en: m.es for m in MASS_NOUNS if not wanted.isdisjoint(m.tags)}
    goods |= {n.en_pl: n.es_pl for n in NOUNS if n.kind in ("fruit", "vegetable", "food") and n.fits(wanted)}
    return goods


def _r_shopping(subject: str, verb: str, count: int, unit: str, goods: str) -> tuple[str, str]:
    s, v, u = _s(subject), VERB_BY_EN[verb], UNIT_BY_EN[unit]
    en_q = _a(u.en) if count == 1 else number_en(count)
    en = f"{s.en} {_en_verb(s, v.en, v.en_3sg)} {en_q} {u.en if count == 1 else u.en_pl} of {goods}"
    es_u = u.es if count == 1 else u.es_pl
    return _done(
        en, _join(s.es, v.present(s.person), number_es(count, u.gender), es_u, "de", _goods(unit)[goods])
    )


def _b_shopping() -> list[Block]:
    subjects = _g("subject", _pool(pronouns=("I", "we", "they")))
    verbs = _g("verb", ("need", "buy", WANT.en))
    counts = _g("count", range(1, 6))
    return [(subjects, verbs, counts, _g("unit", [u.en]), _g("goods", _goods(u.en))) for u in UNITS]


# 15/16. "It is sunny in Madrid today." / "Hoy hace sol en Madrid."; "It rained in Madrid yesterday."
_WEATHER = {w.en_now: w for w in WEATHER}
_WEATHER_NOW, _WEATHER_PAST = dict(WEATHER_NOW_TIMES), dict(WEATHER_PAST_TIMES)


def _r_weather(weather: str, city: str, when: str, past: bool = False) -> tuple[str, str]:
    w = _WEATHER[weather]
    when_es = (_WEATHER_PAST if past else _WEATHER_NOW)[when]
    en_w, es_w = (w.en_past, w.es_past) if past else (w.en_now, w.es_now)
    return _done(f"{en_w} in {city} {when}", f"{when_es} {es_w} en {CITY_ES[city]}")


def _weather_blocks(times: Iterable[tuple[str, str]]) -> list[Block]:
    return [
        (_g("weather", _WEATHER), _g("city", (en for en, _ in CITIES)), _g("when", (en for en, _ in times)))
    ]


# 17-19. "We like the green apples." / "Nos gustan las manzanas verdes."
def _likes(subject: str, positive: bool, plural: bool, en_obj: str, es_obj: str) -> tuple[str, str]:
    s = _s(subject)
    if positive:
        en = f"{s.en} {_en_verb(s, 'like', 'likes')} {en_obj}"
    else:
        en = f"{s.en} {_en_verb(s, 'do', 'does')} not like {en_obj}"
    prefix, clitic = _dative(s)
    es = _join(prefix, "" if positive else "no", clitic, "gustan" if plural else "gusta", es_obj)
    return _done(en, es)


def _r_likes_thing(
    subject: str, positive: bool, noun: str, det: str, adj: str | None, plural: bool
) -> tuple[str, str]:
    en, es = _noun_np(noun, plural, det, adj)
    return _likes(subject, positive, plural, en, es)


_LIKEABLE = frozenset({"object", "clothes", "vehicle", "pet", "plant", "fruit", "food", "building", "room"})


def _b_likes_thing() -> list[Block]:
    subjects, polarity = _g("subject", _pool(pronouns=_PRONOUNS)), _g("positive", (True, False))
    # "the" needs an adjective: "We like the apples" would collide with "We like apples" in Spanish.
    return [
        (subjects, polarity, _g("noun", [n.en]), _np_group(n, adj_required_with_the=True))
        for n in NOUNS
        if n.kind in _LIKEABLE
    ]


@lru_cache(maxsize=1)
def _food_names() -> dict[str, tuple[str, bool]]:
    """English food name -> (Spanish with article, plural): "cheese" -> ("el queso", False)."""
    foods = {m.en: (m.es_def, False) for m in MASS_NOUNS}
    for n in NOUNS:
        if n.kind in ("fruit", "vegetable", "food"):
            foods[n.en_pl] = (f"{'las' if n.gender == 'f' else 'los'} {n.es_pl}", True)
    return foods


def _r_likes_food(subject: str, positive: bool, food: str) -> tuple[str, str]:
    es, plural = _food_names()[food]
    return _likes(subject, positive, plural, food, es)


def _b_likes_food() -> list[Block]:
    subjects = _g("subject", _pool(pronouns=_PRONOUNS))
    return [(subjects, _g("positive", (True, False)), _g("food", _food_names()))]


_ACTIVITY = dict(ACTIVITIES)


def _r_likes_activity(subject: str, positive: bool, activity: str) -> tuple[str, str]:
    return _likes(subject, positive, False, f"to {activity}", _ACTIVITY[activity])


def _b_likes_activity() -> list[Block]:
    subjects = _g("subject", _pool(pronouns=_PRONOUNS))
    return [(subjects, _g("positive", (True, False)), _g("activity", _ACTIVITY))]


# 20-22. "Carlos travels from Madrid to Paris by train every month." / "Ana is going to travel to Rome."
_MODE = dict(TRANSPORT_MODES)


def _r_travel(
    subject: str, origin: str, destination: str, mode: str, when: str, past: bool
) -> tuple[str, str]:
    s = _s(subject)
    when_es = (_PAST if past else _HABITUAL)[when]
    en_v = "traveled" if past else _en_verb(s, "travel", "travels")
    es_v = "viajó" if past else _VIAJAR[s.person]
    return _done(
        f"{s.en} {en_v} from {origin} to {destination} by {mode} {when}",
        _join(s.es, es_v, "de", CITY_ES[origin], "a", CITY_ES[destination], "en", _MODE[mode], when_es),
    )


def _travel_blocks(subjects: Group, times: Iterable[tuple[str, str]]) -> list[Block]:
    whens, modes = _g("when", [en for en, _ in times]), _g("mode", _MODE)
    cities = [en for en, _ in CITIES]
    return [
        (subjects, _g("origin", [a]), _g("destination", [b for b in cities if b != a]), modes, whens)
        for a in cities
    ]


def _b_travel_present() -> list[Block]:
    return _travel_blocks(_g("subject", _pool(pronouns=_PRONOUNS)), HABITUAL)


def _b_travel_past() -> list[Block]:
    return _travel_blocks(_g("subject", _pool(plural=False)), PAST_TIMES)


_PLAN_VERBS = {"travel": "viajar", "fly": "volar", "go": "ir", "return": "volver"}


def _r_travel_plan(subject: str, verb: str, destination: str, when: str) -> tuple[str, str]:
    s = _s(subject)
    return _done(
        f"{s.en} {_EN_BE[s.person]} going to {verb} to {destination} {when}",
        _join(s.es, _IR[s.person], "a", _PLAN_VERBS[verb], "a", CITY_ES[destination], _FUTURE[when]),
    )


def _b_travel_plan() -> list[Block]:
    return [
        (
            _g("subject", _pool(pronouns=_PRONOUNS)),
            _g("verb", _PLAN_VERBS),
            _g("destination", (en for en, _ in CITIES)),
            _g("when", (en for en, _ in FUTURE_TIMES)),
        )
    ]


# 23-25. "Ana is tired today." / "My brother is very tall." / "Ana is taller than my brother."
_STATE_TIMES = {
    "": "",
    "today": "hoy",
    "now": "ahora",
    "this morning": "esta mañana",
    "tonight": "esta noche",
}
_DEGREES = {"": "", "very": "muy", "quite": "bastante", "too": "demasiado"}


def _r_state(subject: str, positive: bool, state: str, when: str) -> tuple[str, str]:
    s, a = _s(subject), STATE_BY_EN[state]
    return _done(
        _join(s.en, _EN_BE[s.person], "" if positive else "not", a.en, when),
        _join(s.es, "" if positive else "no", _ESTAR[s.person], a.es(s.gender, s.plural), _STATE_TIMES[when]),
    )


def _b_state() -> list[Block]:
    return [
        (
            _g("subject", _pool(pronouns=_PRONOUNS)),
            _g("positive", (True, False)),
            _g("state", (a.en for a in STATES)),
            _g("when", _STATE_TIMES),
        )
    ]


def _r_trait(subject: str, degree: str, trait: str) -> tuple[str, str]:
    s, a = _s(subject), TRAIT_BY_EN[trait]
    return _done(
        _join(s.en, _EN_BE[s.person], degree, a.en),
        _join(s.es, _SER[s.person], _DEGREES[degree], a.es(s.gender, s.plural)),
    )


def _b_trait() -> list[Block]:
    subjects = _g("subject", _pool(pronouns=_PRONOUNS))
    return [(subjects, _g("degree", _DEGREES), _g("trait", (a.en for a in TRAITS)))]


def _r_comparison(subject: str, other: str, trait: str) -> tuple[str, str]:
    s, o, a = _s(subject), _s(other), TRAIT_BY_EN[trait]
    return _done(f"{s.en} is {a.en_cmp} than {o.en}", f"{s.es} es más {a.es(s.gender, False)} que {o.es}")


def _b_comparison() -> list[Block]:
    people = _pool(plural=False)
    traits = _g("trait", (a.en for a in TRAITS))
    return [(_g("subject", [p]), _g("other", [q for q in people if q != p]), traits) for p in people]


# 26. "These cars are very fast." / "Estos coches son muy rápidos."
_UNGRADED = frozenset({"broken", "empty", "last"})
_DESCRIBED = frozenset(
    {
        "object",
        "fixture",
        "vehicle",
        "clothes",
        "room",
        "building",
        "outdoor",
        "pet",
        "farm",
        "wild",
        "bug",
        "fruit",
        "vegetable",
        "food",
        "plant",
    }
)


def _r_description(noun: str, det: str, plural: bool, degree: str, adj: str) -> tuple[str, str]:
    n, a = NOUN_BY_EN[noun], ADJ_BY_EN[adj]
    en, es = _np(n, plural, det)
    verb = (_ESTAR if a.estar else _SER)["ellos" if plural else "el"]
    return _done(
        _join(en, "are" if plural else "is", degree, a.en),
        _join(es, verb, _DEGREES[degree], a.es(n.gender, plural)),
    )


def _b_description() -> list[Block]:
    blocks: list[Block] = []
    for n in NOUNS:
        if n.kind not in _DESCRIBED:
            continue
        dets = tuple({"det": d, "plural": p} for d in _dets(n) for p in _numbers(n))
        graded = [
            a for a in _adjs(n, optional=False) if a not in _UNGRADED and a not in {c.en for c in COLOURS}
        ]
        plain = [a for a in _adjs(n, optional=False) if a not in graded]
        if graded:
            blocks.append((_g("noun", [n.en]), dets, _g("degree", _DEGREES), _g("adj", graded)))
        if plain:
            blocks.append((_g("noun", [n.en]), dets, _g("degree", [""]), _g("adj", plain)))
    return blocks


# 27. "There are three cats in the garden." / "Hay tres gatos en el jardín."
def _r_there_is(count: int, noun: str, adj: str | None, place: str) -> tuple[str, str]:
    n, p = NOUN_BY_EN[noun], PLACE_BY_EN[place]
    en, es = _count_np(n, count, _adj(adj))
    p_en, p_es = _the(p)
    return _done(f"there {'is' if count == 1 else 'are'} {en} {p.prep} {p_en}", f"hay {es} en {p_es}")


def _b_there_is() -> list[Block]:
    counts = _g("count", range(1, MAX_COUNT + 1))
    return [
        (counts, _g("noun", [n.en]), _g("adj", _adjs(n)), _g("place", _holders(n)))
        for n in NOUNS
        if n.kind != "family" and _holders(n)
    ]


# 28. "The bank is next to the park." / "El banco está al lado del parque."
_RELATIONS = {
    "next to": "al lado de",
    "in front of": "delante de",
    "behind": "detrás de",
    "near": "cerca de",
    "far from": "lejos de",
    "across from": "enfrente de",
}


def _r_directions(place: str, relation: str, other: str, third: str | None = None) -> tuple[str, str]:
    (a_en, a_es), (b_en, b_es) = _the(PLACE_BY_EN[place]), _the(PLACE_BY_EN[other])
    if relation == "between":
        c_en, c_es = _the(PLACE_BY_EN[str(third)])
        return _done(f"{a_en} is between {b_en} and {c_en}", f"{a_es} está entre {b_es} {_y(c_es)} {c_es}")
    return _done(f"{a_en} is {relation} {b_en}", f"{a_es} está {_RELATIONS[relation]} {b_es}")


def _b_directions() -> list[Block]:
    marks = [p.en for p in PLACES if "landmark" in p.tags]
    blocks: list[Block] = []
    for a in marks:
        others = [b for b in marks if b != a]
        blocks.append((_g("place", [a]), _g("relation", _RELATIONS), _g("other", others)))
        pairs = tuple({"other": b, "third": c} for b in others for c in others if c != b)
        blocks.append((_g("place", [a]), _g("relation", ["between"]), pairs))
    return blocks


# 29. "My grandmother is seventy years old." / "Mi abuela tiene setenta años."
_AGES = {"baby": (1, 3), "boy": (2, 15), "girl": (2, 15), "grandmother": (60, 99), "grandfather": (60, 99),
         "son": (1, 40), "daughter": (1, 40), "brother": (2, 60), "sister": (2, 60), "cousin": (2, 60),
         "friend": (5, 80), "student": (10, 40)}  # fmt: skip


def _r_age(subject: str, years: int) -> tuple[str, str]:
    s = _s(subject)
    return _done(
        f"{s.en} {_EN_BE[s.person]} {number_en(years)} {'year' if years == 1 else 'years'} old",
        _join(s.es, _TENER[s.person], number_es(years, "m"), "año" if years == 1 else "años"),
    )


def _b_age() -> list[Block]:
    blocks: list[Block] = []
    for key in _pool(plural=False, pronouns=("I", "you")):
        noun = key.split()[-1]
        lo, hi = _AGES.get(noun, (3, 90) if key in _NAME_KEYS or key in _PRONOUNS else (20, 90))
        blocks.append((_g("subject", [key]), _g("years", range(lo, hi + 1))))
    return blocks


# 30. "Can you open the window, please?" / "¿Puedes abrir la ventana, por favor?"
_NO_REQUEST = frozenset({"lose", "see", "hide", "need"})


def _r_request(verb: str, noun: str, det: str, adj: str | None, plural: bool) -> tuple[str, str]:
    v = VERB_BY_EN[verb]
    en, es = _noun_np(noun, plural, det, adj)
    return _done(f"can you {v.en} {en}, please", f"puedes {v.es_inf} {es}, por favor", question=True)


def _b_request() -> list[Block]:
    return [
        (_g("verb", [v.en]), _g("noun", [n.en]), _np_group(n))
        for v in VERBS
        if v.en not in _NO_REQUEST
        for n in NOUNS
        if n.kind not in ("family", "person", "event") and n.fits(v.objects)
    ]


# --- Registry and public API ------------------------------------------------------------------------------
_REGISTRY: tuple[tuple[str, Callable[..., tuple[str, str]], Callable[[], list[Block]]], ...] = (
    ("location", _r_location, _b_location),
    ("where_question", _r_where, _b_where),
    ("possession", _r_possession, _b_possession),
    ("how_many_question", _r_how_many, _b_how_many),
    ("action_present", partial(_r_action, past=False), _b_action_present),
    ("action_past", partial(_r_action, past=True), _b_action_past),
    ("date", _r_date, _b_date),
    ("birthday", _r_birthday, _b_birthday),
    ("schedule", _r_schedule, _b_schedule),
    ("schedule_question", _r_schedule_question, _b_schedule_question),
    ("clock", _r_clock, _b_clock),
    ("price", _r_price, _b_price),
    ("price_question", _r_price_question, _b_price_question),
    ("shopping", _r_shopping, _b_shopping),
    ("weather_now", partial(_r_weather, past=False), partial(_weather_blocks, WEATHER_NOW_TIMES)),
    ("weather_past", partial(_r_weather, past=True), partial(_weather_blocks, WEATHER_PAST_TIMES)),
    ("likes_thing", _r_likes_thing, _b_likes_thing),
    ("likes_food", _r_likes_food, _b_likes_food),
    ("likes_activity", _r_likes_activity, _b_likes_activity),
    ("travel_present", partial(_r_travel, past=False), _b_travel_present),
    ("travel_past", partial(_r_travel, past=True), _b_travel_past),
    ("travel_plan", _r_travel_plan, _b_travel_plan),
    ("state", _r_state, _b_state),
    ("trait", _r_trait, _b_trait),
    ("comparison", _r_comparison, _b_comparison),
    ("description", _r_description, _b_description),
    ("there_is", _r_there_is, _b_there_is),
    ("directions", _r_directions, _b_directions),
    ("age", _r_age, _b_age),
    ("request", _r_request, _b_request),
)
TEMPLATES: tuple[str, ...] = tuple(name for name, _, _ in _REGISTRY)
_RENDER = {name: fn for name, fn, _ in _REGISTRY}


@dataclass(frozen=True)
class _Space:
    """A template's slot space: blocks of independent groups, with each block's first index."""

    blocks: tuple[Block, ...]
    offsets: tuple[int, ...]
    size: int

    def slots(self, index: int) -> Slots:
        """Decode ``index`` in [0, size) into one slot assignment (mixed radix within its block)."""
        b = bisect_right(self.offsets, index) - 1
        rest = index - self.offsets[b]
        out: Slots = {}
        for group in reversed(self.blocks[b]):
            rest, r = divmod(rest, len(group))
            out.update(group[r])
        return out


@lru_cache(maxsize=1)
def _spaces() -> dict[str, _Space]:
    spaces: dict[str, _Space] = {}
    for name, _, build in _REGISTRY:
        blocks = tuple(tuple(b) for b in build() if all(b))
        offsets, total = [], 0
        for block in blocks:
            offsets.append(total)
            size = 1
            for group in block:
                size *= len(group)
            total += size
        spaces[name] = _Space(blocks, tuple(offsets), total)
    return spaces


def template_sizes() -> dict[str, int]:
    """Number of distinct pairs each template can make."""
    return {name: space.size for name, space in _spaces().items()}


def capacity() -> int:
    """How many distinct sentence pairs all templates together can make."""
    return sum(template_sizes().values())


def render(template: str, **slots: object) -> SentencePair:
    """Render one pair from explicit slot values (English lexicon keys), e.g.
    ``render("location", noun="dog", det="the", adj="small", plural=False, place="kitchen")``.

    Raises:
        ValueError: for an unknown template name.
    """
    if template not in _RENDER:
        raise ValueError(f"unknown template {template!r}; known: {', '.join(TEMPLATES)}")
    en, es = _RENDER[template](**slots)
    return SentencePair(en=en, es=es, template=template)


def _allocate(n: int, sizes: list[int]) -> list[int]:
    """Split n as evenly as possible over templates, none over its size (smallest templates first)."""
    quota = [0] * len(sizes)
    left = n
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    for rank, i in enumerate(order):
        quota[i] = min(sizes[i], left // (len(order) - rank))
        left -= quota[i]
    return quota


def generate_pairs(n: int, seed: int) -> list[SentencePair]:
    """``n`` distinct sentence pairs, deterministic for ``(n, seed)``, templates mixed roughly evenly.

    All English sides are distinct and all Spanish sides are distinct. Never enumerates the templates'
    products: each template draws distinct indices and decodes them.

    Args:
        n: how many pairs, 1 <= n <= capacity().
        seed: seed of the private ``random.Random`` used for drawing and shuffling.

    Returns:
        The pairs, shuffled.

    Raises:
        ValueError: when n is not in [1, capacity()].
    """
    cap = capacity()
    if n <= 0 or n > cap:
        raise ValueError(f"n must be between 1 and capacity()={cap} distinct pairs, got {n}")
    rng = random.Random(seed)
    spaces = _spaces()
    quotas = _allocate(n, [spaces[t].size for t in TEMPLATES])
    pairs: list[SentencePair] = []
    seen_en: set[str] = set()
    seen_es: set[str] = set()
    for name, quota in zip(TEMPLATES, quotas, strict=True):
        space, render_fn = spaces[name], _RENDER[name]
        used = set(rng.sample(range(space.size), quota))
        todo = sorted(used)  # sorted so that set iteration order cannot leak into the output
        made, retries = 0, 0
        while made < quota:
            if not todo:
                if retries >= DUPLICATE_RETRIES or len(used) >= space.size:
                    raise RuntimeError(
                        f"template {name!r} rendered duplicate sentences; its slots are ambiguous"
                    )
                retries += 1
                index = rng.randrange(space.size)
                if index in used:
                    continue
                used.add(index)
                todo.append(index)
            en, es = render_fn(**space.slots(todo.pop()))
            if en in seen_en or es in seen_es:
                continue
            seen_en.add(en)
            seen_es.add(es)
            pairs.append(SentencePair(en=en, es=es, template=name))
            made += 1
    rng.shuffle(pairs)
    return pairs
