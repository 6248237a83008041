"""Text normalization shared by corpus synthesis and evaluation.

Two forms of a sentence matter here:

* the *spoken* form (:func:`normalize_text`): what a speaker actually says, with numbers, ordinals, dates, times,
  money, percentages, units, common abbreviations and symbols written out as words, casing and sentence
  punctuation kept. The corpus stores this form as the transcript, so the audio and its text always agree;
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
        "Fri.": "Friday", "Sat.": "Saturday", "Sun.": "Sunday", "a.m.": "a m", "p.m.": "p m",
    },
    "es": {
        "Sr.": "señor", "Sra.": "señora", "Srta.": "señorita", "Dr.": "doctor", "Dra.": "doctora",
        "Prof.": "profesor", "Ud.": "usted", "Uds.": "ustedes", "Vd.": "usted", "Vds.": "ustedes",
        "D.": "don", "Dña.": "doña", "Sto.": "santo", "Sta.": "santa", "etc.": "etcétera", "aprox.": "aproximadamente",
        "pág.": "página", "núm.": "número", "n.º": "número", "EE.UU.": "Estados Unidos", "Av.": "avenida",
        "Avda.": "avenida", "c/": "calle",
    },
}

# Abbreviations that never end a sentence (titles before a name, "No." before a number, "e.g."); any other
# abbreviation keeps a period when the text ends after it or a new sentence starts ("at 5 p.m. Then ..."),
# so that sentence splitting (alm.longform) still sees the boundary.
_MID_SENTENCE = {
    "en": {"Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "St.", "Mt.", "Gen.", "Capt.", "Lt.", "Col.", "Sgt.", "Gov.", "No.",
           "vs.", "e.g.", "i.e."},
    "es": {"Sr.", "Sra.", "Srta.", "Dr.", "Dra.", "Prof.", "D.", "Dña.", "Sto.", "Sta.", "Av.", "Avda.", "pág.",
           "núm.", "n.º", "c/"},
}

_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"),
}

# unit symbol after a number -> (singular, plural)
_UNITS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {"km/h": ("kilometer per hour", "kilometers per hour"), "mph": ("mile per hour", "miles per hour"),
           "km": ("kilometer", "kilometers"), "kg": ("kilogram", "kilograms"), "cm": ("centimeter", "centimeters"),
           "mm": ("millimeter", "millimeters"), "°C": ("degree Celsius", "degrees Celsius"),
           "°F": ("degree Fahrenheit", "degrees Fahrenheit")},
    "es": {"km/h": ("kilómetro por hora", "kilómetros por hora"), "mph": ("milla por hora", "millas por hora"),
           "km": ("kilómetro", "kilómetros"), "kg": ("kilogramo", "kilogramos"), "cm": ("centímetro", "centímetros"),
           "mm": ("milímetro", "milímetros"), "°C": ("grado Celsius", "grados Celsius"),
           "°F": ("grado Fahrenheit", "grados Fahrenheit")},
}

# "$2 million", "$3.5M": the scale comes before the currency's name ("two million dollars")
_SCALES = {
    "en": {"thousand": "thousand", "million": "million", "billion": "billion", "trillion": "trillion",
           "K": "thousand", "M": "million", "B": "billion", "bn": "billion"},
    "es": {"mil": "mil", "millón": "millón de", "millones": "millones de", "mil millones": "mil millones de"},
}
_MINUS = {"en": "minus", "es": "menos"}

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

_DIGITS = {lang: [num2words(d, lang=lang) for d in range(10)] for lang in LANGS}  # "zero" .. "nine"
_PERCENT = {"en": "percent", "es": "por ciento"}
_POINT = {"en": "point", "es": "coma"}
_AND = {"en": "and", "es": "con"}

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "´": "'",
                         "–": "-", "—": " - ", "…": "..."})

_MONEY_PRE = re.compile(r"([$€£])\s?(\d(?:[\d.,]*\d)?)")
# The lookbehinds let a match start only where a run of digits (and separators) starts. That is where the leftmost
# match starts anyway, so they change no result; without them a long digit run with no symbol after it is rescanned
# from every digit (quadratic: 8,000 digits took 10 s).
_MONEY_POST = re.compile(r"(?<![\d.,])([.,]*)(\d(?:[\d.,]*\d)?)\s?([$€£])")
_PERCENT_RE = re.compile(r"(?<!\d)(\d+(?:[.,]\d+)?)\s?%")
_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_ORDINAL_EN = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_ORDINAL_ES = re.compile(r"\b(\d+)\s?([ºª°]|\.º|\.ª)")
_DECIMAL = re.compile(r"\b(\d+)[.,](\d+)\b")
_THOUSANDS_EN = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_THOUSANDS_ES = re.compile(r"\b\d{1,3}(?:\.\d{3})+\b")
_YEAR_EN = re.compile(r"\b(1[1-9]\d\d|20\d\d)s?\b")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b")
_MONTH_DAY_EN = re.compile(rf"\b({'|'.join(_MONTHS['en'])})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b")
_DAY_MONTH_EN = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({'|'.join(_MONTHS['en'])})\b")
# starts only where a run of digits and separators starts, as _MONEY_POST (the separators before the first digit
# are matched, then written back): linear, where a start at every digit of a long run was quadratic
_UNIT_RE = {lang: re.compile(rf"(?<![\d.,])[.,]*(\d(?:[\d.,]*\d)?)\s?"
                             rf"({'|'.join(re.escape(u) for u in units)})(?![\w/])")
            for lang, units in _UNITS.items()}
_SCALE_RE = {lang: re.compile(rf"([$€£])\s?(\d+(?:[.,]\d+)?)\s?({'|'.join(sorted(scales, key=len, reverse=True))})\b")
             for lang, scales in _SCALES.items()}
_NEGATIVE = re.compile(r"(?<![\w.,-])-(?=\d)")
_INTEGER = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_PUNCT = re.compile(r"[^\w\s']|_")


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; supported: {LANGS}")


def _cardinal(n: int | str, lang: str) -> str:
    """``n`` in words; a number too long for num2words (over 10**27 in Spanish, 4,300 digits for ``int``) is read
    digit by digit, as people read card and phone numbers."""
    try:
        return num2words(int(n), lang=lang)
    except (OverflowError, ValueError):
        return " ".join(_DIGITS[lang][int(d)] for d in str(n))


def _ordinal(n: str, lang: str) -> str:
    """``n`` as an ordinal word ("second", "segundo"); too long for one, it is read as a cardinal."""
    try:
        return num2words(int(n), lang=lang, to="ordinal")
    except (OverflowError, ValueError):
        return _cardinal(n, lang)


def _money(symbol: str, amount: str, lang: str) -> str:
    unit, units, cent, cents = _CURRENCY[lang][symbol]
    thousands, decimal = (",", ".") if lang == "en" else (".", ",")
    whole_s, _, frac = amount.replace(thousands, "").partition(decimal)
    whole_s = whole_s or "0"
    one = len(whole_s) < 20 and int(whole_s) == 1
    words = f"{_cardinal(whole_s, lang)} {unit if one else units}"
    cents_s = re.match(r"\d*", frac).group()  # "$1.2.3": cents "2", and ".3" stays as written after them
    c = int(cents_s[:2].ljust(2, "0")) if cents_s else 0
    if c:
        words += f" {_AND[lang]} {_cardinal(c, lang)} {cent if c == 1 else cents}"
    words += frac[len(cents_s):]
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
    digits = " ".join(_DIGITS[lang][int(d)] for d in m.group(2))
    return f"{_cardinal(m.group(1), lang)} {_POINT[lang]} {digits}"


def _year(year: int, lang: str) -> str:
    return num2words(year, lang="en", to="year") if lang == "en" else _cardinal(year, lang)


def _date(year: int | None, month: int, day: int, lang: str) -> str | None:
    """"March fifteenth, twenty twenty-four" / "quince de marzo de dos mil veinticuatro"; ``None`` if invalid."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    name = _MONTHS[lang][month - 1]
    if lang == "en":
        spoken = f"{name} {num2words(day, lang='en', to='ordinal')}"
        return spoken if year is None else f"{spoken}, {_year(year, lang)}"
    spoken = f"{'primero' if day == 1 else _cardinal(day, lang)} de {name}"
    return spoken if year is None else f"{spoken} de {_year(year, lang)}"


