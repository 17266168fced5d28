"""Dynamic batching: concurrent requests for one model version run as one onnxruntime call.

Requests queue on the event loop; a batch is cut when `max_batch_size` rows are waiting, or when the oldest
request has waited `max_queue_delay_ms`, or at once when delay is 0 (then whatever queued while the previous
batch ran goes together, which is where batching pays under load without adding latency when idle). Rows
are stacked along axis 0 only for requests whose other dimensions and dtypes agree; the rest wait for the
next batch. Outputs are split back by row count, so each caller gets exactly its own rows. A model whose
inputs or outputs have no variable first dimension is run one request at a time.

At most `instances` batches run at once, each in the thread pool (onnxruntime releases the GIL).

Overload: at most `max_queue_size` requests wait (0: no bound); one more is refused at once with 503 and a
Retry-After hint rather than queued behind the others, so latency stays bounded under any load. A request
still waiting when its wait limit passes (`queue_timeout_s`, or less when the request or the gRPC deadline
asks) is answered 503 and never run: while the queue holds requests with a limit, a sweeper task checks it
every 2-50 ms (a tenth of the shortest limit), so the hot path pays nothing for it. A request whose batch
has started runs to the end (onnxruntime is not interrupted).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from toolkit.errors import one_line
from toolkit.runtime.server.protocol import ServeError

Arrays = dict[str, np.ndarray]


RETRY_AFTER_S = 1  # the hint sent with a 503 for a full queue or a request that waited too long


class _Item:
    __slots__ = ("feeds", "rows", "key", "future", "enqueued", "deadline")

    def __init__(self, feeds: Arrays, rows: int, key: tuple, future: asyncio.Future, wait_s: float) -> None:
        self.feeds, self.rows, self.key, self.future = feeds, rows, key, future
        self.enqueued = time.perf_counter()
        self.deadline = self.enqueued + wait_s if wait_s > 0 else None


class Batcher:
    """submit(feeds) -> all outputs of the model for those rows (awaitable, on the server's loop)."""

    def __init__(
        self,
        model: Any,
        executor: ThreadPoolExecutor,
        max_batch_size: int = 32,
        max_queue_delay_ms: float = 0.0,
        instances: int = 2,
        metrics: Any = None,
        max_queue_size: int = 0,
        queue_timeout_s: float = 0.0,
    ) -> None:
        self.model = model
        self.executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self.delay = max(0.0, max_queue_delay_ms) / 1000.0
        self.batched = model.batchable and self.max_batch_size > 1
        # metrics.queued(seconds, batch rows) per request, .executed(rows, seconds) per onnxruntime call,
        # .rejected(reason) per refused request ("queue_full" or "timeout"): metrics.ModelMetrics
        self.metrics = metrics
        self.max_queue_size = max(0, max_queue_size)
        self.queue_timeout_s = max(0.0, queue_timeout_s)
        self.sweeper: asyncio.Task | None = None
        self.queue: deque[_Item] = deque()
        self.slots = asyncio.Semaphore(max(1, instances))
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.closed = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop once the queue is empty (requests already queued are served)."""
        self.closed = True
        self.wake.set()
        if self.task and not self.task.done():
            await self.task

    async def submit(self, feeds: Arrays, wait_s: float | None = None) -> Arrays:
        """The model's outputs for `feeds`. `wait_s`: the longest this request may wait for its batch to
        start (None: the batcher's queue_timeout_s; the smaller of the two applies)."""
        loop = asyncio.get_running_loop()
        if self.max_queue_size and len(self.queue) >= self.max_queue_size:
            self._drop_done()
            if len(self.queue) >= self.max_queue_size:
                self._refuse("queue_full")
                raise ServeError(
                    503,
                    f"model {self.model.name!r} is overloaded: {len(self.queue)} requests already wait "
                    f"(--max-queue-size {self.max_queue_size}); retry later",
                    retry_after=RETRY_AFTER_S,
                )
        first = next(iter(feeds.values()))
        rows = first.shape[0] if first.ndim else 1
        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in feeds.items()) if self.batched else ()
        future = loop.create_future()
        limit = self.queue_timeout_s
        if wait_s is not None and (not limit or 0 < wait_s < limit):
            limit = wait_s
        item = _Item(feeds, rows, key, future, limit)
        self.queue.append(item)
        if self.task is None or self.task.done():  # first use, or closed while a caller still held it
            self.start()
        if item.deadline is not None and (self.sweeper is None or self.sweeper.done()):
            self.sweeper = loop.create_task(self._sweep())
        self.wake.set()
        return await future

    def _refuse(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected(reason)

    def _drop_done(self) -> None:
        """Forget queued requests already answered (timed out) or abandoned (a cancelled gRPC call)."""
        if any(i.future.done() for i in self.queue):
            self.queue = deque(i for i in self.queue if not i.future.done())

    async def _sweep(self) -> None:
        """While requests with a wait limit are queued: answer those past it with 503."""
        while True:
            limits = [i.deadline - i.enqueued for i in self.queue if i.deadline is not None]
            if not limits:
                return
            await asyncio.sleep(min(0.05, max(0.002, min(limits) / 10)))
            now = time.perf_counter()
            for item in self.queue:
                if item.deadline is not None and now >= item.deadline and not item.future.done():
                    self._refuse("timeout")
                    item.future.set_exception(
                        ServeError(
                            503,
                            f"the request waited {now - item.enqueued:.2f} s for model "
                            f"{self.model.name!r} without starting (limit {item.deadline - item.enqueued:g} s: "
                            "--queue-timeout-s or the request's timeout); retry later",
                            retry_after=RETRY_AFTER_S,
                        )
                    )
            self._drop_done()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                if self.closed:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            await self.slots.acquire()
            if self.batched and self.delay:
                await self._wait_to_fill()
            self._drop_done()
            if not self.queue:  # every waiting request timed out or went away meanwhile
                self.slots.release()
                continue
            batch = self._cut()
            loop.create_task(self._run(batch))

    async def _wait_to_fill(self) -> None:
        deadline = self.queue[0].enqueued + self.delay
        while self.queue and sum(i.rows for i in self.queue) < self.max_batch_size and not self.closed:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), left)
            except asyncio.TimeoutError:
                return

    def _cut(self) -> list[_Item]:
        head = self.queue.popleft()
        batch = [head]
        if not self.batched:
            return batch
        rows = head.rows
        skipped = []
        while self.queue and rows < self.max_batch_size:
            item = self.queue.popleft()
            if item.key == head.key and rows + item.rows <= self.max_batch_size:
                batch.append(item)
                rows += item.rows
            else:
                skipped.append(item)
                if len(skipped) > 64:
                    break
        self.queue.extendleft(reversed(skipped))
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        try:
            start = time.perf_counter()
            rows = sum(i.rows for i in batch)
            if self.metrics is not None:
                for item in batch:
                    self.metrics.queued(start - item.enqueued, rows)
            if len(batch) == 1:
                feeds = batch[0].feeds
            else:
                feeds = {k: np.concatenate([i.feeds[k] for i in batch]) for k in batch[0].feeds}
            loop = asyncio.get_running_loop()
            try:
                outputs = await loop.run_in_executor(self.executor, self.model.run, feeds)
            except Exception as exc:
                if len(batch) > 1:  # one caller's rows may be the cause: run each alone, fail only it
                    await self._run_alone(batch)
                    return
                error = ServeError(400, f"the model fails on these inputs: {one_line(exc)}")
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            if self.metrics is not None:
                self.metrics.executed(rows, time.perf_counter() - start)
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_result(outputs)
                return
            at = 0
            for item in batch:
                part = {k: v[at : at + item.rows] for k, v in outputs.items()}
                at += item.rows
                if not item.future.done():
                    item.future.set_result(part)
        finally:
            self.slots.release()

    async def _run_alone(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        for item in batch:
            start = time.perf_counter()
            try:
                result = await loop.run_in_executor(self.executor, self.model.run, item.feeds)
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(
                        ServeError(400, f"the model fails on these inputs: {one_line(exc)}")
                    )
                continue
            if self.metrics is not None:
                self.metrics.executed(item.rows, time.perf_counter() - start)
            if not item.future.done():
                item.future.set_result(result)
