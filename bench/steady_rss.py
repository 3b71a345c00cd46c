"""ioc's RSS at N ``http`` targets once the in-memory windows are full, without waiting an hour.

One local nginx (as in ``probe_vs_blackbox.py``) serves the targets; ioc runs in a child
process (this script with ``--child``) built the way ``ioc run`` builds it, with the default
alert rules. A pipeline hook gives each target's series, at its first poll, the points an hour
of polling would have left (one per interval back to ``collection.window``, the value just
polled, added through ``SeriesCache.add`` so the cache lays them out as polling does). Polling
then goes on for ``--after`` seconds, windows trimming at their cap as in steady state, and the
peak RSS of that stretch is the figure to read.

    .venv/bin/python bench/steady_rss.py [--targets 10000] [--interval 30] [--after 60]
        [--no-fill]   # windows as polling fills them: RSS growth of polling alone
        [--full-windows]  # every metric keeps its whole window (the layout before)
        [--trace]     # tracemalloc's top allocation sites after the first round, then stop

RSS is printed at each stage (ready, every target polled once, after ``--after`` seconds),
with the cache's series and points and the load average: a loaded machine slows polling, not
memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from harness import free_port, loadavg
from probe_vs_blackbox import DEPARTMENTS, nginx_targets, rss_mb, started

from ioc.cache import SeriesCache
from ioc.model import Sample
from ioc.pipeline import PollOutcome


def stage(name: str, note: str = "") -> None:
    rss = rss_mb_self()
    print(f"{time.strftime('%H:%M:%S')} {name:<26} RSS {rss:7.1f} MB  load {loadavg()}"
          f"{'  ' + note if note else ''}", flush=True)


def rss_mb_self() -> float:
    import os

    return rss_mb(os.getpid())


def describe(cache: SeriesCache) -> str:
    series = points = 0
    for metric in cache.metrics():
        for _, window in cache.series(metric):
            series += 1
            points += len(window)
    return f"{series} series, {points} points"


class Backfill:
    """A pipeline hook: at a target's first poll, its series get the hour polling would have
    left them (one point per interval back to the cache's window, the value just polled),
    added oldest first through ``SeriesCache.add`` so the cache lays them out as polling does.
    The series are taken out of the cache's dict first (``add`` ignores older points)."""

    def __init__(self, cache: SeriesCache, interval: float) -> None:
        self.cache = cache
        self.interval = interval
        self.steps = min(cache.max_points, int(cache.window_seconds // interval))
        self.seen: set[str] = set()

    def __call__(self, outcome: PollOutcome) -> None:
        if outcome.target in self.seen:
            return
        self.seen.add(outcome.target)
        cache, interval = self.cache, self.interval
        for sample in outcome.samples:
            del cache._metrics[sample.metric][sample.labels]
            cache._count -= 1
        cache.add(Sample(s.metric, s.labels, s.value, s.ts - k * interval)
                  for k in range(self.steps - 1, -1, -1) for s in outcome.samples)


def top(snapshot: tracemalloc.Snapshot, key: str, limit: int = 20) -> None:
    stats = snapshot.statistics(key)
    print(f"traced {sum(s.size for s in stats) / 1e6:.1f} MB; top {limit} by {key}:")
    for stat in stats[:limit]:
        frame = stat.traceback[0]
        root = str(Path(__file__).resolve().parent.parent)
        where = frame.filename.replace(root + "/", "").replace(sys.prefix + "/", "")
        print(f"  {stat.size / 1e6:8.1f} MB {stat.count:>9} blocks  {where}"
              f"{':' + str(frame.lineno) if key == 'lineno' else ''}")


async def child(config_path: str, listen: str, warmup: float, after: float,
                trace: bool, fill: bool, full_windows: bool) -> None:
    if trace:
        tracemalloc.start()
    from ioc.logs import setup_logging
    from service.app import IocApp
    from service.config import load_config

    config = load_config(config_path)
    setup_logging("warning")
    app = IocApp(config, listen=listen)
    if full_windows:
        app.cache.set_history(None)
    if fill:
        app.pipeline.add_hook(Backfill(app.cache, config.collection.interval))
    await app.start()
    stage("ready")
    await asyncio.sleep(warmup)
    stage("all polled once" + (", filled" if fill else ""), describe(app.cache))
    if trace:  # where the memory is, then stop: tracemalloc's own tables distort the RSS
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        top(snapshot, "filename")
        top(snapshot, "lineno", 30)
        await app.stop(grace=0)
        return
    peak = 0.0
    end = time.monotonic() + after
    while time.monotonic() < end:
        await asyncio.sleep(1.0)
        peak = max(peak, rss_mb_self())
    stage("steady state" if fill else "polling on",
          f"{describe(app.cache)}; peak RSS over {after:g} s {peak:.1f} MB")
    await app.stop(grace=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds (30)")
    parser.add_argument("--after", type=float, default=60.0,
                        help="seconds of polling after the windows are filled (60)")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "LISTEN"), help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-fill", action="store_true",
                        help="leave the windows as polling fills them (RSS growth of polling "
                             "alone, to compare with a filled run)")
    parser.add_argument("--full-windows", action="store_true",
                        help="every metric keeps its whole window (the cache's layout before "
                             "it kept windows only for what the rules read)")
    parser.add_argument("--trace", action="store_true",
                        help="tracemalloc's top allocation sites once every target was polled, "
                             "then stop (RSS figures are then inflated by tracemalloc)")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else args.interval + 10
    if args.child:
        asyncio.run(child(args.child[0], args.child[1], warmup, args.after, args.trace,
                          not args.no_fill, args.full_windows))
        return
    with tempfile.TemporaryDirectory(prefix="ioc-bench-") as name, \
            nginx_targets(Path(name), args.targets) as urls:
        tmp = Path(name)
        config = {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp / 'ioc.db'}"},
            "collection": {"interval": f"{args.interval:g}s",
                           "timeout": f"{min(5.0, args.interval):g}s", "max_per_host": 64},
            "logging": {"level": "warning"},
            "departments": [{"code": f"DV{d:02d}", "name": f"Đơn vị {d}"}
                            for d in range(DEPARTMENTS)],
            "collectors": [{"type": "http", "name": f"target-{i:05d}",
                            "department": f"DV{i % DEPARTMENTS:02d}", "url": url}
                           for i, url in enumerate(urls)],
        }
        path = tmp / "ioc.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        listen = f"127.0.0.1:{free_port()}"
        print(f"{args.targets} http targets, interval {args.interval:g} s, python "
              f"{sys.version.split()[0]}, load before {loadavg()}", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), listen,
               "--after", str(args.after), "--warmup", str(warmup),
               *(["--no-fill"] if args.no_fill else []),
               *(["--full-windows"] if args.full_windows else []),
               *(["--trace"] if args.trace else [])]
        with started(cmd, Path(__file__).resolve().parent.parent, tmp / "ioc.log") as ioc:
            ioc.wait()
        lines = (tmp / "ioc.log").read_text(errors="replace").splitlines()
        shown = [line for line in lines if not line.startswith("ts=")]
        print("\n".join(shown))
        if len(shown) < len(lines):
            print(f"({len(lines) - len(shown)} log lines of ioc left out)")


if __name__ == "__main__":
    main()
