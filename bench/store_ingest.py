"""Ingest throughput of the store through StoreWriter, on SQLite and PostgreSQL.

    .venv/bin/python bench/store_ingest.py [--series 1000] [--points 1000]
        [--batch-sizes 5000,20000] [--values mixed|random|both] [--skip-postgres]

A producer submits one sample per series per 15-second "scrape round" (timestamps with
millisecond jitter, as collectors produce them) as fast as the event loop lets it, then waits
for ``flush()``; the rate is samples divided by the wall time from first submit to last
commit. PostgreSQL uses ``IOC_BENCH_POSTGRES_URL`` (default
postgresql+asyncpg://postgres@127.0.0.1:5432/test) only to create and drop a fresh database.

Values follow a monitoring mix ("mixed": a quarter each of up 0/1, probe durations as full
doubles, HTTP status codes, byte counts) or are all random doubles ("random", the worst case
for size since SQLite stores integral values in fewer bytes). Targets: >= 200,000 samples/s on
SQLite, >= 100,000 on PostgreSQL, <= 25 bytes per stored sample on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ioc.model import Sample, make_labels
from ioc.store import SqlStore
from ioc.store.writer import StoreWriter

T0 = 1_764_288_000.0  # 2025-11-28T00:00:00Z
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def make_rounds(series: int, points: int, values: str, seed: int = 1) -> list[list[Sample]]:
    """One list per scrape round, built before timing so only ingestion is measured."""
    rng = random.Random(seed)
    kinds = ("ioc_target_up", "ioc_probe_duration_seconds", "ioc_http_status", "ioc_http_bytes")
    keys = [(kinds[i % 4], make_labels(department=f"dept{i // 40:03d}", target=f"t{i:05d}",
                                       tỉnh="Thừa Thiên Huế"))
            for i in range(series)]

    def value(kind: str) -> float:
        if values == "random" or kind == "ioc_probe_duration_seconds":
            return rng.lognormvariate(-2.0, 1.0)
        if kind == "ioc_target_up":
            return 1.0 if rng.random() < 0.98 else 0.0
        if kind == "ioc_http_status":
            return 200.0 if rng.random() < 0.97 else 503.0
        return float(rng.randint(500, 50_000))

    return [[Sample(metric, labels, value(metric), T0 + 15 * p + rng.randint(0, 999) / 1000)
             for metric, labels in keys]
            for p in range(points)]


async def ingest(store: SqlStore, rounds: list[list[Sample]], batch_size: int) -> dict[str, float]:
    registry = CollectorRegistry()
    writer = StoreWriter(store, registry, batch_size=batch_size, flush_interval=1.0)
    writer.start()
    total = sum(len(r) for r in rounds)
    started = time.perf_counter()
    for scrape_round in rounds:
        writer.submit(scrape_round)
        await asyncio.sleep(0)  # the pipeline yields between polls; so does this producer
    await writer.flush()
    elapsed = time.perf_counter() - started
    await writer.stop()

    def value(name: str) -> float:
        return registry.get_sample_value(name) or 0.0

    return {
        "samples": total,
        "seconds": elapsed,
        "rate": total / elapsed,
        "written": value("ioc_store_samples_written_total"),
        "dropped": value("ioc_store_samples_dropped_total"),
        "errors": value("ioc_store_write_errors_total"),
        "batches": value("ioc_store_flush_duration_seconds_count"),
        "flush_avg_ms": 1000 * value("ioc_store_flush_duration_seconds_sum")
        / max(1.0, value("ioc_store_flush_duration_seconds_count")),
    }


def report(name: str, result: dict[str, float]) -> None:
    print(f"{name}: {result['samples']:,.0f} samples in {result['seconds']:.2f} s = "
          f"{result['rate']:,.0f} samples/s  (batches {result['batches']:.0f}, "
          f"avg flush {result['flush_avg_ms']:.1f} ms, dropped {result['dropped']:.0f}, "
          f"errors {result['errors']:.0f})")


def sqlite_size(path: Path, samples: int) -> str:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{path}-wal")
        size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        line = f"  file (db + WAL after checkpoint): {size:,} B = {size / samples:.1f} B/sample"
        try:
            pages, payload, unused = con.execute(
                "SELECT sum(pgsize), sum(payload), sum(unused) FROM dbstat "
                "WHERE name = 'ioc_samples'").fetchone()
            line += (f"\n  dbstat ioc_samples: {pages / samples:.1f} B/sample "
                     f"(payload {payload / samples:.1f}, unused {unused / samples:.1f})")
        except sqlite3.OperationalError:
            line += "\n  dbstat: not compiled into this SQLite"
        return line
    finally:
        con.close()


async def bench_sqlite(rounds: list[list[Sample]], batch_size: int, label: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ioc.db"
        store = SqlStore(f"sqlite+aiosqlite:///{path}")
        await store.open()
        try:
            result = await ingest(store, rounds, batch_size)
        finally:
            await store.close()
        report(f"SQLite   ({label})", result)
        print(sqlite_size(path, int(result["samples"])))


async def bench_postgres(server_url: str, rounds: list[list[Sample]], batch_size: int,
                         label: str) -> None:
    admin_url = make_url(server_url).set(drivername="postgresql")
    name = f"ioc_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(admin_url.render_as_string(hide_password=False))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL: skipped, cannot connect to {admin_url.render_as_string()}: {exc}")
        return
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        store = SqlStore(make_url(server_url).set(database=name)
                         .render_as_string(hide_password=False))
        await store.open()
        try:
            result = await ingest(store, rounds, batch_size)
        finally:
            await store.close()
        report(f"Postgres ({label})", result)
        db = await asyncpg.connect(admin_url.set(database=name)
                                   .render_as_string(hide_password=False))
        try:
            # Partitioned on PostgreSQL: the parent holds nothing, its partitions the rows.
            size = await db.fetchval("SELECT sum(pg_total_relation_size(relid)) "
                                     "FROM pg_partition_tree('ioc_samples')")
        finally:
            await db.close()
        print(f"  ioc_samples incl. primary key: {size / result['samples']:.1f} B/sample")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="5000,20000",
                        help="comma-separated StoreWriter batch sizes (its default is 5000)")
    parser.add_argument("--values", choices=("mixed", "random", "both"), default="both")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"{args.series} series x {args.points} points, python {sys.version.split()[0]}, "
          f"sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    profiles = ("mixed", "random") if args.values == "both" else (args.values,)
    server = os.environ.get("IOC_BENCH_POSTGRES_URL", DEFAULT_PG)
    for values in profiles:
        rounds = make_rounds(args.series, args.points, values)
        for batch_size in batch_sizes:
            label = f"{values} values, batch {batch_size}"
            await bench_sqlite(rounds, batch_size, label)
            if not args.skip_postgres:
                await bench_postgres(server, rounds, batch_size, label)

if __name__ == "__main__":
    asyncio.run(main())
