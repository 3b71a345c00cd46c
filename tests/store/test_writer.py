"""The writer batches, retries and bounds memory, on a real SQLite store."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ioc.model import Sample, make_labels
from ioc.store import SqlStore, StoreError
from ioc.store.writer import StoreWriter
from tests.helpers import Changes

T0 = 1_764_288_000.0


class ObservedStore(SqlStore):
    """A real SQLite store that reports each append to the test, and can fail the first few.

    The failures are StoreError exactly as SqlStore raises them for a locked database; the
    test that needs a genuinely locked database locks it for real instead.
    """

    def __init__(self, url: str, *, fail_first: int = 0, busy_timeout: float = 5.0) -> None:
        super().__init__(url, busy_timeout=busy_timeout)
        self.fail_first = fail_first
        self.attempts = 0
        self.batches: list[int] = []
        self._changed = Changes()

    async def append(self, samples: Sequence[Sample]) -> None:
        self.attempts += 1
        self._changed.set()
        if self.attempts <= self.fail_first:
            raise StoreError("append failed, retry later: OperationalError: database is locked")
        await super().append(samples)
        self.batches.append(len(samples))
        self._changed.set()

    async def until(self, condition: Callable[[], bool], limit: float = 5.0) -> None:
        await self._changed.until(condition, limit)

    async def stored_values(self, metric: str = "m") -> list[float]:
        found = await self.query_range(metric, {}, 0, 4e9, 0.001)
        return sorted(v for s in found for _, v in s.points)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ObservedStore]:
    opened = ObservedStore(f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def samples(count: int, first: int = 0, series: int = 3) -> list[Sample]:
    return [Sample("m", make_labels(job=f"j{i % series}"), float(i), T0 + i)
            for i in range(first, first + count)]


def metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, f"{name} is not registered"
    return value


async def test_a_backlog_is_written_in_group_commits(
        store: ObservedStore, registry: CollectorRegistry) -> None:
    writer = StoreWriter(store, registry, batch_size=10, flush_interval=3600, group_commit=4)
    writer.start()
    try:
        writer.submit(samples(95))  # a backlog: many batches wait at once
        await store.until(lambda: sum(store.batches) == 95)
        assert store.batches == [40, 40, 15]  # at most 4 batches per transaction
        assert metric(registry, "ioc_store_samples_written_total") == 95
    finally:
        await writer.stop()


async def test_a_full_batch_is_written_without_waiting_for_the_interval(
        store: ObservedStore, registry: CollectorRegistry) -> None:
    writer = StoreWriter(store, registry, batch_size=10, flush_interval=3600, group_commit=1)
    writer.start()
    try:
        for s in samples(9):
            writer.submit([s])
        for _ in range(20):  # give the task every chance to (wrongly) write a partial batch
            await asyncio.sleep(0)
        assert store.batches == []

        for s in samples(16, first=9):  # reaches 10, then 25
            writer.submit([s])
        await store.until(lambda: sum(store.batches) == 25)

        assert store.batches == [10, 10, 5]  # one transaction per batch, none per sample
        assert metric(registry, "ioc_store_samples_written_total") == 25
        assert metric(registry, "ioc_store_write_queue_samples") == 0
        assert metric(registry, "ioc_store_flush_duration_seconds_count") == 3
    finally:
        await writer.stop()


async def test_a_partial_batch_is_written_after_the_flush_interval(
        store: ObservedStore, registry: CollectorRegistry) -> None:
    writer = StoreWriter(store, registry, batch_size=1000, flush_interval=0.05)
    writer.start()
    try:
        writer.submit(samples(3))
        await store.until(lambda: store.batches == [3])
        assert await store.stored_values() == [0.0, 1.0, 2.0]
    finally:
        await writer.stop()


async def test_flush_returns_once_earlier_samples_are_stored(
        store: ObservedStore, registry: CollectorRegistry) -> None:
    writer = StoreWriter(store, registry, batch_size=40, flush_interval=3600, group_commit=1)
    writer.start()
    try:
        await writer.flush()  # nothing pending: returns at once
        writer.submit(samples(100))
        await writer.flush()
        assert store.batches == [40, 40, 20]
        assert await store.stored_values() == [float(i) for i in range(100)]
        assert metric(registry, "ioc_store_write_queue_samples") == 0
    finally:
        await writer.stop()


async def test_stop_writes_everything_still_buffered(
        store: ObservedStore, registry: CollectorRegistry) -> None:
    writer = StoreWriter(store, registry, batch_size=1000, flush_interval=3600,
                         group_commit=1)
    writer.start()
    writer.submit(samples(2500))

    await writer.stop()

    assert store.batches == [1000, 1000, 500]
    assert len(await store.stored_values()) == 2500
    assert metric(registry, "ioc_store_samples_written_total") == 2500
    assert metric(registry, "ioc_store_samples_dropped_total") == 0


async def test_failed_writes_are_retried_with_the_same_batch_and_nothing_is_lost(
        store: ObservedStore, registry: CollectorRegistry,
        caplog: pytest.LogCaptureFixture) -> None:
    store.fail_first = 4
    writer = StoreWriter(store, registry, batch_size=50, flush_interval=3600, group_commit=1,
                         retry_initial=0.001, retry_max=0.004)
    caplog.set_level(logging.INFO, logger="ioc.store")
    writer.start()
    try:
        writer.submit(samples(50))
        writer.submit(samples(20, first=50))  # arrives while the first batch is failing
        await writer.flush()
    finally:
        await writer.stop()

    assert store.attempts == 4 + 2
    assert store.batches == [50, 20]
    assert await store.stored_values() == [float(i) for i in range(70)]
    assert metric(registry, "ioc_store_write_errors_total") == 4
    assert metric(registry, "ioc_store_samples_written_total") == 70
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "ioc.store" and r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # once failing, once recovered — not per retry
    assert "writes failing" in warnings[0] and "database is locked" in warnings[0]
    assert "recovered after 4 failed attempts" in warnings[1]


async def test_a_really_locked_database_delays_but_does_not_lose_samples(
        tmp_path: Path, registry: CollectorRegistry) -> None:
    path = tmp_path / "ioc.db"
    store = ObservedStore(f"sqlite+aiosqlite:///{path}", busy_timeout=0.01)
    await store.open()
    writer = StoreWriter(store, registry, batch_size=100, flush_interval=3600,
                         retry_initial=0.01, retry_max=0.02)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        writer.start()
        writer.submit(samples(30))
        flushed = asyncio.create_task(writer.flush())
        await store.until(lambda: store.attempts >= 3)
        assert not flushed.done()
        other.execute("ROLLBACK")
        await asyncio.wait_for(flushed, 5)
        assert len(await store.stored_values()) == 30
        assert metric(registry, "ioc_store_write_errors_total") >= 2
    finally:
        other.close()
        await writer.stop()
        await store.close()


async def test_overflow_drops_the_oldest_samples_and_counts_them(
        store: ObservedStore, registry: CollectorRegistry) -> None:
    writer = StoreWriter(store, registry, queue_limit=10, batch_size=100, flush_interval=3600)
    writer.submit(samples(6))            # 0..5
    writer.submit(samples(7, first=6))   # 6..12: 0, 1, 2 make room
    assert metric(registry, "ioc_store_samples_dropped_total") == 3
    assert metric(registry, "ioc_store_write_queue_samples") == 10

    writer.submit(samples(15, first=13))  # 13..27: more than the whole queue
    assert metric(registry, "ioc_store_samples_dropped_total") == 3 + 15

    writer.start()
    try:
        await writer.flush()
    finally:
        await writer.stop()
    assert await store.stored_values() == [float(i) for i in range(18, 28)]
    assert metric(registry, "ioc_store_samples_written_total") == 10


async def test_overflow_is_logged_once_per_episode(
        store: ObservedStore, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.store")
    writer = StoreWriter(store, registry, queue_limit=10, batch_size=100, flush_interval=3600)
    for first in range(0, 100, 5):  # 20 overflowing submits
        writer.submit(samples(5, first=first))
    writer.start()
    try:
        await writer.flush()
        writer.submit(samples(1, first=100))  # fits again: the episode ends
    finally:
        await writer.stop()
    lines = [r.getMessage() for r in caplog.records if "write queue" in r.getMessage()]
    assert lines == ["store write queue is full: dropping (counted in metrics)",
                     "store write queue no longer dropping"]
    (ended,) = [r for r in caplog.records if "no longer dropping" in r.getMessage()]
    assert ended.fields["dropped"] == 90  # type: ignore[attr-defined]


async def test_stop_gives_up_at_its_deadline_and_counts_the_loss(
        store: ObservedStore, registry: CollectorRegistry,
        caplog: pytest.LogCaptureFixture) -> None:
    store.fail_first = 10**9  # the database never comes back
    writer = StoreWriter(store, registry, batch_size=100, flush_interval=3600,
                         retry_initial=0.01, retry_max=0.05, stop_timeout=0.2)
    writer.start()
    writer.submit(samples(30))

    await asyncio.wait_for(writer.stop(), 3)

    assert metric(registry, "ioc_store_samples_dropped_total") == 30
    assert metric(registry, "ioc_store_write_queue_samples") == 0
    assert store.batches == [] and store.attempts >= 2  # retried until the deadline
    assert any("30 samples unwritten" in r.getMessage() for r in caplog.records
               if r.levelno == logging.ERROR)


async def test_flush_refuses_to_wait_on_a_writer_that_is_not_running(
        store: ObservedStore, registry: CollectorRegistry) -> None:
    writer = StoreWriter(store, registry)
    writer.submit(samples(1))
    with pytest.raises(RuntimeError, match="not running"):
        await writer.flush()


def test_metrics_are_registered_with_help(tmp_path: Path, registry: CollectorRegistry) -> None:
    StoreWriter(SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"), registry)
    helps = {m.name: m.documentation for m in registry.collect()}
    for name in ("ioc_store_samples_written", "ioc_store_write_queue_samples",
                 "ioc_store_samples_dropped", "ioc_store_write_errors",
                 "ioc_store_flush_duration_seconds"):
        assert len(helps[name]) > 20, name
