"""The protocol-neutral core that REST and gRPC share: the model table, one batcher per model version,
request checks against the model, lifecycle flags (ready, draining) and metrics.

Inputs are checked against the model before anything runs (name, datatype, shape), so a client mistake
is a 400 naming the mismatch, never an onnxruntime traceback or a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit import __version__
from toolkit.errors import ToolkitError
from toolkit.runtime.server.batching import RETRY_AFTER_S, Batcher
from toolkit.runtime.server.metrics import Metrics
from toolkit.runtime.server.protocol import InferRequest, ServeError
from toolkit.runtime.server.repository import LoadedModel, Repository, check_name, check_version
from toolkit.runtime.server.timeouts import BODY_TIMEOUT_S, HEADER_TIMEOUT_S

log = logging.getLogger("toolkit.serve")

EXTENSIONS = ["binary_tensor_data", "statistics", "model_repository", "model_configuration"]


@dataclass
class ServeConfig:
    """Everything `toolkit serve` takes besides PATH; the CLI flags carry these names."""

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 8001  # 0 = no gRPC
    max_batch_size: int = 32
    max_queue_delay_ms: float = 0.0
    workers: int = 1
    provider: str = "cpu"
    api_key: str | None = None
    max_body_mb: float = 64.0
    threads: int = 1  # onnxruntime intra-op threads per session
    instances: int = 2  # batches of one model running at once
    max_queue_size: int = 1024  # requests waiting per model version before 503 (0: no bound)
    queue_timeout_s: float = 30.0  # longest wait for a batch to start before 503 (0: none)
    ui: bool = True  # the playground page at GET / (--no-ui: the KServe V1 liveness answer only)
    header_timeout_s: float = HEADER_TIMEOUT_S  # request line + headers within it, else 408 (0: none)
    body_timeout_s: float = BODY_TIMEOUT_S  # the whole request body within it, else 408 (0: none)
    verify_key: str | None = None  # PEM public key: load only models whose signature verifies with it

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class Service:
    def __init__(self, repository: Repository, config: ServeConfig) -> None:
        self.repo = repository
        self.config = config
        self.metrics = Metrics()
        self.executor = ThreadPoolExecutor(
            max_workers=max(2, config.instances * 2), thread_name_prefix="toolkit-infer"
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = False
        self.draining = False
        self.load_error: str | None = None
        repository.on_change.append(self._models_changed)

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load and warm up every model (in a thread: the loop keeps answering `live`), then turn ready."""
        self.loop = asyncio.get_running_loop()
        try:
            await self.loop.run_in_executor(self.executor, self.repo.load_all)
        except ToolkitError as exc:
            self.load_error = str(exc)
            log.error("error: %s", exc)
            raise
        self.ready = True
        names = ", ".join(f"{n} (versions {', '.join(v)})" for n, v in self.repo.models.items())
        log.info("ready: serving %s", names)

    def _models_changed(self, name: str, old: dict, new: dict) -> None:
        """Called from the loading thread after a model's versions were swapped: the replaced versions'
        batchers finish what they hold and stop (requests that still hold an old version are served)."""
        if self.loop is None:
            return
        for model in old.values():
            if model.batcher is not None:
                asyncio.run_coroutine_threadsafe(model.batcher.close(), self.loop)

    def _batcher(self, model: LoadedModel) -> Batcher:
        return Batcher(
            model,
            self.executor,
            max_batch_size=self.config.max_batch_size,
            max_queue_delay_ms=self.config.max_queue_delay_ms,
            instances=self.config.instances,
            metrics=self.metrics.for_model(model.name, model.version),
            max_queue_size=self.config.max_queue_size,
            queue_timeout_s=self.config.queue_timeout_s,
        )

    async def close(self) -> None:
        for versions in self.repo.models.values():
            for model in versions.values():
                if model.batcher is not None:
                    await model.batcher.close()

    # ---- lookups ---------------------------------------------------------------------------------------
    @staticmethod
    def check_names(name: str, version: str | None = None) -> None:
        """400 for a model or version name outside the documented pattern, before any lookup."""
        try:
            check_name(name)
            if version:
                check_version(version)
        except ToolkitError as exc:
            raise ServeError(400, str(exc)) from None

    def model(self, name: str, version: str | None = None) -> LoadedModel:
        self.check_names(name, version)
        model = self.repo.get(name, version)
        if model is None:
            if not self.ready and name in self.repo.layout:
                raise ServeError(503, f"model {name!r} is loading; wait for /v2/health/ready")
            if name not in self.repo.models:
                known = ", ".join(self.repo.models) or "none"
                raise ServeError(404, f"unknown model {name!r}; serving: {known}")
            versions = ", ".join(self.repo.models[name])
            raise ServeError(404, f"model {name!r} has no version {version!r}; versions: {versions}")
        return model

    def versions(self, name: str) -> list[str]:
        return list(self.repo.models.get(name, {}))

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "toolkit", "version": __version__, "extensions": EXTENSIONS}

    # ---- inference -------------------------------------------------------------------------------------
    @staticmethod
    def check_input(model: LoadedModel, name: str, datatype: str, shape: list[int]) -> None:
        """One input's name, datatype and shape against the model (400 naming the mismatch)."""
        spec = model.input_by_name.get(name)
        if spec is None:
            expected = ", ".join(s.name for s in model.inputs)
            raise ServeError(400, f"unknown input {name!r} for model {model.name!r}; it takes: {expected}")
        if datatype != spec.datatype:
            raise ServeError(
                400, f"input {name!r} has datatype {datatype}; model {model.name!r} expects {spec.datatype}"
            )
        if len(shape) != len(spec.shape) or any(e != -1 and e != d for e, d in zip(spec.shape, shape)):
            raise ServeError(
                400, f"input {name!r} has shape {shape}; model {model.name!r} expects {spec.shape} (-1 = any)"
            )

    def check(self, model: LoadedModel, request: InferRequest) -> dict[str, np.ndarray]:
        """The request's inputs as feeds, after checking names, datatypes and shapes against the model."""
        feeds = {}
        for t in request.inputs:
            self.check_input(model, t.name, t.datatype, t.shape)
            if t.name in feeds:
                raise ServeError(400, f"input {t.name!r} is given twice")
            feeds[t.name] = t.array
        missing = [s.name for s in model.inputs if s.name not in feeds]
        if missing:
            raise ServeError(
                400,
                f"missing input {missing[0]!r}; model {model.name!r} takes: {', '.join(model.input_by_name)}",
            )
        if model.batchable and len(feeds) > 1:
            rows = {a.shape[0] for a in feeds.values()}
            if len(rows) > 1:
                raise ServeError(400, f"inputs disagree on the batch size (first dimension): {sorted(rows)}")
        if request.outputs:
            unknown = [o for o in request.outputs if o not in model.output_names]
            if unknown:
                raise ServeError(
                    400,
                    f"unknown output {unknown[0]!r}; model {model.name!r} has: {', '.join(model.output_names)}",
                )
        if any(a.ndim and a.shape[0] == 0 for a in feeds.values()):
            raise ServeError(400, "the request has 0 rows")
        return feeds

    async def infer(
        self, model: LoadedModel, request: InferRequest, wait_s: float | None = None
    ) -> dict[str, np.ndarray]:
        """Run a checked request through the model's batcher; outputs in the model's order (or requested).
        `wait_s`: the longest it may wait for its batch to start (a gRPC deadline; the request's own
        `timeout` parameter, in microseconds as Triton's clients send it, also counts)."""
        if self.draining:
            raise ServeError(503, "the server is shutting down", retry_after=RETRY_AFTER_S)
        start = time.perf_counter()
        metrics = self.metrics.for_model(model.name, model.version)
        if request.timeout_us is not None:
            asked = request.timeout_us / 1e6
            wait_s = asked if wait_s is None else min(wait_s, asked)
        try:
            feeds = self.check(model, request)
            batcher = model.batcher
            if batcher is None:  # made on the loop, on first use
                batcher = model.batcher = self._batcher(model)
            outputs = await batcher.submit(feeds, wait_s)
        except ServeError:
            metrics.failed(time.perf_counter() - start)
            raise
        if request.outputs:
            outputs = {n: outputs[n] for n in request.outputs}
        metrics.ok(time.perf_counter() - start, time.time())
        return outputs

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration: the model's tensors, batching and queue policy (--max-queue-size,
        --queue-timeout-s; a request's own `timeout` may lower its limit)."""
        model = self.model(name, version)
        cfg = model.config(self.config.max_batch_size)
        if "dynamic_batching" in cfg:
            cfg["dynamic_batching"] = {
                "max_queue_delay_microseconds": int(self.config.max_queue_delay_ms * 1000),
                "default_queue_policy": {
                    "timeout_action": "REJECT",
                    "default_timeout_microseconds": int(self.config.queue_timeout_s * 1e6),
                    "allow_timeout_override": True,
                    "max_queue_size": self.config.max_queue_size,
                },
            }
        return cfg

    def model_statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Statistics of every loaded model (no name), or of one model or version (404 if not loaded)."""
        if name:
            self.model(name, version)
        return self.statistics(name, version)

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """The repository's models and versions with their state (READY or UNAVAILABLE)."""
        return [m for m in self.repo.index() if m["state"] == "READY" or not ready_only]

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Triton's statistics for the loaded versions (all, one model's, or one version's). With
        --workers, the whole server's (every worker's counters summed), whichever worker answers."""
        keys = [
            (n, v)
            for n, versions in self.repo.models.items()
            if not name or n == name
            for v in versions
            if not version or v == version
        ]
        return {"model_stats": self.metrics.statistics(keys)}

    async def reload(self, name: str) -> None:
        """Load `name` again from disk; on failure the serving versions stay (400 with the reason)."""
        self.check_names(name)
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, self.repo.load, name)
        except ToolkitError as exc:
            raise ServeError(400, f"failed to load {name!r}, previous versions keep serving: {exc}") from None

    async def unload(self, name: str) -> None:
        self.check_names(name)
        try:
            self.repo.unload(name)
        except ToolkitError as exc:
            raise ServeError(404, str(exc)) from None
