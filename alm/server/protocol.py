"""The HTTP contract of ``alm serve``: how requests carry audio and options, the limits, and JSON errors.

Audio goes in as **the bytes of an audio file** (WAV, FLAC, OGG, MP3, ... anything :func:`codec.load_audio`
decodes), either as the raw request body (``Content-Type: audio/wav`` or ``application/octet-stream``; options
in the query string) or as the file field ``audio`` of a ``multipart/form-data`` form (options as form fields or
in the query string). A voice prompt (``/v1/translate``) travels the same way as the file field ``voice`` of the
form; ``/v1/synthesize`` takes JSON, where a voice is ``voice_wav_base64``: an audio file's bytes, base64.
The server never opens a path: a text ``audio`` / ``voice`` field, an ``audio`` / ``voice`` / ``path`` option, or a
JSON body on an audio endpoint is refused with HTTP 422, so a path or URL cannot reach a file.

Errors are JSON: ``{"error": {"status": 422, "type": "invalid_audio", "message": "..."}}``.

| status | type | when |
|---|---|---|
| 413 | ``body_too_large`` | the request body exceeds ``max_body_bytes`` |
| 422 | ``invalid_audio`` | the audio cannot be decoded, is empty, silent (where speech is needed) or too long |
| 422 | ``invalid_request`` | unknown or bad option, missing audio, path-like input, text too long, bad JSON |
| 503 | ``overloaded`` | the task's queue is full (``Retry-After: 1``) |
| 503 | ``unavailable`` | the server is shutting down |
| 504 | ``timeout`` | no answer within ``request_timeout_s`` |
| 500 | ``internal`` | anything else (logged with its traceback) |
"""

from __future__ import annotations

import base64
import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

import numpy as np
import soundfile as sf
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

SAMPLE_RATE = 16000
PATH_LIKE_FIELDS = ("audio", "voice", "path", "file", "url", "uri", "filename")
AUDIO_FORMATS = ("wav", "json")  # how audio results are returned: WAV bytes, or JSON with base64 WAV
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class ApiError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.kind, self.message, self.headers)


class BodyTooLargeError(ApiError):
    def __init__(self, limit: int, size: int | None = None) -> None:
        got = "" if size is None else f" ({size} bytes)"
        super().__init__(413, "body_too_large", f"the request body is larger than the limit of {limit} bytes{got}; "
                                                "send shorter audio or compress it (FLAC, OGG)")


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "type": kind, "message": message}}, status_code=status,
                        headers=headers)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes``: at once when ``Content-Length`` says so, else while the body streams
    in (chunked uploads), by raising :class:`BodyTooLargeError` from ``receive`` into the handler reading it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(*_limit_args(self.max_bytes, int(declared)))(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def _limit_args(limit: int, size: int) -> tuple[int, str, str]:
    e = BodyTooLargeError(limit, size)
    return e.status, e.kind, e.message


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_request", message)


def _path_refusal(field: str) -> ApiError:
    return invalid(f"{field!r} cannot name a file: the server never opens paths or URLs; send the audio itself, as "
                   "the request body or as the file field 'audio' of a multipart form")


async def read_audio_request(request: Request, extra_files: tuple[str, ...] = ()
                             ) -> tuple[bytes, dict[str, str], dict[str, bytes]]:
    """The uploaded audio bytes, the options (query string, then form fields) and the bytes of the other file
    fields in ``extra_files`` (e.g. ``voice``) that the form carries, of an audio endpoint.

    Raises:
        ApiError: no audio, audio given as text or as a path, a JSON body, repeated or file-valued options.
    """
    options = _options(request.query_params.multi_items(), "query")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    blob: bytes | None = None
    files: dict[str, bytes] = {}
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1 + len(extra_files), max_fields=16)
        for key, value in form.multi_items():
            if key == "audio" or key in extra_files:
                if not isinstance(value, UploadFile):
                    raise _path_refusal(key)
                if key == "audio" and blob is not None or key in files:
                    raise invalid(f"file field {key!r} is given twice")
                data = await value.read()
                if key == "audio":
                    blob = data
                else:
                    files[key] = data
            elif isinstance(value, UploadFile):
                allowed = ", ".join(repr(f) for f in ("audio", *extra_files))
                raise invalid(f"unexpected file field {key!r}: this endpoint takes the file field(s) {allowed}")
            elif key in options:
                raise invalid(f"option {key!r} is given twice")
            else:
                options[key] = value
        if blob is None:
            raise invalid("the form has no file field 'audio'")
    elif ctype in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
        raise invalid(f"a {ctype} body cannot carry audio: send the audio file's bytes as the body (Content-Type "
                      "audio/wav or application/octet-stream) or as the file field 'audio' of a multipart form; "
                      "paths and URLs are never opened")
    else:
        blob = await request.body()
    for key in options:
        if key in PATH_LIKE_FIELDS:
            raise _path_refusal(key)
    if not blob:
        raise invalid("no audio: the request body is empty")
    return blob, options, files


def decode_base64_audio(value: Any, field: str) -> bytes:
    """A JSON field holding an audio file's bytes as base64 -> the bytes; anything else is a 422 naming it."""
    if not isinstance(value, str) or not value:
        raise invalid(f"field {field!r} must be a non-empty base64 string of an audio file's bytes")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise invalid(f"field {field!r} is not valid base64") from None


def _options(items: list[tuple[str, str]], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            raise invalid(f"option {key!r} is given twice in the {where}")
        out[key] = value
    return out


def check_options(options: dict[str, str], allowed: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    """Convert each option with its parser; unknown options and bad values are a 422 naming them."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise invalid(f"unknown option(s) {unknown}; this endpoint takes {sorted(allowed)}")
    out = {}
    for key, value in options.items():
        try:
            out[key] = allowed[key](value)
        except ValueError as e:
            raise invalid(f"option {key}={value!r}: {e}") from None
    return out


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_format(value: str) -> str:
    if value not in AUDIO_FORMATS:
        raise ValueError(f"expected one of {AUDIO_FORMATS}")
    return value


async def read_json_object(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object body with only ``allowed`` keys; path-like keys get the path refusal."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise invalid(f"expected a JSON body (Content-Type application/json), got {ctype or 'none'!r}")
    try:
        body = await request.json()
    except ValueError as e:
        raise invalid(f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise invalid(f"the JSON body must be an object, got {type(body).__name__}")
    for key in body:
        if key in PATH_LIKE_FIELDS:
            raise _path_refusal(key)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise invalid(f"unknown field(s) {unknown}; this endpoint takes {list(allowed)}")
    return body


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """``[T]`` float32 -> a 16-bit PCM WAV file's bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def audio_response(audio: np.ndarray, sample_rate: int, fmt: str, text: str | None = None) -> Response:
    """An audio result: WAV bytes (``X-Audio-Duration`` header, and ``X-Text`` percent-encoded when there is text),
    or with ``fmt="json"`` ``{"audio_wav_base64", "sample_rate", "duration", "text"}``."""
    wav = wav_bytes(audio, sample_rate)
    duration = round(len(audio) / sample_rate, 3)
    if fmt == "json":
        return JSONResponse({"audio_wav_base64": base64.b64encode(wav).decode("ascii"), "sample_rate": sample_rate,
                             "duration": duration, "text": text})
    headers = {"X-Audio-Duration": f"{duration:g}"}
    if text is not None:
        headers["X-Text"] = quote(text)
    return Response(wav, media_type="audio/wav", headers=headers)
