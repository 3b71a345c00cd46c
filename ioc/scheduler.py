"""APScheduler wiring: one interval job per target, phases spread across the interval.

Targets that share an interval get evenly spaced start offsets (ordered by a stable hash of
their name, so a target keeps its phase across restarts), the way Prometheus spreads scrapes:
1,000 targets at 30 s means about 33 polls a second, never 1,000 in one second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from ioc import clock

log = logging.getLogger("ioc.scheduler")

PollFn = Callable[[float], Awaitable[object]]


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


def scheduled_time(start: float, interval: float, now: float) -> float:
    """The grid time a run starting at ``now`` belongs to (start + k·interval, k ≥ 0)."""
    if now <= start:
        return start
    k = math.floor((now - start + 1e-3) / interval)
    return start + k * interval


class Scheduler:
    def __init__(self, *, wall_clock: Callable[[], float] = clock.now) -> None:
        self.wall_clock = wall_clock
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._in_flight: set[asyncio.Task[object]] = set()
        self._running: dict[str, asyncio.Task[object]] = {}  # job name → its poll in flight
        # polls this scheduler cancelled itself (shutdown, drain): it reports those once, so
        # they end quietly instead of each logging a CancelledError traceback from APScheduler
        self._cancelled: set[asyncio.Task[object]] = set()
        self._starts: dict[str, float] = {}
        self.running = False

    def add_jobs(self, jobs: Sequence[Job], *, now: float | None = None) -> None:
        base = self.wall_clock() if now is None else now
        offsets = spread_offsets([(job.name, job.interval) for job in jobs])
        for job in jobs:
            start = base + offsets[job.name]
            self._starts[job.name] = start
            self._aps.add_job(
                self._run, IntervalTrigger(seconds=job.interval,
                                           start_date=datetime.fromtimestamp(start, UTC)),
                args=(job, start), id=job.name, name=job.name,
                max_instances=1, coalesce=True, misfire_grace_time=max(1, int(job.interval)),
                replace_existing=True,
            )

    def remove_job(self, name: str) -> None:
        self._aps.remove_job(name)
        self._starts.pop(name, None)

    def job_names(self) -> set[str]:
        return {job.id for job in self._aps.get_jobs()}

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
        return len(self._aps.get_jobs())

    async def _run(self, job: Job, start: float) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            self._running[job.name] = task
        try:
            await job.poll(scheduled_time(start, job.interval, self.wall_clock()))
        except asyncio.CancelledError:
            if task is not None and task in self._cancelled:
                self._cancelled.discard(task)
                return  # cancelled on purpose: counted by shutdown, not an APScheduler error
            raise
        except Exception:  # the runner already records failures; this is a bug net
            log.exception("poll job failed", extra={"fields": {"target": job.name}})
        finally:
            if task is not None:
                self._in_flight.discard(task)
                if self._running.get(job.name) is task:
                    del self._running[job.name]

    def start(self) -> None:
        self._aps.start()
        self.running = True

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop scheduling, give in-flight polls ``grace`` seconds to finish, cancel the rest."""
        if not self.running:
            return
        self.running = False
        # Pause first, shut down last: APScheduler's executor cancels the coroutines it is
        # still running when it shuts down, which would cut every in-flight poll short
        # instead of letting it finish within the grace period.
        self._aps.pause()
        pending = set(self._in_flight)
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
        self._aps.shutdown(wait=False)
