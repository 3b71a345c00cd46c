"""PostgreSQL day partitions: the one-time migration of a big samples table, and retention by
dropping a day versus deleting rows.

    .venv/bin/python bench/pg_partitions.py [--series 500] [--days 3] [--interval 60]

Builds a database as ioc left it before partitioning (revision 0001_baseline, samples every
``interval`` seconds for ``days`` UTC days per series, loaded with COPY), then times

1. opening a store on it: the upgrade that copies the samples into day partitions;
2. a prune whose cutoff is the end of the first day: that day's partition is counted and
   dropped whole;
3. a prune whose cutoff is the middle of the next day: half a day of rows deleted one series
   at a time, in the store's batched transactions (what every prune did before partitions).

The server comes from ``IOC_BENCH_POSTGRES_URL`` (default
postgresql+asyncpg://postgres@127.0.0.1:5432/test), used only to create and drop a fresh
database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ioc.store import SqlStore
from ioc.store.migrate import BASELINE, alembic_config

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
D0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAY = 86_400.0


async def load(url: str, series: int, days: int, interval: int) -> int:
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    try:
        await conn.copy_records_to_table(
            "ioc_series", columns=("id", "metric", "labels"),
            records=[(i, "ioc_target_up", f'target="t{i:05d}"') for i in range(1, series + 1)])
        total = 0
        per_day = int(DAY) // interval
        for day in range(days):
            start_ms = int((D0 + day * DAY) * 1000)
            rows = [(sid, start_ms + k * interval * 1000, float(k % 7))
                    for sid in range(1, series + 1) for k in range(per_day)]
            await conn.copy_records_to_table("ioc_samples", records=rows,
                                             columns=("series_id", "ts", "value"))
            total += len(rows)
        await conn.execute("VACUUM ANALYZE ioc_samples")
        return total
    finally:
        await conn.close()


async def bench(url: str, series: int, days: int, interval: int) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(url), BASELINE)
    rows = await load(url, series, days, interval)
    print(f"loaded {rows:,} samples ({series} series, {days} days, every {interval} s) "
          "into the unpartitioned table")

    store = SqlStore(url, clock=lambda: D0 + (days - 1) * DAY)
    started = time.perf_counter()
    await store.open()
    took = time.perf_counter() - started
    print(f"upgrade to partitions at open: {took:.2f} s = {rows / took:,.0f} samples/s "
          f"({store.partition_count} partitions)")
    try:
        started = time.perf_counter()
        dropped = await store.prune(D0 + DAY)
        took = time.perf_counter() - started
        print(f"prune by dropping day 1:       {dropped:,} samples in {took:.3f} s "
              f"= {dropped / took:,.0f} samples/s")
        started = time.perf_counter()
        deleted = await store.prune(D0 + 1.5 * DAY)
        took = time.perf_counter() - started
        print(f"prune by deleting half day 2:  {deleted:,} samples in {took:.3f} s "
              f"= {deleted / took:,.0f} samples/s")
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--interval", type=int, default=60)
    args = parser.parse_args()
    server = os.environ.get("IOC_BENCH_POSTGRES_URL", DEFAULT_PG)
    admin_url = make_url(server).set(drivername="postgresql")
    admin_dsn = admin_url.render_as_string(hide_password=False)
    name = f"ioc_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        await bench(url, args.series, args.days, args.interval)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
