"""An asyncio dynamic batcher: requests of one task that arrive close together are decoded as one batch.

Each task has a bounded queue and a collector coroutine. The collector takes the first waiting request, then
keeps taking requests of the same task until it has ``max_batch`` of them or ``max_wait_ms`` have passed since
the first, and hands the batch to one worker thread (shared by all tasks, so the model decodes one batch at a
time) that runs :func:`alm.batching.run_batch`. While a batch is being decoded the next one accumulates in the
queue, so under load batches fill up without waiting. A full queue refuses at once (:class:`QueueFullError`,
HTTP 503) rather than letting latency grow without bound.

Requests in flight per task are therefore at most ``max_batch`` (being decoded) + ``queue_size`` (waiting).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from alm.api import TaskJob
from alm.batching import BatchOutput
from alm.server.metrics import ServerMetrics
from alm.server.settings import ServerSettings
from alm.vocab import TASKS

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[TaskJob]], list[BatchOutput]]


class QueueFullError(RuntimeError):
    """The task's queue holds ``queue_size`` requests already (HTTP 503: retry later)."""


class BatcherStoppedError(RuntimeError):
    """The server is shutting down (HTTP 503)."""


@dataclass
class _Pending:
    job: TaskJob
    future: asyncio.Future[BatchOutput]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Collects jobs per task into batches and decodes them on one worker thread.

    Args:
        runner: decodes a batch of jobs of one task (``run_batch(model, jobs)``), one output per job in order.
        settings: ``batch_limit``, ``wait_s`` and ``queue_size`` are read from it.
        metrics: updated with batch sizes, batch times, queue depths and rejections (optional).

    Call :meth:`start` inside the running event loop (the app's lifespan does) and :meth:`stop` at shutdown.
    """

    def __init__(self, runner: Runner, settings: ServerSettings, metrics: ServerMetrics | None = None) -> None:
        self.runner = runner
        self.settings = settings
        self.metrics = metrics
        self._queues: dict[str, asyncio.Queue[_Pending]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._depth = dict.fromkeys(TASKS, 0)
        self._changed = threading.Condition()  # notified whenever a queue's depth changes

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        """Create the queues and start one collector per task (idempotent)."""
        if self._tasks:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alm-batch")
        self._queues = {task: asyncio.Queue(maxsize=self.settings.queue_size) for task in TASKS}
        self._tasks = [asyncio.create_task(self._collect(task), name=f"alm-batcher-{task}") for task in TASKS]
        log.info("batcher started: max_batch=%d, max_wait=%.1f ms, queue_size=%d per task",
                 self.settings.batch_limit, self.settings.wait_s * 1000, self.settings.queue_size)

    async def stop(self) -> None:
        """Stop collecting; requests still waiting fail with :class:`BatcherStoppedError`."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for q in self._queues.values():
            while not q.empty():
                p = q.get_nowait()
                if not p.future.done():
                    p.future.set_exception(BatcherStoppedError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def depth(self, task: str) -> int:
        """Requests of ``task`` waiting (not yet taken into a batch)."""
        with self._changed:
            return self._depth[task]

    def wait_for_depth(self, task: str, n: int, timeout: float = 30.0) -> bool:
        """Block (from another thread) until ``task``'s queue holds at least ``n`` requests; ``False`` on timeout.
        For tests and for draining: it waits on a condition, it does not poll."""
        with self._changed:
            return self._changed.wait_for(lambda: self._depth[task] >= n, timeout)

    async def submit(self, job: TaskJob) -> BatchOutput:
        """Queue a prepared job and wait for its output.

        Raises:
            QueueFullError: the task's queue is full.
            BatcherStoppedError: the batcher is not running.
        """
        if not self._tasks:
            raise BatcherStoppedError("the batcher is not running")
        queue = self._queues[job.task]
        pending = _Pending(job, asyncio.get_running_loop().create_future())
        try:
            queue.put_nowait(pending)
        except asyncio.QueueFull:
            if self.metrics:
                self.metrics.rejected.labels(job.task).inc()
            raise QueueFullError(f"the {job.task} queue is full ({self.settings.queue_size} requests waiting); "
                                 "retry later") from None
        self._moved(job.task, +1)
        return await pending.future

    def _moved(self, task: str, delta: int) -> None:
        with self._changed:
            self._depth[task] += delta
            depth = self._depth[task]
            self._changed.notify_all()
        if self.metrics:
            self.metrics.queue_depth.labels(task).set(depth)

    async def _take(self, queue: asyncio.Queue[_Pending], task: str, timeout: float | None) -> _Pending | None:
        """The next request, waiting at most ``timeout`` seconds (``None``: forever); ``None`` if none came."""
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout is not None and timeout <= 0:
                return None
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                return None
        self._moved(task, -1)
        return item

    async def _collect(self, task: str) -> None:
        queue = self._queues[task]
        loop = asyncio.get_running_loop()
        limit, wait = self.settings.batch_limit, self.settings.wait_s
        while True:
            first = await self._take(queue, task, None)
            batch = [first]
            deadline = loop.time() + wait
            while len(batch) < limit:
                item = await self._take(queue, task, deadline - loop.time())
                if item is None:
                    break
                batch.append(item)
            batch = [p for p in batch if not p.future.done()]  # drop requests whose client gave up
            if not batch:
                continue
            await self._decode(task, batch, loop)

    async def _decode(self, task: str, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        start = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self.runner, [p.job for p in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"the runner returned {len(outputs)} outputs for {len(batch)} jobs")
        except asyncio.CancelledError:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(BatcherStoppedError("the server is shutting down"))
            raise
        except Exception as e:  # noqa: BLE001 - the batch fails; each waiting request gets the error
            log.exception("decoding a batch of %d %s requests failed", len(batch), task)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        seconds = time.perf_counter() - start
        if self.metrics:
            self.metrics.batch_size.labels(task).observe(len(batch))
            self.metrics.batch_seconds.labels(task).observe(seconds)
        log.debug("%s: decoded a batch of %d in %.3f s", task, len(batch), seconds)
        for p, out in zip(batch, outputs):
            if not p.future.done():
                p.future.set_result(out)
