"""Memory of the in-memory windows (ioc.cache.SeriesCache), measured with tracemalloc.

Fills a cache the way polling http targets does (each target reports the 11 series of an http
probe: up, state, duration, status code, content length, redirects, final URL, four phase
durations; one sample per series per interval, twice over the window so windows are full and
trimming) in two layouts, and prints the bytes held per series and per point, and the totals
scaled to ``--scale-to`` targets:

- every metric keeps its full window (``history=None``, the layout before rule ranges);
- only the metrics the default alert rules read keep a window, as long as they read it (plus
  ``HISTORY_MARGIN``); every other metric keeps its latest point (how ``ioc run`` fills it).

    .venv/bin/python bench/cache_memory.py [--targets 1000] [--points 120] [--interval 30]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from alerts.rules import compile_rules, default_rules_text, parse_rule_document, read_ranges
from ioc.cache import LatestPoint, SeriesCache
from ioc.model import Labels, Sample, make_labels

PHASES = ("dns", "connect", "processing", "transfer")


def target_series(i: int) -> list[tuple[str, Labels, float]]:
    """(metric, labels, typical value) of one http target's series."""
    base = make_labels(target=f"target-{i:05d}", department=f"DV{i % 35:02d}", kind="http")
    url = make_labels(base, url=f"http://portal-{i:05d}.example.vn/")
    return [("ioc_target_up", base, 1.0), ("ioc_target_state_up", base, 1.0),
            ("ioc_probe_duration_seconds", base, 0.0123),
            ("ioc_probe_http_status_code", base, 200.0),
            ("ioc_probe_http_content_length_bytes", base, 4321.0),
            ("ioc_probe_http_redirects", base, 0.0),
            ("ioc_probe_http_final_url_info", url, 1.0),
            *(("ioc_probe_phase_duration_seconds", make_labels(base, phase=p), 0.002)
              for p in PHASES)]


def default_ranges() -> dict[str, float]:
    configs, issues = parse_rule_document(yaml.safe_load(default_rules_text()), "default")
    assert not issues
    return read_ranges(compile_rules(configs))


def fill(targets: int, points: int, interval: float,
         history: Mapping[str, float] | None) -> tuple[int, SeriesCache]:
    """Bytes traced while filling a cache (labels are built first so they are not counted)."""
    series = [target_series(i) for i in range(targets)]
    # A window one interval longer than the points asked for: age never trims below them.
    cache = SeriesCache(window_seconds=interval * (points + 1), max_points=points,
                        history=history)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # Target i joins at step i % points (windows trim in a sawtooth: measured all in one phase
    # they would all be at its top or bottom), then every window fills and trims at least once.
    for step in range(points * 3):
        start = 1_800_000_000.0 + step * interval
        for i, rows in enumerate(series):
            if i % points > step:
                continue
            ts = start + i * 0.001  # one timestamp per poll, shared by its samples
            cache.add([Sample(metric, labels, value * (1 + step % 3), ts)
                       for metric, labels, value in rows])
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, cache


def census(cache: SeriesCache) -> tuple[int, int, int]:
    """Series with a window, their points, series with the latest point alone."""
    windows = points = latest = 0
    for metric in cache.metrics():
        for _, window in cache.series(metric):
            if isinstance(window, LatestPoint):
                latest += 1
            else:
                windows += 1
                points += len(window)
    return windows, points, latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--points", type=int, default=120, help="points per full window")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    parser.add_argument("--scale-to", type=int, default=10_000, help="targets to extrapolate to")
    args = parser.parse_args()
    n_series = args.targets * len(target_series(0))
    print(f"{args.targets} http targets x {len(target_series(0))} series, interval "
          f"{args.interval:g} s, window {args.points} points, python {sys.version.split()[0]}")
    scale = args.scale_to / args.targets

    full, cache = fill(args.targets, args.points, args.interval, None)
    empty, _ = fill(args.targets, 1, args.interval, None)  # per-series overhead, ~no points
    assert len(cache) == n_series
    per_series = empty / n_series
    per_point = (full - empty) / (n_series * (args.points - 1))
    print("\nevery metric a full window (history=None)")
    print(f"  per series     {per_series:8.0f} B (window with one point, dict entry included)")
    print(f"  per point      {per_point:8.1f} B")
    print(f"  total          {full / 1e6:8.1f} MB; at {args.scale_to} targets "
          f"{full * scale / 1e6:6.0f} MB")

    ranges = default_ranges()
    ranged, cache = fill(args.targets, args.points, args.interval, ranges)
    only_latest, _ = fill(args.targets, args.points, args.interval, {})
    windows, points, latest = census(cache)
    per_latest = only_latest / n_series
    window_bytes = ranged - latest * per_latest
    kept = cache.history() or {}
    print("\nwindows only for what the default rules read, latest point for the rest")
    print("  kept           " + ", ".join(f"{m} {kept[m]:g} s" for m in sorted(ranges)))
    print(f"  latest only    {latest:8d} series, {per_latest:6.0f} B each "
          f"(LatestPoint, dict entry included)")
    print(f"  windows        {windows:8d} series, {points / max(windows, 1):6.1f} points and "
          f"{window_bytes / max(windows, 1):6.0f} B each "
          f"({window_bytes / max(points, 1):.1f} B per point, overhead included)")
    print(f"  total          {ranged / 1e6:8.1f} MB; at {args.scale_to} targets "
          f"{ranged * scale / 1e6:6.0f} MB ({ranged / full:.1%} of full windows)")


if __name__ == "__main__":
    main()
