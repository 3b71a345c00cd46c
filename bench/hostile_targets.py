"""Hostile targets must not degrade the monitoring of the others.

ioc polls N well-behaved targets (pages of a local nginx, as in bench/probe_vs_blackbox.py)
at the interval, plus a handful of hostile ones from collectors.simulator.hostile (in its own
process): a head that never ends, endless headers, a header flood, one header repeated
thousands of times, an oversized head, a body dripped a byte at a time, a server that
accepts and never answers, a head dripped line by line, a 1 GiB body and a gzip bomb.
While it runs, /healthz is asked 10 times a second and ioc's RSS is sampled.

Printed at the end, over the measured window:

* on-time share: polls started within 10 % of the interval of their slot (from
  ``ioc_scheduler_lag_seconds``, all targets; slots that never ran count as late);
* false downs: failed polls of the well-behaved targets (``ioc_probe_failures_total``);
* hostile verdicts: each hostile target's reason, as the status API gives it;
* the longest event-loop stall (the highest ``ioc_event_loop_lag_seconds`` bucket that
  received an observation, i.e. an upper bound) and its p99.9;
* /healthz latency p50/p99/max as a client on the same machine sees it;
* RSS every ``--rss-every`` seconds, and its growth from the first to the last sample;
* the CPU ioc and the hostile server used over the window.

    .venv/bin/python bench/hostile_targets.py [--targets 1000] [--interval 1]
        [--duration 300] [--copies 1]

The machine's load average is printed with the figures: wall-clock figures depend on it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from harness import cpu_seconds, free_port, get, loadavg, quantile, wait_http
from probe_vs_blackbox import (
    DEPARTMENTS,
    below,
    histogram,
    nginx_targets,
    parse_prom_text,
    rss_mb,
    started,
)

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ("endless-line", "endless-headers", "header-flood", "repeated-header", "big-head",
           "drip-body", "hang", "slow-head", "huge-body", "gzip-bomb")


class HealthProbe(threading.Thread):
    """Asks /healthz every ``every`` seconds and keeps each answer's latency."""

    def __init__(self, url: str, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started_at = time.perf_counter()
            try:
                get(self.url, timeout=5.0)
                self.latencies.append(time.perf_counter() - started_at)
            except OSError:
                self.failures += 1
            self.stop.wait(max(0.0, self.every - (time.perf_counter() - started_at)))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def longest_bucket(buckets: dict[float, float]) -> float:
    """Upper bound of the highest bucket that received an observation."""
    previous = 0.0
    top = 0.0
    for bound in sorted(buckets):
        if buckets[bound] > previous:
            top = bound
        previous = buckets[bound]
    return top


def delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {bound: after[bound] - before.get(bound, 0.0) for bound in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds (1)")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds (1)")
    parser.add_argument("--duration", type=float, default=300.0, help="measured seconds (300)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before measuring")
    parser.add_argument("--copies", type=int, default=1, help="targets per hostile kind (1)")
    parser.add_argument("--rss-every", type=float, default=30.0, help="seconds (30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ioc-hostile-") as name:
        tmp = Path(name)
        print(f"{args.targets} well-behaved targets + {len(HOSTILE) * args.copies} hostile, "
              f"interval {args.interval:g} s, timeout {args.timeout:g} s, window "
              f"{args.duration:g} s after {args.warmup:g} s; {os.cpu_count()} CPUs, load "
              f"before {loadavg()}", flush=True)
        hostile_port = free_port()
        hostile_cmd = [sys.executable, "-m", "collectors.simulator.hostile",
                       "--port", str(hostile_port)]
        with nginx_targets(tmp, args.targets) as urls, \
                started(hostile_cmd, ROOT, tmp / "hostile.log") as hostile_proc:
            wait_http(f"http://127.0.0.1:{hostile_port}/ok", hostile_proc, tmp / "hostile.log")
            run(tmp, urls, hostile_port, hostile_proc.pid, args)


def run(tmp: Path, urls: list[str], hostile_port: int, hostile_pid: int,
        args: argparse.Namespace) -> None:
    web_port = free_port()
    collectors = [{"type": "http", "name": f"ok-{i:05d}",
                   "department": f"DV{i % DEPARTMENTS:02d}", "url": url}
                  for i, url in enumerate(urls)]
    for copy in range(args.copies):
        for n, kind in enumerate(HOSTILE):
            collectors.append({"type": "http", "name": f"bad-{kind}-{copy}",
                               "department": f"DV{n % DEPARTMENTS:02d}",
                               "url": f"http://127.0.0.1:{hostile_port}/{kind}"})
    config = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp / 'ioc.db'}"},
        "collection": {"interval": f"{args.interval}s", "timeout": f"{args.timeout}s",
                       "max_per_host": 64},
        "logging": {"level": "warning"},
        "departments": [{"code": f"DV{d:02d}", "name": f"Đơn vị {d}"}
                        for d in range(DEPARTMENTS)],
        "collectors": collectors,
    }
    path = tmp / "ioc.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    base = f"http://127.0.0.1:{web_port}"
    cmd = [sys.executable, "-m", "ioc", "run", "-c", str(path), "--listen",
           f"127.0.0.1:{web_port}"]
    with started(cmd, ROOT, tmp / "ioc.log") as ioc:
        wait_http(base + "/readyz", ioc, tmp / "ioc.log", limit=300)
        time.sleep(args.warmup)
        before = parse_prom_text(get(base + "/metrics").decode())
        health = HealthProbe(base + "/healthz")
        health.start()
        cpu0 = (cpu_seconds(ioc.pid), cpu_seconds(hostile_pid))
        t0 = time.time()
        rss: list[tuple[float, float]] = []
        while True:
            rss.append((time.time() - t0, rss_mb(ioc.pid)))
            left = args.duration - (time.time() - t0)
            if left <= 0:
                break
            time.sleep(min(args.rss_every, left))
        window = time.time() - t0
        cpu = (cpu_seconds(ioc.pid) - cpu0[0], cpu_seconds(hostile_pid) - cpu0[1])
        health.stop.set()
        health.join()
        load = loadavg()
        after = parse_prom_text(get(base + "/metrics").decode())
        status = json.loads(get(base + "/api/v1/status"))
    report(before, after, status, health, rss, window, load, len(urls), args)
    print(f"CPU over the window: ioc {cpu[0] / window * 100:.0f} % of a core, the hostile "
          f"server {cpu[1] / window * 100:.0f} %")


