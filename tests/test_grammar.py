"""Templated bilingual sentence pairs: determinism, distinctness, spoken form and Spanish agreement."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from training.data import grammar
from training.data.grammar import TEMPLATES, SentencePair, capacity, generate_pairs, render
from training.data.lexicon import ADJECTIVES, COLOURS, NOUNS

SPOKEN = re.compile(r"[A-Za-zÁÉÍÓÚÜÑáéíóúüñ ,.?¿'-]+")
WORD = re.compile(r"[A-Za-zÁÉÍÓÚÜÑáéíóúüñ]+")


@pytest.fixture(scope="module")
def batch() -> list[SentencePair]:
    return generate_pairs(3000, seed=11)


def _noun_forms() -> dict[str, tuple[str, bool]]:
    """Spanish noun form -> (gender, plural), for forms that belong to one gender and number only."""
    seen: dict[str, set[tuple[str, bool]]] = {}
    for n in NOUNS:
        seen.setdefault(n.es, set()).add((n.gender, False))
        seen.setdefault(n.es_pl, set()).add((n.gender, True))
    return {form: next(iter(tags)) for form, tags in seen.items() if len(tags) == 1}


def _adjective_forms() -> dict[str, set[tuple[str, bool]]]:
    """Spanish adjective form -> the (gender, plural) combinations it can agree with."""
    forms: dict[str, set[tuple[str, bool]]] = {}
    for a in COLOURS + ADJECTIVES:
        for gender in ("m", "f"):
            for plural in (False, True):
                forms.setdefault(a.es(gender, plural), set()).add((gender, plural))  # type: ignore[arg-type]
    return forms


def test_deterministic_for_seed() -> None:
    assert generate_pairs(500, seed=7) == generate_pairs(500, seed=7)
    assert generate_pairs(500, seed=7) != generate_pairs(500, seed=8)


def test_distinct_sentences_on_both_sides() -> None:
    pairs = generate_pairs(5000, seed=3)
    assert len(pairs) == 5000
    assert len({p.en for p in pairs}) == 5000
    assert len({p.es for p in pairs}) == 5000


def test_capacity_and_bad_sizes() -> None:
    cap = capacity()
    assert cap >= 50_000
    assert cap == sum(grammar.template_sizes().values())
    for n in (0, -1, cap + 1):
        with pytest.raises(ValueError, match="capacity"):
            generate_pairs(n, seed=0)


def test_small_templates_are_exhaustively_distinct() -> None:
    """Every slot assignment of a small template renders a different sentence in each language, so
    capacity() counts distinct pairs (the large templates share the same rendering code)."""
    checked = 0
    for name, size in grammar.template_sizes().items():
        if size > 20_000:
            continue
        space = grammar._spaces()[name]
        pairs = [render(name, **space.slots(i)) for i in range(size)]
        assert len({p.en for p in pairs}) == size, name
        assert len({p.es for p in pairs}) == size, name
        checked += 1
    assert checked >= 5


def test_spoken_form(batch: list[SentencePair]) -> None:
    for p in batch:
        for text in (p.en, p.es):
            assert SPOKEN.fullmatch(text), text
            assert not re.search(r"\d", text), text
            assert text == text.strip() and "  " not in text, text
            assert text.endswith((".", "?")), text
            first = text.lstrip("¿")
            assert first[0].isupper(), text


def test_questions_are_paired(batch: list[SentencePair]) -> None:
    questions = 0
    for p in batch:
        assert p.en.endswith("?") == p.es.endswith("?"), p
        if p.es.endswith("?"):
            questions += 1
            assert p.es.startswith("¿") and p.es.count("¿") == p.es.count("?") == 1, p.es
        else:
            assert "¿" not in p.es and "?" not in p.en, p
    assert questions > 0


def test_templates_mixed_evenly() -> None:
    assert len(TEMPLATES) >= 20
    counts = Counter(p.template for p in generate_pairs(2000, seed=5))
    assert set(counts) == set(TEMPLATES)
    assert max(counts.values()) <= 1.5 * min(counts.values())


def test_spanish_agreement(batch: list[SentencePair]) -> None:
    nouns, adjs = _noun_forms(), _adjective_forms()
    masc_det = {"el", "al", "del", "un", "este", "ese", "nuestro", "los", "estos", "esos", "nuestros", "unos"}
    fem_det = {"la", "una", "esta", "esa", "nuestra", "las", "estas", "esas", "nuestras", "unas"}
    plural_det = {"los", "las", "estos", "estas", "esos", "esas", "nuestros", "nuestras", "mis", "tus"}
    numbers = {"dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "once", "doce"}
    for p in batch:
        words = WORD.findall(p.es.lower())
        for w1, w2 in zip(words, words[1:], strict=False):
            assert w1 != "uno" or w2 not in nouns, p.es  # "uno" shortens to "un"/"una" before a noun
            if w2 not in nouns:
                continue
            gender, plural = nouns[w2]
            assert not (w1 in masc_det and gender == "f"), p.es
            assert not (w1 in fem_det and gender == "m"), p.es
            assert not (w1 in plural_det and not plural), p.es
            assert not (w1 in numbers and not plural), p.es
        for w1, w2 in zip(words, words[1:], strict=False):
            if w1 in nouns and w2 in adjs:
                assert nouns[w1] in adjs[w2], f"{w1} {w2}: {p.es}"


def test_english_articles(batch: list[SentencePair]) -> None:
    for p in batch:
        words = p.en.lower().rstrip(".?").replace(",", "").split()
        for w1, w2 in zip(words, words[1:], strict=False):
            if w1 == "a":
                assert w2[0] not in "aeiou", p.en
            if w1 == "an":
                assert w2[0] in "aeiou", p.en


@pytest.mark.parametrize(
    ("template", "slots", "en", "es"),
    [
        ("location", {"noun": "dog", "det": "the", "adj": "small", "plural": False, "place": "kitchen"},
         "The small dog is in the kitchen.", "El perro pequeño está en la cocina."),
        ("possession", {"subject": "my sister", "count": 3, "noun": "car", "adj": "red"},
         "My sister has three red cars.", "Mi hermana tiene tres coches rojos."),
        ("possession", {"subject": "I", "count": 1, "noun": "bicycle", "adj": "old"},
         "I have an old bicycle.", "Tengo una bicicleta vieja."),
        ("action_past", {"subject": "Carlos", "verb": "buy", "count": 2, "noun": "apple", "adj": None,
                         "when": "yesterday"},
         "Carlos bought two apples yesterday.", "Carlos compró dos manzanas ayer."),
        ("action_present", {"subject": "we", "verb": "close", "count": 1, "noun": "window", "adj": None,
                            "when": "every day"},
         "We close a window every day.", "Cerramos una ventana todos los días."),
        ("where_question", {"noun": "library"}, "Where is the library?", "¿Dónde está la biblioteca?"),
        ("where_question", {"noun": "pharmacy", "nearest": True},
         "Where is the nearest pharmacy?", "¿Dónde está la farmacia más cercana?"),
        ("how_many_question", {"subject": "Ana", "noun": "cat", "adj": None},
         "How many cats does Ana have?", "¿Cuántos gatos tiene Ana?"),
        ("date", {"noun": "meeting", "det": "the", "weekday": "Monday", "day": 5, "month": "March"},
         "The meeting is on Monday, the fifth of March.", "La reunión es el lunes cinco de marzo."),
        ("birthday", {"owner": "the teacher", "day": 21, "month": "June"},
         "The teacher's birthday is on the twenty-first of June.",
         "El cumpleaños del profesor es el veintiuno de junio."),
        ("schedule", {"thing": "train", "verb": "leaves", "city": None, "hour": 7, "minute": 30,
                      "period": ""},
         "The train leaves at seven thirty.", "El tren sale a las siete y media."),
        ("schedule", {"thing": "bus", "verb": "arrives", "city": "London", "hour": 1, "minute": 40,
                      "period": "afternoon"},
         "The bus from London arrives at one forty in the afternoon.",
         "El autobús de Londres llega a las dos menos veinte de la tarde."),
        ("clock", {"hour": 12, "minute": 45, "period": ""},
         "It is twelve forty-five.", "Es la una menos cuarto."),
        ("clock", {"hour": 1, "minute": 15, "period": "afternoon"},
         "It is one fifteen in the afternoon.", "Es la una y cuarto de la tarde."),
        ("price", {"noun": "shirt", "det": "this", "adj": None, "plural": False, "amount": 21,
                   "currency": "pound"},
         "This shirt costs twenty-one pounds.", "Esta camisa cuesta veintiuna libras."),
        ("price", {"noun": "shoe", "det": "the", "adj": "black", "plural": True, "amount": 21,
                   "currency": "euro"},
         "The black shoes cost twenty-one euros.", "Los zapatos negros cuestan veintiún euros."),
        ("shopping", {"subject": "I", "verb": "need", "count": 2, "unit": "kilo", "goods": "tomatoes"},
         "I need two kilos of tomatoes.", "Necesito dos kilos de tomates."),
        ("weather_now", {"weather": "it is sunny", "city": "Seville", "when": "today"},
         "It is sunny in Seville today.", "Hoy hace sol en Sevilla."),
        ("likes_thing", {"subject": "we", "positive": True, "noun": "apple", "det": "the", "adj": "green",
                         "plural": True},
         "We like the green apples.", "Nos gustan las manzanas verdes."),
        ("likes_activity", {"subject": "the teacher", "positive": False, "activity": "swim"},
         "The teacher does not like to swim.", "Al profesor no le gusta nadar."),
        ("travel_past", {"subject": "Ana", "origin": "Madrid", "destination": "London", "mode": "train",
                         "when": "last week"},
         "Ana traveled from Madrid to London by train last week.",
         "Ana viajó de Madrid a Londres en tren la semana pasada."),
        ("state", {"subject": "Jorge and Irene", "positive": True, "state": "tired", "when": "today"},
         "Jorge and Irene are tired today.", "Jorge e Irene están cansados hoy."),
        ("state", {"subject": "my sisters", "positive": False, "state": "busy", "when": ""},
         "My sisters are not busy.", "Mis hermanas no están ocupadas."),
        ("comparison", {"subject": "Ana", "other": "my brother", "trait": "tall"},
         "Ana is taller than my brother.", "Ana es más alta que mi hermano."),
        ("description", {"noun": "window", "det": "that", "plural": False, "degree": "very", "adj": "dirty"},
         "That window is very dirty.", "Esa ventana está muy sucia."),
        ("there_is", {"count": 1, "noun": "dog", "adj": "old", "place": "garden"},
         "There is an old dog in the garden.", "Hay un perro viejo en el jardín."),
        ("directions", {"place": "bank", "relation": "next to", "other": "park"},
         "The bank is next to the park.", "El banco está al lado del parque."),
        ("age", {"subject": "my grandmother", "years": 71},
         "My grandmother is seventy-one years old.", "Mi abuela tiene setenta y un años."),
        ("request", {"verb": "open", "noun": "window", "det": "the", "adj": None, "plural": False},
         "Can you open the window, please?", "¿Puedes abrir la ventana, por favor?"),
    ],
)  # fmt: skip
def test_known_translations(template: str, slots: dict[str, object], en: str, es: str) -> None:
    assert render(template, **slots) == SentencePair(en=en, es=es, template=template)


def test_render_rejects_unknown_template() -> None:
    with pytest.raises(ValueError, match="unknown template"):
        render("no_such_template")


def test_lexicon_has_no_synonyms() -> None:
    """Distinct slot values must render distinct words, or capacity() would count duplicates."""
    for lang in ("en", "es"):
        forms = Counter(f for n in NOUNS for f in {getattr(n, lang), getattr(n, f"{lang}_pl")})
        assert [f for f, c in forms.items() if c > 1] == [], lang
    assert all(n.en != n.en_pl for n in NOUNS)
    assert len({a.en for a in COLOURS + ADJECTIVES}) == len(COLOURS + ADJECTIVES)


def test_fast() -> None:
    grammar._spaces.cache_clear()
    start = time.perf_counter()
    pairs = generate_pairs(20_000, seed=1)
    assert len(pairs) == 20_000
    assert time.perf_counter() - start < 3.0
