"""What one /metrics scrape costs at 10,000 targets, and what it does to the event loop.

Fills a registry the way ioc's is filled after every target was polled once (``SampleExporter``
over a ``SeriesCache`` holding 11 series per http target, ``ServiceMetrics`` with a
last-success gauge per target) and prints:

- render: CPU time of one exposition alone, before (prometheus-client's ``generate_latest``
  over the cache's families as they were built then) and now (``ioc.exposition``);
- the loop during a scrape, for each way of rendering and each event loop: the longest and the
  99th-percentile gap of a 1 ms ticker task (the wait a poll due then would see), the scrape's
  wall time, and how much other loop work got done meanwhile, against the same time without a
  scrape. That work is 20 tasks each waking every millisecond to spend 50 µs of CPU, a
  stand-in for polls; the sliced render takes turns with it, a thread competes for the GIL.

    .venv/bin/python bench/metrics_render.py [--targets 10000] [--reps 5] [--stall-reps 3]
        [--loops asyncio,uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample as PromSample

from ioc.cache import SeriesCache
from ioc.exposition import Exposition
from ioc.metrics import SAMPLE_METRICS, CacheStats, SampleExporter, ServiceMetrics
from ioc.model import Sample, make_labels
from ioc.status import StatusBoard, TargetState

PHASES = ("dns", "connect", "processing", "transfer")
DEPARTMENTS = ("VP-UBND", "SNV", "STP", "SKHDT", "STC", "SCT", "SNNPTNT", "SGTVT", "SXD", "STNMT")
# What Prometheus 3 sends: OpenMetrics first.
OPENMETRICS = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
               "application/openmetrics-text;version=0.0.1;q=0.4,"
               "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
               "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")


class Before(Collector):
    """The registry as /metrics read it before ioc.exposition: the cache's families built as
    ``GaugeMetricFamily`` objects through ``SeriesCache.series()`` (the code of that time)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for collector in list(self.registry._collector_to_names):
            if isinstance(collector, SampleExporter):
                yield from self._samples(collector.cache)
            else:
                yield from collector.collect()

    @staticmethod
    def _samples(cache: SeriesCache) -> Iterator[Metric]:
        for metric in sorted(cache.metrics()):
            family = GaugeMetricFamily(
                metric, SAMPLE_METRICS.get(metric, f"Sample metric {metric} collected by ioc."))
            for labels, window in cache.series(metric):
                latest = window.latest
                if latest is not None:
                    family.samples.append(PromSample(metric, dict(labels), latest[1], None, None))
            if family.samples:
                yield family


def build(targets: int) -> CollectorRegistry:
    """A registry as ioc's looks once every http target was polled (up, no TLS)."""
    disable_created_metrics()
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, "bench")
    board = StatusBoard()
    options: dict[str, Any] = {}
    if "history" in inspect.signature(SeriesCache).parameters:
        options["history"] = {"ioc_target_up": 600.0}  # what the default alert rules read
    cache = SeriesCache(window_seconds=3600.0, max_points=120, **options)
    registry.register(SampleExporter(cache))
    registry.register(CacheStats(cache))
    now = 1_800_000_000.0
    samples: list[Sample] = []
    for i in range(targets):
        dept = DEPARTMENTS[i % len(DEPARTMENTS)]
        name = f"{dept.lower()}-{i:05d}-health"
        base = make_labels(target=name, department=dept, kind="http")
        samples += [Sample("ioc_target_up", base, 1.0, now),
                    Sample("ioc_target_state_up", base, 1.0, now),
                    Sample("ioc_probe_duration_seconds", base, 0.0123 + i * 1e-7, now),
                    Sample("ioc_probe_http_status_code", base, 200.0, now),
                    Sample("ioc_probe_http_content_length_bytes", base, 5123.0 + i, now),
                    Sample("ioc_probe_http_redirects", base, 0.0, now)]
        url = make_labels(dict(base), url=f"http://10.0.{i // 256 % 256}.{i % 256}/{dept}/health")
        samples.append(Sample("ioc_probe_http_final_url_info", url, 1.0, now))
        for phase in PHASES:
            samples.append(Sample("ioc_probe_phase_duration_seconds",
                                  make_labels(dict(base), phase=phase), 0.001 * (1 + i % 7), now))
        board.register(TargetState(name, dept, "http", 30.0, last_success=now))
        metrics.collector_duration.labels(kind="http").observe(0.0123)
    metrics.last_success.watch(board)
    cache.add(samples)
    return registry


