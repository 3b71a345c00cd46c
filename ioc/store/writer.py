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
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ioc.batching import Batches
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
        self._overflow = OverflowLog(log, "store write queue")
        self._group_commit = group_commit
        self._queue_limit = queue_limit
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._batches: Batches[Sample] = Batches(
            limit=queue_limit, batch_size=batch_size, flush_interval=flush_interval,
            stop_timeout=stop_timeout)
        self._inflight_seq = 0             # sequence number of the batch in flight's first
        self._next_seq = 0                 # sequence number of the next accepted sample
        self._flush_requested = False
        self._progress = asyncio.Event()   # replaced each time samples leave the queue
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
        self._queue_gauge.set_function(lambda: self._batches.queued)
        self._flush_seconds = Histogram(
            "ioc_store_flush_duration_seconds",
            "Time taken by one successful batch write (one transaction) to the store.",
            buckets=_FLUSH_BUCKETS, registry=registry)

    @property
    def queued(self) -> int:
        """Samples accepted and not yet written or dropped."""
        return self._batches.queued

    # -- producer side -------------------------------------------------------------------

    def submit(self, samples: Sequence[Sample]) -> None:
        """Queue samples for writing; never blocks, never raises on a full queue."""
        if not samples:
            return
        pushed = self._batches.push_dropping_oldest(samples)
        self._next_seq += pushed.added
        if pushed.dropped:
            self._dropped.inc(pushed.dropped)
            self._overflow.dropped(pushed.dropped, queue_limit=self._queue_limit)
            if pushed.from_buffer:
                self._notify_progress()
        else:
            self._overflow.ok()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task on the running event loop."""
        if self._task is not None:
            raise RuntimeError("StoreWriter already started")
        self._batches.restart()
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="ioc-store-writer")

    async def stop(self) -> None:
        """Write what is buffered (trying for at most ``stop_timeout`` s), then end the task.

        Samples still unwritten at the deadline are counted as dropped and logged.
        """
        task = self._task
        if task is None:
            return
        try:
            await self._batches.stop(task)
            self._give_up()  # nothing left unless the task ran out of time
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
            self._batches.wake.set()
            progress = asyncio.ensure_future(self._progress.wait())
            try:
                await asyncio.wait({progress, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                progress.cancel()

    # -- the background task -------------------------------------------------------------

    def _pending_seq(self) -> int:
        """Sequence number of the oldest sample not yet written or dropped."""
        batches = self._batches
        return self._inflight_seq if batches.inflight else self._next_seq - len(batches.buffer)

    def _notify_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _run(self) -> None:
        batches = self._batches
        while True:
            await batches.idle(urgent=self._flush_requested)
            self._flush_requested = False
            if not await self._drain():
                self._give_up()
            if batches.stopping.is_set() and not batches.buffer:
                return

    async def _drain(self) -> bool:
        """Write the buffer in batches; False if shutdown's deadline passed first."""
        batches = self._batches
        while batches.buffer:
            # A flush starts at batch_size samples, but a backlog (the database was slow or
            # away, or ingest outruns single batches) is written in transactions of up to
            # ``group_commit`` batches: each commit costs about one page write per series it
            # touches, so fewer, larger commits catch up faster.
            self._inflight_seq = self._next_seq - len(batches.buffer)
            batch = batches.take(batches.batch_size * self._group_commit)
            written = False
            try:
                written = await self._write(batch)
            finally:
                # deadline passed or task cancelled: the batch goes back to the head
                batches.settle(written)
                self._notify_progress()
            if not written:
                return False
        return True

    async def _write(self, batch: list[Sample]) -> bool:
        """Append one batch, retrying with backoff; False only when shutdown gives up."""
        loop = asyncio.get_running_loop()
        batches = self._batches
        delay = self._retry_initial
        while True:
            if batches.past_deadline():
                return False
            started = time.perf_counter()
            try:
                async with asyncio.timeout_at(batches.deadline):
                    await self._store.append(batch)
            except Exception as exc:  # any failure is retried; the batch is never lost here
                self._record_failure(exc, loop.time())
                await batches.backoff(delay)
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

    def _give_up(self) -> None:
        lost = self._batches.clear()
        if lost:
            log.error("store %s: stopping with %d samples unwritten; they are lost",
                      self._store.url_for_display, lost)
            self._dropped.inc(lost)
            self._notify_progress()
