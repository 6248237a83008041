"""English spoken commands with intents and slots, for spoken language understanding (SLU).

Every command is rendered from one of many phrasings per intent; slot values are filled from word lists and
recorded as character spans of the final text, so ``text[start:end] == slots[name]`` always holds. The target
the model learns to emit is a flat string (:func:`format_target`), parsed back with :func:`parse_target`::

    set_alarm | time = seven thirty in the morning

The phrasings and word lists are hand-written: no library ships an offline, license-clean SLU grammar.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from string import Formatter

INTENTS: dict[str, tuple[str, ...]] = {
    "play_music": ("artist", "genre", "song"),
    "stop_music": (),
    "set_alarm": ("time",),
    "set_timer": ("duration",),
    "get_weather": ("place", "date"),
    "lights_on": ("room",),
    "lights_off": ("room",),
    "call_contact": ("contact",),
    "send_message": ("contact", "message"),
    "volume_up": (),
    "volume_down": (),
    "get_time": (),
    "add_to_list": ("item", "list"),
}

_PHRASINGS: dict[str, tuple[str, ...]] = {
    "play_music": (
        "play some {genre}", "play {song} by {artist}", "put on some {genre} music", "play {artist}",
        "I want to hear {song}", "can you play {song}", "play something by {artist}", "play the song {song}",
        "let's listen to some {genre}", "play {genre} by {artist}", "could you put on {artist} please",
        "start playing {song}", "I'd like to listen to {artist}", "play me some {genre} please",
        "put on {song} by {artist}", "play my {genre} playlist",
    ),
    "stop_music": (
        "stop the music", "stop playing", "turn the music off", "please stop the song", "pause the music",
        "that's enough music", "stop this song", "silence the music please", "music off", "can you stop the music",
    ),
    "set_alarm": (
        "set an alarm for {time}", "wake me up at {time}", "set my alarm to {time}", "I need an alarm at {time}",
        "please wake me at {time}", "create an alarm for {time}", "alarm for {time} please",
        "can you set an alarm at {time}", "make an alarm for {time}", "get me up at {time}",
    ),
    "set_timer": (
        "set a timer for {duration}", "start a timer for {duration}", "timer for {duration}",
        "count down {duration}", "remind me in {duration}", "set a {duration} timer",
        "can you time {duration}", "please start a {duration} countdown", "give me a timer of {duration}",
    ),
    "get_weather": (
        "what's the weather in {place} {date}", "will it rain in {place} {date}", "how's the weather {date}",
        "what is the weather like in {place}", "do I need an umbrella {date}", "is it going to be sunny {date}",
        "weather forecast for {place}", "how cold will it be in {place} {date}", "tell me the weather {date}",
        "is it hot in {place}", "what's the forecast for {place} {date}", "will it snow {date}",
    ),
    "lights_on": (
        "turn on the lights in the {room}", "switch on the {room} lights", "lights on in the {room}",
        "turn the {room} light on", "please light up the {room}", "turn on the lights", "lights on",
        "can you switch the lights on in the {room}", "I need light in the {room}", "brighten the {room}",
    ),
    "lights_off": (
        "turn off the lights in the {room}", "switch off the {room} lights", "lights off in the {room}",
        "turn the {room} light off", "please kill the lights in the {room}", "turn off the lights",
        "lights off", "can you switch the lights off in the {room}", "darken the {room}",
        "no more light in the {room}",
    ),
    "call_contact": (
        "call {contact}", "phone {contact}", "give {contact} a call", "ring {contact}", "dial {contact}",
        "please call {contact}", "I want to talk to {contact}", "can you call {contact} for me",
        "get {contact} on the phone", "make a call to {contact}",
    ),
    "send_message": (
        "send a message to {contact} saying {message}", "text {contact} that {message}",
        "tell {contact} {message}", "message {contact} {message}", "send {contact} a text saying {message}",
        "write to {contact} that {message}", "let {contact} know that {message}",
        "can you text {contact} {message}",
    ),
    "volume_up": (
        "turn it up", "volume up", "louder please", "increase the volume", "make it louder",
        "turn the volume up", "raise the volume", "can you turn it up a bit", "I can't hear it", "pump up the volume",
    ),
    "volume_down": (
        "turn it down", "volume down", "quieter please", "decrease the volume", "make it quieter",
        "turn the volume down", "lower the volume", "can you turn it down a bit", "it's too loud", "softer please",
    ),
    "get_time": (
        "what time is it", "what's the time", "tell me the time", "do you know what time it is",
        "what time is it now", "can you tell me the time", "how late is it", "give me the time please",
        "what's the time right now", "the time please",
    ),
    "add_to_list": (
        "add {item} to my {list}", "put {item} on the {list}", "add {item} to the {list}", "put {item} on my {list}",
        "please add {item} to my {list}", "I need {item} on my {list}", "can you add {item} to the {list}",
        "don't let me forget {item} on the {list}", "write {item} on my {list}", "include {item} in my {list}",
    ),
}

_QUESTION_INTENTS_START = ("what", "how", "will", "is", "do", "can", "could")

_VALUES: dict[str, tuple[str, ...]] = {
    "artist": (
        "Adele", "the Beatles", "Shakira", "Bob Marley", "Miles Davis", "Taylor Swift", "Elvis Presley",
        "Madonna", "Queen", "Ed Sheeran", "Carlos Santana", "Nina Simone", "Johnny Cash", "Bruno Mars",
        "Frank Sinatra", "Louis Armstrong", "Dolly Parton", "Stevie Wonder", "Norah Jones", "Celia Cruz",
        "Ella Fitzgerald", "David Bowie", "the Rolling Stones", "Aretha Franklin", "Billie Holiday",
    ),
    "genre": (
        "jazz", "rock", "classical", "pop", "blues", "country", "reggae", "salsa", "hip hop", "folk", "soul",
        "heavy metal", "dance", "piano", "ambient", "opera", "funk", "gospel", "punk", "disco",
    ),
    "song": (
        "Yellow Submarine", "Let It Be", "Hey Jude", "Blue Moon", "Summer Rain", "Morning Light", "Stand By Me",
        "Purple Rain", "Imagine", "Yesterday", "Hotel California", "Fly Me to the Moon", "Sweet Home",
        "Blackbird", "Dancing Queen", "Smooth", "Hallelujah", "Wonderwall", "Respect", "Moon River",
        "Happy Days", "Golden Road", "Silver Lining", "Ocean Eyes",
    ),
    "time": tuple(
        f"{h}{m}{p}"
        for h in ("five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
        for m in ("", " fifteen", " thirty", " forty five")
        for p in ("", " in the morning", " a m", " p m", " tonight")
    ) + ("noon", "midnight", "half past six", "a quarter to eight"),
    "duration": (
        "five minutes", "ten minutes", "fifteen minutes", "twenty minutes", "thirty minutes", "one hour",
        "two hours", "an hour and a half", "forty five seconds", "thirty seconds", "three minutes",
        "twelve minutes", "half an hour", "ninety seconds", "seven minutes", "two and a half hours",
        "one minute", "eight minutes", "twenty five minutes", "four hours",
    ),
    "place": (
        "London", "Madrid", "Paris", "New York", "Tokyo", "Berlin", "Chicago", "Mexico City", "Boston", "Rome",
        "Seattle", "Barcelona", "Dublin", "Lisbon", "Toronto", "Sydney", "Miami", "Denver", "Lima", "Bogota",
        "Buenos Aires", "Amsterdam", "Vienna", "Cairo",
    ),
    "date": (
        "today", "tomorrow", "tonight", "this weekend", "on Monday", "on Tuesday", "on Wednesday", "on Thursday",
        "on Friday", "on Saturday", "on Sunday", "next week", "this afternoon", "tomorrow morning",
        "the day after tomorrow", "this evening",
    ),
    "room": (
        "kitchen", "bedroom", "living room", "bathroom", "garage", "office", "hallway", "dining room", "basement",
        "attic", "kids room", "guest room", "laundry room", "garden",
    ),
    "contact": (
        "Mom", "Dad", "Maria", "John", "Carlos", "Sarah", "David", "Laura", "Michael", "Ana", "Peter", "Emma",
        "Grandma", "my brother", "my sister", "Doctor Lee", "James", "Sofia", "Olivia", "Daniel", "the office",
        "Lucy", "Robert", "Isabel",
    ),
    "message": (
        "I will be late", "I'm on my way", "dinner is ready", "call me back", "see you at the station",
        "happy birthday", "the meeting is cancelled", "I love you", "don't forget the keys",
        "I'll be home at six", "can you pick me up", "thanks for the flowers", "the train is delayed",
        "let's meet tomorrow", "I'm running ten minutes behind", "bring some bread",
    ),
    "item": (
        "milk", "eggs", "bread", "apples", "coffee", "rice", "butter", "cheese", "bananas", "tomatoes",
        "orange juice", "chicken", "pasta", "toothpaste", "soap", "batteries", "olive oil", "onions", "sugar",
        "tea", "yogurt", "paper towels", "carrots", "dog food", "call the plumber", "pay the bills",
    ),
    "list": (
        "shopping list", "grocery list", "to do list", "weekend list", "packing list", "wish list",
        "party list", "chores list",
    ),
}


@dataclass(frozen=True)
class SluCommand:
    """A spoken command: ``text`` with its ``intent``, slot values, and character ``spans``
    ``(slot, start, end)`` such that ``text[start:end] == slots[slot]``."""

    text: str
    intent: str
    slots: dict[str, str] = field(default_factory=dict)
    spans: tuple[tuple[str, int, int], ...] = ()


def _render(phrasing: str, values: dict[str, str], question: bool) -> SluCommand | None:
    text: str = ""
    spans: list[tuple[str, int, int]] = []
    for literal, name, _, _ in Formatter().parse(phrasing):
        text += literal
        if name is not None:
            spans.append((name, len(text), len(text) + len(values[name])))
            text += values[name]
    text = text[0].upper() + text[1:] + ("?" if question else ".")
    slots = {name: text[s:e] for name, s, e in spans}
    if len(slots) != len(spans):  # the same slot twice in one phrasing is not a valid command
        return None
    return SluCommand(text=text, intent="", slots=slots, spans=tuple(spans))


# Wake words and politeness around a phrasing multiply the ways of saying each command.
_PREFIXES = ("", "", "", "hey computer, ", "okay, ")
_SUFFIXES = ("", "", "", ", please", " now")
_MAX_DRAWS = 60  # draws per command before an intent counts as exhausted and may repeat a sentence


def _phrasing_count(phrasing: str) -> int:
    count = 1
    for name in {f for _, f, _, _ in Formatter().parse(phrasing) if f}:
        count *= len(_VALUES[name])
    return count


def capacity(intent: str | None = None) -> int:
    """How many distinct commands the phrasings and word lists make (for one intent, or all)."""
    intents = [intent] if intent else list(_PHRASINGS)
    affixes = len(set(_PREFIXES)) * len(set(_SUFFIXES))
    return sum(_phrasing_count(p) * affixes for i in intents for p in _PHRASINGS[i])


def _draw(intent: str, rng: random.Random) -> SluCommand | None:
    phrasing = rng.choice(_PHRASINGS[intent])
    prefix, suffix = rng.choice(_PREFIXES), rng.choice(_SUFFIXES)
    if "please" in phrasing and suffix == ", please":
        suffix = ""
    names = [f for _, f, _, _ in Formatter().parse(phrasing) if f]
    values = {name: rng.choice(_VALUES[name]) for name in names}
    question = phrasing.split()[0].lower() in _QUESTION_INTENTS_START
    cmd = _render(prefix + phrasing + suffix, values, question)
    return None if cmd is None else SluCommand(text=cmd.text, intent=intent, slots=cmd.slots, spans=cmd.spans)


def generate_commands(n: int, seed: int) -> list[SluCommand]:
    """``n`` commands, intents in rotation (every intent equally often), deterministic in ``seed``.

    Texts are distinct while an intent still has unused sentences; an intent with few ways of saying it (``get_time``
    has a few hundred) then repeats its sentences, as people do, so large corpora keep the intents balanced.

    Raises:
        ValueError: if ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    rng = random.Random(seed)
    intents = list(INTENTS)
    seen: set[str] = set()
    out: list[SluCommand] = []
    for i in range(n):
        intent = intents[i % len(intents)]
        cmd = None
        for _ in range(_MAX_DRAWS):
            cmd = _draw(intent, rng)
            if cmd is not None and cmd.text not in seen:
                break
        assert cmd is not None
        seen.add(cmd.text)
        out.append(cmd)
    return out


