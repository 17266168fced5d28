"""Prometheus metrics for `GET /metrics`, per model and version (the counters Triton exports, our names),
and the statistics of `/v2/models/{m}/stats` read from the same counters (one source for both).

A private registry keeps the output to what the server measures (no process collectors from other code
in the same interpreter, and a second server in one process does not collide).

With --workers N the parent calls `use_multiprocess(DIR)` before forking: prometheus_client's multiprocess
mode, where every worker writes its values to memory-mapped files in DIR and whichever worker answers
`/metrics` or `/stats` sums them (the last-inference time takes the maximum), so every worker gives the
same totals for the whole server.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST
_MULTIPROCESS: dict[str, str | None] = {"dir": None}


def use_multiprocess(directory: str) -> None:
    """Switch prometheus_client to multiprocess mode with its files in `directory` (before any worker
    creates a metric value; the parent calls this before forking)."""
    from prometheus_client import values

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()
    _MULTIPROCESS["dir"] = directory


class ModelMetrics:
    """The metric children of one model version (labels() is slow on the hot path: resolved once)."""

    __slots__ = (
        "success",
        "failure",
        "failure_s",
        "latency",
        "queue",
        "batch",
        "rows",
        "execs",
        "compute_s",
        "last",
        "_rejected",
    )

    def __init__(self, m: Metrics, model: str, version: str) -> None:
        self.success = m.success.labels(model, version)
        self.failure = m.failure.labels(model, version)
        self.failure_s = m.failure_seconds.labels(model, version)
        self.latency = m.latency.labels(model, version)
        self.queue = m.queue.labels(model, version)
        self.batch = m.batch.labels(model, version)
        self.rows = m.rows.labels(model, version)
        self.execs = m.execs.labels(model, version)
        self.compute_s = m.compute.labels(model, version)
        self.last = m.last.labels(model, version)
        self._rejected = {r: m.rejected.labels(model, version, r) for r in ("queue_full", "timeout")}

    def ok(self, seconds: float, now: float) -> None:
        self.success.inc()
        self.latency.observe(seconds)
        self.last.set(now)

    def failed(self, seconds: float) -> None:
        self.failure.inc()
        self.failure_s.inc(seconds)

    def queued(self, seconds: float, rows: int) -> None:
        """One request's wait for its batch, and the rows of that batch."""
        self.queue.observe(seconds)
        self.batch.observe(rows)

    def executed(self, rows: int, seconds: float) -> None:
        """One onnxruntime call over `rows` rows."""
        self.rows.inc(rows)
        self.execs.inc()
        self.compute_s.inc(seconds)

    def rejected(self, reason: str) -> None:
        self._rejected[reason].inc()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = _MULTIPROCESS["dir"]
        labels = ["model", "version"]
        reg = self.registry
        self.success = Counter(
            "toolkit_inference_request_success", "Successful inference requests", labels, registry=reg
        )
        self.failure = Counter(
            "toolkit_inference_request_failure",
            "Failed inference requests (client errors and refusals included)",
            labels,
            registry=reg,
        )
        self.failure_seconds = Counter(
            "toolkit_inference_request_failure_duration_seconds",
            "Time spent on failed inference requests",
            labels,
            registry=reg,
        )
        self.rejected = Counter(
            "toolkit_inference_request_rejected",
            "Requests refused with 503 before running: queue_full (--max-queue-size) or timeout "
            "(waited past --queue-timeout-s or the request's own limit)",
            [*labels, "reason"],
            registry=reg,
        )
        self.latency = Histogram(
            "toolkit_inference_request_duration_seconds",
            "Inference request time, from the body read to the response built (successful requests)",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.queue = Histogram(
            "toolkit_inference_queue_duration_seconds",
            "Time a request waited for its batch to start",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch = Histogram(
            "toolkit_inference_batch_size",
            "Rows in the onnxruntime call that served a request (one observation per request)",
            labels,
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.rows = Counter(
            "toolkit_inference_count", "Rows inferred (batch rows summed)", labels, registry=reg
        )
        self.execs = Counter("toolkit_inference_exec_count", "onnxruntime calls", labels, registry=reg)
        self.compute = Counter(
            "toolkit_inference_compute_duration_seconds", "Time spent in onnxruntime", labels, registry=reg
        )
        self.last = Gauge(
            "toolkit_inference_last_timestamp_seconds",
            "Unix time of the last successful inference",
            labels,
            registry=reg,
            multiprocess_mode="max",
        )
        self._children: dict[tuple[str, str], ModelMetrics] = {}

    def for_model(self, model: str, version: str) -> ModelMetrics:
        key = (model, version)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = ModelMetrics(self, model, version)
        return found

    def _families(self) -> Any:
        if self.multiprocess_dir is None:
            return self.registry.collect()
        from prometheus_client.multiprocess import MultiProcessCollector

        return MultiProcessCollector(None, path=self.multiprocess_dir).collect()

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def statistics(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Triton's statistics extension for each (model, version) in `keys`, from the counters (summed over
        workers in multiprocess mode); durations in ns, last_inference in ms since the epoch."""
        wanted = set(keys)
        values: dict[tuple[str, str, str], float] = {}
        for family in self._families():
            for s in family.samples:
                key = (s.labels.get("model"), s.labels.get("version"))
                if key in wanted and "le" not in s.labels and "reason" not in s.labels:
                    values[(*key, s.name)] = s.value
        out = []
        for model, version in keys:

            def get(name: str, scale: float = 1.0) -> int:
                return int(values.get((model, version, name), 0.0) * scale)  # noqa: B023

            execs = get("toolkit_inference_exec_count_total")
            out.append(
                {
                    "name": model,
                    "version": version,
                    "last_inference": get("toolkit_inference_last_timestamp_seconds", 1e3),
                    "inference_count": get("toolkit_inference_count_total"),
                    "execution_count": execs,
                    "inference_stats": {
                        "success": {
                            "count": get("toolkit_inference_request_success_total"),
                            "ns": get("toolkit_inference_request_duration_seconds_sum", 1e9),
                        },
                        "fail": {
                            "count": get("toolkit_inference_request_failure_total"),
                            "ns": get("toolkit_inference_request_failure_duration_seconds_total", 1e9),
                        },
                        "queue": {
                            "count": get("toolkit_inference_queue_duration_seconds_count"),
                            "ns": get("toolkit_inference_queue_duration_seconds_sum", 1e9),
                        },
                        "compute_input": {"count": execs, "ns": 0},
                        "compute_infer": {
                            "count": execs,
                            "ns": get("toolkit_inference_compute_duration_seconds_total", 1e9),
                        },
                        "compute_output": {"count": execs, "ns": 0},
                    },
                }
            )
        return out
