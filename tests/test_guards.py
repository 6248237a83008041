"""Hallucination guards: made-up non-speech gives empty results from the shipped model, synthesized speech (clean
and in noise) still gets through, loops are detected, decoded again and, as a last resort, cut."""

from __future__ import annotations

import numpy as np
import pytest

import alm
import alm.api
from alm.generation import FRAMES_PER_TEXT_TOKEN, SLACK_FRAMES
from alm.guards import (
    GuardConfig,
    collapse_repetition,
    find_repetition,
    is_repetitive,
    repetition_score,
    speech_presence,
    unique_trigram_share,
)
from alm.longform import Segment
from codec import AudioInputError

SR = 16000
RNG = np.random.default_rng(0)


def _scale(x: np.ndarray, peak: float = 0.3) -> np.ndarray:
    return (peak * x / np.abs(x).max()).astype(np.float32)


def _pink(n: int) -> np.ndarray:
    spectrum = np.fft.rfft(RNG.standard_normal(n))
    k = np.arange(len(spectrum))
    k[0] = 1
    return np.fft.irfft(spectrum / np.sqrt(k), n)


def _tones(freqs: list[float], seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return _scale(sum(np.sin(2 * np.pi * f * t) for f in freqs))


def _melody() -> np.ndarray:
    """Eight quarter-second notes with three harmonics each, twice: a tune, not a voice."""
    t = np.arange(SR // 4) / SR
    scale = (262, 294, 330, 349, 392, 440, 494, 523)
    notes = [sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3)) for f in scale]
    return _scale(np.tile(np.concatenate(notes), 2))


def _clicks(rate_hz: float, burst: int = 1) -> np.ndarray:
    x = np.zeros(3 * SR)
    for i in range(0, x.size - burst, int(SR / rate_hz)):
        x[i: i + burst] = RNG.standard_normal(burst) * np.exp(-np.arange(burst) / max(1, burst / 6))
    return _scale(x, 0.8)


NON_SPEECH = {
    "digital silence": (np.zeros(3 * SR, np.float32), "silence"),
    "dither at -70 dBFS": ((10 ** (-70 / 20) * RNG.standard_normal(3 * SR)).astype(np.float32), "silence"),
    "white noise": (_scale(RNG.standard_normal(3 * SR)), "stationary sound"),
    "pink noise": (_scale(_pink(3 * SR)), "stationary sound"),
    "brown noise": (_scale(np.cumsum(RNG.standard_normal(3 * SR))), None),
    "440 Hz tone": (_tones([440.0]), "steady tone"),
    "C major chord": (_tones([261.63, 329.63, 392.0]), None),
    "50 Hz hum": (_tones([50.0 * h for h in range(1, 8)]), "steady tone"),
    "melody": (_melody(), "steady tone"),
    "clicks at 5 Hz": (_clicks(5), None),
    "clicks at 50 Hz": (_clicks(50), "clicks"),
    "4 ms bursts at 10 Hz": (_clicks(10, burst=64), "clicks"),
}


@pytest.fixture(scope="module")
def shipped() -> alm.AudioLanguageModel:
    return alm.load()


@pytest.fixture(scope="module")
def voices() -> list[tuple[str, np.ndarray]]:
    """One sentence from each synthesizer installed here, in held-out voices where there are some."""
    from training.data.engines import speaker_available, synthesize
    from training.data.voices import speakers

    out, seen = [], set()
    sentences = (("en", "Please close the window before you leave."), ("es", "Mañana vamos a visitar a mi abuela."))
    for lang, text in sentences:
        for s in speakers(lang):
            if s.engine in seen or not speaker_available(s):
                continue
            seen.add(s.engine)
            out.append((f"{lang}/{s.id}", synthesize(s, text, lang)))
        seen.clear()
    assert out, "no speech synthesizer installed (make setup installs them)"
    return out


# --- speech presence -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NON_SPEECH))
def test_non_speech_is_recognised(name: str) -> None:
    wav, reason = NON_SPEECH[name]
    check = speech_presence(wav)
    assert not check and not check.is_speech, (name, check)
    if reason is not None:
        assert check.reason == reason, (name, check)


def test_speech_passes_clean_and_in_noise(voices: list[tuple[str, np.ndarray]]) -> None:
    for name, wav in voices:
        assert speech_presence(wav), (name, speech_presence(wav))
        noise = RNG.standard_normal(wav.size).astype(np.float32)
        noise *= np.sqrt((wav ** 2).mean() / (noise ** 2).mean() / 10)  # 10 dB SNR
        assert speech_presence(wav + noise), (name, speech_presence(wav + noise))
        padded = np.concatenate([np.zeros(2 * SR, np.float32), wav, np.zeros(2 * SR, np.float32)])
        assert speech_presence(padded), name  # silence around speech does not hide it
    assert speech_presence(voices[0][1], GuardConfig(min_variation_db=60.0)).reason == "stationary sound"


def test_shipped_model_says_nothing_for_non_speech(shipped: alm.AudioLanguageModel) -> None:
    for name, (wav, _) in NON_SPEECH.items():
        assert shipped.transcribe(wav) == alm.TranscriptionResult("", None, []), name
        assert shipped.transcribe(wav, language="es").text == "", name
        assert shipped.understand(wav) == alm.UnderstandingResult("", {}, ""), name
    with pytest.raises(AudioInputError, match="no speech .*stationary sound"):
        shipped.translate_speech(NON_SPEECH["white noise"][0], target_language="en")


