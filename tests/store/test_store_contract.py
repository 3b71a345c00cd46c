"""The Store contract, run unchanged against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from ioc.model import Sample, make_labels
from ioc.store import SchemaVersionError, SqlStore, StoreError
from ioc.store.migrate import VERSION_TABLE, head
from ioc.store.schema import SCHEMA_VERSION

T0 = 1_764_288_000.0  # 2025-11-28T00:00:00Z, a multiple of every step used below


def sample(metric: str, value: float, ts: float, **labels: str) -> Sample:
    return Sample(metric, make_labels(labels), float(value), ts)


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[AsyncConnection]:
    """A plain connection beside the store, to look at what it really wrote."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


async def test_open_creates_schema_and_one_version_row(store: SqlStore, store_url: str) -> None:
    async with raw(store_url) as conn:
        versions = (await conn.execute(text("SELECT version FROM ioc_schema_version"))).all()
        for table in ("ioc_series", "ioc_samples"):
            assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
        if store.backend == "sqlite":
            ddl = (await conn.execute(text(
                "SELECT sql FROM sqlite_master WHERE name = 'ioc_samples'"))).scalar()
            assert "WITHOUT ROWID" in ddl
    assert versions == [(SCHEMA_VERSION,)]
    # Opening again (another process starting) adds no second row.
    again = SqlStore(store_url)
    await again.open()
    await again.close()
    async with raw(store_url) as conn:
        assert (await conn.execute(text("SELECT count(*) FROM ioc_schema_version"))).scalar() == 1


async def test_sqlite_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ioc.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    try:
        async with raw(f"sqlite+aiosqlite:///{path}") as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
    finally:
        await store.close()


TRICKY = {
    "tỉnh": "Thừa Thiên Huế",
    "đơn_vị": "Sở Thông tin và Truyền thông",
    "quoted": 'say "xin chào", then leave',
    "commas": 'a,b="c",d',
    "path": "C:\\Users\\new\\",
    "lines": "dòng 1\ndòng 2",
    "empty": "",
}


async def test_round_trip_keeps_labels_and_values_exactly(store: SqlStore) -> None:
    labels = make_labels(TRICKY)
    other = make_labels(TRICKY, quoted='say "xin chào"')  # differs only inside the quotes
    await store.append([
        Sample("ioc_probe_duration_seconds", labels, 0.125, T0),
        Sample("ioc_probe_duration_seconds", labels, 0.25, T0 + 0.375),
        Sample("ioc_probe_duration_seconds", other, 7.0, T0),
    ])

    found = await store.query_range("ioc_probe_duration_seconds", {}, T0, T0 + 1, 0.001)

    assert [s.labels for s in found] == sorted([labels, other])
    by_labels = {s.labels: s for s in found}
    assert by_labels[labels].metric == "ioc_probe_duration_seconds"
    assert by_labels[labels].points == [(T0, 0.125), (T0 + 0.375, 0.25)]
    assert by_labels[other].points == [(T0, 7.0)]


async def test_label_order_does_not_split_a_series(store: SqlStore) -> None:
    await store.append([Sample("m", (("b", "2"), ("a", "1")), 1.0, T0),
                        Sample("m", (("a", "1"), ("b", "2")), 2.0, T0 + 10)])
    await store.append([Sample("m", (("b", "2"), ("a", "1")), 3.0, T0 + 20)])

    [series] = await store.query_range("m", {"a": "1"}, T0, T0 + 20, 10)

    assert series.labels == (("a", "1"), ("b", "2"))
    assert series.points == [(T0, 1.0), (T0 + 10, 2.0), (T0 + 20, 3.0)]


async def test_matchers_select_series_by_exact_label_equality(store: SqlStore) -> None:
    await store.append([
        sample("ioc_target_up", 1, T0, job="web", instance="a", tỉnh="Huế"),
        sample("ioc_target_up", 0, T0, job="web", instance="b", tỉnh="Huế"),
        sample("ioc_target_up", 1, T0, job="dns", instance="a", tỉnh="Huế"),
        sample("ioc_target_up", 1, T0, job="web2", instance="a"),
        sample("ioc_other", 1, T0, job="web", instance="a"),
        # Its canonical text contains ',job="web",' without having a label job="web".
        Sample("ioc_target_up", make_labels({"a,job": "web", "instance": "c"}), 1.0, T0),
    ])

    async def instances(matchers: dict[str, str]) -> list[tuple[str, str]]:
        found = await store.query_range("ioc_target_up", matchers, T0, T0, 15)
        return [(dict(s.labels)["job"], dict(s.labels)["instance"]) for s in found]

    assert await instances({"job": "web"}) == [("web", "a"), ("web", "b")]
    assert await instances({"job": "web", "instance": "b"}) == [("web", "b")]
    assert await instances({"tỉnh": "Huế", "instance": "a"}) == [("dns", "a"), ("web", "a")]
    assert len(await store.query_range("ioc_target_up", {}, T0, T0, 15)) == 5
    assert await instances({"job": "we"}) == []           # no prefix matching
    assert await instances({"missing": ""}) == []         # a matcher needs the label present
    assert await store.query_range("ioc_absent", {}, T0, T0, 15) == []


