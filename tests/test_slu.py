"""SLU commands: every intent and slot, spans that point into the text, a target format that round-trips."""

from collections import Counter

import pytest

from training.data.slu import INTENTS, capacity, format_target, generate_commands, parse_target

REQUIRED = {
    "play_music": {"artist", "genre", "song"}, "stop_music": set(), "set_alarm": {"time"},
    "set_timer": {"duration"}, "get_weather": {"place", "date"}, "lights_on": {"room"}, "lights_off": {"room"},
    "call_contact": {"contact"}, "send_message": {"contact", "message"}, "volume_up": set(),
    "volume_down": set(), "get_time": set(), "add_to_list": {"item", "list"},
}


def test_intents_and_slots_cover_the_required_set():
    for intent, slots in REQUIRED.items():
        assert set(INTENTS[intent]) >= slots


def test_commands_are_distinct_deterministic_and_cover_every_slot():
    cmds = generate_commands(650, seed=3)
    assert cmds == generate_commands(650, seed=3)
    assert cmds != generate_commands(650, seed=4)
    assert len({c.text for c in cmds}) == 650
    seen_slots = {i: set() for i in INTENTS}
    phrasings = {i: set() for i in INTENTS}
    for c in cmds:
        assert c.text[0].isupper() and c.text[-1] in ".?"
        assert set(c.slots) <= set(INTENTS[c.intent])
        for name, start, end in c.spans:
            assert c.text[start:end] == c.slots[name]
        seen_slots[c.intent] |= set(c.slots)
        # a phrasing is the text with slot values blanked out
        skeleton = c.text
        for name, start, end in sorted(c.spans, key=lambda s: -s[1]):
            skeleton = skeleton[:start] + "{" + name + "}" + skeleton[end:]
        phrasings[c.intent].add(skeleton)
    for intent, slots in REQUIRED.items():
        assert seen_slots[intent] == slots, intent
        assert len(phrasings[intent]) >= 8, f"{intent}: only {len(phrasings[intent])} phrasings"


def test_target_round_trip_and_errors():
    for c in generate_commands(500, seed=0):
        assert parse_target(format_target(c.intent, c.slots)) == (c.intent, c.slots)
    assert format_target("get_weather", {"date": "today", "place": "Lima"}) == (
        "get_weather | place = Lima | date = today")
    with pytest.raises(ValueError, match="unknown intent"):
        format_target("fly", {})
    with pytest.raises(ValueError, match="no slot"):
        format_target("get_time", {"room": "kitchen"})
    with pytest.raises(ValueError, match="malformed slot"):
        parse_target("set_alarm | when seven")
    assert parse_target("set_alarm | when seven | time = six", strict=False) == ("set_alarm", {"time": "six"})
    assert parse_target("garbage output", strict=False) == ("", {})


def test_bad_n():
    with pytest.raises(ValueError, match="positive"):
        generate_commands(0, seed=0)


def test_large_requests_stay_balanced_and_repeat_only_exhausted_intents():
    cmds = generate_commands(13 * 600, seed=1)
    by_intent = Counter(c.intent for c in cmds)
    assert set(by_intent.values()) == {600}
    distinct = {i: len({c.text for c in cmds if c.intent == i}) for i in INTENTS}
    for intent, d in distinct.items():
        # an intent repeats sentences only when it has made (nearly) all it can
        assert d == 600 or d >= 0.8 * capacity(intent), (intent, d, capacity(intent))