def report(before: dict[str, float], after: dict[str, float], status: dict[str, object],
           health: HealthProbe, rss: list[tuple[float, float]], window: float, load: str,
           good: int, args: argparse.Namespace) -> None:
    total = good + len(HOSTILE) * args.copies
    lag = delta(histogram(after, "ioc_scheduler_lag_seconds"),
                histogram(before, "ioc_scheduler_lag_seconds"))
    expected = round(total * window / args.interval)
    on_time = min(below(lag, 0.1 * args.interval) / max(expected, 1), 1.0)
    false_down = 0.0
    false_down_total = 0.0
    reasons: dict[str, float] = {}
    for key, value in after.items():
        if key.startswith("ioc_probe_failures_total{") and 'target="ok-' in key:
            false_down += value - before.get(key, 0.0)
            false_down_total += value
            reason = key.split('reason="', 1)[1].split('"', 1)[0]
            reasons[reason] = reasons.get(reason, 0.0) + value - before.get(key, 0.0)
    loop = delta(histogram(after, "ioc_event_loop_lag_seconds"),
                 histogram(before, "ioc_event_loop_lag_seconds"))
    targets = status.get("targets", [])
    assert isinstance(targets, list)
    verdicts = sorted({(str(t["name"]).rsplit("-", 1)[0], str(t.get("reason")))
                       for t in targets if str(t["name"]).startswith("bad-")})
    print(f"load at the end {load}; window {window:.0f} s")
    print(f"on time (within {0.1 * args.interval * 1000:.0f} ms of the slot, all targets): "
          f"{on_time * 100:.2f} %  (scheduler lag p99 {quantile(lag, 0.99) * 1000:.1f} ms)")
    print(f"false downs of the well-behaved targets: {false_down:.0f} in the window, "
          f"{false_down_total:.0f} since start"
          + (" (" + ", ".join(f"{r}: {n:.0f}" for r, n in sorted(reasons.items())) + ")"
             if reasons else ""))
    print("hostile verdicts: " + ", ".join(f"{n.removeprefix('bad-')}={r}"
                                           for n, r in verdicts))
    print(f"longest event-loop stall: <= {longest_bucket(loop) * 1000:.1f} ms "
          f"(p99.9 {quantile(loop, 0.999) * 1000:.2f} ms, p99 "
          f"{quantile(loop, 0.99) * 1000:.2f} ms, {loop.get(math.inf, 0):.0f} observations)")
    lat = health.latencies
    print(f"/healthz: {len(lat)} answers, {health.failures} failures; p50 "
          f"{percentile(lat, 0.5) * 1000:.1f} ms, p99 {percentile(lat, 0.99) * 1000:.1f} ms, "
          f"max {max(lat, default=float('nan')) * 1000:.1f} ms")
    print("RSS: " + ", ".join(f"{t:.0f}s {mb:.0f} MB" for t, mb in rss)
          + f"; growth {rss[-1][1] - rss[0][1]:+.1f} MB")


if __name__ == "__main__":
    main()
