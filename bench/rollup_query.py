"""30-day charts from rollups against raw samples, and what keeping the rollups costs.

    .venv/bin/python bench/rollup_query.py [--backend postgresql|sqlite] [--series 5000]
        [--days 30] [--interval 300] [--runs 5]

The database gets ``--series`` series of one metric (a probe duration per target, 40 targets
per department), each with one sample every ``--interval`` seconds for ``--days`` days,
bulk-loaded with SQL (``generate_series`` on PostgreSQL, a recursive CTE on SQLite; on a
partitioned ``ioc_samples`` one partition per day, as ioc keeps them). Then, timed:

* the rollup job's first run over that history (both tiers, what enabling rollups on an
  existing database costs), and a steady-state run after one more 5-minute round of samples;
* a 30-day chart ending now, at step 1 h and 6 h, for one series and for all series of the
  metric, once through the rollups and once from raw samples (a store with rollups off);
  median of ``--runs`` runs after a warm-up (all-series raw: ``--runs`` // 5, at least 1).
  The two answers are compared, point by point.

PostgreSQL uses ``IOC_BENCH_POSTGRES_URL`` (default
postgresql+asyncpg://postgres@127.0.0.1:5432/test) only to create and drop a fresh database.
The defaults (1,000 series x 30 days at 5 minutes: 8.6 million samples, and as many 5 min
rollup rows) finish in about ten minutes on two cores; ``--series 5000`` is the full-size
province (43.2 million samples), which takes several times longer, mostly for the first
rollup run and the raw all-series queries.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ioc.model import Sample, Series, make_labels
from ioc.store import SqlStore, partitions
from ioc.store.rollups import Rollups

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
METRIC = "ioc_probe_duration_seconds"
DAY = 86_400
T_START = 1_761_696_000  # 2025-10-29T00:00:00Z; the chart ends --days later


def labels_of(i: int) -> tuple[tuple[str, str], ...]:
    return make_labels(department=f"dept{i // 40:03d}", target=f"t{i:05d}")


@asynccontextmanager
async def database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'ioc.db'}"
        return
    server = make_url(os.environ.get("IOC_BENCH_POSTGRES_URL", DEFAULT_PG))
    admin_url = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"ioc_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def load(store: SqlStore, series: int, days: int, interval: int) -> int:
    """Series through the store (so ids are resolved its way), samples by bulk SQL."""
    end = T_START + days * DAY
    await store.append([Sample(METRIC, labels_of(i), 0.1, T_START) for i in range(series)])
    _, writer = store.engines()
    step_ms = interval * 1000
    if store.backend == "postgresql":
        async with writer.begin() as conn:
            partitioned = (await conn.execute(text(
                "SELECT count(*) FROM pg_partitioned_table "
                "WHERE partrelid = CAST('ioc_samples' AS regclass)"))).scalar()
            if partitioned:
                await partitions.ensure(conn, T_START, days_ahead=days + 1)
            await conn.execute(text("SELECT setseed(0.5)"))
        for day in range(days):
            lo = max((T_START + day * DAY) * 1000, T_START * 1000 + step_ms)
            hi = min((T_START + (day + 1) * DAY) * 1000, end * 1000)
            async with writer.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO ioc_samples (series_id, ts, value) "
                    "SELECT s.id, t, exp(-2.5 + 1.5 * random()) "
                    "FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1, "
                    "CAST(:step AS bigint)) AS t CROSS JOIN ioc_series AS s"),
                    {"lo": lo - (lo - T_START * 1000) % step_ms, "hi": hi, "step": step_ms})
        await vacuum(store)
        return await count_samples(store)
    reader, _ = store.engines()
    async with reader.connect() as conn:
        ids = [row[0] for row in await conn.execute(text("SELECT id FROM ioc_series"))]
    for chunk in range(0, len(ids), 100):
        async with writer.begin() as conn:
            await conn.exec_driver_sql(
                "WITH RECURSIVE t(ts) AS (SELECT ? UNION ALL SELECT ts + ? FROM t WHERE ts < ?) "
                "INSERT INTO ioc_samples (series_id, ts, value) "
                "SELECT s.id, t.ts, exp(-2.5 + 1.5 * (abs(random()) % 1000000) / 1e6) "
                "FROM ioc_series AS s CROSS JOIN t "
                "WHERE s.id >= ? AND s.id <= ? ORDER BY s.id, t.ts",
                (T_START * 1000 + step_ms, step_ms, end * 1000 - step_ms,
                 ids[chunk], ids[min(chunk + 99, len(ids) - 1)]))
    return await count_samples(store)


async def count_samples(store: SqlStore) -> int:
    reader, _ = store.engines()
    async with reader.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM ioc_samples"))).scalar() or 0)


async def vacuum(store: SqlStore) -> None:
    """PostgreSQL: statistics and visibility map as autovacuum would leave them."""
    _, writer = store.engines()
    async with writer.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))


async def sizes(store: SqlStore) -> str:
    reader, _ = store.engines()
    tables = ("ioc_samples", "ioc_rollup_5m", "ioc_rollup_1h")
    parts = []
    async with reader.connect() as conn:
        for table in tables:
            rows = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
            if store.backend == "postgresql":
                size = (await conn.execute(text(
                    f"SELECT pg_total_relation_size('{table}') + coalesce((SELECT "
                    f"sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                    f"WHERE inhparent = '{table}'::regclass), 0)"))).scalar()
            else:
                try:
                    size = (await conn.execute(text(
                        f"SELECT sum(pgsize) FROM dbstat WHERE name = '{table}'"))).scalar()
                except Exception:  # dbstat not compiled in
                    size = None
            shown = f", {size / 2**20:,.0f} MiB" if size else ""
            parts.append(f"{table} {rows:,} rows{shown}")
    return "; ".join(parts)


async def measure(name: str, runs: int, query: Callable[[], Awaitable[list[Series]]]
                  ) -> tuple[list[Series], float]:
    found = await query()  # warm-up: page cache, label cache, statement cache
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        found = await query()
        took.append(time.perf_counter() - started)
    points = sum(len(s.points) for s in found)
    median = statistics.median(took)
    print(f"  {name}: {len(found)} series, {points:,} points, median {median * 1000:,.1f} ms "
          f"(min {min(took) * 1000:,.1f}, {runs} runs)")
    return found, median


def max_difference(a: list[Series], b: list[Series]) -> float:
    if [s.labels for s in a] != [s.labels for s in b]:
        return math.inf
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if [t for t, _ in x.points] != [t for t, _ in y.points]:
            return math.inf
        worst = max([worst, *(abs(p - q) / max(abs(q), 1e-12)
                              for (_, p), (_, q) in zip(x.points, y.points, strict=True))])
    return worst


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval", type=int, default=300, help="seconds between samples")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    series = args.series
    if args.interval <= 0 or (300 % args.interval and args.interval % 300):
        parser.error("--interval must divide or be a multiple of 300 s")
    print(f"{args.backend}: {series} series x {args.days} days @ {args.interval} s, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

    async with database(args.backend) as url:
        store = SqlStore(url)
        raw = SqlStore(url, rollups=False)
        await store.open()
        await raw.open()
        try:
            started = time.perf_counter()
            total = await load(store, series, args.days, args.interval)
            print(f"loaded {total:,} samples in {time.perf_counter() - started:.1f} s")

            now = T_START + args.days * DAY
            rollups = Rollups(store, raw_retention=(args.days + 1) * DAY,
                              retention_5m=(args.days + 1) * DAY,
                              retention_1h=(args.days + 1) * DAY)
            started = time.perf_counter()
            report = await rollups.run(now)
            took = time.perf_counter() - started
            print(f"first rollup run (all history): {took:.1f} s, rows "
                  + ", ".join(f"{tier} {run.rows:,}" for tier, run in report.tiers.items()))
            if store.backend == "postgresql":
                await vacuum(store)
            # Steady state: one more round of samples, a run once its bucket has closed.
            await store.append([Sample(METRIC, labels_of(i), 0.2, now + 60 + i % 240)
                                for i in range(series)])
            now += 300 + 10
            started = time.perf_counter()
            report = await rollups.run(now)
            print(f"steady-state run (one new 5 min bucket): "
                  f"{(time.perf_counter() - started) * 1000:.0f} ms, rows "
                  + ", ".join(f"{tier} {run.rows:,}" for tier, run in report.tiers.items()))
            print(f"sizes: {await sizes(store)}")

            start = now - args.days * DAY
            one = dict(labels_of(series // 2))
            for step in (3600, 6 * 3600):
                print(f"30-day chart, step {step // 3600} h:")
                for who, matchers, runs in (("1 series", {"target": one["target"]}, args.runs),
                                            (f"{series} series", {}, max(1, args.runs // 5))):
                    def chart(s: SqlStore, m: dict[str, str] = matchers,
                              st: int = step) -> Awaitable[list[Series]]:
                        return s.query_range(METRIC, m, start, now, st)

                    fast, t_fast = await measure(f"{who}, rollups", max(runs, args.runs // 2),
                                                 lambda c=chart: c(store))
                    slow, t_slow = await measure(f"{who}, raw    ", runs, lambda c=chart: c(raw))
                    print(f"    {t_slow / t_fast:,.1f}x faster; largest relative difference "
                          f"{max_difference(fast, slow):.1e}")
        finally:
            await raw.close()
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
