"""Scheduler: phases spread across the interval, lag measured, shutdown waits then cancels."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ioc.scheduler import (
    Job,
    Scheduler,
    SchedulerMetrics,
    anchored_start,
    scheduled_time,
    spread_offsets,
)


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


def test_anchored_jobs_keep_one_grid_whenever_and_wherever_they_are_added() -> None:
    # Two instances adding the same job at different times put it on the same slots.
    first = Scheduler(wall_clock=lambda: 0.0, anchored=True)
    second = Scheduler(wall_clock=lambda: 0.0, anchored=True)

    async def poll(_: float) -> None:
        return None

    first.add_jobs([Job("t", 5.0, poll), Job("u", 5.0, poll)], now=1_000.0)
    second.add_jobs([Job("t", 5.0, poll)], now=1_012.3)
    a, b = first._entries["t"].start, second._entries["t"].start
    assert 1_000.0 <= a < 1_005.0 and 1_012.3 <= b < 1_017.3
    assert (b - a) % 5.0 == pytest.approx(0.0, abs=1e-6)
    assert anchored_start("t", 5.0, a) == pytest.approx(a)  # a grid point maps to itself
    # names spread over the interval, as the unanchored offsets do
    phases = {int(anchored_start(f"target-{i}", 10.0, 0.0)) for i in range(200)}
    assert len(phases) == 10


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


class StepClock:
    """A wall clock the test steps by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recorder() -> tuple[list[float], Callable[[float], Coroutine[Any, Any, None]]]:
    calls: list[float] = []

    async def poll(scheduled: float) -> None:
        calls.append(scheduled)

    return calls, poll


