"""The text normalizer: spoken forms for synthesis, evaluation forms for scoring."""

import pytest

from alm.textnorm import is_speakable, normalize_for_eval, normalize_text


@pytest.mark.parametrize(
    ("text", "lang", "spoken"),
    [
        ("Dr. Smith paid $5.50 at 7:30.", "en", "Doctor Smith paid five dollars and fifty cents at seven thirty."),
        ("I have 3 cats.", "en", "I have three cats."),
        ("She came 2nd out of 12,000.", "en", "She came second out of twelve thousand."),
        ("It costs 3,50 €.", "es", "It costs tres euros con cincuenta céntimos."),
        ("It rose 45%.", "en", "It rose forty-five percent."),
        ("Back in 1999.", "en", "Back in nineteen ninety-nine."),
        ("Tom & Jerry", "en", "Tom and Jerry"),
        ("Meet at 9:05.", "en", "Meet at nine oh five."),
        ("Tengo 3 gatos.", "es", "Tengo tres gatos."),
        ("El Sr. Pérez llega a las 7:30.", "es", "El señor Pérez llega a las siete y media."),
        ("Cuesta 1 €.", "es", "Cuesta un euro."),
        ("Pesa 3,5 kilos.", "es", "Pesa tres coma cinco kilos."),
        ("Son 1.000 personas.", "es", "Son mil personas."),
        ("Es la 1:15.", "es", "Es la una y cuarto."),
    ],
)
def test_spoken_form(text, lang, spoken):
    assert normalize_text(text, lang) == spoken


def test_spoken_form_keeps_plain_text_and_is_idempotent():
    for text, lang in [("Where is the library?", "en"), ("¿Dónde está la biblioteca?", "es")]:
        assert normalize_text(text, lang) == text
    once = normalize_text("Mr. Brown owes $12 since 2020.", "en")
    assert normalize_text(once, "en") == once
    assert not any(c.isdigit() for c in once)


def test_eval_form_matches_equivalent_transcripts():
    a = normalize_for_eval("Dr. Smith paid $5.", "en")
    b = normalize_for_eval("doctor smith paid five dollars", "en")
    assert a == b == "doctor smith paid five dollars"
    assert normalize_for_eval("¿Dónde está el Dr. García?", "es") == "dónde está el doctor garcía"
    assert normalize_for_eval("It's  John's  'book'.", "en") == "it's john's book"


def test_speakable():
    assert is_speakable("The cat sat on the mat.", "en", min_words=4)
    assert not is_speakable("Too short.", "en", min_words=4)
    assert not is_speakable("Visit www.example.com today.", "en")
    assert not is_speakable("I have 3 cats.", "en")
    assert not is_speakable("The NASA rocket flew.", "en")
    assert not is_speakable("", "en")
    assert not is_speakable(" ".join(["word"] * 30), "en", max_words=20)


def test_unknown_language_is_named():
    with pytest.raises(ValueError, match="unsupported language 'fr'"):
        normalize_text("Bonjour", "fr")
