"""``alm serve`` (alm.server) in-process with FastAPI's TestClient and the shipped model: every endpoint, JSON
errors for bad / too long / too large / path-like input, 503 when the queue is full, health and metrics,
concurrent requests batched together and each answered with its own result, and the ``alm serve`` command's
wiring. The worker is held with events (no sleeps): a runner that waits on a ``threading.Event``."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import jiwer
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import alm
from alm.server import ServerSettings, create_app
from alm.server.protocol import wav_bytes

SR = 16000
SENTENCES = [("en", "The garden needs water every morning."), ("es", "La tienda cierra a las ocho."),
             ("en", "Please close the window."), ("en", "My brother bought a small red car."),
             ("en", "What time does the bus arrive?")]


@pytest.fixture(scope="module")
def model() -> alm.AudioLanguageModel:
    return alm.load(watermark=False)


@pytest.fixture(scope="module")
def speech(held_out_speech) -> list[np.ndarray]:  # noqa: ANN001 - conftest's speaker
    return held_out_speech(SENTENCES)


@pytest.fixture(scope="module")
def expected(model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> list[str]:
    """Each clip's transcript (language given), one at a time through the Python API."""
    texts = [model.transcribe(w, language=lang).text for w, (lang, _) in zip(speech, SENTENCES)]
    assert len(set(texts)) == len(texts), texts  # distinct, so a mixed-up answer cannot pass
    return texts


@pytest.fixture(scope="module")
def client(model: alm.AudioLanguageModel) -> Iterator[TestClient]:
    settings = ServerSettings(max_batch=8, max_wait_ms=5, max_audio_seconds=8, max_body_bytes=400_000,
                              max_text_chars=60, max_continue_seconds=1.0)
    with TestClient(create_app(model, settings)) as c:
        yield c