async def settle() -> None:
    """Let the polls just started run to completion (they never wait on anything)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_jobs_due_within_the_batch_window_start_in_one_wake_up() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock, batch_window=0.010)
    calls: dict[str, float] = {}

    def poll_for(name: str) -> Callable[[float], Coroutine[Any, Any, None]]:
        async def poll(scheduled: float) -> None:
            calls[name] = scheduled
        return poll

    # 500 jobs at 1 s: offsets 2 ms apart, so 0, 2, 4, 6, 8 and 10 ms are due at the first
    # wake-up (the lead is 10 ms: the batch window, and 1 % of the interval)
    scheduler.add_jobs([Job(f"j{i}", 1.0, poll_for(f"j{i}")) for i in range(500)],
                       now=clock.now)
    assert scheduler.run_due(clock.now) == 6
    await settle()
    assert sorted(calls.values()) == pytest.approx([clock.now + r / 500 for r in range(6)])
    clock.now += 0.011  # 12–20 ms are inside the lead now
    assert scheduler.run_due(clock.now) == 5
    await settle()
    assert len(calls) == 11


async def test_a_job_never_starts_earlier_than_a_hundredth_of_its_interval() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock, batch_window=0.010)
    calls, poll = recorder()
    # 10 jobs at 100 ms: offsets 10 ms apart; the lead is 1 ms (1 % of 100 ms), not 10 ms
    scheduler.add_jobs([Job(f"j{i}", 0.1, poll) for i in range(10)], now=clock.now)
    assert scheduler.run_due(clock.now) == 1
    clock.now += 0.0085
    assert scheduler.run_due(clock.now) == 0  # the next is 1.5 ms away
    clock.now += 0.0007
    assert scheduler.run_due(clock.now) == 1  # 0.8 ms away: inside its lead
    await settle()
    assert len(calls) == 2


async def test_a_slot_due_while_the_previous_poll_runs_is_skipped_not_queued() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    release = asyncio.Event()
    calls: list[float] = []

    async def slow(scheduled: float) -> None:
        calls.append(scheduled)
        await release.wait()

    scheduler.add_jobs([Job("slow", 10.0, slow)], now=1000.0)
    assert scheduler.run_due(1000.0) == 1
    await settle()
    assert scheduler.run_due(1010.0) == 0  # still running: this slot is skipped
    assert scheduler.skipped == 1
    release.set()
    await settle()
    assert scheduler.run_due(1015.0) == 0  # the skipped slot is not made up for
    assert scheduler.run_due(1020.0) == 1
    await settle()
    assert calls == [1000.0, 1020.0]
    assert scheduler.coalesced == 0


async def test_after_a_late_wake_up_a_job_runs_once_then_back_on_its_grid() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    calls, poll = recorder()
    scheduler.add_jobs([Job("a", 1.0, poll)], now=1000.0)
    assert scheduler.run_due(1000.0) == 1
    await settle()
    assert scheduler.run_due(1003.5) == 1  # the loop was blocked for slots 1001–1003
    await settle()
    assert calls == [1000.0, 1003.0]  # once, for the latest slot passed
    assert scheduler.coalesced == 2
    assert scheduler.run_due(1003.9) == 0
    assert scheduler.run_due(1004.0) == 1
    await settle()
    assert calls == [1000.0, 1003.0, 1004.0]


async def test_skipped_and_coalesced_slots_are_counters_on_metrics() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    registry = CollectorRegistry()
    registry.register(SchedulerMetrics(scheduler))
    release = asyncio.Event()

    async def slow(scheduled: float) -> None:
        await release.wait()

    scheduler.add_jobs([Job("slow", 1.0, slow)], now=1000.0)
    scheduler.run_due(1000.0)
    await settle()
    scheduler.run_due(1001.0)  # still running: skipped
    release.set()
    await settle()
    scheduler.run_due(1004.5)  # woke late: slots 1002 and 1003 passed over, 1004 runs
    await settle()
    assert registry.get_sample_value("ioc_scheduler_skipped_polls_total") == 1
    assert registry.get_sample_value("ioc_scheduler_coalesced_polls_total") == 2


async def test_remove_job_while_its_poll_runs_stops_later_runs_and_drain_waits() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    release = asyncio.Event()
    finished: list[float] = []

    async def slow(scheduled: float) -> None:
        await release.wait()
        finished.append(scheduled)

    scheduler.add_jobs([Job("slow", 1.0, slow)], now=1000.0)
    assert scheduler.run_due(1000.0) == 1
    await settle()
    scheduler.remove_job("slow")
    assert scheduler.job_names() == set()
    assert scheduler.job_count == 0
    draining = asyncio.create_task(scheduler.drain("slow", grace=5.0))
    await settle()
    assert not draining.done()
    release.set()
    await asyncio.wait_for(draining, timeout=5)
    assert finished == [1000.0]  # the poll in flight finished, not cancelled
    assert scheduler.run_due(1005.0) == 0


async def test_drain_cancels_a_poll_that_outlives_its_grace(caplog: Any) -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    started = asyncio.Event()

    async def stuck(scheduled: float) -> None:
        started.set()
        await asyncio.Event().wait()

    scheduler.add_jobs([Job("stuck", 1.0, stuck)], now=1000.0)
    scheduler.run_due(1000.0)
    await asyncio.wait_for(started.wait(), timeout=5)
    scheduler.remove_job("stuck")
    with caplog.at_level(logging.DEBUG, logger="ioc.scheduler"):
        await scheduler.drain("stuck", grace=0.01)
        await settle()
    assert not scheduler._running
    assert not caplog.records  # cancelled on purpose: quietly


async def test_re_adding_a_job_replaces_its_schedule() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    old_calls, old_poll = recorder()
    new_calls, new_poll = recorder()
    scheduler.add_jobs([Job("a", 1.0, old_poll)], now=1000.0)
    scheduler.add_jobs([Job("a", 5.0, new_poll)], now=1000.5)
    assert scheduler.job_names() == {"a"}
    assert scheduler.job_count == 1
    assert scheduler.run_due(1000.0) == 0  # the old grid is gone
    assert scheduler.run_due(1000.5) == 1
    await settle()
    assert scheduler.run_due(1004.0) == 0
    assert scheduler.run_due(1005.5) == 1
    await settle()
    assert old_calls == []
    assert new_calls == [1000.5, 1005.5]


async def test_a_failing_poll_is_logged_and_keeps_its_schedule(caplog: Any) -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)

    async def boom(scheduled: float) -> None:
        raise RuntimeError("collector bug")

    scheduler.add_jobs([Job("boom", 1.0, boom)], now=1000.0)
    with caplog.at_level(logging.ERROR, logger="ioc.scheduler"):
        assert scheduler.run_due(1000.0) == 1
        await settle()
        assert scheduler.run_due(1001.0) == 1
        await settle()
    failures = [r for r in caplog.records if r.getMessage() == "poll job failed"]
    assert len(failures) == 2
    assert failures[0].exc_info is not None


async def test_a_job_added_while_running_is_picked_up_before_the_armed_timer() -> None:
    scheduler = Scheduler()
    hourly_ran = asyncio.Event()

    async def hourly(scheduled: float) -> None:
        hourly_ran.set()

    scheduler.add_jobs([Job("hourly", 3600.0, hourly)])
    scheduler.start()
    await asyncio.wait_for(hourly_ran.wait(), timeout=5)
    fast_runs = asyncio.Event()

    async def fast(scheduled: float) -> None:
        fast_runs.set()

    # the timer is armed an hour out; the new job must re-arm it
    scheduler.add_jobs([Job("fast", 0.05, fast)])
    await asyncio.wait_for(fast_runs.wait(), timeout=5)
    await scheduler.shutdown()
    assert scheduler.job_names() == {"hourly", "fast"}


async def test_a_stepped_wall_clock_moves_jobs_to_the_new_grid() -> None:
    step = 0.0
    scheduler = Scheduler(wall_clock=lambda: time.time() + step)
    calls: list[float] = []
    enough = asyncio.Event()
    want = 2

    async def poll(scheduled: float) -> None:
        calls.append(scheduled)
        if len(calls) >= want:
            enough.set()

    scheduler.add_jobs([Job("a", 0.05, poll)])
    scheduler.start()
    await asyncio.wait_for(enough.wait(), timeout=5)
    step, want = -3600.0, len(calls) + 2  # an hour back: polls must not stall for an hour
    enough.clear()
    await asyncio.wait_for(enough.wait(), timeout=5)
    step, want = 3600.0, len(calls) + 2  # and forward again: no catch-up of the hour
    enough.clear()
    await asyncio.wait_for(enough.wait(), timeout=5)
    await scheduler.shutdown()
    assert scheduler.coalesced < 100  # an hour at 50 ms would be 72,000 slots


async def test_no_poll_starts_after_shutdown() -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    calls, poll = recorder()
    scheduler.add_jobs([Job("a", 1.0, poll)], now=1000.0)
    scheduler.start()
    await scheduler.shutdown()
    assert not scheduler.running
    assert scheduler.run_due(1010.0) == 0
    assert calls == []


async def test_a_poll_that_raises_before_it_is_a_coroutine_does_not_stop_the_others(
        caplog: Any) -> None:
    clock = StepClock()
    scheduler = Scheduler(wall_clock=clock)
    calls, poll = recorder()

    def broken(scheduled: float) -> Coroutine[Any, Any, None]:
        raise TypeError("not a coroutine function")

    scheduler.add_jobs([Job("broken", 1.0, broken), Job("fine", 1.0, poll)], now=1000.0)
    with caplog.at_level(logging.ERROR, logger="ioc.scheduler"):
        assert scheduler.run_due(1000.5) == 1
        await settle()
    assert calls == [1000.0]  # "fine" starts at offset 0, "broken" at 0.5 s
    assert [r.getMessage() for r in caplog.records] == ["poll job failed"]