def test_guards_can_be_turned_off(shipped: alm.AudioLanguageModel, voices: list[tuple[str, np.ndarray]]) -> None:
    tone = NON_SPEECH["440 Hz tone"][0]
    assert shipped.transcribe(voices[0][1], language="en").text  # speech is transcribed (rightly or not)
    try:
        shipped.guards = GuardConfig(enabled=False)
        assert shipped.prepare("asr", tone, language="en").candidates  # the tone reaches the model
    finally:
        shipped.guards = GuardConfig()
    assert not shipped.prepare("asr", tone, language="en").candidates


# --- repetition ----------------------------------------------------------------------------------------------
def test_repetition_detector() -> None:
    words = ["so", "thank", "you", "thank", "you", "thank", "you"]
    assert find_repetition(words) == alm.guards.Repetition(start=1, n=2, count=3)
    assert find_repetition(["a", "b", "c", "d", "e", "f"]) is None
    assert find_repetition(["no", "no", "no"]) is None  # three single words are speech
    assert find_repetition(["la", "la", "la", "la"]) == alm.guards.Repetition(0, 1, 4)
    assert find_repetition([5, 6, 7, 5, 6, 7, 5, 6, 7, 1]) == alm.guards.Repetition(0, 3, 3)  # ids work too
    assert is_repetitive("Thank you. Thank you. Thank you.")
    assert is_repetitive("the cat sat on the mat the cat sat on the mat the cat sat on the mat")
    assert not is_repetitive("the cat sat on the mat and the dog sat on the rug")
    assert not is_repetitive("")
    # a loop that is not back to back: few distinct 3-grams in a long text
    loop = "we go to the park then we go to the shop then " * 3
    assert find_repetition(loop.split()) is None and unique_trigram_share(loop.split()) < 0.4
    assert is_repetitive(loop)
    assert unique_trigram_share(["a", "b", "c", "d"]) == 1.0
    assert repetition_score("hello there") == 0.0
    assert repetition_score("thank you thank you thank you") == pytest.approx(4 / 6)
    assert collapse_repetition("well Thank you thank you thank you thank you bye") == "well Thank you bye"
    assert collapse_repetition("la la la la la") == "la"
    assert collapse_repetition("nothing to cut here") == "nothing to cut here"


def _text_ids(model: alm.AudioLanguageModel, text: str) -> list[int]:
    v = model.vocab
    return [v.token_id("<text>"), *v.encode_text(text), v.token_id("</text>"), v.eos_id]


def test_loops_are_decoded_again(shipped: alm.AudioLanguageModel, voices: list[tuple[str, np.ndarray]],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = alm.api.generate_for_task
    calls: list[tuple[str, dict]] = []

    def looping_greedy(model, vocab, task, prompt, *, strategy="greedy", **kw):  # noqa: ANN001, ANN202
        calls.append((strategy, kw))
        if strategy == "greedy":
            return _text_ids(shipped, "thank you thank you thank you thank you")
        return real(model, vocab, task, prompt, strategy=strategy, **kw)

    monkeypatch.setattr(alm.api, "generate_for_task", looping_greedy)
    r = shipped.transcribe(voices[0][1], language="en")
    assert [c[0] for c in calls][:2] == ["greedy", "beam"] and calls[1][1]["no_repeat_ngram_size"] == 3
    assert not is_repetitive(r.text) and r.text == shipped.vocab.decode_text(r.tokens).strip()
    assert [s.text for s in r.segments] == [r.text]

    # every decode loops: the least repetitive output is kept, its loop cut to one copy
    def always_loops(model, vocab, task, prompt, *, strategy="greedy", **kw):  # noqa: ANN001, ANN202
        calls.append((strategy, kw))
        text = "hello hello hello hello" if strategy == "greedy" else "good day good day good day"
        return _text_ids(shipped, text)

    calls.clear()
    monkeypatch.setattr(alm.api, "generate_for_task", always_loops)
    r = shipped.transcribe(voices[0][1], language="en")
    assert len(calls) == 1 + len(alm.guards.FALLBACKS)
    assert r.text == "good day"  # 2 of 6 words loop less than 3 of 4
    # with the guards off the loop is returned as decoded
    shipped.guards = GuardConfig(enabled=False)
    try:
        assert shipped.transcribe(voices[0][1], language="en").text == "hello hello hello hello"
    finally:
        shipped.guards = GuardConfig()


def test_generated_audio_is_bounded_by_the_text(shipped: alm.AudioLanguageModel) -> None:
    text = "Good morning."
    r = shipped.synthesize(text, language="en", strategy="sample", temperature=1.3, seed=2)
    n_text = len(shipped.vocab.encode_text(text))
    frames = len(r.audio) // 320
    assert 0 < frames <= FRAMES_PER_TEXT_TOKEN * n_text + SLACK_FRAMES
    assert r.segments == (Segment(0.0, len(r.audio) / SR, text, "en"),)
