"""Long inputs: VAD spans with the right timestamps, streamed reading equal to whole-file reading, long audio through
the shipped model in chunks with per-segment times, long text split into sentences, and the text normalizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import alm
import alm.api
from alm.api import SpeechResult, TranscriptionResult, UnderstandingResult, set_watermark_hook
from alm.longform import (
    LongformConfig,
    Segment,
    iter_chunks,
    join_audio,
    max_chunk_seconds,
    read_blocks,
    source_duration,
    split_sentences,
)
from alm.textnorm import normalize_text
from alm.vad import SpeechSegmenter, VadConfig, speech_spans
from codec import AudioInputError, load_audio

SR = 16000
SENTENCES = ["The garden needs water every morning.", "My brother bought a small red car.",
             "Please close the window before you leave.", "We watched a long movie last night."]


def _edges(wav: np.ndarray) -> tuple[int, int]:
    """First and last sample above 1% of the peak: where a synthesized utterance really starts and ends."""
    loud = np.nonzero(np.abs(wav) > 0.01 * np.abs(wav).max())[0]
    return int(loud[0]), int(loud[-1])


@pytest.fixture(scope="module")
def utterances() -> list[np.ndarray]:
    """The four sentences in four held-out voices."""
    from training.data.engines import speaker_available, synthesize
    from training.data.voices import speakers

    voices = [s for s in speakers("en", split="test") if speaker_available(s)]
    assert voices, "no English test voice installed (make setup installs them)"
    return [synthesize(voices[i % len(voices)], text, "en") for i, text in enumerate(SENTENCES)]


def _long(utterances: list[np.ndarray], gaps: list[float], extra: dict[int, np.ndarray] | None = None
          ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Utterances after gaps of silence (``extra[i]`` in the middle of gap i); returns audio and true times."""
    rng = np.random.default_rng(1)
    parts, truth, pos = [], [], 0
    for i, (wav, gap) in enumerate(zip(utterances, gaps)):
        silence = np.zeros(int(gap * SR), np.float32)
        if extra and i in extra:
            mid = (silence.size - extra[i].size) // 2
            silence[mid: mid + extra[i].size] = extra[i]
        parts += [silence, wav]
        a, b = _edges(wav)
        truth.append(((pos + silence.size + a) / SR, (pos + silence.size + b) / SR))
        pos += silence.size + wav.size
    parts.append(np.zeros(SR, np.float32))
    audio = np.concatenate(parts)
    return audio + (1e-4 * rng.standard_normal(audio.size)).astype(np.float32), truth


# --- VAD -----------------------------------------------------------------------------------------------------
def test_vad_spans_have_the_right_times(utterances: list[np.ndarray]) -> None:
    audio, truth = _long(utterances, [0.7, 1.2, 1.7, 2.2])
    spans = list(speech_spans(audio))
    assert len(spans) == len(truth)
    for span, (a, b) in zip(spans, truth):
        start, end = span.seconds
        assert abs(start - a) < 0.1 and abs(end - b) < 0.1, (span.seconds, (a, b))
    # blocks of any size give the same spans as one array
    blocks = [audio[i: i + 7777] for i in range(0, audio.size, 7777)]
    assert list(speech_spans(iter(blocks))) == spans
    # a span longer than max_span_s is cut (at a quiet frame) into pieces no longer than that
    short = list(speech_spans(audio, VadConfig(max_span_s=1.2)))
    assert len(short) > len(spans) and all(s.end - s.start <= 1.2 * SR for s in short)
    for (a, b) in truth:  # every utterance is still covered from its start to its end
        inside = [s for s in short if s.end / SR > a and s.start / SR < b]
        assert inside[0].start / SR < a + 0.1 and inside[-1].end / SR > b - 0.1


def test_vad_drops_clicks_and_silence() -> None:
    x = np.zeros(10 * SR, np.float32)
    x[::SR] = 0.9  # one click a second
    assert list(speech_spans(x)) == []
    assert list(speech_spans(np.zeros(5 * SR, np.float32))) == []
    with pytest.raises(ValueError, match="aggressiveness"):
        VadConfig(aggressiveness=5)
    seg = SpeechSegmenter()
    assert seg.feed(np.zeros(100, np.float32)) == [] and seg.position == 100 and seg.open_start is None


