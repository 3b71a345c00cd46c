"""Latency of SqlStore.query_range on SQLite for a wall-screen style graph.

    .venv/bin/python bench/query_range.py [--series 1000] [--runs 200]

The database holds ``--series`` series of one metric (a probe duration per target), each
sampled every 15 s for 24 h. The measured query is one target's series over those 24 h at a
30 s step (2,880 points, each the average of two samples), repeated ``--runs`` times after
one warm-up; median and p95 are printed. Target: median < 10 ms. Two more shapes are printed
for context: one department's 40 series, and one series over the last hour.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ioc.model import Sample, make_labels
from ioc.store import SqlStore

T0 = 1_764_288_000.0  # 2025-11-28T00:00:00Z
DAY = 86_400
METRIC = "ioc_probe_duration_seconds"


def labels_of(i: int) -> tuple[tuple[str, str], ...]:
    return make_labels(department=f"dept{i // 40:03d}", target=f"t{i:05d}", tỉnh="Thừa Thiên Huế")


async def fill(store: SqlStore, series: int) -> int:
    rng = random.Random(7)
    keys = [labels_of(i) for i in range(series)]
    batch: list[Sample] = []
    total = 0
    for step in range(DAY // 15):
        ts = T0 + 15 * step
        batch.extend(Sample(METRIC, labels, rng.lognormvariate(-2.0, 1.0), ts) for labels in keys)
        if len(batch) >= 50_000:
            await store.append(batch)
            total += len(batch)
            batch = []
    await store.append(batch)
    return total + len(batch)


async def measure(name: str, runs: int, query: Callable[[], Awaitable[int]]) -> None:
    points = await query()  # warm-up: page cache, parsed-label cache, prepared statements
    took: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await query()
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    p95 = took[min(len(took) - 1, round(0.95 * len(took)) - 1)]
    print(f"{name}: {points} points, median {statistics.median(took):.2f} ms, "
          f"p95 {p95:.2f} ms, min {took[0]:.2f} ms ({runs} runs)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite+aiosqlite:///{Path(tmp) / 'ioc.db'}")
        await store.open()
        try:
            started = time.perf_counter()
            total = await fill(store, args.series)
            print(f"filled {args.series} series x 24 h @ 15 s = {total:,} samples in "
                  f"{time.perf_counter() - started:.1f} s")
            target = dict(labels_of(args.series // 2))

            async def one_day() -> int:
                found = await store.query_range(METRIC, {"target": target["target"]},
                                                T0, T0 + DAY, 30)
                return sum(len(s.points) for s in found)

            async def department() -> int:
                found = await store.query_range(METRIC, {"department": target["department"]},
                                                T0, T0 + DAY, 300)
                return sum(len(s.points) for s in found)

            async def last_hour() -> int:
                found = await store.query_range(METRIC, {"target": target["target"]},
                                                T0 + DAY - 3600, T0 + DAY, 30)
                return sum(len(s.points) for s in found)

            await measure("1 series, 24 h, step 30 s", args.runs, one_day)
            await measure("40 series (a department), 24 h, step 5 min", args.runs // 4,
                          department)
            await measure("1 series, last 1 h, step 30 s", args.runs, last_hour)
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
