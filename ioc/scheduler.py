"""The poll timer: one interval grid per target, phases spread, due polls started in batches.

Targets that share an interval get evenly spaced start offsets (ordered by a stable hash of
their name, so a target keeps its phase across restarts), the way Prometheus spreads scrapes:
1,000 targets at 30 s means about 33 polls a second, never 1,000 in one second.

Hand-written rather than a library scheduler because the wake-ups were the cost: APScheduler 3
(one job and one trigger per target) wakes up for every run, since spread jobs are never due
at the same instant, and each wake-up pays a ``call_soon_threadsafe`` hop, a lock, datetime and
time-zone arithmetic in the trigger, a job-store update, events and the ``run_coroutine_job``
wrapper — about 6 % of ioc's CPU at 1,000 polls/s (py-spy, BENCHMARKS.md), and it has no way to
batch runs that are due a few hundred µs apart. Here every job's next due time sits in one
heap; a single loop timer is armed for the earliest one, and each wake-up starts every job due
within its lead (``batch_window``, 10 ms, but at most 1 % of the job's interval) as a plain
task, with no datetime objects. bench/scheduler.py,
2,000 no-op jobs a second: 0.17 ms of CPU per run with APScheduler, 0.05 ms here.

The rules the old wiring had are kept: at most one poll of a job in flight (a slot that comes
due while the previous poll still runs is skipped and counted in ``skipped``, not queued);
after a late wake-up (a blocked loop) a job runs once, for the latest slot that passed, and
then continues on its grid (the slots passed over are counted in ``coalesced``), never as a
burst of catch-up runs.

Due times are wall-clock (``wall_clock`` is injected; ``run_due(now)`` takes the time as an
argument), the timer runs on the loop's monotonic clock. Each wake-up compares the two; when
the wall clock was stepped (by more than ``CLOCK_STEP``, e.g. NTP, a resumed VM), every job is
moved to its first grid point from the new time instead of stalling polls for the length of a
backward step or running every job at once after a forward one.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import zlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ioc import clock

log = logging.getLogger("ioc.scheduler")

PollFn = Callable[[float], Coroutine[Any, Any, object]]

# A wake-up also starts the jobs due within their lead: BATCH_WINDOW seconds, but at most
# LEAD_SHARE of the job's interval. Each wake-up costs 50–130 µs of CPU on a small VM (epoll
# round trip, context switch), so at 200 polls/s a 10 ms lead instead of 2 ms cut ioc's CPU per
# probe by a quarter (BENCHMARKS.md); 1 % of the interval early is well inside "on time".
BATCH_WINDOW = 0.010
LEAD_SHARE = 0.01
CLOCK_STEP = 1.0  # seconds the wall clock may drift from the loop's between wake-ups


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: float
    poll: PollFn  # called with the time the poll was scheduled for


def spread_offsets(jobs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Start offset in [0, interval) of each job, evenly spaced within each interval group."""
    groups: dict[float, list[str]] = {}
    for name, interval in jobs:
        groups.setdefault(interval, []).append(name)
    offsets: dict[str, float] = {}
    for interval, names in groups.items():
        names.sort(key=lambda n: (zlib.crc32(n.encode()), n))
        count = len(names)
        for rank, name in enumerate(names):
            offsets[name] = interval * rank / count
    return offsets


def anchored_start(name: str, interval: float, now: float) -> float:
    """The first point at or after ``now`` of the job's grid anchored to the Unix epoch:
    ``phase + k·interval``, the phase a stable hash of the name. Every instance that polls
    the target puts it on the same grid, so when a target moves between instances
    (``--shard auto``) the new owner polls in the slots the old one would have: no poll
    crowds in right after the old owner's last, and none is skipped beyond the move itself."""
    phase = interval * zlib.crc32(name.encode()) / 2**32
    return now + (phase - now) % interval


def scheduled_time(start: float, interval: float, now: float) -> float:
    """The grid time a run starting at ``now`` belongs to (start + k·interval, k ≥ 0)."""
    if now <= start:
        return start
    k = math.floor((now - start + 1e-3) / interval)
    return start + k * interval