def format_target(intent: str, slots: dict[str, str]) -> str:
    """The SLU target string: ``intent | slot = value | ...`` with slots in the intent's declared order.

    >>> format_target("get_weather", {"date": "tomorrow", "place": "Madrid"})
    'get_weather | place = Madrid | date = tomorrow'
    """
    if intent not in INTENTS:
        raise ValueError(f"unknown intent {intent!r}; known: {sorted(INTENTS)}")
    unknown = set(slots) - set(INTENTS[intent])
    if unknown:
        raise ValueError(f"intent {intent!r} has no slot(s) {sorted(unknown)}; it has {INTENTS[intent]}")
    parts = [intent] + [f"{k} = {slots[k]}" for k in INTENTS[intent] if k in slots]
    return " | ".join(parts)


_SLOT = re.compile(r"^\s*(\w+)\s*=\s*(.*?)\s*$")


def parse_target(target: str, strict: bool = True) -> tuple[str, dict[str, str]]:
    """Inverse of :func:`format_target`.

    With ``strict=False`` (for scoring model output) malformed parts are dropped instead of raising, and an
    unparseable string gives ``("", {})``.
    """
    parts = [p.strip() for p in target.split("|")]
    intent, slots = parts[0], {}
    if intent not in INTENTS:
        if strict:
            raise ValueError(f"unknown intent {intent!r} in SLU target {target!r}")
        return "", {}
    for part in parts[1:]:
        m = _SLOT.match(part)
        if not m or m.group(1) not in INTENTS[intent]:
            if strict:
                raise ValueError(f"malformed slot {part!r} in SLU target {target!r}")
            continue
        slots[m.group(1)] = m.group(2)
    return intent, slots