# --- reading and chunking ------------------------------------------------------------------------------------
def test_streamed_reading_equals_whole_reading(tmp_path: Path, utterances: list[np.ndarray]) -> None:
    audio, _ = _long(utterances, [0.5, 0.5, 0.5, 0.5])
    stereo_44k = load_audio(audio, 44100, source_rate=SR).numpy()
    stereo_44k = np.stack([stereo_44k, 0.5 * stereo_44k], axis=1)  # [T, 2]
    path = tmp_path / "long.flac"
    sf.write(path, stereo_44k, 44100)
    whole = load_audio(path).numpy()
    streamed = np.concatenate(list(read_blocks(path, block_s=1.3)))
    assert abs(streamed.size - whole.size) <= 2
    n = min(streamed.size, whole.size)
    assert np.abs(streamed[:n] - whole[:n]).max() < 1e-3
    assert np.concatenate(list(read_blocks(path.read_bytes(), block_s=2.0))).size == streamed.size
    assert source_duration(path) == pytest.approx(whole.size / SR, abs=1e-3)
    assert source_duration(audio) == pytest.approx(audio.size / SR)
    assert source_duration(audio[::2].copy(), 8000) == pytest.approx(audio.size / SR, abs=1e-3)
    with pytest.raises(AudioInputError, match="no such file"):
        list(read_blocks(tmp_path / "missing.wav"))


