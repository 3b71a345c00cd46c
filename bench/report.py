"""A month's report for 1,000 targets polled every 30 s, and the incident ledger's cost per poll.

    .venv/bin/python bench/report.py [--targets 1000] [--interval 30] [--outages 3]
        [--ledger-rounds 600]

**Report.** A SQLite store gets November 2026 (Asia/Ho_Chi_Minh) for ``--targets`` targets
polled every ``--interval`` seconds, the way the report reads it: the 5 min rollup rows of
``ioc_target_up`` for the whole month (bulk SQL), ``--outages`` outages per target (a few
failed polls in one bucket, the bucket's rollup row saying so), and the raw polls the report
reads around each outage (10 min either side) and for the newest hour, which the rollup job
has not reached. The raw polls of the rest of the month, which a real store also holds, are
not generated: the report never reads them (only index seeks would be deeper), and writing
86 million rows would take longer than the rest of the bench. Timed: the incident ledger's
first sync, reading the histories, building the report, and rendering PDF and XLSX; extra
memory is the growth of the process's peak RSS over its RSS before the report.

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

from sqlalchemy import text

from ioc.availability import parse_period
from ioc.incidents import reason_code
from ioc.model import Sample, make_labels
from ioc.reports.build import build_report
from ioc.reports.render import render
from ioc.store import SqlStore
from ioc.store.availability import HistoryStore
from ioc.store.incidents import IncidentStore

VN = ZoneInfo("Asia/Ho_Chi_Minh")
WIDTH = 300


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
    lo, hi = int(start) * 1000, rolled_to - WIDTH * 1000
    async with writer.begin() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT id FROM ioc_series ORDER BY id"))]
    for chunk in range(0, len(ids), 50):
        async with writer.begin() as conn:
            await conn.exec_driver_sql(
                "WITH RECURSIVE b(ts) AS (SELECT ? UNION ALL SELECT ts + ? FROM b WHERE ts < ?) "
                "INSERT INTO ioc_rollup_5m (series_id, ts, count, sum, min, max) "
                "SELECT s.id, b.ts, ?, ?, 1.0, 1.0 FROM ioc_series AS s CROSS JOIN b "
                "WHERE s.id >= ? AND s.id <= ? ORDER BY s.id, b.ts",
                (lo, WIDTH * 1000, hi, per_bucket, float(per_bucket), ids[chunk],
                 ids[min(chunk + 49, len(ids) - 1)]))
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
    return down_polls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--outages", type=int, default=3)
    parser.add_argument("--ledger-rounds", type=int, default=600)
    args = parser.parse_args()
    period = parse_period("2026-11", VN)
    rng = random.Random(18)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/ioc.db"
        store = SqlStore(url)
        await store.open()
        t = time.perf_counter()
        await fill(store, args.targets, args.interval, args.outages, period.start,
                   period.end, rng)
        print(f"generated in {time.perf_counter() - t:.1f} s "
              f"({args.targets} targets x {period.days} days at {args.interval} s: "
              f"{args.targets * period.days * 86_400 // args.interval:,} polls; load {load()})")
        ledger, history = IncidentStore(url), HistoryStore(url)
        await ledger.open()
        await history.open()
        t = time.perf_counter()
        written = await ledger.sync(period.end)
        print(f"ledger first sync: {written} incidents in {time.perf_counter() - t:.2f} s")

        before = rss_mb()
        t0 = time.perf_counter()
        intervals = {f"t{i:05d}": float(args.interval) for i in range(args.targets)}
        hist = await history.histories(period.start, period.end, intervals=intervals)
        t1 = time.perf_counter()
        incidents = await ledger.all_between(period.start, period.end)
        report = build_report(period=period, day_bounds=period.day_bounds(VN),
                              now=period.end, province="Tỉnh Hậu Giang", departments={},
                              histories=hist, incidents=incidents)
        t2 = time.perf_counter()
        data_peak = peak_mb()
        pdf = render(report, "pdf", lang="vi", tz=VN, departments={})
        t3 = time.perf_counter()
        xlsx = render(report, "xlsx", lang="vi", tz=VN, departments={})
        t4 = time.perf_counter()
        print(f"report: histories {t1 - t0:.2f} s, incidents + build {t2 - t1:.2f} s, "
              f"PDF {t3 - t2:.2f} s ({len(pdf) // 1024} KiB), XLSX {t4 - t3:.2f} s "
              f"({len(xlsx) // 1024} KiB); total {t4 - t0:.2f} s; data without rendering "
              f"{t2 - t0:.2f} s")
        print(f"extra memory: peak RSS {data_peak:.0f} MB after the data (+"
              f"{data_peak - before:.0f} MB), {peak_mb():.0f} MB after rendering (+"
              f"{peak_mb() - before:.0f} MB), {before:.0f} MB before; province availability "
              f"{report['summary']['availability']:.6f}, {report['summary']['incidents']} "
              f"incidents; load {load()}")

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
        per_poll = cpu / polls * 1e6 if polls else 0.0
        print(f"ledger: {cpu:.2f} s CPU for {polls:,} polls = {per_poll:.1f} us per poll "
              f"(sync every 30 s at {args.targets} targets x 1 s); load {load()}")
        await ledger.close()
        await history.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
