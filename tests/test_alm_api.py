"""The user's surface on a debug checkpoint: checkpoint save/load, the Python API, the watermark hook, the
Hugging Face pipelines (ours and the stock ones beside them) and the task commands of the CLI.

The debug model is random, so what it says is garbage; constrained decoding makes it well-formed garbage, and
that is what is checked: types, shapes, rates, lengths, and the defined results for bad input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import alm
import alm.api
import alm.checkpoint
from alm import (
    AlmForCausalLM,
    AudioLanguageModel,
    CheckpointError,
    SpeechResult,
    TranscriptionResult,
    UnderstandingResult,
    Vocabulary,
    alm_debug,
    load_checkpoint,
    save_checkpoint,
    train_text_tokenizer,
)
from alm.api import GenerationOptions, parse_slu, set_watermark_hook
from alm.prompts import asr_prompt, parse_output
from codec import AudioInputError, save_audio

SR = 16000
HOP = 320  # samples per codec frame
K, CARD, UNITS = 4, 64, 8
SENTENCES = ["good morning how are you", "hello world", "buenos días cómo estás", "hola mundo",
             "play_music | genre = jazz", "set_alarm | time = seven"]
SHORT = dict(max_new_tokens=24)  # keeps audio outputs to a few frames: the random model is slow to stop


def _speech(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A vibrato tone with noise: not speech, but it has the level and the variation of speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * f0 * (t + 0.02 * np.sin(2 * np.pi * 4 * t))
    return (0.3 * np.sin(phase) + 0.03 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def pieces() -> tuple[AlmForCausalLM, Vocabulary, object, object]:
    from codec.neural import CodecConfig, NeuralCodec
    from training.train_units import fit_mfcc_units

    torch.manual_seed(0)
    wavs = [_speech(1.0, 180, 0), _speech(1.0, 260, 1)]
    units = fit_mfcc_units(wavs, n_clusters=UNITS, seed=0)
    codec = NeuralCodec(CodecConfig(n_filters=4, dimension=16, num_codebooks=K, cardinality=CARD))
    codec.train()
    codec(torch.from_numpy(np.stack(wavs)))  # one training-mode pass initializes the codebooks (k-means)
    codec.eval()
    vocab = Vocabulary(train_text_tokenizer(SENTENCES * 5, vocab_size=300), num_units=UNITS, num_codebooks=K,
                       cardinality=CARD)
    model = AlmForCausalLM(alm_debug(vocab)).eval()
    return model, vocab, codec, units


@pytest.fixture(scope="module")
def ckpt(pieces: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("alm") / "ckpt"
    return save_checkpoint(out, *pieces, extra={"step": 7})


@pytest.fixture(scope="module")
def model(ckpt: Path) -> AudioLanguageModel:
    return alm.load(ckpt)


@pytest.fixture(scope="module")
def wav_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_audio(tmp_path_factory.mktemp("audio") / "speech.wav", _speech(0.6, 220, 2), SR)


@pytest.fixture
def hook_calls() -> list[int]:
    """Installs a watermark hook that records each waveform's length and halves it."""
    calls: list[int] = []

    def hook(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        assert sample_rate == SR and audio.dtype == np.float32 and audio.ndim == 1
        calls.append(len(audio))
        return audio * 0.5

    previous = set_watermark_hook(hook)
    try:
        yield calls
    finally:
        set_watermark_hook(previous)


def _check_speech(r: SpeechResult) -> None:
    assert isinstance(r, SpeechResult) and r.sample_rate == SR
    assert isinstance(r.audio, np.ndarray) and r.audio.dtype == np.float32 and r.audio.ndim == 1
    assert len(r.audio) > 0 and len(r.audio) % HOP == 0
    assert np.isfinite(r.audio).all() and np.abs(r.audio).max() <= 1.0


# --- checkpoint ----------------------------------------------------------------------------------------------
def test_checkpoint_round_trip(ckpt: Path, pieces: tuple) -> None:
    model, vocab, codec, units = pieces
    names = {p.name for p in ckpt.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "codec", "units"} <= names
    assert not [p for p in ckpt.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    m2, v2, c2, u2 = load_checkpoint(ckpt)
    for name, t in model.state_dict().items():
        torch.testing.assert_close(m2.state_dict()[name], t)
    assert v2.to_dict() == vocab.to_dict() and v2.encode_text("hola mundo") == vocab.encode_text("hola mundo")
    for name, t in codec.state_dict().items():
        torch.testing.assert_close(c2.state_dict()[name], t)
    assert c2.num_codebooks == m2.config.num_codebooks == K
    torch.testing.assert_close(u2.centroids, units.centroids)
    assert alm.checkpoint.read_extra(ckpt) == {"step": 7}
    # saving again replaces the directory as a whole
    save_checkpoint(ckpt, *pieces, extra={"step": 8})
    assert alm.checkpoint.read_extra(ckpt) == {"step": 8}
    assert not [p for p in ckpt.parent.iterdir() if p.name.startswith(".")]


def test_checkpoint_errors(ckpt: Path, pieces: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        alm.load(tmp_path / "nowhere")
    broken = shutil.copytree(ckpt, tmp_path / "broken")
    (broken / "tokenizer.json").unlink()
    (broken / "codec" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"missing tokenizer\.json, codec/model\.safetensors"):
        load_checkpoint(broken)
    # the shipped default: a clear message naming the directory and how to make one
    default = tmp_path / "pretrained" / "default"
    monkeypatch.setattr(alm.checkpoint, "DEFAULT_CHECKPOINT", default)
    monkeypatch.setattr(alm.api, "DEFAULT_CHECKPOINT", default)
    with pytest.raises(CheckpointError, match="default model is missing") as e:
        alm.load()
    assert str(default) in str(e.value) and "Train" in str(e.value)
    # pieces that do not fit are refused before anything is written
    from training.train_units import fit_mfcc_units

    model, vocab, codec, _ = pieces
    other_units = fit_mfcc_units([_speech(0.5, 200, 3)], n_clusters=UNITS + 1, seed=0)
    with pytest.raises(CheckpointError, match="units"):
        save_checkpoint(tmp_path / "bad", model, vocab, codec, other_units)
    assert not (tmp_path / "bad").exists()


# --- the API -------------------------------------------------------------------------------------------------
def test_transcribe_and_understand(model: AudioLanguageModel, wav_file: Path) -> None:
    wav = _speech(0.6, 220, 2)
    for audio, kw in ((wav_file, {}), (wav, {"language": "en"}), (torch.from_numpy(wav), {"language": "es"}),
                      (wav[::2].copy(), {"language": "en", "sample_rate": 8000})):
        r = model.transcribe(audio, **kw)
        assert isinstance(r, TranscriptionResult) and isinstance(r.text, str)
        assert r.language == kw.get("language", r.language) and r.language in alm.LANGUAGES
        assert all(isinstance(i, int) and i in model.vocab.text for i in r.tokens)
        assert r.text == model.vocab.decode_text(r.tokens).strip()
    u = model.understand(wav_file)
    assert isinstance(u, UnderstandingResult) and isinstance(u.intent, str) and isinstance(u.text, str)
    assert isinstance(u.slots, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in u.slots.items())
    assert (u.intent, u.slots) == parse_slu(u.text)


def test_speech_outputs(model: AudioLanguageModel, wav_file: Path, hook_calls: list[int]) -> None:
    r = model.synthesize("Good morning, Dr. Smith.", language="en", voice=wav_file, **SHORT)
    _check_speech(r)
    assert r.text is None
    s = model.synthesize("hola", language="es", **SHORT)
    _check_speech(s)
    t = model.translate_speech(wav_file, target_language="es", **SHORT)
    _check_speech(t)
    assert t.text is None or isinstance(t.text, str)
    c = model.continue_speech(wav_file, seconds=0.2)
    _check_speech(c)
    assert len(c.audio) == 10 * HOP  # exactly 0.2 s: 10 frames at 50 frames/s
    prompt_frames = -(-int(0.6 * SR) // HOP)
    c2 = model.continue_speech(wav_file, seconds=0.1, include_prompt=True)
    assert len(c2.audio) == (prompt_frames + 5) * HOP
    # every generated waveform went through the watermark hook, once
    assert hook_calls == [len(x.audio) for x in (r, s, t, c, c2)]


def test_watermark_hook_output_is_returned(model: AudioLanguageModel, wav_file: Path) -> None:
    previous = set_watermark_hook(lambda audio, sr: np.zeros_like(audio))
    try:
        assert not model.continue_speech(wav_file, seconds=0.1).audio.any()
        set_watermark_hook(lambda audio, sr: audio[:10])
        with pytest.raises(RuntimeError, match="watermark hook"):
            model.continue_speech(wav_file, seconds=0.1)
    finally:
        set_watermark_hook(previous)
    assert model.continue_speech(wav_file, seconds=0.1).audio.any()  # the default hook again


def test_generated_audio_carries_the_keyed_watermark_by_default(ckpt: Path, wav_file: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from safety.watermark import watermark_hook

    marked = alm.load(ckpt).continue_speech(wav_file, seconds=0.3, include_prompt=True, seed=1).audio
    with caplog.at_level("WARNING", logger="alm.api"):
        bare_model = alm.load(ckpt, watermark=False)  # the explicit opt-out is logged
    assert any("watermarking is off" in r.getMessage() for r in caplog.records)
    bare = bare_model.continue_speech(wav_file, seconds=0.3, include_prompt=True, seed=1).audio
    assert not np.array_equal(marked, bare)
    np.testing.assert_allclose(marked, watermark_hook(bare, SR), atol=1e-6)  # the default hook is the keyed mark


def test_generation_options_and_raw_generate(model: AudioLanguageModel, wav_file: Path) -> None:
    greedy = model.transcribe(wav_file, language="en")
    assert model.transcribe(wav_file, language="en") == greedy  # deterministic
    assert isinstance(model.transcribe(wav_file, language="en", strategy="beam", num_beams=3).text, str)
    a = model.synthesize("hello", strategy="sample", temperature=0.9, top_k=20, seed=3, **SHORT)
    b = model.synthesize("hello", strategy="sample", temperature=0.9, top_k=20, seed=3, **SHORT)
    np.testing.assert_array_equal(a.audio, b.audio)
    model.synthesize("hello", strategy="top_p", top_p=0.8, repetition_penalty=1.2, **SHORT)
    for bad, match in (({"strategy": "nucleus"}, "unknown strategy"), ({"temperature": 0.5}, "sampling only"),
                       ({"strategy": "sample", "top_p": 1.5}, "top_p"), ({"num_beams": 4}, "beam search only"),
                       ({"max_new_tokens": 0}, "max_new_tokens")):
        with pytest.raises(ValueError, match=match):
            model.transcribe(wav_file, language="en", **bad)
    prompt = asr_prompt(model.vocab, "en", [1, 2, 3, 2])
    ids = model.generate(prompt, max_new_tokens=12)
    out = parse_output(model.vocab, "asr", ids)
    assert out.text is not None and all(isinstance(i, int) for i in ids)
    assert model.generate(torch.tensor(prompt), task="asr", max_new_tokens=12) == ids
    with pytest.raises(alm.VocabularyError):
        model.generate([model.vocab.size + 5])
    assert GenerationOptions(strategy="beam", num_beams=2).generate_kwargs() == {"num_beams": 2}


def test_bad_inputs(model: AudioLanguageModel, wav_file: Path, hook_calls: list[int]) -> None:
    silent = np.zeros(SR // 2, dtype=np.float32)
    assert model.transcribe(silent) == TranscriptionResult("", None, [])
    assert model.transcribe(silent, language="es") == TranscriptionResult("", "es", [])
    assert model.understand(silent) == UnderstandingResult("", {}, "")
    with pytest.raises(AudioInputError, match="silent"):
        model.translate_speech(silent, target_language="en")
    with pytest.raises(AudioInputError, match="silent"):
        model.continue_speech(silent)
    with pytest.raises(AudioInputError, match="silent"):
        model.synthesize("hello", voice=silent)
    for text in ("", "   "):
        with pytest.raises(ValueError, match="empty"):
            model.synthesize(text)
    with pytest.raises(ValueError, match="nothing to say"):
        model.synthesize("?!")
    for call in (lambda: model.transcribe(wav_file, language="fr"), lambda: model.synthesize("hi", language="de"),
                 lambda: model.translate_speech(wav_file, target_language="fr"),
                 lambda: model.understand(wav_file, language="xx")):
        with pytest.raises(ValueError, match="supported: en, es"):
            call()
    with pytest.raises(ValueError, match="two different languages"):
        model.translate_speech(wav_file, target_language="en", source_language="en")
    with pytest.raises(ValueError, match="seconds"):
        model.continue_speech(wav_file, seconds=0)
    with pytest.raises(AudioInputError, match="no such file"):
        model.transcribe(wav_file.parent / "missing.wav")
    assert hook_calls == []  # nothing was generated


def test_parse_slu() -> None:
    assert parse_slu("get_weather | place = New York | date = tomorrow") == (
        "get_weather", {"place": "New York", "date": "tomorrow"})
    assert parse_slu("stop_music") == ("stop_music", {})
    assert parse_slu("set_alarm | garbage | time = seven | time = eight") == ("set_alarm", {"time": "seven"})
    assert parse_slu("") == ("", {}) and parse_slu("two words | x = y") == ("", {})


# --- pipelines -----------------------------------------------------------------------------------------------
def test_pipelines(ckpt: Path, wav_file: Path, hook_calls: list[int]) -> None:
    from transformers import pipeline

    wav = _speech(0.5, 200, 4)
    asr = pipeline("automatic-speech-recognition", model=str(ckpt), device="cpu")
    assert isinstance(asr, alm.pipelines.AlmSpeechRecognitionPipeline)
    one = asr(str(wav_file), language="en")
    assert set(one) == {"text"} and isinstance(one["text"], str)
    two = asr([wav, {"raw": wav[::2].copy(), "sampling_rate": 8000}], language="en")
    assert len(two) == 2 and all(isinstance(o["text"], str) for o in two)
    assert asr(wav, batch_size=2, language="en") == asr(wav, language="en")

    tts = pipeline("text-to-speech", model=ckpt, device="cpu")
    outs = tts(["hello world", "good morning"], max_new_tokens=20)
    assert len(outs) == 2 and len(hook_calls) == 2
    for o in outs:
        assert set(o) == {"audio", "sampling_rate"} and o["sampling_rate"] == SR
        assert o["audio"].dtype == np.float32 and o["audio"].ndim == 1 and len(o["audio"]) == hook_calls[0]
    assert tts("hola", language="es", generate_kwargs={"max_new_tokens": 20})["audio"].ndim == 1
    with pytest.raises(ValueError, match="unknown parameter"):
        tts("hi", return_timestamps=True)

    s2st = pipeline("speech-to-speech-translation", model=ckpt, device="cpu")
    o = s2st([wav, wav], target_language="es", max_new_tokens=24)
    assert len(o) == 2 and set(o[0]) == {"audio", "sampling_rate", "text"} and o[0]["sampling_rate"] == SR
    slu = pipeline("spoken-language-understanding", model=ckpt, device="cpu")
    o = slu([wav, str(wav_file)])
    assert len(o) == 2 and set(o[0]) == {"intent", "slots", "text", "transcript"}
    cont = pipeline("voice-continuation", model=ckpt, device="cpu")
    o = cont([wav, wav], seconds=0.1)
    assert [len(x["audio"]) for x in o] == [5 * HOP, 5 * HOP]
    assert len(hook_calls) == 2 + 1 + 2 + 2


def test_pipelines_from_loaded_models(model: AudioLanguageModel, ckpt: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, pipeline

    wav = _speech(0.5, 200, 6)
    asr = pipeline("automatic-speech-recognition", model=model, device="cpu")  # an AudioLanguageModel
    assert asr(wav, language="en") == {"text": model.transcribe(wav, language="en").text}
    decoder = AutoModelForCausalLM.from_pretrained(ckpt)  # a decoder: the rest comes from its directory
    assert isinstance(decoder, AlmForCausalLM)
    cont = pipeline("voice-continuation", model=decoder, device="cpu")
    assert len(cont(wav, seconds=0.1)["audio"]) == 5 * HOP
    cont.save_pretrained(tmp_path / "copy")  # a whole checkpoint, loadable as one
    assert alm.load(tmp_path / "copy").vocab.to_dict() == model.vocab.to_dict()


def test_standard_pipelines_still_work_for_stock_models(tmp_path: Path) -> None:
    """A tiny Wav2Vec2 CTC model made here gets transformers' own ASR pipeline, as if alm were not imported."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
        pipeline,
    )
    from transformers.pipelines import PIPELINE_REGISTRY, AutomaticSpeechRecognitionPipeline

    letters = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: i + 5 for i, c in enumerate("abcdefgh")}}
    (tmp_path / "vocab.json").write_text(json.dumps(letters))
    tokenizer = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                        return_attention_mask=True)
    config = Wav2Vec2Config(vocab_size=len(letters), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 8), conv_stride=(10, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, pad_token_id=0)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(tmp_path)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(tmp_path)

    asr = pipeline("automatic-speech-recognition", model=str(tmp_path), device="cpu")
    assert type(asr) is AutomaticSpeechRecognitionPipeline
    wav = _speech(0.5, 200, 5)
    out = asr(wav)
    assert set(out) == {"text"} and isinstance(out["text"], str)
    assert len(asr([wav, wav])) == 2
    entry = PIPELINE_REGISTRY.supported_tasks["automatic-speech-recognition"]
    assert entry["default"]["model"][0] == "facebook/wav2vec2-base-960h" and entry["pt"][-1] is AlmForCausalLM
    alm.register_pipelines()  # idempotent: the dispatcher is not wrapped twice
    assert PIPELINE_REGISTRY.supported_tasks["automatic-speech-recognition"]["impl"] is entry["impl"]


# --- command line --------------------------------------------------------------------------------------------
def test_cli(ckpt: Path, wav_file: Path, tmp_path: Path) -> None:
    from alm.cli import app

    runner = CliRunner()
    m = ["--model", str(ckpt)]

    def ok(*args: str) -> str:
        result = runner.invoke(app, [*args, *m])
        assert result.exit_code == 0, result.output
        return result.output

    lines = ok("transcribe", str(wav_file), str(wav_file), "--language", "en").splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(wav_file))
    row = json.loads(ok("transcribe", str(wav_file), "--json"))
    assert row["language"] in alm.LANGUAGES and isinstance(row["text"], str)
    assert set(json.loads(ok("understand", str(wav_file)))) == {"intent", "slots", "text", "transcript"}
    for args, name in ((("synthesize", "good morning", "--language", "en", "--voice", str(wav_file)), "tts.wav"),
                       (("translate", str(wav_file), "--to", "es"), "s2st.wav"),
                       (("continue", str(wav_file), "--seconds", "0.2"), "cont.flac")):
        out = tmp_path / name
        ok(*args, "-o", str(out), "--max-new-tokens", "24", "--strategy", "sample", "--seed", "1")
        assert out.is_file() and out.stat().st_size > 44

    for args, message in ((("transcribe", str(tmp_path / "missing.wav")), "no such file"),
                          (("synthesize", "", "-o", str(tmp_path / "x.wav")), "empty"),
                          (("translate", str(wav_file), "--to", "fr", "-o", str(tmp_path / "x.wav")), "supported"),
                          (("continue", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "x.wav")), "no such")):
        result = runner.invoke(app, [*args, *m])
        assert result.exit_code == 1 and message in result.output, result.output
        assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback
    result = runner.invoke(app, ["transcribe", str(wav_file), "--model", str(tmp_path / "none")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["transcribe", str(wav_file), *m, "--temperature", "0.5"])
    assert result.exit_code == 2 and "sampling" in result.output


@pytest.mark.parametrize("mode", ["codec", "both"])
def test_codec_speech_input(pieces: tuple, wav_file: Path, tmp_path: Path, mode: str) -> None:
    """A checkpoint trained on codec tokens (or units + codec tokens) as input speech gets prompts in that form."""
    _, vocab, codec, units = pieces
    torch.manual_seed(0)
    model = AlmForCausalLM(alm_debug(vocab, input_speech=mode, voice_seconds=0.5)).eval()
    m = alm.load(save_checkpoint(tmp_path / mode, model, vocab, codec, units))
    assert m.model.config.input_speech == mode and m.model.config.voice_seconds == 0.5
    wav = m._load_wav(wav_file, None)
    job = m.prepare("asr", wav_file, language="en")
    prompt = job.candidates["en"]
    audio = prompt[prompt.index(vocab.token_id("<audio>")) + 1: prompt.index(vocab.token_id("</audio>"))]
    assert audio == vocab.codes_to_ids(codec.encode(wav)[0])  # the speech itself, frame-major
    assert (vocab.token_id("<units>") in prompt) == (mode == "both")
    r = m.transcribe(wav_file, language="en", **SHORT)
    assert isinstance(r, TranscriptionResult) and all(t in vocab.text for t in r.tokens)
    s2st = m.prepare("s2st", wav_file, target_language="es", source_language="en").candidates["en"]
    voice = s2st[s2st.index(vocab.token_id("<voice>")) + 1: s2st.index(vocab.token_id("</voice>"))]
    assert len(voice) == round(0.5 * codec.frame_rate) * K  # voice prompts as long as the config says
