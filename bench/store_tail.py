"""What one read of the alert leader's store tail costs on PostgreSQL (goal: a few ms per
evaluation interval, whatever the size of the samples table).

A province's day of samples: 300 targets × 11 series polled every 30 s for 24 h (9.5 million
rows, inserted in time order as the writers do), plus 30 days of security events (500,000).
The leader of 2 shards reads the last 31 s (a 15 s evaluation interval plus a 16 s overlap) of
the other shard's 1,650 series with the real ``TailStore`` (``series_id = ANY(ids) AND ts >
since``, one primary-key probe per series), and for comparison the same rows by time alone
(``ts > since``) without and with a BRIN index on ``ts``; then the events stored in the last
31 s, without and with an index on ``received_at``. Tables are built from the models (not
partitioned; a partition per day cuts a time-only scan to one day, not to 31 s).

    IOC_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1/test \\
        .venv/bin/python bench/store_tail.py [--targets 300] [--hours 24] [--events 500000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ioc.sharding import Shard
from ioc.store.events import events_table
from ioc.store.schema import metadata, samples, series
from ioc.store.tail import TailStore

SERIES_PER_TARGET = 11
INTERVAL_MS = 30_000
READ_MS = 31_000
RUNS = 20


async def timed(run: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Median wall time of RUNS warm runs (after one to warm the cache), and the last result."""
    result = await run()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def fill(conn: asyncpg.Connection, targets: int, hours: int, events: int,
               now_ms: int) -> None:
    await conn.execute(
        "INSERT INTO ioc_series (id, metric, labels) SELECT i + 1, 'ioc_metric_' || (i % $1), "
        "format('department=\"D%s\",kind=\"http\",target=\"t%s\"', (i / $1) % 20, i / $1) "
        "FROM generate_series(0, $2 - 1) i", SERIES_PER_TARGET, targets * SERIES_PER_TARGET)
    await conn.execute("SELECT setval('ioc_series_id_seq', $1)", targets * SERIES_PER_TARGET)
    points = hours * 3600_000 // INTERVAL_MS
    await conn.execute(
        "INSERT INTO ioc_samples (series_id, ts, value) "
        "SELECT s, $1::bigint - (($2 - 1 - k)::bigint * $3), random() "
        "FROM generate_series(0, $2 - 1) k CROSS JOIN generate_series(1, $4) s",
        now_ms, points, INTERVAL_MS, targets * SERIES_PER_TARGET)
    month = 30 * 86_400_000
    await conn.execute(
        "INSERT INTO ioc_events (source, event_id, occurred_at, received_at, severity, "
        "category, department, host, title, message, labels) "
        "SELECT 'siem', 'e' || i, $1::bigint - $2::bigint + i * ($2::bigint / $3), "
        "$1::bigint - $2::bigint + i * ($2::bigint / $3), 'high', 'auth', 'STP', NULL, "
        "'Đăng nhập sai', '', '{}' FROM generate_series(0, $3 - 1) i", now_ms, month, events)
    await conn.execute("VACUUM ANALYZE")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--url", default=os.environ.get("IOC_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not args.url:
        sys.exit("set IOC_TEST_POSTGRES_URL or --url (a PostgreSQL server to create a db on)")
    server = make_url(args.url)
    name = f"ioc_bench_tail_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        engine = create_async_engine(url)
        async with engine.begin() as sa_conn:
            await sa_conn.run_sync(lambda sync: metadata.create_all(
                sync, tables=[series, samples, events_table]))
        await engine.dispose()
        conn = await asyncpg.connect(plain)
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        await fill(conn, args.targets, args.hours, args.events, now_ms)
        rows = await conn.fetchval("SELECT count(*) FROM ioc_samples")
        size = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('ioc_samples'))")
        print(f"{rows:,} samples ({size} with its primary key) of "
              f"{args.targets * SERIES_PER_TARGET:,} series, {args.events:,} events, "
              f"filled in {time.perf_counter() - started:.0f} s")

        tail = TailStore(url)
        await tail.open()
        shard = Shard(0, 2)
        since, until = now_ms - READ_MS, now_ms
        ids_time, ids = await timed(tail.series_ids)
        labelled = await tail.series(ids)
        others = [s.id for s in labelled if not shard.owns(dict(s.labels)["target"])]
        read_time, read = await timed(lambda: tail.samples(others, since, until))
        print(f"series ids (every poll):                     {ids_time * 1000:7.2f} ms "
              f"for {len(ids):,} ids")
        print(f"tail read, ANY(ids) on the primary key:       {read_time * 1000:7.2f} ms "
              f"for {len(read):,} samples of {len(others):,} series")

        by_time = "SELECT series_id, ts, value FROM ioc_samples WHERE ts > $1 AND ts <= $2"
        scan_time, scanned = await timed(lambda: conn.fetch(by_time, since, until))
        print(f"by time only, no index (sequential scan):     {scan_time * 1000:7.2f} ms "
              f"for {len(scanned):,} samples of both shards")
        await conn.execute("CREATE INDEX ioc_samples_ts_brin ON ioc_samples USING brin (ts)")
        await conn.execute("ANALYZE ioc_samples")
        brin_time, _ = await timed(lambda: conn.fetch(by_time, since, until))
        print(f"by time only, BRIN index on ts:               {brin_time * 1000:7.2f} ms")

        ev_time, found = await timed(lambda: tail.events(since, until))
        print(f"events by received_at, no index:              {ev_time * 1000:7.2f} ms "
              f"for {len(found)} events")
        await conn.execute("CREATE INDEX ioc_events_received_at ON ioc_events (received_at)")
        await conn.execute("ANALYZE ioc_events")
        ev_index_time, _ = await timed(lambda: tail.events(since, until))
        print(f"events by received_at, btree (received_at):   {ev_index_time * 1000:7.2f} ms")
        await tail.close()
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