def render_cost(registry: CollectorRegistry, reps: int) -> None:
    exposition = Exposition()
    before = Before(registry)
    body = generate_latest(before)
    with asyncio.Runner() as runner:
        assert runner.run(exposition.render(registry, ""))[0] == body
        series = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
        print(f"{series:,} series, {len(body) / 1e6:.1f} MB of text")
        print(f"render, CPU time of one scrape (every thread; median, min, max of {reps}):")
        for name, render in (("generate_latest (before)", lambda: generate_latest(before)),
                             ("Exposition, first scrape (now)",
                              lambda: runner.run(Exposition().render(registry, OPENMETRICS))),
                             ("Exposition, text (now)",
                              lambda: runner.run(exposition.render(registry, ""))),
                             ("Exposition, OpenMetrics (now)",
                              lambda: runner.run(exposition.render(registry, OPENMETRICS)))):
            times = []
            for _ in range(reps):
                gc.collect()
                started = time.process_time()
                render()
                times.append(time.process_time() - started)
            print(f"  {name:36} {statistics.median(times) * 1000:7.0f} ms "
                  f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")


async def loop_under_scrape(scrape: Callable[[], Awaitable[object]]) -> Stall:
    done = 0
    stop = False

    async def worker() -> None:
        nonlocal done
        while not stop:
            await asyncio.sleep(0.001)
            end = time.perf_counter() + 50e-6
            while time.perf_counter() < end:
                pass
            done += 1

    gaps: list[float] = []
    cpu_gaps: list[float] = []  # the process's CPU time (all threads) during each gap
    scraping = False

    async def ticker() -> None:
        last, last_cpu = time.perf_counter(), time.process_time()
        while not stop:
            await asyncio.sleep(0.001)
            now, cpu = time.perf_counter(), time.process_time()
            if scraping:
                gaps.append(now - last)
                cpu_gaps.append(cpu - last_cpu)
            last, last_cpu = now, cpu

    tasks = [asyncio.create_task(worker()) for _ in range(20)]
    tasks.append(asyncio.create_task(ticker()))
    await asyncio.sleep(0.3)  # settle
    before, started = done, time.perf_counter()
    await asyncio.sleep(0.5)
    idle_rate = (done - before) / (time.perf_counter() - started)
    scraping = True
    before, started = done, time.perf_counter()
    await scrape()
    took = time.perf_counter() - started
    scraping = False
    rate = (done - before) / took
    stop = True
    await asyncio.gather(*tasks)
    longest = max(range(len(gaps)), key=gaps.__getitem__, default=None)
    p99 = sorted(gaps)[int(len(gaps) * 0.99)] if gaps else took
    if longest is None:
        return Stall(took, took, took, rate / idle_rate, took)
    return Stall(gaps[longest], p99, took, rate / idle_rate, cpu_gaps[longest])


@dataclass
class Stall:
    longest: float  # longest gap of the 1 ms ticker while the scrape ran, s
    p99: float  # 99th percentile of those gaps, s
    took: float  # scrape wall time, s
    work: float  # loop work done meanwhile, as a share of the same time idle
    longest_cpu: float  # CPU the process had during the longest gap (much less: preempted)


def stalls(registry: CollectorRegistry, loops: list[str], reps: int) -> None:
    before = Before(registry)
    exposition = Exposition()

    async def on_loop() -> object:
        return generate_latest(before)

    async def thread() -> object:
        return await asyncio.to_thread(generate_latest, before)

    async def now() -> object:
        return await exposition.render(registry, OPENMETRICS)

    print(f"the loop during one scrape, worst of {reps} (20 tasks waking every 1 ms with 50 µs "
          "of CPU each; a 1 ms ticker):")
    print("  longest gap: worst run (the process's CPU time in that gap: far less means the "
          "machine ran something else); then the median run's")
    print(f"  {'loop':8} {'render':32} {'longest gap (CPU)':>19} {'median':>9} {'p99 gap':>9} "
          f"{'scrape took':>12} {'loop work vs idle':>18}")
    for loop_name in loops:
        factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
        if loop_name == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        for name, scrape in (("on the loop (before)", on_loop),
                             ("asyncio.to_thread (before)", thread),
                             ("Exposition, OpenMetrics (now)", now)):
            runs = []
            for _ in range(reps):
                gc.collect()
                with asyncio.Runner(loop_factory=factory) as runner:
                    runs.append(runner.run(loop_under_scrape(scrape)))
            worst = max(runs, key=lambda r: r.longest)
            print(f"  {loop_name:8} {name:32} {worst.longest * 1000:6.0f} ms "
                  f"({worst.longest_cpu * 1000:4.0f}) "
                  f"{statistics.median(r.longest for r in runs) * 1000:6.0f} ms "
                  f"{max(r.p99 for r in runs) * 1000:6.0f} ms "
                  f"{statistics.median(r.took for r in runs) * 1000:9.0f} ms "
                  f"{statistics.median(r.work for r in runs) * 100:16.0f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--stall-reps", type=int, default=3)
    parser.add_argument("--loops", default="asyncio,uvloop")
    args = parser.parse_args()
    registry = build(args.targets)
    print(f"{args.targets:,} http targets, python {sys.version.split()[0]}")
    render_cost(registry, args.reps)
    stalls(registry, args.loops.split(","), args.stall_reps)


if __name__ == "__main__":
    main()
