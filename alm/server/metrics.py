"""Prometheus metrics of one server instance (``GET /metrics``), in a registry of its own so that several apps
(tests) in one process do not share counters."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)  # seconds
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)  # requests per batch


class ServerMetrics:
    """Counters, histograms and gauges the server updates.

    Attributes:
        requests: ``alm_requests_total{endpoint, status}``: answered requests by HTTP status.
        errors: ``alm_errors_total{endpoint, type}``: error responses by error type (``invalid_audio``, ...).
        latency: ``alm_request_seconds{endpoint}``: time from request to response.
        batch_size: ``alm_batch_size{task}``: requests per decoded batch.
        batch_seconds: ``alm_batch_seconds{task}``: time to decode one batch.
        queue_depth: ``alm_queue_depth{task}``: requests waiting.
        rejected: ``alm_rejected_total{task}``: requests refused with 503 because the queue was full.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("alm_requests", "Answered HTTP requests.", ["endpoint", "status"], registry=r)
        self.errors = Counter("alm_errors", "Error responses by type.", ["endpoint", "type"], registry=r)
        self.latency = Histogram("alm_request_seconds", "Request latency.", ["endpoint"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.batch_size = Histogram("alm_batch_size", "Requests per decoded batch.", ["task"], buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_seconds = Histogram("alm_batch_seconds", "Time to decode one batch.", ["task"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("alm_queue_depth", "Requests waiting to be batched.", ["task"], registry=r)
        self.rejected = Counter("alm_rejected", "Requests refused because the queue was full.", ["task"], registry=r)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (``0`` when absent), e.g. ``value("alm_batch_size_count", task="asr")``."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else float(got)
