"""Text normalization shared by corpus synthesis and evaluation.

Two forms of a sentence matter here:

* the *spoken* form (:func:`normalize_text`): what a speaker actually says, with numbers, ordinals, times,
  money, percentages, common abbreviations and symbols written out as words, casing and sentence punctuation
  kept. The corpus stores this form as the transcript, so the audio and its text always agree;
* the *evaluation* form (:func:`normalize_for_eval`): the spoken form lower-cased, without punctuation and with
  collapsed whitespace, which WER/CER/BLEU scoring compares so that "Dr. Smith paid $5." and
  "doctor smith paid five dollars" count as the same words.

Number words come from ``num2words``; the rules that find numbers, abbreviations and symbols in running text
are written here because no maintained library does English+Spanish text normalization for TTS offline.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

LANGS = ("en", "es")

_ABBREVIATIONS: dict[str, dict[str, str]] = {
    "en": {
        "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miss", "Dr.": "Doctor", "Prof.": "Professor",
        "St.": "Saint", "Jr.": "Junior", "Sr.": "Senior", "Mt.": "Mount", "Ave.": "Avenue", "Gen.": "General",
        "Capt.": "Captain", "Lt.": "Lieutenant", "Col.": "Colonel", "Sgt.": "Sergeant", "Gov.": "Governor",
        "vs.": "versus", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "approx.": "approximately",
        "No.": "number", "Jan.": "January", "Feb.": "February", "Mar.": "March", "Apr.": "April",
        "Aug.": "August", "Sept.": "September", "Sep.": "September", "Oct.": "October", "Nov.": "November",
        "Dec.": "December", "Mon.": "Monday", "Tue.": "Tuesday", "Wed.": "Wednesday", "Thu.": "Thursday",
        "Fri.": "Friday", "Sat.": "Saturday", "Sun.": "Sunday",
    },
    "es": {
        "Sr.": "señor", "Sra.": "señora", "Srta.": "señorita", "Dr.": "doctor", "Dra.": "doctora",
        "Prof.": "profesor", "Ud.": "usted", "Uds.": "ustedes", "Vd.": "usted", "Vds.": "ustedes",
        "D.": "don", "Dña.": "doña", "Sto.": "santo", "Sta.": "santa", "etc.": "etcétera", "aprox.": "aproximadamente",
        "pág.": "página", "núm.": "número", "n.º": "número", "EE.UU.": "Estados Unidos", "Av.": "avenida",
        "Avda.": "avenida", "c/": "calle",
    },
}

_SYMBOLS: dict[str, dict[str, str]] = {
    "en": {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number ", "°": " degrees "},
    "es": {"&": " y ", "+": " más ", "=": " igual a ", "@": " arroba ", "#": " número ", "°": " grados "},
}

_CURRENCY: dict[str, dict[str, tuple[str, str, str, str]]] = {
    # symbol -> (unit singular, unit plural, cent singular, cent plural)
    "en": {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
           "£": ("pound", "pounds", "penny", "pence")},
    "es": {"$": ("dólar", "dólares", "centavo", "centavos"), "€": ("euro", "euros", "céntimo", "céntimos"),
           "£": ("libra", "libras", "penique", "peniques")},
}

_PERCENT = {"en": "percent", "es": "por ciento"}
_POINT = {"en": "point", "es": "coma"}
_AND = {"en": "and", "es": "con"}

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "´": "'",
                         "–": "-", "—": " - ", "…": "..."})

_MONEY_PRE = re.compile(r"([$€£])\s?(\d(?:[\d.,]*\d)?)")
_MONEY_POST = re.compile(r"(\d(?:[\d.,]*\d)?)\s?([$€£])")
_PERCENT_RE = re.compile(r"(\d+(?:[.,]\d+)?)\s?%")
_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_ORDINAL_EN = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_ORDINAL_ES = re.compile(r"\b(\d+)\s?([ºª°]|\.º|\.ª)")
_DECIMAL = re.compile(r"\b(\d+)[.,](\d+)\b")
_THOUSANDS_EN = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_THOUSANDS_ES = re.compile(r"\b\d{1,3}(?:\.\d{3})+\b")
_YEAR_EN = re.compile(r"\b(1[1-9]\d\d|20\d\d)s?\b")
_INTEGER = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_PUNCT = re.compile(r"[^\w\s']|_")


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; supported: {LANGS}")


def _cardinal(n: int | str, lang: str) -> str:
    return num2words(int(n), lang=lang)


def _money(symbol: str, amount: str, lang: str) -> str:
    unit, units, cent, cents = _CURRENCY[lang][symbol]
    thousands, decimal = (",", ".") if lang == "en" else (".", ",")
    whole_s, _, frac = amount.replace(thousands, "").partition(decimal)
    whole = int(whole_s or 0)
    words = f"{_cardinal(whole, lang)} {unit if whole == 1 else units}"
    c = int(frac[:2].ljust(2, "0")) if frac else 0
    if c:
        words += f" {_AND[lang]} {_cardinal(c, lang)} {cent if c == 1 else cents}"
    if lang == "es":  # "uno" becomes "un"/"una" before a noun
        words = re.sub(r"\buno (dólar|euro|céntimo|centavo|penique)", r"un \1", words)
        words = re.sub(r"\buno libra", "una libra", words)
    return words


def _time(m: re.Match[str], lang: str) -> str:
    h, mi = int(m.group(1)), int(m.group(2))
    if lang == "en":
        if mi == 0:
            return f"{_cardinal(h, lang)} o'clock"
        return f"{_cardinal(h, lang)} {'oh ' if mi < 10 else ''}{_cardinal(mi, lang)}"
    # Hours are feminine in Spanish ("la una", "las veintiuna").
    hour = {1: "una", 21: "veintiuna"}.get(h, _cardinal(h, lang))
    if mi == 0:
        return hour
    if mi == 30:
        return f"{hour} y media"
    if mi == 15:
        return f"{hour} y cuarto"
    return f"{hour} y {_cardinal(mi, lang)}"


def _decimal(m: re.Match[str], lang: str) -> str:
    digits = " ".join(_cardinal(d, lang) for d in m.group(2))
    return f"{_cardinal(m.group(1), lang)} {_POINT[lang]} {digits}"


def _expand_numbers(text: str, lang: str) -> str:
    text = _MONEY_PRE.sub(lambda m: _money(m.group(1), m.group(2), lang), text)
    text = _MONEY_POST.sub(lambda m: _money(m.group(2), m.group(1), lang), text)
    text = _PERCENT_RE.sub(lambda m: f"{m.group(1)} {_PERCENT[lang]}", text)
    text = _TIME.sub(lambda m: _time(m, lang), text)
    if lang == "en":
        text = _ORDINAL_EN.sub(lambda m: num2words(int(m.group(1)), lang="en", to="ordinal"), text)
        text = _THOUSANDS_EN.sub(lambda m: m.group(0).replace(",", ""), text)
        text = _YEAR_EN.sub(lambda m: num2words(int(m.group(1)), lang="en", to="year")
                            + ("s" if m.group(0).endswith("s") else ""), text)
        # "nineteen nineties" reads better than "nineteen ninetys"
        text = re.sub(r"tys\b", "ties", text)
    else:
        text = _ORDINAL_ES.sub(lambda m: num2words(int(m.group(1)), lang="es", to="ordinal"), text)
        text = _THOUSANDS_ES.sub(lambda m: m.group(0).replace(".", ""), text)
    text = _DECIMAL.sub(lambda m: _decimal(m, lang), text)
    return _INTEGER.sub(lambda m: _spaced(_cardinal(m.group(0), lang), m), text)


def _spaced(words: str, m: re.Match[str]) -> str:
    # "3cats" -> "three cats", but "16-bit" -> "sixteen-bit": pad only where a letter touches the number.
    s = m.string
    before = " " if m.start() > 0 and s[m.start() - 1].isalpha() else ""
    after = " " if m.end() < len(s) and s[m.end()].isalpha() else ""
    return f"{before}{words}{after}"


def _expand_abbreviations(text: str, lang: str) -> str:
    for abbr, full in _ABBREVIATIONS[lang].items():
        text = re.sub(rf"(?<![\w.]){re.escape(abbr)}(?=\s|$|[,;:])", full, text)
    return text


def normalize_text(text: str, lang: str) -> str:
    """Spoken form of ``text``: numbers, money, times, ordinals, percentages, abbreviations and symbols as
    words; unicode quotes and dashes made plain; whitespace collapsed. Casing and punctuation are kept.

    >>> normalize_text("Dr. Smith paid $5.50 at 7:30.", "en")
    'Doctor Smith paid five dollars and fifty cents at seven thirty.'
    """
    _check_lang(lang)
    text = unicodedata.normalize("NFC", text).translate(_QUOTES)
    text = _expand_abbreviations(text, lang)
    text = _expand_numbers(text, lang)
    for sym, word in _SYMBOLS[lang].items():
        text = text.replace(sym, word)
    text = _SPACES.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def normalize_for_eval(text: str, lang: str = "en") -> str:
    """Evaluation form: :func:`normalize_text`, lower-cased, punctuation removed (apostrophes inside words
    kept), whitespace collapsed. Accents are kept: in Spanish they distinguish words ("si"/"sí").

    >>> normalize_for_eval("¿Dónde está el Dr. García?", "es")
    'dónde está el doctor garcía'
    """
    text = normalize_text(text, lang).lower()
    text = _PUNCT.sub(" ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return _SPACES.sub(" ", text).strip()


_SPEAKABLE_CHARS = re.compile(r"[A-Za-zÁÉÍÓÚÜÑáéíóúüñ¿¡ ,.;:'!?\"()-]+")
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")


def is_speakable(text: str, lang: str, min_words: int = 1, max_words: int = 50) -> bool:
    """True when a TTS engine can say ``text`` (already in spoken form) as a sentence a listener follows:
    between ``min_words`` and ``max_words`` words, only letters and plain punctuation (no digits, symbols,
    URLs), no spelled-out acronyms, at least one vowel per word-bearing token.
    """
    _check_lang(lang)
    if not text or not _SPEAKABLE_CHARS.fullmatch(text):
        return False
    if _ACRONYM.search(text):
        return False
    words = [w for w in _PUNCT.sub(" ", text).split() if w.strip("'")]
    if not min_words <= len(words) <= max_words:
        return False
    vowels = set("aeiouyáéíóúü")
    return all(any(c in vowels for c in w.lower()) for w in words if len(w) > 1)
