"""The single task that moves samples from the pipeline into the store.

Collectors must never wait for the database: ``submit`` only appends to an in-memory buffer,
and one background task turns the buffer into a few large transactions. When the database is
unavailable the buffer absorbs the backlog up to ``queue_limit`` samples and the same batch is
retried with exponential backoff, so a restart of PostgreSQL or a locked SQLite file costs no
data unless the outage outlasts the buffer.

Overflow drops the **oldest** buffered samples. During a long outage the newest data is the
valuable part: it is what the wall screen and operators look at when the database returns,
while the oldest samples describe a period already lost in part. Dropping new samples instead
would freeze the stored history at the start of the outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from contextlib import suppress

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ioc.model import Sample
from ioc.overflow import OverflowLog
from ioc.store.base import Store

log = logging.getLogger("ioc.store")

_FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0, 30.0)


class StoreWriter:
    """Buffers samples and writes them to ``store`` in batches from one background task.

    Every accepted sample gets a sequence number; samples leave the buffer in that order
    (written, or dropped oldest-first), which is what lets :meth:`flush` wait for exactly
    the samples submitted before it was called.
    """

    def __init__(self, store: Store, registry: CollectorRegistry, *,
                 flush_interval: float = 1.0, batch_size: int = 5000,
                 queue_limit: int = 1_000_000, retry_initial: float = 0.5,
                 retry_max: float = 30.0, stop_timeout: float = 5.0,
                 group_commit: int = 4) -> None:
        if flush_interval <= 0 or batch_size < 1 or queue_limit < 1 or group_commit < 1:
            raise ValueError("flush_interval, batch_size and queue_limit must be positive")
        if retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError("need 0 < retry_initial <= retry_max")
        self._store = store
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._overflow = OverflowLog(log, "store write queue")
        self._group_commit = group_commit
        self._queue_limit = queue_limit
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stop_timeout = stop_timeout

        self._buffer: deque[Sample] = deque()
        self._inflight: list[Sample] = []  # the batch being written; still counts as queued
        self._inflight_seq = 0             # sequence number of _inflight[0]
        self._next_seq = 0                 # sequence number of the next accepted sample
        self._flush_requested = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._progress = asyncio.Event()   # replaced each time samples leave the queue
        self._stop_deadline: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._failed_attempts = 0

        self._written = Counter(
            "ioc_store_samples_written_total",
            "Samples committed to the store by the writer task.",
            registry=registry)
        self._dropped = Counter(
            "ioc_store_samples_dropped_total",
            "Samples discarded without being stored: the oldest buffered samples when the "
            "write queue was full, or those still unwritten when shutdown's final flush "
            "timed out.",
            registry=registry)
        self._errors = Counter(
            "ioc_store_write_errors_total",
            "Failed attempts to write a batch to the store; each is retried with backoff.",
            registry=registry)
        self._queue_gauge = Gauge(
            "ioc_store_write_queue_samples",
            "Samples accepted but not yet written (buffered plus the batch being written). "
            "Growing steadily means the store cannot keep up or is unavailable.",
            registry=registry)
        self._queue_gauge.set_function(lambda: len(self._buffer) + len(self._inflight))
        self._flush_seconds = Histogram(
            "ioc_store_flush_duration_seconds",
            "Time taken by one successful batch write (one transaction) to the store.",
            buckets=_FLUSH_BUCKETS, registry=registry)

    @property
    def queued(self) -> int:
        """Samples accepted and not yet written or dropped."""
        return len(self._buffer) + len(self._inflight)

    # -- producer side -------------------------------------------------------------------

    def submit(self, samples: Sequence[Sample]) -> None:
        """Queue samples for writing; never blocks, never raises on a full queue."""
        if not samples:
            return
        space = self._queue_limit - self.queued
        if len(samples) > space:
            overflow = len(samples) - space
            from_buffer = min(overflow, len(self._buffer))
            for _ in range(from_buffer):
                self._buffer.popleft()
            # Still too many (the new batch alone exceeds the space): its oldest go too.
            from_new = overflow - from_buffer
            samples = samples[from_new:] if from_new < len(samples) else ()
            self._dropped.inc(overflow)
            self._overflow.dropped(overflow, queue_limit=self._queue_limit)
            if from_buffer:
                self._notify_progress()
        else:
            self._overflow.ok()
        self._buffer.extend(samples)
        self._next_seq += len(samples)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task on the running event loop."""
        if self._task is not None:
            raise RuntimeError("StoreWriter already started")
        self._stopping.clear()
        self._stop_deadline = None
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="ioc-store-writer")

    async def stop(self) -> None:
        """Write what is buffered (trying for at most ``stop_timeout`` s), then end the task.

        Samples still unwritten at the deadline are counted as dropped and logged.
        """
        task = self._task
        if task is None:
            return
        loop = asyncio.get_running_loop()
        self._stop_deadline = loop.time() + self._stop_timeout
        self._stopping.set()
        self._wake.set()
        try:
            # The task honours the deadline itself; the grace covers a store call that
            # ignores cancellation for a moment.
            await asyncio.wait_for(asyncio.shield(task), timeout=self._stop_timeout + 1.0)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            self._give_up()
        finally:
            self._task = None

    async def flush(self) -> None:
        """Write now; return once every sample submitted before this call left the queue.

        Waits through retries while the store fails (wrap it in a timeout if that matters);
        raises RuntimeError if the writer is not running.
        """
        target = self._next_seq
        while self._pending_seq() < target:
            task = self._task
            if task is None or task.done():
                raise RuntimeError("StoreWriter is not running; start() it first")
            self._flush_requested = True
            self._wake.set()
            progress = asyncio.ensure_future(self._progress.wait())
            try:
                await asyncio.wait({progress, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                progress.cancel()

    # -- the background task -------------------------------------------------------------

    def _pending_seq(self) -> int:
        """Sequence number of the oldest sample not yet written or dropped."""
        return self._inflight_seq if self._inflight else self._next_seq - len(self._buffer)

    def _notify_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _run(self) -> None:
        while True:
            idle = (not self._stopping.is_set() and not self._flush_requested
                    and len(self._buffer) < self._batch_size)
            if idle:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._flush_interval)
            self._wake.clear()
            self._flush_requested = False
            if not await self._drain():
                self._give_up()
            if self._stopping.is_set() and not self._buffer:
                return

    async def _drain(self) -> bool:
        """Write the buffer in batches; False if shutdown's deadline passed first."""
        while self._buffer:
            # A flush starts at batch_size samples, but a backlog (the database was slow or
            # away, or ingest outruns single batches) is written in transactions of up to
            # ``group_commit`` batches: each commit costs about one page write per series it
            # touches, so fewer, larger commits catch up faster.
            count = min(self._batch_size * self._group_commit, len(self._buffer))
            self._inflight_seq = self._next_seq - len(self._buffer)
            popleft = self._buffer.popleft
            batch = self._inflight = [popleft() for _ in range(count)]
            written = False
            try:
                written = await self._write(batch)
            finally:
                if not written:  # deadline passed or task cancelled: back to the head
                    self._buffer.extendleft(reversed(batch))
                self._inflight = []
                self._notify_progress()
            if not written:
                return False
        return True

    async def _write(self, batch: list[Sample]) -> bool:
        """Append one batch, retrying with backoff; False only when shutdown gives up."""
        loop = asyncio.get_running_loop()
        delay = self._retry_initial
        while True:
            deadline = self._stop_deadline
            if deadline is not None and loop.time() >= deadline:
                return False
            started = time.perf_counter()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._store.append(batch)
            except Exception as exc:  # any failure is retried; the batch is never lost here
                self._record_failure(exc, loop.time())
                await self._backoff(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self._flush_seconds.observe(time.perf_counter() - started)
            self._written.inc(len(batch))
            if self._failing_since is not None:
                log.warning("store %s: writes recovered after %d failed attempts over %.1f s",
                            self._store.url_for_display, self._failed_attempts,
                            loop.time() - self._failing_since)
                self._failing_since = None
                self._failed_attempts = 0
            return True

    def _record_failure(self, exc: Exception, now: float) -> None:
        self._errors.inc()
        self._failed_attempts += 1
        if self._failing_since is None:
            self._failing_since = now
            log.warning("store %s: writes failing (%s: %s); retrying with backoff up to %.0f s, "
                        "buffering up to %d samples", self._store.url_for_display,
                        type(exc).__name__, exc, self._retry_max, self._queue_limit)

    async def _backoff(self, delay: float) -> None:
        """Sleep before a retry; stop() cuts the sleep short so shutdown retries at once."""
        if not self._stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            return
        # Already stopping: keep backing off, but never past the stop deadline.
        remaining = (self._stop_deadline or 0.0) - asyncio.get_running_loop().time()
        await asyncio.sleep(max(0.0, min(delay, remaining)))

    def _give_up(self) -> None:
        lost = len(self._buffer) + len(self._inflight)
        if lost:
            log.error("store %s: stopping with %d samples unwritten; they are lost",
                      self._store.url_for_display, lost)
            self._dropped.inc(lost)
            self._buffer.clear()
            self._inflight = []
            self._notify_progress()