def test_chunks_carry_span_times_and_padded_audio(utterances: list[np.ndarray]) -> None:
    audio, truth = _long(utterances, [1.0, 1.0, 1.0, 1.0])
    vad = VadConfig(pad_s=0.2)
    chunks = list(iter_chunks(iter([audio[i: i + 5000] for i in range(0, audio.size, 5000)]), vad))
    assert len(chunks) == len(truth)
    for chunk, (a, b) in zip(chunks, truth):
        assert abs(chunk.start - a) < 0.1 and abs(chunk.end - b) < 0.1
        expected = audio[round(chunk.start * SR) - int(0.2 * SR): round(chunk.end * SR) + int(0.2 * SR)]
        np.testing.assert_array_equal(chunk.audio, expected)  # the span and its pads, sample-exact
    audio_out, times = join_audio([np.ones(SR, np.float32), np.ones(SR // 2, np.float32)], 0.25)
    assert audio_out.size == SR + SR // 4 + SR // 2 and times == [(0.0, 1.0), (1.25, 1.75)]


# --- through the shipped model -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> alm.AudioLanguageModel:
    return alm.load()


def test_chunk_limits_fit_the_context(shipped: alm.AudioLanguageModel) -> None:
    asr, s2st = max_chunk_seconds(shipped, "asr"), max_chunk_seconds(shipped, "s2st")
    assert asr == 30.0 and 1 <= s2st < asr  # ASR is capped at 30 s; S2ST writes audio and fits less
    assert max_chunk_seconds(shipped, "asr", limit=300) > 30
    # a translation prompt of that length in the worst case (no repeated unit to collapse) and its output budget
    # fit the context; 0.2 s more would not
    voice = torch.zeros(shipped.num_codebooks, shipped._voice_frames(), dtype=torch.long)
    context = shipped.model.config.max_position_embeddings
    for seconds, fits in ((s2st, True), (s2st + 0.2, False)):
        units = [i % shipped.vocab.num_units for i in range(int(np.ceil(seconds * 50)))]
        prompt = alm.s2st_prompt(shipped.vocab, "en", "es", units, voice, shipped._voice_frames())
        budget = alm.generation.max_new_tokens_for("s2st", len(units), shipped.num_codebooks)
        assert (len(prompt) + budget <= context) == fits, (seconds, len(prompt), budget)


def test_long_audio_is_transcribed_in_segments(shipped: alm.AudioLanguageModel, utterances: list[np.ndarray],
                                               tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    t = np.arange(SR) / SR
    distractors = {1: (0.3 * rng.standard_normal(SR)).astype(np.float32),  # a second of noise between speech
                   3: (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)}  # and a second of a tone
    audio, truth = _long(utterances * 2, [6.0, 4.0, 2.0, 4.0, 2.0, 1.0, 1.0, 1.0], distractors)
    assert audio.size / SR > 25  # longer than one chunk: the long-form path
    path = tmp_path / "long.wav"
    sf.write(path, audio, SR)
    r = shipped.transcribe(path, language="en")
    assert isinstance(r, TranscriptionResult) and r.language == "en"
    assert len(r.segments) == len(truth)  # the noise and the tone made no segment
    for seg, (a, b) in zip(r.segments, truth):
        assert abs(seg.start - a) < 0.1 and abs(seg.end - b) < 0.1 and seg.text and seg.language == "en"
    assert r.text == " ".join(s.text for s in r.segments)
    assert r.text == shipped.vocab.decode_text(r.tokens).strip()
    # the same audio as an array at another rate gives the same segments
    same = shipped.transcribe(load_audio(audio, 8000, source_rate=SR).numpy(), language="en", sample_rate=8000)
    assert len(same.segments) == len(r.segments)
    for a, b in zip(same.segments, r.segments):
        assert abs(a.start - b.start) <= 0.06 and abs(a.end - b.end) <= 0.06
    u = shipped.understand(path)
    assert isinstance(u, UnderstandingResult) and len(u.segments) <= len(truth)
    assert (u.intent, u.slots) == alm.api.parse_slu(u.text)
    with pytest.raises(ValueError, match="supported: en, es"):
        shipped.transcribe(path, language="fr")


def test_previous_chunk_text_is_the_next_chunks_context(shipped: alm.AudioLanguageModel,
                                                         utterances: list[np.ndarray],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Long-form ASR gives each chunk the previous chunk's transcript as context when the model has the slot."""
    audio, truth = _long(utterances, [1.0, 1.0, 1.0, 1.0])
    real_prepare, contexts = shipped.prepare, []

    def spy(task, source, **options):
        contexts.append(options.get("context"))
        return real_prepare(task, source, **options)

    monkeypatch.setattr(shipped, "prepare", spy)
    monkeypatch.setattr(shipped, "longform", LongformConfig(max_chunk_s=3.5))  # one chunk per utterance
    monkeypatch.setattr(shipped.model.config, "asr_context", True)
    r = shipped.transcribe(audio, language="en")
    assert len(r.segments) == len(truth) and contexts[0] is None
    assert contexts[1:] == [s.text for s in r.segments[:-1]]
    prompt = shipped.prepare("asr", utterances[0], language="en", context="the garden").candidates["en"]
    assert prompt[2] == shipped.vocab.token_id("<text>") and "the garden" in shipped.vocab.decode_text(prompt)
    contexts.clear()
    monkeypatch.setattr(shipped, "longform", LongformConfig(max_chunk_s=3.5, condition_on_previous_text=False))
    shipped.transcribe(audio, language="en")
    assert set(contexts) == {None}
    monkeypatch.setattr(shipped.model.config, "asr_context", False)  # a model without the slot refuses a context
    with pytest.raises(ValueError, match="not trained with ASR context"):
        shipped.transcribe(utterances[0], language="en", context="the garden")


def test_short_audio_has_one_segment(shipped: alm.AudioLanguageModel, utterances: list[np.ndarray]) -> None:
    r = shipped.transcribe(utterances[0], language="en")
    assert r.segments == (Segment(0.0, len(utterances[0]) / SR, r.text, "en"),)


def test_long_translation_is_marked_once(shipped: alm.AudioLanguageModel, utterances: list[np.ndarray]) -> None:
    audio, truth = _long(utterances, [1.0, 1.0, 1.0, 1.0])
    calls: list[int] = []
    previous = set_watermark_hook(lambda a, sr: calls.append(len(a)) or a)
    try:
        shipped.longform = LongformConfig(max_chunk_s=5.0)  # make this 14 s input long
        r = shipped.translate_speech(audio, target_language="es", source_language="en", max_new_tokens=60)
    finally:
        shipped.longform = LongformConfig()
        set_watermark_hook(previous)
    assert isinstance(r, SpeechResult) and calls == [len(r.audio)]  # the joined audio, marked once
    assert len(r.segments) == len(truth)
    ends = [0.0] + [s.end for s in r.segments]
    assert all(s.start >= e and s.end > s.start for s, e in zip(r.segments, ends))
    assert r.segments[-1].end == pytest.approx(r.duration)


def test_pipelines_take_long_inputs(shipped: alm.AudioLanguageModel, utterances: list[np.ndarray],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The HF pipelines run long audio long-form and long text sentence by sentence, as the Python API does."""
    from transformers import pipeline

    audio, truth = _long(utterances, [1.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr(shipped, "longform", LongformConfig(max_chunk_s=3.5))  # one chunk per utterance
    asr = pipeline("automatic-speech-recognition", model=shipped, device="cpu")
    out = asr(audio, language="en", return_timestamps=True)
    expected = shipped.transcribe(audio, language="en")
    assert len(expected.segments) == len(truth)
    assert out["text"] == expected.text
    assert out["chunks"] == [{"text": s.text, "timestamp": (round(s.start, 3), round(s.end, 3))}
                             for s in expected.segments]
    assert set(asr(utterances[0], language="en")) == {"text"}  # short audio: the one-chunk path, no chunks
    with pytest.raises(ValueError, match="segment-level"):
        asr(audio, return_timestamps="word")

    tts = pipeline("text-to-speech", model=shipped, device="cpu")
    text = "Good morning. See you soon."
    spoken = tts(text, max_new_tokens=30, seed=0)
    direct = shipped.synthesize(text, max_new_tokens=30, seed=0)
    assert len(direct.segments) == 2 and np.array_equal(spoken["audio"], direct.audio)


# --- long text -----------------------------------------------------------------------------------------------
def test_split_sentences() -> None:
    assert split_sentences("Dr. Smith paid $100. He left at 5 p.m. Then it rained!", "en") == [
        "Doctor Smith paid one hundred dollars.", "He left at five p m.", "Then it rained!"]
    assert split_sentences("El Sr. García llegó a las 5. ¿Dónde está el Dr. López? No lo sé.", "es") == [
        "El señor García llegó a las cinco.", "¿Dónde está el doctor López?", "No lo sé."]
    long = "one two three four five six, seven eight nine ten; eleven twelve thirteen fourteen"
    assert split_sentences(long, "en", max_words=6) == [
        "one two three four five six,", "seven eight nine ten;", "eleven twelve thirteen fourteen"]
    assert split_sentences(" ".join(["word"] * 13), "en", max_words=5) == [
        " ".join(["word"] * 5)] * 2 + [" ".join(["word"] * 3)]
    assert split_sentences("Hello. -- . Bye.", "en") == ["Hello.", "Bye."]  # no piece without a word
    with pytest.raises(ValueError, match="max_words"):
        split_sentences("hi", "en", max_words=0)


def test_long_text_is_spoken_sentence_by_sentence(shipped: alm.AudioLanguageModel,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    previous = set_watermark_hook(lambda a, sr: calls.append(len(a)) or a)
    try:
        r = shipped.synthesize("Good morning. How are you today? See you at 5 p.m.", language="en",
                               max_new_tokens=44, seed=0)
    finally:
        set_watermark_hook(previous)
    assert [s.text for s in r.segments] == ["Good morning.", "How are you today?", "See you at five p m."]
    assert calls == [len(r.audio)]
    for a, b in zip(r.segments, r.segments[1:]):
        assert b.start == pytest.approx(a.end + shipped.longform.pause_s)
        assert not r.audio[int(a.end * SR) + 1: int(b.start * SR) - 1].any()  # the pause is silence
    assert r.segments[-1].end == pytest.approx(r.duration)

    # one voice for every sentence: the given voice, or (none given) the first sentence's own voice
    voice_frames = shipped._voice_frames()
    k = shipped.num_codebooks
    fake = torch.arange(2 * voice_frames * k) % 1024  # 2 voice prompts' worth of frames
    v = shipped.vocab
    fake_ids = [v.token_id("<audio>"), *v.codes_to_ids(fake.reshape(-1, k).T), v.token_id("</audio>"), v.eos_id]
    seen: list[torch.Tensor | None] = []
    real_job = shipped._tts_job

    def spy(spoken, language, voice_codes):  # noqa: ANN001, ANN202
        seen.append(voice_codes)
        return real_job(spoken, language, voice_codes)

    monkeypatch.setattr(shipped, "_tts_job", spy)
    monkeypatch.setattr(shipped, "run", lambda job, options=None: ("en", fake_ids))
    shipped.synthesize("One. Two. Three.", language="en")
    assert seen[0] is None and all(torch.equal(c, seen[1]) for c in seen[1:]) and seen[1].shape == (k, voice_frames)
    torch.testing.assert_close(seen[1], fake.reshape(-1, k).T[:, :voice_frames])
    seen.clear()
    shipped.synthesize("One. Two.", language="en", voice=np.sin(np.arange(3 * SR) / 8).astype(np.float32) * 0.3)
    assert len(seen) == 2 and seen[0] is not None and torch.equal(seen[0], seen[1])


# --- text normalization --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "lang", "spoken"), [
    ("Dr. Smith paid $100.", "en", "Doctor Smith paid one hundred dollars."),
    ("On January 5, 2024 we met.", "en", "On January fifth, twenty twenty-four we met."),
    ("Born 12/25/1990.", "en", "Born December twenty-fifth, nineteen ninety."),
    ("Due 2024-03-15.", "en", "Due March fifteenth, twenty twenty-four."),
    ("On 5 May 2021 we left.", "en", "On the fifth of May twenty twenty-one we left."),
    ("He owes $2 million, not $3.5M.", "en", "He owes two million dollars, not three point five million dollars."),
    ("It is 3 km away and -5 °C.", "en", "It is three kilometers away and minus five degrees Celsius."),
    ("Call at 5 p.m. Then leave, etc.", "en", "Call at five p m. Then leave, et cetera."),
    ("El Dr. García pagó 100 €.", "es", "El doctor García pagó cien euros."),
    ("Nació el 25/12/1990.", "es", "Nació el veinticinco de diciembre de mil novecientos noventa."),
    ("Fecha: 2024-03-01.", "es", "Fecha: primero de marzo de dos mil veinticuatro."),
    ("Cuesta $2 millones.", "es", "Cuesta dos millones de dólares."),
    ("Hace -3 °C y está a 1 km.", "es", "Hace menos tres grados Celsius y está a un kilómetro."),
])
def test_normalize_dates_money_units(text: str, lang: str, spoken: str) -> None:
    assert normalize_text(text, lang) == spoken
    assert normalize_text(spoken, lang) == spoken  # idempotent