def _slash_date(m: re.Match[str], lang: str) -> str:
    a, b, y = int(m.group(1)), int(m.group(2)), m.group(3)
    year = int(y) if len(y) == 4 else (1900 if int(y) >= 50 else 2000) + int(y)
    month, day = (a, b) if lang == "en" else (b, a)  # US order in English, day first in Spanish
    if month > 12 and day <= 12:  # the other order is the only valid one
        month, day = day, month
    return _date(year, month, day, lang) or m.group(0)


def _expand_dates(text: str, lang: str) -> str:
    text = _ISO_DATE.sub(lambda m: _date(int(m.group(1)), int(m.group(2)), int(m.group(3)), lang) or m.group(0),
                         text)
    text = _SLASH_DATE.sub(lambda m: _slash_date(m, lang), text)
    if lang == "en":  # "March 3" is said "March third", "3 March" "the third of March"
        months = _MONTHS["en"]
        text = _MONTH_DAY_EN.sub(lambda m: _date(None, months.index(m.group(1)) + 1, int(m.group(2)), "en")
                                 or m.group(0), text)
        text = _DAY_MONTH_EN.sub(lambda m: f"the {num2words(int(m.group(1)), lang='en', to='ordinal')} of "
                                 f"{m.group(2)}" if 1 <= int(m.group(1)) <= 31 else m.group(0), text)
    return text


