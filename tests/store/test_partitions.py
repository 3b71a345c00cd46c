"""Day partitions of ioc_samples on PostgreSQL: where samples land, what retention drops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ioc.model import Sample, make_labels
from ioc.store import SqlStore
from ioc.store.partitions import (
    DAY_MS,
    Partition,
    day_name,
    expired,
    is_partition_name,
    missing_days,
    parse_bound,
)

D0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()  # a UTC midnight
DAY = 86_400.0
HOUR = 3_600.0


class Clock:
    """The store's idea of now, stepped by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def at(ts: float, value: float = 1.0, job: str = "a") -> Sample:
    return Sample("m", make_labels({"job": job}), value, ts)


async def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


async def placed(url: str) -> list[tuple[str, float]]:
    """(partition, ts in seconds) of every stored sample."""
    found = await rows(url, "SELECT tableoid::regclass::text, ts FROM ioc_samples ORDER BY ts")
    return [(str(name), int(str(ts)) / 1000) for name, ts in found]


async def partition_names(url: str) -> list[str]:
    found = await rows(url, "SELECT inhrelid::regclass::text FROM pg_inherits "
                            "WHERE inhparent = 'ioc_samples'::regclass ORDER BY 1")
    return [str(name) for name, in found]


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[tuple[SqlStore, Clock]]:
    clock = Clock(D0 + 12 * HOUR)
    store = SqlStore(postgres_url, clock=clock, prune_batch_size=5)
    await store.open()
    try:
        yield store, clock
    finally:
        await store.close()


# -- pure parts ------------------------------------------------------------------------------


def test_names_and_bounds() -> None:
    assert day_name(int(D0 * 1000) // DAY_MS) == "ioc_samples_p20261101"
    assert is_partition_name("ioc_samples_p20261101") and is_partition_name("ioc_samples_default")
    assert not is_partition_name("ioc_samples") and not is_partition_name("ioc_series")
    assert parse_bound("FOR VALUES FROM ('1793491200000') TO ('1793577600000')") == (
        1_793_491_200_000, 1_793_577_600_000)
    assert parse_bound("DEFAULT") == (None, None)
    assert parse_bound("FOR VALUES FROM (MINVALUE) TO ('5')") == (None, None)


def test_missing_days_respects_partitions_made_by_hand() -> None:
    day0 = int(D0 * 1000) // DAY_MS
    weekly = Partition("by_hand", (day0 + 1) * DAY_MS, (day0 + 8) * DAY_MS)
    assert missing_days([weekly], D0 + HOUR, days_ahead=3) == [day0]
    assert missing_days([], D0 + HOUR, days_ahead=2) == [day0, day0 + 1, day0 + 2]


def test_expired_partitions_end_at_or_before_the_cutoff() -> None:
    day = [Partition(f"p{i}", i * DAY_MS, (i + 1) * DAY_MS) for i in range(3)]
    default = Partition("d", None, None, default=True)
    assert expired([day[2], default, day[0], day[1]], 2 * DAY_MS) == [day[0], day[1]]


# -- on PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
async def test_open_creates_today_the_next_days_and_default(
        pg: tuple[SqlStore, Clock], postgres_url: str) -> None:
    store, _ = pg
    assert await partition_names(postgres_url) == [
        "ioc_samples_default", "ioc_samples_p20261101", "ioc_samples_p20261102",
        "ioc_samples_p20261103", "ioc_samples_p20261104"]
    assert store.partition_count == 5


@pytest.mark.postgres
async def test_samples_land_in_their_day_and_strays_in_default(
        pg: tuple[SqlStore, Clock], postgres_url: str) -> None:
    store, _ = pg
    await store.append([at(D0 + HOUR), at(D0 + DAY - 0.001), at(D0 + DAY),
                        at(D0 + 400 * DAY), at(D0 - 10 * DAY)])

    assert await placed(postgres_url) == [
        ("ioc_samples_default", D0 - 10 * DAY),
        ("ioc_samples_p20261101", D0 + HOUR),
        ("ioc_samples_p20261101", D0 + DAY - 0.001),
        ("ioc_samples_p20261102", D0 + DAY),
        ("ioc_samples_default", D0 + 400 * DAY)]


@pytest.mark.postgres
async def test_copy_conflicts_fall_back_to_the_upsert_across_partitions(
        pg: tuple[SqlStore, Clock]) -> None:
    store, _ = pg
    await store.append([at(D0 + HOUR, 1.0), at(D0 + 400 * DAY, 1.0)])
    # Both rows exist: COPY fails on the first duplicate and the batch is redone as upsert.
    await store.append([at(D0 + HOUR, 2.0), at(D0 + 400 * DAY, 2.0), at(D0 + 2 * HOUR, 2.0)])

    found = await store.query_range("m", {}, D0, D0 + 401 * DAY, 1)
    assert found[0].points == [(D0 + HOUR, 2.0), (D0 + 2 * HOUR, 2.0), (D0 + 400 * DAY, 2.0)]


@pytest.mark.postgres
async def test_retention_drops_whole_days_and_deletes_rows_only_at_the_boundary(
        pg: tuple[SqlStore, Clock], postgres_url: str) -> None:
    store, clock = pg
    every_6h = [at(D0 + i * 6 * HOUR, float(i), job) for i in range(16) for job in ("a", "b")]
    await store.append([*every_6h, at(D0 - 5 * DAY, job="old")])  # D0..D3, and one in default
    clock.now = D0 + 3 * DAY + HOUR

    cutoff = D0 + 2 * DAY + 7 * HOUR
    removed = await store.prune(cutoff)

    # D0 and D1 dropped whole (16 samples), D2 00:00 and 06:00 deleted (4), the stray (1).
    assert removed == 21
    assert await partition_names(postgres_url) == [
        "ioc_samples_default", "ioc_samples_p20261103", "ioc_samples_p20261104",
        "ioc_samples_p20261105", "ioc_samples_p20261106", "ioc_samples_p20261107"]
    assert store.partition_count == 6
    kept = await placed(postgres_url)
    assert [ts for _, ts in kept] == sorted(
        s.ts for s in every_6h if s.ts >= cutoff)
    assert await store.prune(cutoff) == 0


@pytest.mark.postgres
async def test_a_new_day_takes_its_samples_out_of_default(
        pg: tuple[SqlStore, Clock], postgres_url: str) -> None:
    store, clock = pg
    await store.append([at(D0 + 5 * DAY + HOUR), at(D0 + 9 * DAY)])  # no partition yet
    clock.now = D0 + 3 * DAY  # creates D4..D6 at the next prune

    assert await store.prune(D0) == 0

    assert await placed(postgres_url) == [("ioc_samples_p20261106", D0 + 5 * DAY + HOUR),
                                          ("ioc_samples_default", D0 + 9 * DAY)]


@pytest.mark.postgres
async def test_a_second_process_opening_later_keeps_the_partitions(
        pg: tuple[SqlStore, Clock], postgres_url: str) -> None:
    store, _ = pg
    await store.append([at(D0 + HOUR)])
    later = SqlStore(postgres_url, clock=Clock(D0 + DAY + HOUR))
    await later.open()
    try:
        assert later.partition_count == 6  # D1..D4 kept or added, D0 kept, default
        assert await placed(postgres_url) == [("ioc_samples_p20261101", D0 + HOUR)]
    finally:
        await later.close()


async def test_sqlite_has_no_partitions(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/ioc.db", clock=Clock(D0))
    await store.open()
    try:
        await store.append([at(D0)])
        assert await store.prune(D0 + 1) == 1
        assert store.partition_count == 0
    finally:
        await store.close()
