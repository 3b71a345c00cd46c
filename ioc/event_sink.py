"""Where every security event goes: one bounded queue, one writer task, counted once.

Events arrive from the pipeline (``PollOutcome.events``: defacement and other probe findings),
from the push API and from the syslog receiver. None of them waits for the database: they are
queued, and one task writes them in batches to the :class:`~ioc.store.events.EventStore`.
The store returns the events it had not seen before (by ``(source, id)``), and only those are
counted in ``ioc_security_events_total`` and handed to listeners (the live stream, alerting):
a retried push or a re-read SIEM page is stored and counted once.

The queue is bounded. ``offer`` is all-or-nothing and refuses a batch that does not fit, so
the push API can answer 503 and the sender retries (nothing lost); ``submit`` is for sources
that cannot be asked to retry (probes, syslog) and drops what does not fit, counted in
``ioc_security_events_dropped_total``. A SIEM collector bypasses the queue with
:meth:`EventSink.commit`, which writes a page and its cursor in one transaction.

``offer_durable`` is ``offer`` for a sender that must know its events are on disk (a SIEM
forwarder that deletes its copy on a 2xx): it wakes the writer at once and returns when the
batch holding its events is committed. That is a group commit: every push that arrives while
a transaction is being written goes into the next one together, so many durable senders
share one commit instead of paying one each. The queue is FIFO, so "committed" is a count:
the writer adds each batch it commits to ``_written``, and a waiter is released once
``_written`` reaches the position its last event was queued at.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress

from prometheus_client import CollectorRegistry, Counter, Gauge

from ioc import clock
from ioc.batching import Batches
from ioc.events import TimeWindow
from ioc.model import Event
from ioc.overflow import OverflowLog
from ioc.pipeline import PollOutcome
from ioc.store.base import StoreError
from ioc.store.events import EventStore

log = logging.getLogger("ioc.events")

Listener = Callable[[Sequence[Event]], None]


class EventsNotStored(Exception):
    """A durable offer's events were not committed (ioc is stopping)."""


