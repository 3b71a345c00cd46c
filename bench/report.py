"""A month's report for 1,000 targets polled every 30 s, and the incident ledger's cost per poll.

    .venv/bin/python bench/report.py [--targets 1000] [--interval 30] [--outages 3]
        [--ledger-rounds 600] [--postgres [URL]]

``--postgres`` runs it on a fresh database of that PostgreSQL server (default: the
``IOC_TEST_POSTGRES_URL`` of the tests), with November's day partitions, dropped afterwards;
SQLite (a temporary file) otherwise.

**Report.** A SQLite store gets November 2026 (Asia/Ho_Chi_Minh) for ``--targets`` targets
polled every ``--interval`` seconds, the way the report reads it: the 5 min rollup rows of
``ioc_target_up`` for the whole month (bulk SQL), ``--outages`` outages per target (a few
failed polls in one bucket, the bucket's rollup row saying so), and the raw polls the report
reads around each outage (10 min either side) and for the newest hour, which the rollup job
has not reached. The raw polls of the rest of the month, which a real store also holds, are
not generated: the report never reads them (only index seeks would be deeper), and writing
86 million rows would take longer than the rest of the bench. The portal's dossier counters
of 25 departments are stored daily. Timed: the incident ledger's first sync, then the report
as ``ioc report`` and a scheduled report make it — the data (``ioc.reports.collect``:
histories, incidents, counters, the 12 months of on-time rates) and, separately, rendering
PDF and XLSX; extra memory is the growth of the process's peak RSS over its RSS before the
report.

**Ledger per poll.** The same store then takes ``--ledger-rounds`` rounds of one poll per
target one second apart (1 % failing), with the ledger synced every 30 rounds as the alert
leader does; the ledger's CPU divided by the polls it read is its cost per poll, to compare
with the ~0.5 ms a poll costs (BENCHMARKS.md: engine and pipeline).

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ioc.availability import parse_period
from ioc.incidents import reason_code
from ioc.model import Sample, make_labels
from ioc.reports.collect import collect
from ioc.reports.render import render
from ioc.store import SqlStore
from ioc.store import partitions as day_partitions
from ioc.store.incidents import IncidentStore
from service.config import Config, parse_config

VN = ZoneInfo("Asia/Ho_Chi_Minh")
WIDTH = 300
DEPARTMENTS = 25


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def labels(i: int) -> tuple[tuple[str, str], ...]:
    return make_labels(target=f"t{i:05d}", department=f"D{i // 40:02d}", kind="http")


async def fill(store: SqlStore, targets: int, interval: int, outages: int, start: float,
               end: float, rng: random.Random) -> int:
    per_bucket = WIDTH // interval
    await store.append([Sample("ioc_target_up", labels(i), 1.0, start) for i in range(targets)])
    _, writer = store.engines()
    rolled_to = int(end - 3600) * 1000
    # from an hour before the month, as a store running since before it holds
    lo, hi = int(start - 3600) * 1000, rolled_to - WIDTH * 1000
    async with writer.begin() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT id FROM ioc_series ORDER BY id"))]
    for chunk in range(0, len(ids), 50):
        async with writer.begin() as conn:
            await conn.execute(text(
                "WITH RECURSIVE b(ts) AS (SELECT CAST(:lo AS BIGINT) UNION ALL "
                "SELECT ts + :w FROM b WHERE ts < :hi) "
                "INSERT INTO ioc_rollup_5m (series_id, ts, count, sum, min, max) "
                "SELECT s.id, b.ts, :n, :s, 1.0, 1.0 FROM ioc_series AS s CROSS JOIN b "
                "WHERE s.id >= :first AND s.id <= :last ORDER BY s.id, b.ts"),
                {"lo": lo, "w": WIDTH * 1000, "hi": hi, "n": per_bucket,
                 "s": float(per_bucket), "first": ids[chunk],
                 "last": ids[min(chunk + 49, len(ids) - 1)]})
    async with writer.begin() as conn:
        await conn.execute(text(
            "INSERT INTO ioc_rollup_watermarks (tier, rolled_to) VALUES ('5m', :t)"),
            {"t": rolled_to})
    raw: list[Sample] = []
    down_polls = 0
    for i, sid in enumerate(ids):
        lab = labels(i)
        buckets = sorted(rng.sample(range(10, (hi - lo) // (WIDTH * 1000) - 10), outages))
        for bucket in buckets:
            b0 = lo / 1000 + bucket * WIDTH
            failed = rng.randint(1, per_bucket)
            first = rng.randint(0, per_bucket - failed)
            async with writer.begin() as conn:
                await conn.execute(text(
                    "UPDATE ioc_rollup_5m SET sum = :s, min = 0 WHERE series_id = :id "
                    "AND ts = :ts"), {"s": float(per_bucket - failed), "id": sid,
                                      "ts": int(b0 * 1000)})
            for k in range(-600 // interval, (WIDTH + 600) // interval):
                ts = b0 + k * interval
                up = not (0 <= k - first < failed)
                raw.append(Sample("ioc_target_up", lab, 1.0 if up else 0.0, ts))
                if not up:
                    raw.append(Sample("ioc_target_failure_reason", lab,
                                      reason_code("timeout"), ts))
                    down_polls += 1
        t = end - 3600 - 600
        while t < end:
            raw.append(Sample("ioc_target_up", lab, 1.0, t))
            t += interval
        if len(raw) > 50_000:
            await store.append(raw)
            raw = []
    await store.append(raw)
    counters = []
    for d in range(DEPARTMENTS):
        base = make_labels(target=f"portal-d{d:02d}", department=f"D{d:02d}")
        for day in range(30):
            ts = start + day * 86_400 + 43_200
            for k, status in enumerate(("resolved_early", "resolved_ontime", "resolved_late",
                                        "in_progress_ontime", "in_progress_overdue")):
                counters.append(Sample("ioc_dossiers", make_labels(base, status=status),
                                       float((day + 1) * (10 - 2 * k)), ts))
    await store.append(counters)
    return down_polls


def bench_config(url: str, targets: int, interval: int) -> Config:
    """What ``ioc report`` reads of the config: departments, intervals, the store."""
    return parse_config({
        "storage": {"url": url},
        "departments": [{"code": f"D{d:02d}", "name": f"Sở số {d} — Hậu Giang"}
                        for d in range(DEPARTMENTS)],
        "collectors": [{"type": "http", "name": f"t{i:05d}", "department": f"D{i // 40:02d}",
                        "url": "http://127.0.0.1:9/", "interval": f"{interval}s",
                        "timeout": "5s"} for i in range(targets)]}, env={})


async def admin(server_url: str) -> asyncpg.Connection:
    plain = make_url(server_url).set(drivername="postgresql")
    return await asyncpg.connect(plain.render_as_string(hide_password=False))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--outages", type=int, default=3)
    parser.add_argument("--ledger-rounds", type=int, default=600)
    parser.add_argument("--postgres", nargs="?", const=os.environ.get("IOC_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server URL (default: $IOC_TEST_POSTGRES_URL)")
    args = parser.parse_args()
    if args.postgres is None and "--postgres" in sys.argv:
        parser.error("--postgres: give a URL or set IOC_TEST_POSTGRES_URL")
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            name = f"ioc_bench_{os.urandom(6).hex()}"
            conn = await admin(args.postgres)
            await conn.execute(f'CREATE DATABASE "{name}"')
            await conn.close()
            url = make_url(args.postgres).set(database=name).render_as_string(
                hide_password=False)
            try:
                await run(args, url)
            finally:
                conn = await admin(args.postgres)
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await conn.close()
        else:
            await run(args, f"sqlite+aiosqlite:///{tmp}/ioc.db")


async def run(args: argparse.Namespace, url: str) -> None:
    period = parse_period("2026-11", VN)
    rng = random.Random(18)
    backend = make_url(url).get_backend_name()
    store = SqlStore(url)
    await store.open()
    if backend == "postgresql":  # November's days get their partitions, as a live store has
        _, writer = store.engines()
        async with writer.begin() as conn:
            await day_partitions.ensure(conn, period.start - 86_400, days_ahead=32)
    t = time.perf_counter()
    await fill(store, args.targets, args.interval, args.outages, period.start,
               period.end, rng)
    if backend == "postgresql":  # the statistics autovacuum keeps in a live store
        _, writer = store.engines()
        async with writer.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    print(f"{backend}: generated in {time.perf_counter() - t:.1f} s "
          f"({args.targets} targets x {period.days} days at {args.interval} s: "
          f"{args.targets * period.days * 86_400 // args.interval:,} polls; load {load()})")
    ledger = IncidentStore(url)
    await ledger.open()
    t = time.perf_counter()
    written = await ledger.sync(period.end)
    print(f"ledger first sync: {written} incidents in {time.perf_counter() - t:.2f} s")

    config = bench_config(url, args.targets, args.interval)
    names = {d.code: d.name for d in config.departments}
    t = time.perf_counter()
    import weasyprint  # noqa: F401  (a running service imports it once, at its first PDF)
    print(f"weasyprint imported in {time.perf_counter() - t:.2f} s (not counted below)")
    before = rss_mb()
    # Wall time and this process's CPU time (every thread: aiosqlite's too): on a shared
    # machine the wall time also holds the waits for a core.
    t0, c0 = time.perf_counter(), time.process_time()
    report = await collect(config, "2026-11", now=period.end)
    t1, c1 = time.perf_counter(), time.process_time()
    data_peak = peak_mb()
    pdf = render(report, "pdf", lang="vi", tz=VN, departments=names)
    t2, c2 = time.perf_counter(), time.process_time()
    xlsx = render(report, "xlsx", lang="vi", tz=VN, departments=names)
    t3, c3 = time.perf_counter(), time.process_time()
    print(f"report: data {t1 - t0:.2f} s (CPU {c1 - c0:.2f} s); rendering PDF {t2 - t1:.2f} s "
          f"(CPU {c2 - c1:.2f} s, {len(pdf) // 1024} KiB), XLSX {t3 - t2:.2f} s "
          f"(CPU {c3 - c2:.2f} s, {len(xlsx) // 1024} KiB); total {t3 - t0:.2f} s "
          f"(CPU {c3 - c0:.2f} s)")
    print(f"extra memory: peak RSS {data_peak:.0f} MB after the data (+"
          f"{data_peak - before:.0f} MB), {peak_mb():.0f} MB after rendering (+"
          f"{peak_mb() - before:.0f} MB), {before:.0f} MB before; province availability "
          f"{report['summary']['availability']:.6f}, {report['summary']['incidents']} "
          f"incidents, on-time {report['ontime_by_month'][-1]['ontime_rate']:.4f}; "
          f"load {load()}")

    # The ledger's cost per poll, at targets x 1 s.
    now = period.end + 60
    await ledger.sync(now)
    cpu = 0.0
    polls = 0
    for r in range(args.ledger_rounds):
        now += 1
        await store.append([
            *(Sample("ioc_target_up", labels(i), 0.0 if rng.random() < 0.01 else 1.0, now)
              for i in range(args.targets))])
        polls += args.targets
        if (r + 1) % 30 == 0:
            c = time.process_time()
            await ledger.sync(now)
            cpu += time.process_time() - c
    if polls:
        print(f"ledger: {cpu:.2f} s CPU for {polls:,} polls = {cpu / polls * 1e6:.1f} us per "
              f"poll (sync every 30 s at {args.targets} targets x 1 s); load {load()}")
    await ledger.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
