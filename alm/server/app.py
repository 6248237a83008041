"""The FastAPI app of ``alm serve``: one endpoint per task, dynamic batching, limits, health and metrics.

::

    POST /v1/transcribe   audio [language]                          -> {"text", "language"}
    POST /v1/understand   audio [language=en]                       -> {"intent", "slots", "text", "transcript"}
    POST /v1/translate    audio target_language [source_language]   -> WAV (+ X-Text) or JSON (format=json)
    POST /v1/continue     audio [seconds=3] [include_prompt=false]  -> WAV or JSON (format=json)
    POST /v1/synthesize   JSON {"text", "language": "en", "format": "wav"}  -> WAV or JSON
    GET  /health          -> {"status": "ok", ...}
    GET  /metrics         -> Prometheus text

How audio and options travel, the limits and the JSON errors: :mod:`alm.server.protocol`. Each request is
prepared (audio decoded, prompt built) and finished (ids -> text or waveform, watermarked) in the request's own
thread; only decoding goes through the :class:`~alm.server.batcher.DynamicBatcher`, where requests of one task
that arrive within ``max_wait_ms`` are decoded together (greedy decoding; see :mod:`alm.batching`).

    from alm.server import ServerSettings, create_app
    app = create_app(alm.load(), ServerSettings(max_batch=8))     # then: uvicorn.run(app, host="127.0.0.1")
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from alm.api import AudioLanguageModel, GenerationOptions, Result, TaskJob
from alm.batching import BatchOutput, run_batch
from alm.server.batcher import BatcherStoppedError, DynamicBatcher, QueueFullError, Runner
from alm.server.metrics import ServerMetrics
from alm.server.protocol import (
    ApiError,
    BodyLimitMiddleware,
    audio_response,
    check_options,
    decode_base64_audio,
    error_response,
    invalid,
    parse_bool,
    parse_format,
    read_audio_request,
    read_json_object,
)
from alm.server.settings import ServerSettings
from alm.vocab import LANGUAGES, TASKS
from codec import AudioInputError, load_audio

log = logging.getLogger(__name__)

ENDPOINTS = ("/v1/transcribe", "/v1/understand", "/v1/translate", "/v1/continue", "/v1/synthesize", "/health",
             "/metrics")


def _language(value: str) -> str:
    if value not in LANGUAGES:
        raise ValueError(f"unsupported language; supported: {', '.join(LANGUAGES)}")
    return value


def create_app(model: AudioLanguageModel, settings: ServerSettings | None = None, *,
               runner: Runner | None = None) -> FastAPI:
    """Build the app around a loaded model.

    Args:
        model: the model to serve (quantize it first with :func:`alm.quantize.quantize_int8` if wanted).
        settings: batching, limits and timeouts (default :class:`ServerSettings`).
        runner: decodes a batch of jobs (default: greedy :func:`alm.batching.run_batch` on ``model``); the app's
            batcher holds it as ``app.state.batcher.runner`` (tests swap it to hold the worker).

    Returns:
        The FastAPI app; ``app.state`` has ``model``, ``settings``, ``batcher`` and ``metrics``.
    """
    settings = settings or ServerSettings()
    metrics = ServerMetrics()
    options = GenerationOptions()  # greedy: the one strategy whose batched result equals the unbatched one
    batcher = DynamicBatcher(runner or partial(_run, model, options=options), settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="alm", summary="One audio-language model: ASR, TTS, speech translation, SLU, continuation.",
                  lifespan=lifespan)
    app.state.model, app.state.settings, app.state.batcher, app.state.metrics = model, settings, batcher, metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    _install_error_handlers(app, metrics)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        endpoint = request.url.path if request.url.path in ENDPOINTS else "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    async def decode(task: str, source: Any, task_options: dict[str, Any]) -> tuple[TaskJob, Result]:
        job = await run_in_threadpool(_prepare, model, settings, task, source, task_options)
        try:
            out: BatchOutput = await asyncio.wait_for(batcher.submit(job), settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {settings.request_timeout_s:g} s") from None
        except QueueFullError as e:
            raise ApiError(503, "overloaded", str(e), {"Retry-After": "1"}) from None
        except BatcherStoppedError as e:
            raise ApiError(503, "unavailable", str(e)) from None
        return job, await run_in_threadpool(_finish, model, job, out)

    @app.post("/v1/transcribe")
    async def transcribe(request: Request) -> JSONResponse:
        """Speech -> text. Audio as the body or form file ``audio``; option ``language`` (default: detected)."""
        blob, opts, _ = await read_audio_request(request)
        o = check_options(opts, {"language": _language})
        _, r = await decode("asr", blob, {"language": o.get("language")})
        return JSONResponse({"text": r.text, "language": r.language})

    @app.post("/v1/understand")
    async def understand(request: Request) -> JSONResponse:
        """Spoken command -> intent and slots. Option ``language`` (default ``en``)."""
        blob, opts, _ = await read_audio_request(request)
        o = check_options(opts, {"language": _language})
        _, r = await decode("slu", blob, {"language": o.get("language", "en")})
        return JSONResponse({"intent": r.intent, "slots": r.slots, "text": r.text, "transcript": r.transcript})

    @app.post("/v1/translate")
    async def translate(request: Request) -> Response:
        """Speech -> speech in ``target_language`` (required), in the speaker's voice or that of the form's file
        field ``voice``; ``source_language`` (default: detected); ``format`` ``wav`` (default; the target text in
        ``X-Text``) or ``json``."""
        blob, opts, files = await read_audio_request(request, extra_files=("voice",))
        o = check_options(opts, {"target_language": _language, "source_language": _language, "format": parse_format})
        if "target_language" not in o:
            raise invalid("option target_language is required (en or es)")
        _, r = await decode("s2st", blob, {"target_language": o["target_language"],
                                           "source_language": o.get("source_language"), "voice": files.get("voice")})
        return audio_response(r.audio, r.sample_rate, o.get("format", "wav"), r.text)

    @app.post("/v1/continue")
    async def continue_(request: Request) -> Response:
        """More speech in the voice of the audio: ``seconds`` (default 3), ``include_prompt``, ``format``."""
        blob, opts, _ = await read_audio_request(request)
        o = check_options(opts, {"seconds": float, "include_prompt": parse_bool, "format": parse_format})
        seconds = o.get("seconds", 3.0)
        if not 0 < seconds <= settings.max_continue_seconds:
            raise invalid(f"seconds must be in (0, {settings.max_continue_seconds:g}], got {seconds:g}")
        _, r = await decode("continue", blob, {"seconds": seconds, "include_prompt": o.get("include_prompt", False)})
        return audio_response(r.audio, r.sample_rate, o.get("format", "wav"))

    @app.post("/v1/synthesize")
    async def synthesize(request: Request) -> Response:
        """Text -> speech. JSON ``{"text": ..., "language": "en", "format": "wav" | "json", "voice_wav_base64":
        (optional) an audio file's bytes, base64: the voice to speak in}``."""
        body = await read_json_object(request, ("text", "language", "format", "voice_wav_base64"))
        voice = None if body.get("voice_wav_base64") is None else decode_base64_audio(body["voice_wav_base64"],
                                                                                       "voice_wav_base64")
        text, language, fmt = body.get("text"), body.get("language", "en"), body.get("format", "wav")
        if not isinstance(text, str) or not text.strip():
            raise invalid("field 'text' must be a non-empty string")
        if len(text) > settings.max_text_chars:
            raise invalid(f"text is {len(text)} characters; the limit is {settings.max_text_chars}")
        o = check_options({"language": str(language), "format": str(fmt)},
                          {"language": _language, "format": parse_format})
        _, r = await decode("tts", text, {"language": o["language"], "voice": voice})
        return audio_response(r.audio, r.sample_rate, o["format"])

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness and what is served."""
        return JSONResponse({
            "status": "ok" if batcher.running else "starting", "model": str(model.path) if model.path else None,
            "device": str(model.device), "quantize": settings.quantize, "batching": settings.batching,
            "max_batch": settings.batch_limit, "max_wait_ms": settings.wait_s * 1000,
            "queue_depth": {t: batcher.depth(t) for t in TASKS},
            "languages": list(model.languages),
        })

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: requests, errors, latency, batch sizes, batch times, queue depth, rejections."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def _run(model: AudioLanguageModel, jobs: Sequence[TaskJob], options: GenerationOptions) -> list[BatchOutput]:
    with torch.inference_mode():
        return run_batch(model, jobs, options)


def _prepare(model: AudioLanguageModel, settings: ServerSettings, task: str, source: Any,
             task_options: dict[str, Any]) -> TaskJob:
    """Decode uploaded bytes (never a path) and build the job; bad input is a 422 naming the problem."""
    def decoded(blob: Any, what: str) -> Any:
        if not isinstance(blob, bytes):  # the one guard between a request and the file system
            raise TypeError(f"{what} must arrive as bytes, got {type(blob).__name__}")
        return load_audio(blob, model.sample_rate, max_seconds=settings.max_audio_seconds)

    try:
        if task != "tts":
            source = decoded(source, "audio")
        if task_options.get("voice") is not None:
            task_options = {**task_options, "voice": decoded(task_options["voice"], "voice")}
        return model.prepare(task, source, **task_options)
    except AudioInputError as e:
        raise ApiError(422, "invalid_audio", str(e)) from None
    except ValueError as e:
        raise invalid(str(e)) from None


def _finish(model: AudioLanguageModel, job: TaskJob, out: BatchOutput) -> Result:
    if out.error is not None:
        if isinstance(out.error, AudioInputError):
            raise ApiError(422, "invalid_audio", str(out.error))
        if isinstance(out.error, ValueError):
            raise invalid(str(out.error))
        raise out.error
    return model.finish(job, out.language, out.ids)


def _install_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    def endpoint(request: Request) -> str:
        return request.url.path if request.url.path in ENDPOINTS else "other"

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(endpoint(request), exc.kind).inc()
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels(endpoint(request), "invalid_request").inc()
        return error_response(422, "invalid_request", "; ".join(str(e.get("msg")) for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        metrics.errors.labels(endpoint(request), kind).inc()
        return error_response(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        metrics.errors.labels(endpoint(request), "internal").inc()
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