async def test_downsampling_averages_each_aligned_bucket(store: SqlStore) -> None:
    values = {T0 - 20: 1, T0 - 10: 3,              # bucket T0-60
              T0: 10, T0 + 30: 20, T0 + 59.999: 30,  # bucket T0
              T0 + 60: 5}                          # bucket T0+60
    await store.append([sample("m", v, ts, job="x") for ts, v in values.items()])

    [series] = await store.query_range("m", {"job": "x"}, T0 - 60, T0 + 120, 60)

    assert series.points == [(T0 - 60, 2.0), (T0, 20.0), (T0 + 60, 5.0)]
    assert all(isinstance(ts, float) for ts, _ in series.points)


async def test_buckets_align_to_step_multiples_not_to_start(store: SqlStore) -> None:
    await store.append([sample("m", i, T0 + 10 * i) for i in range(12)])  # T0 .. T0+110

    [series] = await store.query_range("m", {}, T0 + 15, T0 + 110, 30)

    # Buckets start at multiples of 30 s; the first is only partly inside [start, end].
    assert series.points == [(T0, 2.0), (T0 + 30, 4.0), (T0 + 60, 7.0), (T0 + 90, 10.0)]


async def test_start_and_end_bounds_are_inclusive(store: SqlStore) -> None:
    await store.append([sample("m", i, T0 + 10 * i) for i in range(11)])  # T0 .. T0+100

    [series] = await store.query_range("m", {}, T0 + 20, T0 + 50, 10)
    assert series.points == [(T0 + 20, 2.0), (T0 + 30, 3.0), (T0 + 40, 4.0), (T0 + 50, 5.0)]

    assert await store.query_range("m", {}, T0 + 51, T0 + 59, 10) == []
    assert await store.query_range("m", {}, T0 + 50, T0 + 20, 10) == []
    with pytest.raises(ValueError, match="step"):
        await store.query_range("m", {}, T0, T0 + 100, 0)


async def test_duplicate_timestamps_do_not_fail_and_last_write_wins(store: SqlStore) -> None:
    await store.append([sample("m", 1, T0), sample("m", 2, T0), sample("m", 3, T0 + 10)])
    # A re-sent batch: one sample already stored (now corrected), one new.
    await store.append([sample("m", 4, T0), sample("m", 5, T0 + 20)])
    await store.append([sample("m", 4, T0)])

    [series] = await store.query_range("m", {}, T0, T0 + 20, 10)

    assert series.points == [(T0, 4.0), (T0 + 10, 3.0), (T0 + 20, 5.0)]


async def test_unstorable_samples_are_skipped_without_failing_the_batch(
        store: SqlStore) -> None:
    await store.append([sample("m", float("nan"), T0), sample("m", 1, float("inf")),
                        sample("m", 1, float("nan")), sample("m", float("inf"), T0 + 10),
                        sample("m", -2.5, T0 + 20)])

    [series] = await store.query_range("m", {}, T0, T0 + 20, 10)

    assert series.points == [(T0 + 10, float("inf")), (T0 + 20, -2.5)]


async def test_prune_removes_only_old_samples_and_counts_them(store: SqlStore) -> None:
    # The fixture's prune batch (7) is smaller than each series' old data (10).
    await store.append([sample("m", i, T0 + 10 * i, job=job)
                        for job in ("a", "b", "c") for i in range(30)])
    await store.append([sample("fresh", 1, T0 + 500)])

    assert await store.prune(T0 + 100) == 30

    found = await store.query_range("m", {}, T0 - 1000, T0 + 1000, 10)
    assert [len(s.points) for s in found] == [20, 20, 20]
    assert all(ts >= T0 + 100 for s in found for ts, _ in s.points)
    assert await store.prune(T0 + 100) == 0
    assert len(await store.query_range("fresh", {}, T0, T0 + 1000, 10)) == 1


async def test_reopening_keeps_data_and_series_ids(store_url: str) -> None:
    first = SqlStore(store_url)
    await first.open()
    await first.append([sample("m", 1, T0, job="a"), sample("m", 2, T0, job="b")])
    await first.close()
    async with raw(store_url) as conn:
        before = (await conn.execute(text(
            "SELECT id, metric, labels FROM ioc_series ORDER BY id"))).all()

    second = SqlStore(store_url)
    await second.open()
    try:
        await second.append([sample("m", 3, T0 + 10, job="a"), sample("m", 4, T0, job="c")])
        found = await second.query_range("m", {}, T0, T0 + 10, 10)
    finally:
        await second.close()
    async with raw(store_url) as conn:
        after = (await conn.execute(text(
            "SELECT id, metric, labels FROM ioc_series ORDER BY id"))).all()

    assert after[:2] == before and len(after) == 3
    assert [(dict(s.labels)["job"], s.points) for s in found] == [
        ("a", [(T0, 1.0), (T0 + 10, 3.0)]), ("b", [(T0, 2.0)]), ("c", [(T0, 4.0)])]


async def test_a_database_migrated_by_a_newer_ioc_is_refused(store_url: str) -> None:
    store = SqlStore(store_url)
    await store.open()
    await store.close()
    async with raw(store_url) as conn:
        await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099_future'"))

    newer = SqlStore(store_url)
    with pytest.raises(SchemaVersionError,
                       match=rf"at 0099_future, newer than schema {head()} that this ioc knows"):
        await newer.open()
    with pytest.raises(StoreError, match="not open"):
        await newer.ping()


async def test_ping_and_masked_url(store: SqlStore) -> None:
    await store.ping()
    assert "***" not in store.url_for_display
    masked = SqlStore("postgresql+asyncpg://ioc:s3cret@db.example:5432/ioc")
    assert masked.url_for_display == "postgresql+asyncpg://ioc:***@db.example:5432/ioc"
    assert "s3cret" not in repr(masked)
