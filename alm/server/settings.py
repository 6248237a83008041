"""The server's settings: one typed, validated, frozen dataclass (``alm serve`` options map onto its fields)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from alm.generation import MAX_AUDIO_SECONDS

MAX_BODY_BYTES = 8 * 2**20  # 8 MiB: 4 min of 16 kHz 16-bit mono WAV, far beyond MAX_AUDIO_SECONDS of any format
QUANTIZE_CHOICES = ("int8",)


@dataclass(frozen=True)
class ServerSettings:
    """How ``alm serve`` batches and what it accepts.

    Attributes:
        max_batch: most requests of one task decoded together in one ``generate`` call.
        max_wait_ms: how long the batcher waits after a batch's first request for more to join it.
        queue_size: most requests waiting per task (beyond the batch being decoded); more get HTTP 503.
        batching: ``False`` decodes one request at a time (``max_batch`` 1, no waiting), for comparison.
        max_body_bytes: largest request body; larger ones get HTTP 413.
        max_audio_seconds: longest input audio; longer gets HTTP 422.
        max_text_chars: longest text to synthesize; longer gets HTTP 422.
        max_continue_seconds: most seconds of continuation one request may ask for.
        request_timeout_s: a request not answered within this many seconds gets HTTP 504.
        quantize: ``"int8"`` when the decoder was quantized (reported by ``/health``), else ``None``.
    """

    max_batch: int = 8
    max_wait_ms: float = 5.0
    queue_size: int = 64
    batching: bool = True
    max_body_bytes: int = MAX_BODY_BYTES
    max_audio_seconds: float = MAX_AUDIO_SECONDS
    max_text_chars: int = 500
    max_continue_seconds: float = 10.0
    request_timeout_s: float = 300.0
    quantize: str | None = None

    def __post_init__(self) -> None:
        checks = [
            ("max_batch", self.max_batch >= 1, ">= 1"), ("max_wait_ms", self.max_wait_ms >= 0, ">= 0"),
            ("queue_size", self.queue_size >= 1, ">= 1"), ("max_body_bytes", self.max_body_bytes >= 1024, ">= 1024"),
            ("max_audio_seconds", 0 < self.max_audio_seconds <= MAX_AUDIO_SECONDS, f"in (0, {MAX_AUDIO_SECONDS:g}]"),
            ("max_text_chars", self.max_text_chars >= 1, ">= 1"),
            ("max_continue_seconds", 0 < self.max_continue_seconds <= MAX_AUDIO_SECONDS,
             f"in (0, {MAX_AUDIO_SECONDS:g}]"),
            ("request_timeout_s", self.request_timeout_s > 0, "> 0"),
        ]
        for name, ok, rule in checks:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value) or not ok:
                raise ValueError(f"{name} must be {rule}, got {value!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES} or None, got {self.quantize!r}")

    @property
    def batch_limit(self) -> int:
        """Requests per batch in effect: 1 without batching."""
        return self.max_batch if self.batching else 1

    @property
    def wait_s(self) -> float:
        """Seconds a batch waits for more requests in effect: 0 without batching."""
        return self.max_wait_ms / 1000 if self.batching else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
