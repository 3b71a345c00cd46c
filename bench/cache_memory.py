"""Memory of the in-memory windows (ioc.cache.SeriesCache), measured with tracemalloc.

Fills a cache the way polling does (every target reports the same set of series, one sample per
series per interval) and prints the bytes held per point and per series, and the total scaled
to the configured target count.

    .venv/bin/python bench/cache_memory.py [--targets 1000] [--series 11] [--points 120]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ioc.cache import SeriesCache
from ioc.model import Sample, make_labels


def fill(targets: int, series: int, points: int, interval: float) -> tuple[int, SeriesCache]:
    """Bytes traced while filling a cache (labels are built first so they are not counted)."""
    labels = [make_labels(target=f"target-{i:05d}", department="STTTT", kind="http")
              for i in range(targets)]
    names = [f"ioc_metric_{j}" for j in range(series)]
    # A window one interval longer than the points asked for: age never trims below them.
    cache = SeriesCache(window_seconds=interval * (points + 1), max_points=points)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for step in range(points * 2):  # twice over: steady state, windows full and trimming
        ts = 1_800_000_000.0 + step * interval
        cache.add(Sample(name, lb, float(step), ts) for lb in labels for name in names)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--series", type=int, default=11, help="series per target")
    parser.add_argument("--points", type=int, default=120, help="points per window")
    parser.add_argument("--scale-to", type=int, default=10_000, help="targets to extrapolate to")
    args = parser.parse_args()
    full, cache = fill(args.targets, args.series, args.points, 30.0)
    empty, _ = fill(args.targets, args.series, 1, 30.0)  # per-series overhead, ~no points
    n_series = args.targets * args.series
    assert len(cache) == n_series
    per_series = empty / n_series
    per_point = (full - empty) / (n_series * (args.points - 1))
    print(f"{args.targets} targets x {args.series} series x {args.points} points, "
          f"python {sys.version.split()[0]}")
    print(f"total          {full / 1e6:8.1f} MB")
    print(f"per series     {per_series:8.0f} B (window with one point, dict entry included)")
    print(f"per point      {per_point:8.1f} B")
    scaled = full * args.scale_to / args.targets
    print(f"at {args.scale_to} targets {scaled / 1e6:8.0f} MB")


if __name__ == "__main__":
    main()
