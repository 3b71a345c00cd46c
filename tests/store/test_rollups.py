"""Rollups on SQLite and PostgreSQL: equal to the raw aggregates, late and replaced samples
rolled up again, range queries answered from them exactly as from raw samples, pruned by age."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Table, select

from ioc.model import Sample, Series, canonical_labels, make_labels
from ioc.store import SqlStore
from ioc.store.rollup_job import RollupJob
from ioc.store.rollups import (
    TIER_1H,
    TIER_5M,
    LateWrites,
    Rollups,
    Span,
    Tier,
    next_slice,
    plan,
)
from ioc.store.schema import rollup_1h, rollup_5m, series
from service.app import IocApp
from service.config import parse_config

T0 = 1_764_288_000.0  # 2025-11-28T00:00:00Z, a whole day
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0
DAY_MS = 86_400_000


def rollups_of(store: SqlStore, **kw: Any) -> Rollups:
    # At most two series per transaction, so slicing by series id is exercised with few.
    options: dict[str, Any] = {"raw_retention": 30 * DAY, "retention_5m": 90 * DAY,
                               "retention_1h": 730 * DAY, "max_series_per_transaction": 2}
    options.update(kw)
    return Rollups(store, **options)


@pytest.fixture
async def raw_store(store_url: str, store: SqlStore) -> AsyncIterator[SqlStore]:
    """A second store on the same database that never reads rollups: the reference."""
    reference = SqlStore(store_url, rollups=False)
    await reference.open()
    try:
        yield reference
    finally:
        await reference.close()


def minutely(target: str, start: float, end: float, value: float = 1.0) -> list[Sample]:
    labels = make_labels(target=target)
    return [Sample("m", labels, value + i, start + MIN * i)
            for i in range(int((end - start) / MIN))]


async def stored_rollups(store: SqlStore, table: Table) -> dict[tuple[str, int], tuple[Any, ...]]:
    """Rollup rows by (canonical labels, bucket start)."""
    reader, _ = store.engines()
    async with reader.connect() as conn:
        result = await conn.execute(
            select(series.c.labels, table.c.ts, table.c["count"], table.c["sum"],
                   table.c["min"], table.c["max"])
            .join(series, series.c.id == table.c.series_id))
        return {(labels, ts): (count, total, low, high)
                for labels, ts, count, total, low, high in result}


def expected_rollups(samples: Iterable[Sample], width_ms: int,
                     before: int) -> dict[tuple[str, int], tuple[Any, ...]]:
    """The same aggregates computed in Python, last write winning per (series, ms)."""
    latest: dict[tuple[str, int], float] = {}
    for s in samples:
        latest[(canonical_labels(s.labels), round(s.ts * 1000))] = s.value
    buckets: dict[tuple[str, int], list[float]] = {}
    for (labels, ts), value in latest.items():
        start = ts - ts % width_ms
        if start + width_ms <= before:
            buckets.setdefault((labels, start), []).append(value)
    return {key: (len(v), sum(v), min(v), max(v)) for key, v in buckets.items()}


def assert_rows_equal(found: dict[tuple[str, int], tuple[Any, ...]],
                      wanted: dict[tuple[str, int], tuple[Any, ...]]) -> None:
    assert found.keys() == wanted.keys()
    for key, (count, total, low, high) in wanted.items():
        got = found[key]
        assert got[0] == count, key
        assert math.isclose(got[1], total, rel_tol=1e-9, abs_tol=1e-9), key
        assert (got[2], got[3]) == (low, high), key


def assert_series_equal(found: list[Series], wanted: list[Series]) -> None:
    assert [s.labels for s in found] == [s.labels for s in wanted]
    for got, want in zip(found, wanted, strict=True):
        assert [ts for ts, _ in got.points] == [ts for ts, _ in want.points]
        for (_, a), (_, b) in zip(got.points, want.points, strict=True):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def random_samples(rng: random.Random, targets: int, per_target: int,
                   span: float) -> list[Sample]:
    out = []
    for t in range(targets):
        labels = make_labels(target=f"t{t}", department=f"d{t % 2}")
        for _ in range(per_target):
            ts = T0 + rng.randrange(int(span * 1000)) / 1000
            out.append(Sample("m", labels, rng.uniform(-50, 150), ts))
    return out


async def test_rollups_equal_raw_aggregates(store: SqlStore) -> None:
    rng = random.Random(20261128)
    data = random_samples(rng, targets=5, per_target=800, span=2 * DAY)
    # Some samples written twice: the later value is the one rolled up.
    data += [Sample(s.metric, s.labels, s.value + 1000, s.ts) for s in rng.sample(data, 50)]
    for i in range(0, len(data), 700):
        await store.append(data[i:i + 700])
    now = T0 + 2 * DAY - 17.5 * MIN  # inside a 5 min bucket and an hour, both still open

    report = await rollups_of(store).run(now)

    now_ms = round(now * 1000)
    closed_5m = now_ms - now_ms % TIER_5M.width
    assert report.tiers["5m"].rolled_to == closed_5m
    assert report.tiers["1h"].rolled_to == closed_5m - closed_5m % TIER_1H.width
    assert_rows_equal(await stored_rollups(store, rollup_5m),
                      expected_rollups(data, TIER_5M.width, closed_5m))
    assert_rows_equal(await stored_rollups(store, rollup_1h),
                      expected_rollups(data, TIER_1H.width, report.tiers["1h"].rolled_to or 0))


async def test_range_queries_from_rollups_equal_raw_ones(store: SqlStore,
                                                         raw_store: SqlStore) -> None:
    rng = random.Random(7)
    data = random_samples(rng, targets=4, per_target=1500, span=3 * DAY)
    await store.append(data)
    # Rolled up to 2.5 days; the rest is the not-yet-rolled tail the queries read raw.
    await rollups_of(store).run(T0 + 2.5 * DAY + 7 * MIN)

    for step in (300, 900, 3600, 7200, 21600, 86400):
        for _ in range(4):
            start = T0 - HOUR + rng.randrange(int(2 * DAY * 1000)) / 1000
            end = start + rng.randrange(int(2 * DAY * 1000)) / 1000
            for matchers in ({}, {"department": "d1"}, {"target": "t2"}):
                assert_series_equal(await store.query_range("m", matchers, start, end, step),
                                    await raw_store.query_range("m", matchers, start, end, step))
    # Aligned bounds, the whole range, a range inside one bucket, a range after the data.
    for start, end, step in ((T0, T0 + 3 * DAY, 3600), (T0 - DAY, T0 + 4 * DAY, 86400),
                             (T0 + 600.5, T0 + 900.25, 300), (T0 + 5 * DAY, T0 + 6 * DAY, 3600)):
        assert_series_equal(await store.query_range("m", {}, start, end, step),
                            await raw_store.query_range("m", {}, start, end, step))


async def test_a_chart_is_complete_up_to_now_and_keeps_history_raw_retention_removed(
        store: SqlStore, raw_store: SqlStore) -> None:
    await store.append(minutely("a", T0, T0 + 5 * HOUR))   # values 1 .. 300
    await rollups_of(store).run(T0 + 3 * HOUR + 10)     # rolled up to T0 + 3 h

    chart = await store.query_range("m", {}, T0, T0 + 5 * HOUR, 3600)

    # Hours 3 and 4 are not rolled up yet and come from raw samples.
    assert [ts for ts, _ in chart[0].points] == [T0 + HOUR * h for h in range(5)]
    assert [v for _, v in chart[0].points] == [30.5 + 60 * h for h in range(5)]
    assert_series_equal(chart, await raw_store.query_range("m", {}, T0, T0 + 5 * HOUR, 3600))

    await store.prune(T0 + 2 * HOUR)  # raw samples of the first two hours are gone
    after = await store.query_range("m", {}, T0, T0 + 5 * HOUR, 3600)
    assert after == chart
    assert [v for _, v in (await raw_store.query_range(
        "m", {}, T0, T0 + 5 * HOUR, 3600))[0].points][:1] == [150.5]


async def test_a_late_sample_below_the_watermark_is_rolled_up_on_the_next_run(
        store: SqlStore) -> None:
    rollups = rollups_of(store)
    data = minutely("a", T0, T0 + 3 * HOUR, value=0.0)
    await store.append(data)
    await rollups.run(T0 + 3 * HOUR + 10)
    before_5m = await stored_rollups(store, rollup_5m)

    # Written an hour and a half after its bucket closed (a retried batch, a backlog).
    late = Sample("m", make_labels(target="a"), 1000.0, T0 + 30 * MIN + 1)
    await store.append([late])
    await rollups.run(T0 + 3 * HOUR + 70)

    key = (canonical_labels(late.labels), round((T0 + 30 * MIN) * 1000))
    assert before_5m[key][0] == 5
    assert (await stored_rollups(store, rollup_5m))[key][:2] == (6, sum(range(30, 35)) + 1000)
    hour = (key[0], round(T0 * 1000))
    assert (await stored_rollups(store, rollup_1h))[hour][:2] == (61, sum(range(60)) + 1000)
    assert_rows_equal(await stored_rollups(store, rollup_1h),
                      expected_rollups([*data, late], TIER_1H.width, round((T0 + 3 * HOUR) * 1000)))


async def test_late_samples_of_another_process_in_the_last_closed_bucket_are_rolled_up(
        store: SqlStore, store_url: str) -> None:
    rollups = rollups_of(store)
    await store.append(minutely("a", T0, T0 + HOUR, value=0.0))
    await rollups.run(T0 + HOUR + 5)
    other = SqlStore(store_url)  # another shard: its writes are not marked in this process
    await other.open()
    try:
        await other.append([Sample("m", make_labels(target="b"), 7.0, T0 + HOUR - 1)])
    finally:
        await other.close()

    await rollups.run(T0 + HOUR + 65)

    rows = await stored_rollups(store, rollup_5m)
    assert rows[(canonical_labels(make_labels(target="b")),
                 round((T0 + 55 * MIN) * 1000))] == (1, 7.0, 7.0, 7.0)


async def test_an_overwritten_sample_changes_its_buckets(store: SqlStore,
                                                         raw_store: SqlStore) -> None:
    rollups = rollups_of(store)
    labels = make_labels(target="a")
    await store.append([Sample("m", labels, 1.0, T0 + 10 * MIN),
                        Sample("m", labels, 3.0, T0 + 20 * MIN)])
    await rollups.run(T0 + HOUR + 1)
    await store.append([Sample("m", labels, 5.0, T0 + 10 * MIN)])  # a corrected value

    await rollups.run(T0 + HOUR + 61)

    key = (canonical_labels(labels), round((T0 + 10 * MIN) * 1000))
    assert (await stored_rollups(store, rollup_5m))[key] == (1, 5.0, 5.0, 5.0)
    hour = (canonical_labels(labels), round(T0 * 1000))
    assert (await stored_rollups(store, rollup_1h))[hour] == (2, 8.0, 3.0, 5.0)
    [chart] = await store.query_range("m", {}, T0, T0 + HOUR - 0.001, 3600)
    assert chart.points == [(T0, 4.0)]
    assert_series_equal([chart], await raw_store.query_range("m", {}, T0, T0 + HOUR - 0.001,
                                                             3600))


async def test_rerunning_changes_nothing_and_an_empty_store_has_nothing_to_do(
        store: SqlStore) -> None:
    rollups = rollups_of(store)
    empty = await rollups.run(T0)
    assert all(run.span is None and run.rolled_to is None for run in empty.tiers.values())

    await store.append(minutely("a", T0, T0 + 2 * HOUR))
    await rollups.run(T0 + 2 * HOUR)
    first = await stored_rollups(store, rollup_5m), await stored_rollups(store, rollup_1h)
    again = await rollups.run(T0 + 2 * HOUR + 30)

    assert again.tiers["5m"].span == Span(round((T0 + 115 * MIN) * 1000),
                                          round((T0 + 2 * HOUR) * 1000))
    assert (await stored_rollups(store, rollup_5m),
            await stored_rollups(store, rollup_1h)) == first


async def test_rollup_retention_prunes_each_tier_by_its_own_age(store: SqlStore) -> None:
    rollups = rollups_of(store, raw_retention=DAY, retention_5m=DAY, retention_1h=2 * DAY)
    await store.append(minutely("a", T0, T0 + 3 * DAY))
    await rollups.run(T0 + DAY)
    await rollups.run(T0 + 3 * DAY)  # after a stop: catches up although raw retention passed
    count_5m = len(await stored_rollups(store, rollup_5m))
    assert count_5m == 3 * 288

    removed = await rollups.prune(T0 + 3 * DAY + 30 * MIN, batch_size=50)

    kept_5m = await stored_rollups(store, rollup_5m)
    kept_1h = await stored_rollups(store, rollup_1h)
    cutoff_5m, cutoff_1h = (T0 + 2 * DAY + 30 * MIN) * 1000, (T0 + DAY + 30 * MIN) * 1000
    assert min(ts for _, ts in kept_5m) == cutoff_5m
    assert min(ts for _, ts in kept_1h) == cutoff_1h + 30 * MIN * 1000
    assert removed == {"5m": 2 * 288 + 6, "1h": 25}
    assert len(kept_5m) == count_5m - removed["5m"]
    assert await rollups.prune(T0 + 3 * DAY + 30 * MIN) == {"5m": 0, "1h": 0}


async def test_the_job_reports_lag_rows_and_failures(store: SqlStore) -> None:
    registry = CollectorRegistry()
    now = [T0 + HOUR + 90]
    job = RollupJob(store, registry, raw_retention=30 * DAY, retention_5m=90 * DAY,
                    retention_1h=730 * DAY, interval=60, prune_interval=3600,
                    clock=lambda: now[0])

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert math.isnan(value("ioc_store_rollup_lag_seconds", tier="5m") or 0.0)
    await store.append(minutely("a", T0, T0 + HOUR))
    assert await job.run_once() is not None
    assert value("ioc_store_rollup_lag_seconds", tier="5m") == 90
    assert value("ioc_store_rollup_lag_seconds", tier="1h") == 90
    assert value("ioc_store_rollup_rows_total", tier="5m") == 12
    assert value("ioc_store_rollup_duration_seconds_count") == 1
    now[0] += 600
    assert value("ioc_store_rollup_lag_seconds", tier="5m") == 690

    await store.close()  # every run from now on fails, and is counted
    assert await job.run_once() is None
    assert await job.prune_once() is None
    assert value("ioc_store_rollup_failures_total") == 2


# -- pure parts ------------------------------------------------------------------------------

def test_late_writes_keep_the_earliest_sample_below_the_horizon() -> None:
    late = LateWrites()
    late.note(500)                       # horizon unknown: everything counts
    assert late.take() == 500 and late.take() is None
    late.horizon = 1000
    late.note(1500)
    late.note(900)
    late.note(700)
    late.note(800)
    assert late.take() == 700
    late.restore(650)
    late.restore(None)
    assert late.take() == 650


@pytest.mark.parametrize(("tier", "kwargs", "expected"), [
    # never rolled up: from the oldest source row, to the last closed bucket
    (TIER_5M, {"watermark": None, "first_source_ts": 1_234_567, "closed_before": 2_000_000},
     Span(1_200_000, 1_800_000)),
    (TIER_5M, {"watermark": None, "first_source_ts": None, "closed_before": 2_000_000}, None),
    # the last closed bucket is always redone
    (TIER_5M, {"watermark": 1_800_000, "closed_before": 1_900_000}, Span(1_500_000, 1_800_000)),
    # a late write reopens its bucket
    (TIER_5M, {"watermark": 1_800_000, "also_from": (301_000,), "closed_before": 2_100_000},
     Span(300_000, 2_100_000)),
    # ... but never before the source's retention cutoff
    (TIER_5M, {"watermark": 1_800_000, "also_from": (301_000,), "closed_before": 2_100_000,
               "keep_from": 900_001}, Span(1_200_000, 2_100_000)),
    # ... while buckets never rolled up (a long stop) are rolled up from what is left
    (TIER_5M, {"watermark": 600_000, "closed_before": 2_100_000, "keep_from": 900_001},
     Span(600_000, 2_100_000)),
    (TIER_1H, {"watermark": 7_200_000, "also_from": (7_500_000,),
               "closed_before": 7_200_000}, Span(3_600_000, 7_200_000)),
    (TIER_1H, {"watermark": 7_200_000, "closed_before": 3_600_000}, None),
])
def test_plan(tier: Tier, kwargs: dict[str, Any], expected: Span | None) -> None:
    arguments: dict[str, Any] = {"first_source_ts": None, "also_from": (), "keep_from": 0}
    arguments.update(kwargs)
    assert plan(tier, **arguments) == expected


def test_tiers_tile_each_other() -> None:
    assert TIER_1H.width % TIER_5M.width == 0
    for tier in (TIER_5M, TIER_1H):
        assert DAY_MS % tier.width == 0 and tier.window % tier.width == 0


def test_the_slice_follows_how_long_transactions_take() -> None:
    assert next_slice(100, 0.001, 5000) == 200
    assert next_slice(4000, 0.001, 5000) == 5000
    assert next_slice(100, 0.1, 5000) == 100
    assert next_slice(100, 1.0, 5000) == 50
    assert next_slice(1, 1.0, 5000) == 1


def test_the_app_builds_the_rollup_job_only_when_enabled(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}"
    enabled = IocApp(parse_config({"storage": {"url": url}}, env={}))
    disabled = IocApp(parse_config({"storage": {"url": url, "rollups": {"enabled": False}}},
                                   env={}))

    assert isinstance(enabled.rollups, RollupJob)
    assert disabled.rollups is None
    assert enabled.registry.get_sample_value("ioc_store_rollup_failures_total") == 0
    assert disabled.registry.get_sample_value("ioc_store_rollup_failures_total") is None