def _unit(m: re.Match[str], lang: str) -> str:
    one, many = _UNITS[lang][m.group(2)]
    if m.group(1) == "1":
        return f"{'one' if lang == 'en' else 'un'} {one}"
    return f"{m.group(1)} {many}"


def _scaled_money(m: re.Match[str], lang: str) -> str:
    unit = _CURRENCY[lang][m.group(1)][1]
    return f"{m.group(2)} {_SCALES[lang][m.group(3)]} {unit}"


def _expand_numbers(text: str, lang: str) -> str:
    text = _expand_dates(text, lang)
    text = _SCALE_RE[lang].sub(lambda m: _scaled_money(m, lang), text)
    text = _UNIT_RE[lang].sub(lambda m: m.string[m.start():m.start(1)] + _unit(m, lang), text)
    text = _NEGATIVE.sub(f"{_MINUS[lang]} ", text)
    text = _MONEY_PRE.sub(lambda m: _money(m.group(1), m.group(2), lang), text)
    text = _MONEY_POST.sub(lambda m: m.group(1) + _money(m.group(3), m.group(2), lang), text)
    text = _PERCENT_RE.sub(lambda m: f"{m.group(1)} {_PERCENT[lang]}", text)
    text = _TIME.sub(lambda m: _time(m, lang), text)
    if lang == "en":
        text = _ORDINAL_EN.sub(lambda m: _ordinal(m.group(1), "en"), text)
        text = _THOUSANDS_EN.sub(lambda m: m.group(0).replace(",", ""), text)
        text = _YEAR_EN.sub(lambda m: num2words(int(m.group(1)), lang="en", to="year")
                            + ("s" if m.group(0).endswith("s") else ""), text)
        # "nineteen nineties" reads better than "nineteen ninetys"
        text = re.sub(r"tys\b", "ties", text)
    else:
        text = _ORDINAL_ES.sub(lambda m: _ordinal(m.group(1), "es"), text)
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
        pattern = rf"(?<![\w.]){re.escape(abbr)}(?=\s|$|[,;:])"
        if abbr.endswith(".") and abbr not in _MID_SENTENCE[lang]:  # its period may also end the sentence
            text = re.sub(rf"{pattern}(?=\s*$|\s+[A-ZÁÉÍÓÚÑ¿¡])", f"{full}.", text)
        text = re.sub(pattern, full, text)
    return text


def normalize_text(text: str, lang: str) -> str:
    """Spoken form of ``text``: numbers, money, times, ordinals, percentages, abbreviations and symbols as
    words; unicode quotes and dashes made plain; whitespace collapsed. Casing and punctuation are kept. The result
    is NFC and has no leading or trailing whitespace, so the text tokenizer round-trips it exactly.

    >>> normalize_text("Dr. Smith paid $5.50 at 7:30.", "en")
    'Doctor Smith paid five dollars and fifty cents at seven thirty.'
    """
    _check_lang(lang)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text).translate(_QUOTES)
    text = _expand_abbreviations(text, lang)
    text = _expand_numbers(text, lang)
    for sym, word in _SYMBOLS[lang].items():
        text = text.replace(sym, word)
    text = _SPACES.sub(" ", text).strip()
    # NFC again: a number turned into words can meet a combining mark that followed it ("1\u0301")
    return unicodedata.normalize("NFC", _SPACE_BEFORE_PUNCT.sub(r"\1", text))


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