def _error(r: object, status: int, kind: str, *words: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["type"] == kind, err
    for w in words:
        assert w in err["message"], err["message"]


def _wav_of(r: object) -> np.ndarray:
    wav, rate = sf.read(io.BytesIO(r.content), dtype="float32")
    assert rate == SR
    return wav


# --- endpoints -------------------------------------------------------------------------------------------------
def test_transcribe_raw_body_and_multipart(client: TestClient, speech: list[np.ndarray], expected: list[str]) -> None:
    raw = client.post("/v1/transcribe?language=en", content=wav_bytes(speech[0]),
                      headers={"Content-Type": "audio/wav"})
    assert raw.status_code == 200, raw.text
    assert raw.json() == {"text": expected[0], "language": "en"}
    form = client.post("/v1/transcribe", files={"audio": ("a.flac", _flac(speech[1]), "audio/flac")},
                       data={"language": "es"})
    assert form.status_code == 200, form.text
    assert form.json()["text"] == expected[1] and form.json()["language"] == "es"
    detected = client.post("/v1/transcribe", content=wav_bytes(speech[0]))  # language detected
    assert detected.status_code == 200 and detected.json()["language"] in ("en", "es")


def _flac(wav: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, SR, format="FLAC")
    return buf.getvalue()


def test_understand(client: TestClient, model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    r = client.post("/v1/understand", content=wav_bytes(speech[2]))
    assert r.status_code == 200, r.text
    sent, _ = sf.read(io.BytesIO(wav_bytes(speech[2])), dtype="float32")  # what the server hears: PCM16
    want = model.understand(sent, language="en")
    assert r.json() == {"intent": want.intent, "slots": want.slots, "text": want.text,
                        "transcript": want.transcript}


def test_synthesize(client: TestClient) -> None:
    r = client.post("/v1/synthesize", json={"text": "Hi.", "language": "en"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    wav = _wav_of(r)
    assert 0.2 < len(wav) / SR < 10 and float(np.abs(wav).max()) > 0.01
    assert float(r.headers["x-audio-duration"]) == pytest.approx(len(wav) / SR, abs=1e-3)


def test_continue_and_translate(client: TestClient, speech: list[np.ndarray]) -> None:
    r = client.post("/v1/continue?seconds=0.2", content=wav_bytes(speech[0]))
    assert r.status_code == 200, r.text
    assert len(_wav_of(r)) == int(0.2 * SR)
    j = client.post("/v1/continue?seconds=0.2&include_prompt=true&format=json", content=wav_bytes(speech[0])).json()
    assert j["sample_rate"] == SR and j["text"] is None and j["duration"] > len(speech[0]) / SR - 0.05
    wav, rate = sf.read(io.BytesIO(base64.b64decode(j["audio_wav_base64"])), dtype="float32")
    assert rate == SR and len(wav) / SR == pytest.approx(j["duration"], abs=1e-3)
    t = client.post("/v1/translate?target_language=en&source_language=es", content=wav_bytes(_hola()))
    assert t.status_code == 200, t.text
    assert len(_wav_of(t)) > 0 and float(t.headers["x-audio-duration"]) > 0
    text = t.headers.get("x-text")  # the target text when the model wrote one, percent-encoded
    assert text is None or unquote(text).strip() == unquote(text) != ""
    _error(client.post("/v1/translate", content=wav_bytes(speech[1])), 422, "invalid_request", "target_language")
    _error(client.post("/v1/continue?seconds=5", content=wav_bytes(speech[0])), 422, "invalid_request", "seconds")


def _hola() -> np.ndarray:
    from training.data.engines import speaker_available, synthesize
    from training.data.voices import speakers

    return synthesize([s for s in speakers("es", split="test") if speaker_available(s)][0], "Hola.", "es")


def _pcm16(wav: np.ndarray) -> np.ndarray:
    """What a client's 16-bit WAV upload of ``wav`` decodes to."""
    return sf.read(io.BytesIO(wav_bytes(wav)), dtype="float32")[0]


def test_voice_prompt_over_http(client: TestClient, model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    voice = speech[3]
    b64 = base64.b64encode(wav_bytes(voice)).decode("ascii")
    r = client.post("/v1/synthesize", json={"text": "Hi.", "language": "en", "voice_wav_base64": b64})
    assert r.status_code == 200, r.text
    want = model.synthesize("Hi.", "en", voice=_pcm16(voice)).audio
    np.testing.assert_allclose(_wav_of(r), want, atol=1e-4)  # 16-bit PCM of the same audio
    assert not np.array_equal(_wav_of(r), _wav_of(client.post("/v1/synthesize", json={"text": "Hi."})))
    _error(client.post("/v1/synthesize", json={"text": "Hi.", "voice_wav_base64": "not base64!"}), 422,
           "invalid_request", "base64")
    _error(client.post("/v1/synthesize", json={"text": "Hi.", "voice_wav_base64": base64.b64encode(b"junk" * 50)
                                               .decode()}), 422, "invalid_audio")

    source = _hola()
    t = client.post("/v1/translate?target_language=en&source_language=es",
                    files={"audio": ("a.wav", wav_bytes(source), "audio/wav"),
                           "voice": ("v.wav", wav_bytes(voice), "audio/wav")})
    assert t.status_code == 200, t.text
    want = model.translate_speech(_pcm16(source), "en", source_language="es", voice=_pcm16(voice)).audio
    np.testing.assert_allclose(_wav_of(t), want, atol=1e-4)
    _error(client.post("/v1/translate?target_language=en", files={"audio": ("a.wav", wav_bytes(source)),
                                                                  "other": ("o.wav", wav_bytes(voice))}),
           422, "invalid_request", "unexpected file field")


# --- errors ----------------------------------------------------------------------------------------------------
def test_bad_audio_and_limits(client: TestClient, speech: list[np.ndarray]) -> None:
    _error(client.post("/v1/transcribe", content=b"this is not audio at all" * 10), 422, "invalid_audio")
    _error(client.post("/v1/transcribe", content=b""), 422, "invalid_request", "empty")
    too_long = np.tile(speech[0], 1 + int(9 * SR / len(speech[0])))[: 9 * SR]  # 9 s, limit 8 s
    _error(client.post("/v1/transcribe", content=_flac(too_long)), 422, "invalid_audio", "longer than")
    big = wav_bytes(np.zeros(13 * SR, np.float32))  # 416 kB > 400 kB
    _error(client.post("/v1/transcribe", content=big), 413, "body_too_large", "400000")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while the body streams in
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    _error(client.post("/v1/transcribe", content=chunks()), 413, "body_too_large")
    _error(client.post("/v1/synthesize", json={"text": "word " * 20}), 422, "invalid_request", "limit is 60")
    _error(client.post("/v1/synthesize", json={"text": "hi", "language": "fr"}), 422, "invalid_request", "fr")
    _error(client.post("/v1/synthesize", json={"text": "hi", "speed": 2}), 422, "invalid_request", "speed")
    _error(client.post("/v1/synthesize", content=b"{not json", headers={"Content-Type": "application/json"}),
           422, "invalid_request", "JSON")
    _error(client.post("/v1/transcribe?language=xx", content=wav_bytes(speech[0])), 422, "invalid_request", "xx")
    _error(client.post("/v1/transcribe?beam=4", content=wav_bytes(speech[0])), 422, "invalid_request", "beam")
    _error(client.get("/v1/nothing"), 404, "not_found")
    _error(client.get("/v1/transcribe"), 405, "method_not_allowed")


def test_paths_are_never_opened(client: TestClient, speech: list[np.ndarray], tmp_path: Path) -> None:
    """A real, readable audio file's path, sent every way a path could travel, is refused (were it opened, the
    request would succeed)."""
    path = tmp_path / "speech.wav"
    sf.write(path, speech[0], SR)
    p = str(path)
    _error(client.post("/v1/transcribe", json={"audio": p}), 422, "invalid_request", "never opened")
    _error(client.post("/v1/transcribe", data={"audio": p}), 422, "invalid_request", "never opened")
    _error(client.post("/v1/transcribe", files={"audio": (None, p)}), 422, "invalid_request", "never opens")
    _error(client.post(f"/v1/transcribe?audio={p}", content=wav_bytes(speech[0])), 422, "invalid_request",
           "never opens")
    _error(client.post("/v1/transcribe", content=p.encode(), headers={"Content-Type": "text/plain"}),
           422, "invalid_request", "never opened")
    # as raw bytes of any other type the path is just bytes that are not audio
    _error(client.post("/v1/transcribe", content=p.encode(), headers={"Content-Type": "application/octet-stream"}),
           422, "invalid_audio")
    _error(client.post("/v1/synthesize", json={"text": "hi", "voice": p}), 422, "invalid_request", "never opens")
    _error(client.post("/v1/translate?target_language=en", files={"audio": ("a.wav", wav_bytes(speech[0])),
                                                                  "voice": (None, p)}),
           422, "invalid_request", "never opens")


# --- batching, overload, health, metrics ----------------------------------------------------------------------
def _hold(app: object) -> tuple[threading.Event, threading.Event]:
    """Make the app's batch worker wait on ``gate`` before decoding; ``started`` is set when it is waiting."""
    batcher = app.state.batcher
    real = batcher.runner
    gate, started = threading.Event(), threading.Event()

    def held(jobs: list) -> list:
        started.set()
        assert gate.wait(60), "the test never opened the gate"
        return real(jobs)

    batcher.runner = held
    return gate, started


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
        model: alm.AudioLanguageModel, speech: list[np.ndarray], expected: list[str]) -> None:
    app = create_app(model, ServerSettings(max_batch=8, max_wait_ms=5))
    gate, started = _hold(app)
    with TestClient(app) as client, ThreadPoolExecutor(len(speech)) as pool:
        def ask(i: int) -> dict:
            r = client.post(f"/v1/transcribe?language={SENTENCES[i][0]}", content=wav_bytes(speech[i]))
            assert r.status_code == 200, r.text
            return r.json()

        first = pool.submit(ask, 0)
        try:
            assert started.wait(60)  # the worker holds request 0
            rest = [pool.submit(ask, i) for i in range(1, len(speech))]
            assert app.state.batcher.wait_for_depth("asr", len(rest), timeout=60)  # all queued behind it
        finally:
            gate.set()
        answers = [first.result(60)] + [f.result(60) for f in rest]
        # a padded batch may flip a near-tied token (float sums in another order), so each answer must be its own
        # request's transcript up to such a flip (greedy decoding goes its own way after it): nearest to it of all five
        for i, a in enumerate(answers):
            cers = [jiwer.cer(e, a["text"]) for e in expected]
            assert min(range(len(expected)), key=cers.__getitem__) == i and cers[i] <= 0.35, (a["text"], expected[i])
        metrics = app.state.metrics
        assert metrics.value("alm_batch_size_count", task="asr") == 2  # [request 0], then the other 4 together
        assert metrics.value("alm_batch_size_sum", task="asr") == len(speech)
        assert metrics.value("alm_requests_total", endpoint="/v1/transcribe", status="200") == len(speech)


def test_full_queue_answers_503(model: alm.AudioLanguageModel, speech: list[np.ndarray]) -> None:
    app = create_app(model, ServerSettings(max_batch=1, queue_size=1))
    gate, started = _hold(app)
    body = wav_bytes(speech[2])
    with TestClient(app) as client, ThreadPoolExecutor(3) as pool:
        held = pool.submit(client.post, "/v1/transcribe?language=en", content=body)
        try:
            assert started.wait(60)  # decoding (held)
            queued = pool.submit(client.post, "/v1/transcribe?language=en", content=body)
            assert app.state.batcher.wait_for_depth("asr", 1, timeout=60)  # waiting: the queue is full
            refused = client.post("/v1/transcribe?language=en", content=body)
            other_task = pool.submit(client.post, "/v1/understand", content=body)  # queues are per task
        finally:
            gate.set()
        _error(refused, 503, "overloaded", "queue is full")
        assert refused.headers["retry-after"] == "1"
        assert held.result(60).status_code == 200 and queued.result(60).status_code == 200
        assert other_task.result(60).status_code == 200  # not refused although the asr queue was full
        assert held.result().json() == queued.result().json()
        assert app.state.metrics.value("alm_rejected_total", task="asr") == 1


def test_health_and_metrics(client: TestClient, speech: list[np.ndarray]) -> None:
    h = client.get("/health")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["batching"] is True and body["max_batch"] == 8
    assert body["quantize"] is None and set(body["queue_depth"]) == {"asr", "tts", "s2st", "slu", "continue"}
    client.post("/v1/transcribe?language=en", content=wav_bytes(speech[0]))
    client.post("/v1/transcribe", content=b"garbage bytes" * 20)
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    for name in ("alm_requests_total", "alm_errors_total", "alm_request_seconds_bucket", "alm_batch_size_bucket",
                 "alm_batch_seconds_count", "alm_queue_depth"):
        assert name in text, name
    assert 'alm_errors_total{endpoint="/v1/transcribe",type="invalid_audio"}' in text


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        ServerSettings(max_batch=0)
    with pytest.raises(ValueError, match="quantize"):
        ServerSettings(quantize="int4")
    s = ServerSettings(batching=False, max_batch=16, max_wait_ms=20)
    assert s.batch_limit == 1 and s.wait_s == 0.0
    assert json.loads(json.dumps(s.to_dict()))["max_batch"] == 16


def test_serve_command_wires_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from alm.cli import app as cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    r = CliRunner().invoke(cli, ["serve", "--port", "8123", "--max-batch", "4", "--max-wait-ms", "2",
                                 "--queue-size", "9", "--quantize", "int8", "--no-batching"])
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    settings = seen["app"].state.settings
    assert (settings.max_batch, settings.max_wait_ms, settings.queue_size, settings.batching,
            settings.quantize) == (4, 2, 9, False, "int8")
    from alm.quantize import is_quantized

    assert is_quantized(seen["app"].state.model)
    bad = CliRunner().invoke(cli, ["serve", "--quantize", "int4"])
    assert bad.exit_code != 0 and "int4" in bad.output
