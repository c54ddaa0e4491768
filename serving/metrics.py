"""The server's Prometheus metrics (served at /monitoring/prometheus/metrics, like TF Serving's endpoint)."""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    """Counters and histograms of one server, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cvrank_serving_requests", "Requests handled, by API, method and status code.",
                                ["api", "method", "code"], registry=self.registry)
        self.errors = Counter("cvrank_serving_request_errors", "Requests answered with an error, by API and method.",
                              ["api", "method"], registry=self.registry)
        self.latency = Histogram("cvrank_serving_request_latency_seconds", "Time from request to response.",
                                 ["api", "method"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("cvrank_serving_batch_size", "Rows per TensorFlow call (server-side batching).",
                                    ["signature"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.model_version = Gauge("cvrank_serving_model_version", "The version being served (0: none).",
                                   ["model"], registry=self.registry)
        self.load_failures = Counter("cvrank_serving_version_load_failures", "Versions that failed to load.",
                                     ["model"], registry=self.registry)

    def observe(self, api: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(api, method, code).inc()
        if code != "OK":
            self.errors.labels(api, method).inc()
        self.latency.labels(api, method).observe(seconds)

    def set_version(self, model: str, version: Optional[int]) -> None:
        self.model_version.labels(model).set(version or 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
