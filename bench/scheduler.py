"""The poll timer's own cost: N no-op jobs on ioc's Scheduler, and on APScheduler if installed.

Each job does nothing but note how late it started (wall time at its start minus the grid time
it was scheduled for, floored at 0, as the runner's ``ioc_scheduler_lag_seconds`` does). After
a warm-up, the window measures the process's CPU time (``time.process_time``) per run, runs per
second and the lag quantiles. Each scheduler runs in a child process of its own.

The APScheduler variant is the wiring ioc used before its own timer (one ``IntervalTrigger``
job per target, ``max_instances=1``, ``coalesce=True``, the same in-flight bookkeeping); it is
measured only when ``apscheduler`` is still importable, since ioc no longer depends on it.

    .venv/bin/python bench/scheduler.py [--jobs 2000] [--interval 1] [--duration 20]
        [--warmup 3] [--window 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ioc.scheduler import BATCH_WINDOW, Job, Scheduler, scheduled_time, spread_offsets


class Probe:
    """The jobs' shared notebook: runs and lags inside the measured window only."""

    def __init__(self) -> None:
        self.measuring = False
        self.runs = 0
        self.lags: list[float] = []

    def poll_fn(self) -> Callable[[float], Coroutine[Any, Any, None]]:
        async def poll(scheduled: float) -> None:
            if self.measuring:
                self.runs += 1
                self.lags.append(max(0.0, time.time() - scheduled))
        return poll


class ApsScheduler:
    """ioc's former APScheduler 3 wiring, kept here only to compare against."""

    def __init__(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._aps = AsyncIOScheduler(timezone="UTC")
        self._in_flight: set[asyncio.Task[object]] = set()
        self._running: dict[str, asyncio.Task[object]] = {}

    def add_jobs(self, jobs: Sequence[Job]) -> None:
        from datetime import UTC, datetime

        from apscheduler.triggers.interval import IntervalTrigger

        base = time.time()
        offsets = spread_offsets([(job.name, job.interval) for job in jobs])
        for job in jobs:
            start = base + offsets[job.name]
            self._aps.add_job(
                self._run, IntervalTrigger(seconds=job.interval,
                                           start_date=datetime.fromtimestamp(start, UTC)),
                args=(job, start), id=job.name, name=job.name,
                max_instances=1, coalesce=True, misfire_grace_time=max(1, int(job.interval)),
                replace_existing=True)

    async def _run(self, job: Job, start: float) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            self._running[job.name] = task
        try:
            await job.poll(scheduled_time(start, job.interval, time.time()))
        finally:
            if task is not None:
                self._in_flight.discard(task)
                if self._running.get(job.name) is task:
                    del self._running[job.name]

    def start(self) -> None:
        self._aps.start()

    async def shutdown(self) -> None:
        self._aps.shutdown(wait=False)


async def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    probe = Probe()
    jobs = [Job(f"target-{i:05d}", args.interval, probe.poll_fn()) for i in range(args.jobs)]
    scheduler: Scheduler | ApsScheduler
    scheduler = Scheduler(batch_window=args.window) if kind == "ioc" else ApsScheduler()
    scheduler.add_jobs(jobs)
    scheduler.start()
    await asyncio.sleep(args.warmup)
    wakeups = scheduler.wakeups if isinstance(scheduler, Scheduler) else 0
    probe.measuring = True
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(args.duration)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    probe.measuring = False
    result: dict[str, Any] = {
        "kind": kind, "runs": probe.runs, "cpu": cpu, "wall": wall,
        "lag_p50": quantile(probe.lags, 0.5), "lag_p99": quantile(probe.lags, 0.99),
        "lag_max": max(probe.lags, default=math.nan),
    }
    if isinstance(scheduler, Scheduler):
        result["wakeups"] = scheduler.wakeups - wakeups
        result["skipped"], result["coalesced"] = scheduler.skipped, scheduler.coalesced
    await scheduler.shutdown()
    return result


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def child(args: argparse.Namespace) -> None:
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a line per missed run
    print(json.dumps(asyncio.run(measure(args.only, args))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=BATCH_WINDOW,
                        help="ioc's batch window, s (its default)")
    parser.add_argument("--only", choices=["ioc", "apscheduler"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        child(args)
        return
    kinds = ["ioc"]
    if importlib.util.find_spec("apscheduler") is not None:
        kinds.append("apscheduler")
    else:
        print("apscheduler is not installed: measuring ioc's scheduler alone")
    print(f"{args.jobs} no-op jobs every {args.interval:g} s "
          f"({args.jobs / args.interval:,.0f} runs/s offered), {args.duration:g} s window "
          f"after {args.warmup:g} s warm-up; batch window {args.window * 1000:g} ms")
    print(f"{'scheduler':<12} {'runs/s':>8} {'CPU ms/run':>11} {'CPU %':>6} {'lag p50':>9} "
          f"{'lag p99':>9} {'lag max':>9} {'runs/wake-up':>13}")
    for kind in kinds:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", kind],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        per_wake = f"{r['runs'] / r['wakeups']:.1f}" if r.get("wakeups") else "n/a"
        print(f"{kind:<12} {r['runs'] / r['wall']:>8,.0f} {r['cpu'] / r['runs'] * 1000:>11.4f} "
              f"{r['cpu'] / r['wall'] * 100:>5.1f}% {r['lag_p50'] * 1000:>7.2f}ms "
              f"{r['lag_p99'] * 1000:>7.2f}ms {r['lag_max'] * 1000:>7.2f}ms {per_wake:>13}")
        if kind == "ioc":
            print(f"{'':<12} skipped {r['skipped']}, coalesced {r['coalesced']}")


if __name__ == "__main__":
    main()
