"""The alert leader's store tail on the real PostgreSQL: it reads the other shard's samples
(never its own), every point once however often the overlap re-reads it, forgets a target
removed from the config, and counts every instance's events once by (source, id)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from ioc.model import Event, Sample, make_labels
from ioc.sharding import Shard
from ioc.store import SqlStore
from ioc.store.events import EventStore
from ioc.store.tail import TailStore
from service.store_tail import StoreTail, TailMetrics

pytestmark = pytest.mark.postgres

SHARD = Shard(0, 2)
MINE = next(f"mine-{i}" for i in range(100) if SHARD.owns(f"mine-{i}"))
THEIRS = [f"theirs-{i}" for i in range(100) if not SHARD.owns(f"theirs-{i}")][:2]
T = float(int(time.time()))  # today: the day's sample partition exists


def up(target: str, ts: float, value: float = 1.0) -> Sample:
    return Sample("ioc_target_up", make_labels(target=target, department="STP", kind="http"),
                  value, ts)


def event(n: int, source: str = "siem") -> Event:
    return Event(source=source, id=f"e{n}", severity="high", category="auth",
                 title="Đăng nhập sai", occurred_at=T - 100, department="STP")


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[SqlStore, EventStore, StoreTail]]:
    samples, events = SqlStore(postgres_url), EventStore(postgres_url)
    await samples.open()
    await events.open()
    targets = [MINE, *THEIRS]
    tail = StoreTail(TailStore(postgres_url), shard=SHARD, targets=lambda: targets,
                     window=3600, window_points=100, overlap=5.0, backfill=lambda: 60.0,
                     metrics=TailMetrics(CollectorRegistry()))
    await tail.open()
    try:
        yield samples, events, tail
    finally:
        await tail.close()
        await events.close()
        await samples.close()


def points(tail: StoreTail, target: str) -> list[float]:
    labels = make_labels(target=target, department="STP", kind="http")
    return [ts for ts, _ in tail.samples.window("ioc_target_up", labels)]


def total(tail: StoreTail) -> float:
    labels = make_labels(department="STP", source="siem", severity="high", category="auth")
    latest = tail.event_counts.cache.latest("ioc_security_events_total", labels)
    return latest[1] if latest else 0.0


async def test_other_shards_samples_once_and_own_never(
        stores: tuple[SqlStore, EventStore, StoreTail]) -> None:
    samples, _, tail = stores
    theirs = THEIRS[0]
    await samples.append([up(t, T - 120 + i) for t in (MINE, theirs)
                          for i in range(0, 120, 10)])
    await tail.start(T)  # takes the lead: (T - 60, T] is read
    assert points(tail, theirs) == [T - 50, T - 40, T - 30, T - 20, T - 10]
    assert points(tail, MINE) == []  # this shard's own series stay in its own cache

    # A later read reaches back by the overlap: nothing is added twice.
    await samples.append([up(theirs, T + 1), up(theirs, T + 3)])
    await tail.poll(T + 4)
    await samples.append([up(theirs, T + 2.5)])  # stored late, older than what is there
    await tail.poll(T + 6)
    assert points(tail, theirs)[-3:] == [T - 10, T + 1, T + 3]
    assert tail.metrics.samples._value.get() == 7

    # A series seen for the first time after the start is followed too.
    await samples.append([up(THEIRS[1], T + 7)])
    await tail.poll(T + 8)
    assert points(tail, THEIRS[1]) == [T + 7]

    # Taking the lead again starts from the store, not from what an earlier term read.
    tail.stop()
    assert points(tail, theirs) == []
    await tail.start(T + 10)
    assert points(tail, theirs)[0] == T - 40


async def test_a_removed_target_is_forgotten(
        stores: tuple[SqlStore, EventStore, StoreTail]) -> None:
    samples, _, tail = stores
    await samples.append([up(THEIRS[0], T - 5)])
    await tail.start(T)
    assert points(tail, THEIRS[0]) == [T - 5]
    kept = [MINE]
    tail.targets = lambda: kept
    await tail.poll(T + 1)
    assert points(tail, THEIRS[0]) == []


async def test_every_instances_events_are_counted_once(
        stores: tuple[SqlStore, EventStore, StoreTail]) -> None:
    _, events, tail = stores
    await events.insert([event(n) for n in range(3)], received_at=T - 30)  # before the lead
    await tail.start(T)
    assert total(tail) == 3
    await events.insert([event(n) for n in range(3, 5)], received_at=T + 1)
    await tail.poll(T + 2)
    await tail.poll(T + 4)  # the overlap reads the last two again
    assert total(tail) == 5
    assert tail.metrics.events._value.get() == 5
    await events.insert([event(2), event(5)], received_at=T + 5)  # a repeat is not stored
    await tail.poll(T + 6)
    assert total(tail) == 6
