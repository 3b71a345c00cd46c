"""Scheduler: phases spread across the interval, lag measured, shutdown waits then cancels."""

from __future__ import annotations

import asyncio
import itertools

from ioc.scheduler import Job, Scheduler, scheduled_time, spread_offsets


def test_thousand_targets_never_share_a_second() -> None:
    jobs = [(f"target-{i}", 30.0) for i in range(1000)]
    offsets = spread_offsets(jobs)
    per_second: dict[int, int] = {}
    for offset in offsets.values():
        assert 0 <= offset < 30
        per_second[int(offset)] = per_second.get(int(offset), 0) + 1
    # 1000 targets over 30 s: about 33 a second, never a burst.
    assert max(per_second.values()) <= 34
    assert len(per_second) == 30


def test_offsets_are_stable_and_grouped_by_interval() -> None:
    jobs = [("a", 10.0), ("b", 10.0), ("c", 60.0)]
    assert spread_offsets(jobs) == spread_offsets(list(reversed(jobs)))
    assert spread_offsets(jobs)["c"] == 0.0  # alone in its group


def test_scheduled_time_finds_the_grid_point() -> None:
    assert scheduled_time(100.0, 10.0, 100.0) == 100.0
    assert scheduled_time(100.0, 10.0, 125.3) == 120.0
    assert scheduled_time(100.0, 10.0, 129.9995) == 130.0  # fired a hair early
    assert scheduled_time(100.0, 10.0, 50.0) == 100.0


async def test_jobs_run_on_their_interval_and_report_scheduled_time() -> None:
    calls: list[tuple[str, float]] = []
    done = asyncio.Event()

    async def poll_a(scheduled: float) -> None:
        calls.append(("a", scheduled))
        if len([c for c in calls if c[0] == "a"]) >= 3:
            done.set()

    async def poll_b(scheduled: float) -> None:
        calls.append(("b", scheduled))

    scheduler = Scheduler()
    scheduler.add_jobs([Job("a", 0.1, poll_a), Job("b", 0.1, poll_b)])
    scheduler.start()
    await asyncio.wait_for(done.wait(), timeout=5)
    await scheduler.shutdown()
    a_times = [t for n, t in calls if n == "a"]
    assert all(abs((b - a) - 0.1) < 1e-6 for a, b in itertools.pairwise(a_times))
    assert any(n == "b" for n, _ in calls)


async def test_failing_job_keeps_its_schedule() -> None:
    count = 0
    third = asyncio.Event()

    async def boom(scheduled: float) -> None:
        nonlocal count
        count += 1
        if count >= 3:
            third.set()
        raise RuntimeError("collector bug")

    scheduler = Scheduler()
    scheduler.add_jobs([Job("boom", 0.05, boom)])
    scheduler.start()
    await asyncio.wait_for(third.wait(), timeout=5)
    await scheduler.shutdown()


async def test_shutdown_waits_for_in_flight_then_cancels() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(scheduled: float) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    scheduler = Scheduler()
    scheduler.add_jobs([Job("stuck", 0.05, stuck)])
    scheduler.start()
    await asyncio.wait_for(started.wait(), timeout=5)
    await scheduler.shutdown(grace=0.1)
    assert cancelled.is_set()
    assert not scheduler.running


async def test_shutdown_lets_in_flight_polls_finish() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[bool] = []

    async def slow(scheduled: float) -> None:
        started.set()
        await release.wait()
        finished.append(True)

    scheduler = Scheduler()
    scheduler.add_jobs([Job("slow", 0.05, slow)])
    scheduler.start()
    await asyncio.wait_for(started.wait(), timeout=5)
    stopping = asyncio.create_task(scheduler.shutdown(grace=5.0))
    await asyncio.sleep(0)  # shutdown has begun and is waiting on the poll
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, timeout=5)
    assert finished == [True]  # completed, not cancelled