class EventSink:
    def __init__(self, store: EventStore, registry: CollectorRegistry, *,
                 queue_limit: int = 100_000, batch_size: int = 2000,
                 flush_interval: float = 0.5, retention: float = 90 * 86400.0,
                 prune_interval: float = 3600.0, recent: int = 200,
                 wall_clock: Callable[[], float] = clock.now,
                 retry_initial: float = 0.5, retry_max: float = 30.0,
                 stop_timeout: float = 5.0, window: TimeWindow | None = None) -> None:
        if queue_limit < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("queue_limit, batch_size and flush_interval must be positive")
        self.store = store
        # The bounds syslog and SIEM pulls clamp event times to (events.max_past/max_future).
        self.window = window or TimeWindow(clamp=True)
        self._queue_limit = queue_limit
        self._overflow = OverflowLog(log, "security event queue")
        # The buffer and the batch in flight; the stop below is the sink's own (a batch that
        # keeps failing while stopping is given up at once, not retried to a deadline).
        self._batches: Batches[Event] = Batches(
            limit=queue_limit, batch_size=batch_size, flush_interval=flush_interval,
            stop_timeout=stop_timeout)
        self._flush_interval = flush_interval
        self._retention = retention
        self._prune_interval = prune_interval
        self._clock = wall_clock
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stop_timeout = stop_timeout
        self._enqueued = 0   # events ever queued, in order
        self._written = 0    # of those, how many left the queue in a committed batch
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._wake = self._batches.wake
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self.recent: deque[Event] = deque(maxlen=recent)
        self._newest: dict[str, float] = {}

        self.total = Counter(
            "ioc_security_events", "Security events stored, each counted once by (source, id).",
            ["department", "source", "severity", "category"], registry=registry)
        self.last_timestamp = Gauge(
            "ioc_security_events_last_timestamp_seconds",
            "Occurrence time (unix seconds) of the newest stored event of a source.",
            ["source"], registry=registry)
        self.dropped = Counter(
            "ioc_security_events_dropped", "Events discarded before they were stored, by reason "
            "(queue_full: the ingest queue was full; shutdown: unwritten at stop).",
            ["reason"], registry=registry)
        self.duplicates = Counter(
            "ioc_security_events_duplicates",
            "Events received again with a (source, id) already stored; not counted twice.",
            registry=registry)
        self.out_of_window = Counter(
            "ioc_security_events_out_of_window",
            "Events whose own time was outside events.max_past / events.max_future of the "
            "receive time, by how they came (push: refused with 400; syslog, siem: clamped "
            "to the receive time, the sent time kept in the sent_at label) and side.",
            ["ingest", "side"], registry=registry)
        for ingest in ("push", "syslog", "siem"):
            for side in ("past", "future"):
                self.out_of_window.labels(ingest=ingest, side=side)
        self.write_errors = Counter(
            "ioc_security_events_write_errors",
            "Failed attempts to write a batch of events; each is retried.", registry=registry)
        queue_gauge = Gauge("ioc_security_events_queue",
                            "Events accepted and not yet written.", registry=registry)
        queue_gauge.set_function(lambda: self.queued)
        for reason in ("queue_full", "shutdown"):
            self.dropped.labels(reason=reason)

    @property
    def queued(self) -> int:
        return self._batches.queued

    def _room(self) -> int:
        # the limit is read at each offer, so it may be changed on a running sink
        return max(0, self._queue_limit - self.queued)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with each group of newly stored events (not for duplicates)."""
        self._listeners.append(listener)

    # -- producers -----------------------------------------------------------------------

    def offer(self, events: Sequence[Event]) -> bool:
        """Queue all of ``events`` or none of them (False when they do not fit)."""
        if self._stopping or len(events) > self._room():
            return False
        self._enqueue(events)
        return True

    def offer_durable(self, events: Sequence[Event]) -> asyncio.Future[None] | None:
        """``offer``, and a future done when the events are committed; None if they do not fit.

        The future fails with :class:`EventsNotStored` when ioc stops before writing them.
        Not awaiting it (the client went away) leaves the events queued, written as usual.
        """
        if not self.offer(events):
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._enqueued, done))
        self._wake.set()  # commit now, with whatever else is queued
        return done

    def count_out_of_window(self, ingest: str, sides: Mapping[str, int]) -> None:
        """Count events whose time fell outside the window (``sides``: past/future → n)."""
        for side, count in sides.items():
            if count:
                self.out_of_window.labels(ingest=ingest, side=side).inc(count)

    def submit(self, events: Sequence[Event]) -> int:
        """Queue what fits, drop and count the rest; return how many were queued."""
        if not events:
            return 0
        room = 0 if self._stopping else self._room()
        if len(events) > room:
            self.dropped.labels(reason="queue_full").inc(len(events) - room)
            self._overflow.dropped(len(events) - room, queue_limit=self._queue_limit)
            events = events[:room]
        else:
            self._overflow.ok()
        self._enqueue(events)
        return len(events)

    def on_poll(self, outcome: PollOutcome) -> None:
        """Pipeline hook: events a probe found (e.g. a defaced page)."""
        if outcome.events:
            self.submit(outcome.events)

    def _enqueue(self, events: Sequence[Event]) -> None:
        if events:
            self._batches.push(events)
            self._enqueued += len(events)
            self._idle.clear()

    async def commit(self, events: Sequence[Event], cursor: tuple[str, str]) -> list[Event]:
        """Store events and a cursor in one transaction now; return the new events."""
        added = await self.store.insert(events, self._clock(), cursor=cursor)
        self._stored(events, added)
        return added

    async def load_cursor(self, name: str) -> str | None:
        return await self.store.load_cursor(name)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("EventSink already started")
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="ioc-event-writer")
        self._prune_task = asyncio.create_task(self._prune_loop(), name="ioc-event-retention")

    async def flush(self) -> None:
        """Return once everything queued before the call is written (or dropped)."""
        if self._task is None or self._task.done():
            raise RuntimeError("EventSink is not running")
        self._wake.set()
        await self._idle.wait()

    async def stop(self) -> None:
        """Write what is queued (for at most ``stop_timeout`` s), then end the tasks."""
        self._stopping = True
        if self._prune_task is not None:
            self._prune_task.cancel()
            await asyncio.gather(self._prune_task, return_exceptions=True)
            self._prune_task = None
        task, self._task = self._task, None
        if task is None:
            return
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self._stop_timeout)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        lost = self._batches.clear()
        if lost:
            log.error("stopping with %d security events unwritten; they are lost", lost)
            self.dropped.labels(reason="shutdown").inc(lost)
        self._release()
        self._release(EventsNotStored("ioc stopped before the events were written"))
        self._idle.set()

    # -- the writer task -----------------------------------------------------------------

    async def _run(self) -> None:
        batches = self._batches
        while True:
            if not batches.buffer:
                self._idle.set()
                if self._stopping:
                    return
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._flush_interval)
                self._wake.clear()
                continue
            batch = batches.take(batches.batch_size)
            written = False
            try:
                written = await self._write(batch)
            finally:
                # cancelled, or stopping while the store fails: back for stop() to count
                batches.settle(written)
            if not written:
                return
            self._written += len(batch)
            self._release()

    def _release(self, failure: BaseException | None = None) -> None:
        """Answer the durable waiters whose events are committed (or, at stop, lost)."""
        waiters = self._waiters
        while waiters and (failure is not None or waiters[0][0] <= self._written):
            _, done = waiters.popleft()
            if done.done():  # the request was cancelled
                continue
            if failure is None:
                done.set_result(None)
            else:
                done.set_exception(failure)

    async def _write(self, batch: list[Event]) -> bool:
        delay = self._retry_initial
        failing = False
        while True:
            try:
                added = await self.store.insert(batch, self._clock())
            except (StoreError, OSError) as exc:
                self.write_errors.inc()
                if not failing:
                    log.warning("security events: write failed (%s); retrying with backoff",
                                exc)
                    failing = True
                if self._stopping:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            if failing:
                log.warning("security events: writes recovered")
            self._stored(batch, added)
            return True

    def _stored(self, received: Sequence[Event], added: Sequence[Event]) -> None:
        """Count and announce what the store really added."""
        duplicates = len(received) - len(added)
        if duplicates > 0:
            self.duplicates.inc(duplicates)
        if not added:
            return
        tally = Tally((e.department or "", e.source, e.severity, e.category) for e in added)
        for (department, source, severity, category), n in tally.items():
            self.total.labels(department=department, source=source, severity=severity,
                              category=category).inc(n)
        newest = self._newest
        for event in added:  # never moves backwards when an old event arrives late
            if event.occurred_at > newest.get(event.source, 0.0):
                newest[event.source] = event.occurred_at
                self.last_timestamp.labels(source=event.source).set(event.occurred_at)
        self.recent.extend(added)
        for listener in self._listeners:
            try:
                listener(added)
            except Exception:  # a consumer's bug must not lose events for the others
                log.exception("security event listener failed")

    async def _prune_loop(self) -> None:
        while True:
            try:
                removed = await self.store.prune(self._clock() - self._retention)
            except Exception as exc:  # housekeeping: retried next interval
                log.warning("security events: retention prune failed: %s", exc)
            else:
                if removed:
                    log.info("security events: pruned %d older than %.0f s", removed,
                             self._retention)
            await asyncio.sleep(self._prune_interval)
