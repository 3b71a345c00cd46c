"""ioc.batching: the bounded buffer the batching writers share (they have their own tests in
tests/store/test_writer.py, tests/scale/test_remote_write.py and tests/events/)."""

from __future__ import annotations

import asyncio

import pytest

from ioc.batching import Batches, Pushed


def batches(limit: int = 5, batch_size: int = 2, stop_timeout: float = 5.0) -> Batches[int]:
    return Batches(limit=limit, batch_size=batch_size, flush_interval=60.0,
                   stop_timeout=stop_timeout)


@pytest.mark.parametrize(("buffered", "new", "kept", "pushed"), [
    ([], [1, 2, 3], [1, 2, 3], Pushed(3, 0, 0)),
    ([1, 2, 3], [4, 5], [1, 2, 3, 4, 5], Pushed(2, 0, 0)),        # exactly full
    ([1, 2, 3, 4], [5, 6, 7], [3, 4, 5, 6, 7], Pushed(3, 2, 2)),  # the oldest buffered go
    ([1, 2], list(range(10, 17)), [12, 13, 14, 15, 16], Pushed(5, 4, 2)),  # and new ones
    ([], [], [], Pushed(0, 0, 0)),
])
def test_drop_oldest_keeps_the_newest(buffered: list[int], new: list[int], kept: list[int],
                                      pushed: Pushed) -> None:
    b = batches()
    b.push(buffered)
    assert b.push_dropping_oldest(new) == pushed
    assert list(b.buffer) == kept
    assert b.queued <= b.limit


def test_a_batch_in_flight_counts_and_goes_back_to_the_head_unless_written() -> None:
    b = batches()
    b.push([1, 2, 3])
    assert b.take(2) == [1, 2] and b.queued == 3 and b.room == 2
    b.push_dropping_oldest([4, 5, 6])  # room for two: the oldest buffered (3) goes
    assert list(b.buffer) == [4, 5, 6] and b.inflight == [1, 2]
    b.settle(written=False)
    assert list(b.buffer) == [1, 2, 4, 5, 6] and b.inflight == []
    assert b.take(10) == [1, 2, 4, 5, 6]
    b.settle(written=True)
    assert b.queued == 0
    b.push([7])
    assert b.clear() == 1 and b.queued == 0


async def test_a_full_batch_wakes_the_task_and_idle_returns_at_once() -> None:
    b = batches(batch_size=2)
    b.push([1])
    assert not b.wake.is_set()
    b.push([2])
    assert b.wake.is_set()
    await b.idle()  # a batch is full: no wait (flush_interval is a minute)
    assert not b.wake.is_set()
    b.clear()
    await b.idle(urgent=True)


async def test_stop_cuts_the_backoff_short_and_sets_a_deadline() -> None:
    b = batches(stop_timeout=5.0)
    retried = asyncio.Event()

    async def writer() -> None:
        await b.backoff(3600.0)  # a failing write backing off for an hour
        retried.set()
        while not b.past_deadline():
            await b.backoff(3600.0)  # while stopping: never past the deadline

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)
    stop = asyncio.create_task(b.stop(task))
    await retried.wait()  # at once, not after an hour
    assert b.stopping.is_set() and b.deadline is not None
    b.deadline = asyncio.get_running_loop().time()  # end the test's wait for the deadline
    await stop
    assert task.done() and not task.cancelled()


async def test_stop_cancels_a_task_that_ignores_the_deadline() -> None:
    b = batches(stop_timeout=0.0)
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await started.wait()
    await b.stop(task)  # a grace of one second, then cancelled
    assert task.cancelled()
    b.restart()
    assert not b.stopping.is_set() and b.deadline is None


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Batches(limit=0, batch_size=1, flush_interval=1.0, stop_timeout=1.0)
