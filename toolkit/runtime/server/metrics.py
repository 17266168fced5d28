"""Prometheus metrics for `GET /metrics`, per model and version (the counters Triton exports, our names).

A private registry keeps the output to what the server measures (no process collectors from other code
in the same interpreter, and a second server in one process does not collide).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model", "version"]
        self.success = Counter(
            "toolkit_inference_request_success",
            "Successful inference requests",
            labels,
            registry=self.registry,
        )
        self.failure = Counter(
            "toolkit_inference_request_failure",
            "Failed inference requests (client errors included)",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "toolkit_inference_request_duration_seconds",
            "Inference request time, from the body read to the response built",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Histogram(
            "toolkit_inference_queue_duration_seconds",
            "Time a request waited for its batch to start",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch = Histogram(
            "toolkit_inference_batch_size",
            "Rows in the onnxruntime call that served a request (one observation per request)",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], tuple] = {}

    def for_model(self, model: str, version: str) -> tuple:
        """(success, failure, latency, queue, batch) children, cached: labels() is slow on the hot path."""
        key = (model, version)
        found = self._children.get(key)
        if found is None:
            found = tuple(
                m.labels(model, version)
                for m in (self.success, self.failure, self.latency, self.queue, self.batch)
            )
            self._children[key] = found
        return found

    def observer(self, model: str, version: str):
        _, _, _, queue, batch = self.for_model(model, version)

        def observe(queue_s: float, rows: int) -> None:
            queue.observe(queue_s)
            batch.observe(rows)

        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