class _Entry:
    """One job's place on its grid: it is next due at ``start + k·interval``."""

    __slots__ = ("interval", "job", "k", "removed", "seq", "start")

    def __init__(self, job: Job, start: float, seq: int) -> None:
        self.job = job
        self.interval = job.interval
        self.start = start
        self.k = 0
        self.seq = seq  # tie-breaker in the heap, so entries are never compared
        self.removed = False  # the heap drops removed entries when they reach its top

    def due(self) -> float:
        return self.start + self.k * self.interval


class Scheduler:
    def __init__(self, *, wall_clock: Callable[[], float] = clock.now,
                 batch_window: float = BATCH_WINDOW, anchored: bool = False) -> None:
        """``anchored``: each job on its epoch-anchored grid (:func:`anchored_start`) instead
        of spread over the jobs added together."""
        self.wall_clock = wall_clock
        self.anchored = anchored
        self.batch_window = batch_window
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf  # wall time the armed timer is for
        self._clock_offset: float | None = None  # wall − loop time at the last wake-up
        # job name → its poll in flight (polls of one job never overlap, so this is every one)
        self._running: dict[str, asyncio.Task[object]] = {}
        # polls this scheduler cancelled itself (shutdown, drain): those end quietly; a poll
        # cancelled by anything else is reported
        self._cancelled: set[asyncio.Task[object]] = set()
        self._stopped = False
        self.running = False
        self.skipped = 0  # slots not run because the job's previous poll was still running
        self.coalesced = 0  # slots passed over by a late wake-up (the latest one ran)
        self.wakeups = 0

    def add_jobs(self, jobs: Sequence[Job], *, now: float | None = None) -> None:
        """Schedule ``jobs`` from ``now``; a job whose name is already scheduled is replaced."""
        base = self.wall_clock() if now is None else now
        offsets = spread_offsets([(job.name, job.interval) for job in jobs])
        earliest = math.inf
        for job in jobs:
            old = self._entries.get(job.name)
            if old is not None:
                old.removed = True
            self._seq += 1
            start = (anchored_start(job.name, job.interval, base) if self.anchored
                     else base + offsets[job.name])
            entry = _Entry(job, start, self._seq)
            self._entries[job.name] = entry
            heapq.heappush(self._heap, (entry.start, entry.seq, entry))
            earliest = min(earliest, entry.start)
        if self.running and earliest < self._timer_due:
            self._arm(self.wall_clock())

    def remove_job(self, name: str) -> None:
        """No more runs of ``name`` (KeyError if it has none); a poll in flight goes on."""
        self._entries.pop(name).removed = True

    def job_names(self) -> set[str]:
        return set(self._entries)

    async def drain(self, name: str, grace: float) -> None:
        """Wait up to ``grace`` seconds for a removed job's poll in flight; cancel it after."""
        task = self._running.get(name)
        if task is None or task is asyncio.current_task():
            return
        _done, still = await asyncio.wait({task}, timeout=grace)
        for pending in still:
            self._cancelled.add(pending)
            pending.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
            self._cancelled.difference_update(still)

    @property
    def job_count(self) -> int:
        return len(self._entries)

    def run_due(self, now: float) -> int:
        """Start every job due at or before ``now`` + its lead; the number started."""
        if self._stopped:
            return 0
        heap = self._heap
        loop = asyncio.get_running_loop()
        started = 0
        while heap:
            due, seq, entry = heap[0]
            if entry.removed:
                heapq.heappop(heap)
                continue
            start, interval = entry.start, entry.interval
            horizon = now + min(self.batch_window, interval * LEAD_SHARE)
            if due > horizon:
                break
            # after a late wake-up, run once for the latest slot passed (coalesce)
            k = entry.k + int((horizon - due) // interval)
            while start + (k + 1) * interval <= horizon:  # a rounding error's worth
                k += 1
            self.coalesced += k - entry.k
            slot = start + k * interval
            entry.k = k + 1
            heapq.heapreplace(heap, (start + entry.k * interval, seq, entry))
            name = entry.job.name
            previous = self._running.get(name)
            if previous is not None and not previous.done():
                self.skipped += 1
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("poll skipped: the previous one is still running",
                              extra={"fields": {"target": name, "scheduled": slot}})
                continue
            try:
                poll = entry.job.poll(slot)
            except Exception:  # not even a coroutine to run: the same bug net as _finished
                log.exception("poll job failed", extra={"fields": {"target": name}})
                continue
            task: asyncio.Task[object] = loop.create_task(poll, name=name)
            task.add_done_callback(self._finished)
            self._running[name] = task
            started += 1
        return started

    def _finished(self, task: asyncio.Task[object]) -> None:
        name = task.get_name()
        if self._running.get(name) is task:
            del self._running[name]
        if task.cancelled():
            if task in self._cancelled:
                self._cancelled.discard(task)  # cancelled on purpose: counted by shutdown
            else:
                log.error("poll job cancelled", extra={"fields": {"target": name}})
            return
        exc = task.exception()
        if exc is not None:  # the runner already records failures; this is a bug net
            log.error("poll job failed", exc_info=exc, extra={"fields": {"target": name}})

    def _wake(self) -> None:
        self._timer = None
        self._timer_due = math.inf
        if not self.running or self._loop is None:
            return
        self.wakeups += 1
        loop_now = self._loop.time()
        now = self.wall_clock()
        offset = now - loop_now
        if self._clock_offset is not None and abs(offset - self._clock_offset) > CLOCK_STEP:
            log.warning("wall clock stepped; polls move to their grid from the new time",
                        extra={"fields": {"step": offset - self._clock_offset}})
            self._regrid(now)
        self._clock_offset = offset
        try:
            self.run_due(now)
        finally:  # whatever went wrong, the other jobs keep their schedule
            self._arm(now, loop_now)

    def _regrid(self, now: float) -> None:
        """Each job's next due time becomes its first grid point from ``now`` on."""
        for entry in self._entries.values():
            entry.k = math.ceil((now - entry.start) / entry.interval)
        self._heap = [(entry.due(), entry.seq, entry) for entry in self._entries.values()]
        heapq.heapify(self._heap)

    def _arm(self, now: float, loop_now: float | None = None) -> None:
        """One timer, for the earliest due job (wall ``now`` read together with ``loop_now``)."""
        heap = self._heap
        while heap and heap[0][2].removed:
            heapq.heappop(heap)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_due = math.inf
        if not heap or self._loop is None:
            return
        due = heap[0][0]
        if loop_now is None:
            loop_now = self._loop.time()
        self._timer = self._loop.call_at(loop_now + max(0.0, due - now), self._wake)
        self._timer_due = due

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self.running = True
        self._clock_offset = None
        self._arm(self.wall_clock())

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop scheduling, give in-flight polls ``grace`` seconds to finish, cancel the rest."""
        if not self.running:
            return
        self.running = False
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_due = math.inf
        pending = set(self._running.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                self._cancelled.add(task)
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
                self._cancelled.difference_update(still)
                log.info("cancelled polls still running at shutdown",
                         extra={"fields": {"count": len(still)}})


class SchedulerMetrics(Collector):
    """The scheduler's counters on /metrics, read at scrape time (nothing to do per poll).

    ``skipped`` says targets are slower than their interval (a poll still ran when the next
    was due); ``coalesced`` says the event loop woke too late to start polls on time (it was
    blocked or the process is short of CPU). Both should stay flat.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> list[Metric]:
        return [
            CounterMetricFamily(
                "ioc_scheduler_skipped_polls",
                "Poll slots not run because the target's previous poll was still running.",
                value=self.scheduler.skipped),
            CounterMetricFamily(
                "ioc_scheduler_coalesced_polls",
                "Poll slots passed over because the scheduler woke late (a busy or blocked "
                "event loop); each target then ran once for the latest slot.",
                value=self.scheduler.coalesced),
        ]
