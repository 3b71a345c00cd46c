"""CPU per check of the ``http`` collector alone: the wire engine against aiohttp, on uvloop and
on asyncio's own loop, against one local nginx (fresh connection per check).

This isolates the fetch from the rest of ioc (scheduler, pipeline, store): each variant runs
``HttpCollector.collect`` for N targets at a paced rate for a fixed time, starting the checks
that are due every 5 ms (as a batched scheduler would), and reports process CPU per check,
checks per second achieved against offered, and failures.

    .venv/bin/python bench/http_engine.py [--rate 1500] [--duration 10] [--targets 1000]
        [--variants wire:uvloop,wire:asyncio,aiohttp:uvloop,aiohttp:asyncio]

Needs Debian's nginx-light. The aiohttp variant is the same collector with its engine switched
to the aiohttp path that ``keepalive``/``proxy`` targets use, on a fresh-connection session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import loadavg
from probe_vs_blackbox import nginx_targets

from collectors.http import HttpCollector
from collectors.probe.session import open_probe_session
from service.config import parse_config

TICK = 0.005


def collectors(urls: list[str], engine: str) -> list[HttpCollector]:
    blocks = [{"name": f"t{i}", "department": "STP", "type": "http", "url": url}
              for i, url in enumerate(urls)]
    config = parse_config({"departments": [{"code": "STP", "name": "Sở Tư pháp"}],
                           "collectors": blocks}, env={})
    made = [HttpCollector(block) for block in config.collectors]  # type: ignore[arg-type]
    if engine == "aiohttp":
        for collector in made:
            collector._wire = None
    return made


async def run(urls: list[str], engine: str, rate: float, duration: float) -> str:
    targets = collectors(urls, engine)
    session = open_probe_session(limit=256, limit_per_host=256)
    failures = 0
    reasons: dict[str, int] = {}
    in_flight: set[asyncio.Task[object]] = set()

    async def check(collector: HttpCollector) -> None:
        nonlocal failures
        try:
            async with asyncio.timeout(5):
                result = await collector.collect(session, time.time())
            if not result.up:
                failures += 1
                reasons[result.reason or "?"] = reasons.get(result.reason or "?", 0) + 1
        except Exception as exc:
            failures += 1
            reasons[type(exc).__name__] = reasons.get(type(exc).__name__, 0) + 1

    loop = asyncio.get_running_loop()
    for collector in targets[:50]:  # warm up: DNS-free URLs, TLS contexts, imports
        await check(collector)
    failures = 0
    reasons.clear()
    started_at = loop.time()
    cpu0 = time.process_time()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    done = 0
    index = 0
    while (now := loop.time()) - started_at < duration:
        due = int((now - started_at) * rate) - done
        for _ in range(max(due, 0)):
            task = asyncio.create_task(check(targets[index % len(targets)]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            index += 1
        done += max(due, 0)
        await asyncio.sleep(TICK)
    if in_flight:
        await asyncio.wait(in_flight)
    wall = loop.time() - started_at
    cpu = time.process_time() - cpu0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    user = (usage1.ru_utime - usage0.ru_utime) / done * 1e3
    system = (usage1.ru_stime - usage0.ru_stime) / done * 1e3
    await session.close()
    return (f"{done / wall:7.0f}/s of {rate:.0f} offered   CPU per check {cpu / done * 1e3:.3f} ms"
            f" (user {user:.3f}, kernel {system:.3f})   process CPU {cpu / wall * 100:3.0f} %"
            f"   failed {failures} {reasons or ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1500)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--variants",
                        default="wire:uvloop,wire:asyncio,aiohttp:uvloop,aiohttp:asyncio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ioc-bench-engine-") as name:
        with nginx_targets(Path(name), args.targets) as urls:
            print(f"{args.targets} targets, {args.rate:.0f} checks/s offered, "
                  f"{args.duration:.0f} s each, load {loadavg()}, pid {os.getpid()}")
            for variant in args.variants.split(","):
                engine, loop_name = variant.split(":")
                if loop_name == "uvloop":
                    import uvloop
                    line = uvloop.run(run(urls, engine, args.rate, args.duration))
                else:
                    line = asyncio.run(run(urls, engine, args.rate, args.duration))
                print(f"{engine:8} {loop_name:8} {line}", flush=True)


if __name__ == "__main__":
    main()
