"""A flood of pushed security events while ioc polls: is it absorbed, and do probes stay on time?

Starts ioc in this process (SQLite in a temporary directory, the bundled simulator, TARGETS
healthy http targets polled every second), then a separate client process pushes RATE events/s
for DURATION seconds to POST /api/v1/events in batches over loopback: the generator's own JSON
encoding and HTTP work never runs on ioc's event loop. Reports what was accepted, refused (503,
resent after ``Retry-After`` as a sender should) and stored, the sustained ingest rate (stored
events / time until the last one was written) and the scheduler lag of the polls during the
flood, from the deltas of ioc's own ``ioc_scheduler_lag_seconds`` histogram: p99 as the upper
bound of its bucket and as Prometheus' ``histogram_quantile`` would interpolate it.

    .venv/bin/python bench/events_flood.py [--rate 10000] [--duration 10] [--batch 100]
                                           [--targets 80]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-ingest-token-0123456789"
RETRIES = 5


async def client(url: str, rate: int, duration: float, batch: int) -> dict[str, Any]:
    """Push ``rate`` events/s in batches, paced by the clock, from several connections."""
    import aiohttp

    per_second = max(1, rate // batch)
    interval = 1.0 / per_second
    counts = {"sent": 0, "accepted": 0, "refused": 0, "errors": 0, "given_up": 0}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    base = time.time()

    async def send(session: aiohttp.ClientSession, seq: int) -> None:
        events = [{"source": "bench", "id": f"{seq}-{i}", "severity": "medium",
                   "category": "intrusion", "department": "STTTT", "host": "waf01",
                   "title": "Chặn truy cập bất thường", "occurred_at": base + seq * interval,
                   "labels": {"ip": f"203.0.113.{i % 250}"}} for i in range(batch)]
        counts["sent"] += batch
        body = json.dumps(events)
        for _ in range(RETRIES + 1):  # a well-behaved sender: resend after Retry-After
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 202:
                        counts["accepted"] += batch
                        return
                    if resp.status != 503:
                        counts["errors"] += batch
                        return
                    counts["refused"] += batch
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
            except aiohttp.ClientError:
                counts["errors"] += batch
                return
        counts["given_up"] += batch

    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        total = int(per_second * duration)
        for seq in range(total):
            delay = start + seq * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(session, seq)))
        await asyncio.gather(*tasks)
        counts["seconds"] = loop.time() - start
    return counts


async def loop_stalls(into: list[float]) -> None:
    """How late a 10 ms sleep wakes up: the time the loop was busy (or starved of CPU)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(0.01)
        into.append(max(0.0, loop.time() - start - 0.01))


def lag_buckets(registry: Any) -> list[tuple[float, float]]:
    out = []
    for metric in registry.collect():
        if metric.name == "ioc_scheduler_lag_seconds":
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    out.append((float(sample.labels["le"]), sample.value))
    return sorted(out)


def p99(before: list[tuple[float, float]], after: list[tuple[float, float]]
        ) -> tuple[float, float, int]:
    """(bucket upper bound, linear interpolation inside the bucket, observations)."""
    diffs = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    count = diffs[-1][1]
    rank = 0.99 * count
    lower, below = 0.0, 0.0
    for le, cumulative in diffs:
        if cumulative >= rank:
            if le == float("inf"):
                return le, lower, int(count)
            inside = cumulative - below
            estimate = lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            return le, estimate, int(count)
        lower, below = le, cumulative
    return float("inf"), float("inf"), int(count)


async def serve_and_flood(args: argparse.Namespace) -> None:
    from collectors.simulator import units
    from service.app import IocApp
    from service.config import parse_config

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sim_port = sock.getsockname()[1]
        known = units()
        # More targets than simulated units: the same unit's health page under several names.
        chosen = [(known[i % len(known)], i) for i in range(args.targets)]
        config = parse_config({
            "service": {"listen": "127.0.0.1:0"},
            "logging": {"level": "warning"},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp}/ioc.db"},
            "collection": {"interval": "1s", "timeout": "900ms"},
            "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}",
                          "latency_scale": 0.1},
            "auth": {"tokens": [{"name": "bench", "token": TOKEN, "roles": ["ingest"]}]},
            "departments": [{"code": u.code, "name": u.name} for u in known],
            "collectors": [{"type": "http", "name": f"{u.code.lower()}-health-{i}",
                            "department": u.code,
                            "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"}
                           for u, i in chosen],
        }, env={})
        app = IocApp(config)
        await app.start()
        try:
            await asyncio.sleep(3)  # let every target be polled a few times first
            before = lag_buckets(app.registry)
            started = time.perf_counter()
            cpu_started = time.process_time()
            ticker = asyncio.create_task(loop_stalls(stalls := []))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", app.url + "/api/v1/events",
                "--rate", str(args.rate), "--duration", str(args.duration),
                "--batch", str(args.batch), stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
            sent = json.loads(out)
            after = lag_buckets(app.registry)
            ticker.cancel()
            cpu = time.process_time() - cpu_started
            await app.events.flush()
            elapsed = time.perf_counter() - started
            stored = sum(s.value for m in app.events.total.collect() for s in m.samples
                         if s.name == "ioc_security_events_total")
            lag, lag_estimate, polls = p99(before, after)
            load = os.getloadavg()
            dropped = sum(s.value for m in app.events.dropped.collect() for s in m.samples
                          if s.name == "ioc_security_events_dropped_total")
        finally:
            await app.stop(grace=2.0)
    print(f"offered         {args.rate} events/s for {args.duration:g} s "
          f"(batches of {args.batch}), pushed in {sent['seconds']:.1f} s")
    print(f"sent            {sent['sent']}")
    print(f"accepted (202)  {sent['accepted']}")
    print(f"refused (503)   {sent['refused']} (each resent after Retry-After; "
          f"{sent['given_up']} given up after {RETRIES} tries)   errors {sent['errors']}   "
          f"dropped {dropped:g}")
    print(f"stored          {stored:g} in {elapsed:.1f} s -> sustained "
          f"{stored / elapsed:,.0f} events/s")
    print(f"scheduler lag   p99 <= {lag:g} s (interpolated {lag_estimate:.3f} s) over {polls} "
          f"polls of {args.targets} targets during the flood")
    stalls.sort()
    print(f"event loop      longest stall {stalls[-1] * 1000:.0f} ms, p99 "
          f"{stalls[int(0.99 * len(stalls))] * 1000:.0f} ms (a 10 ms ticker's overshoot); "
          f"ioc used {cpu:.1f} s of CPU in {sent['seconds']:.1f} s")
    print(f"load average    {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min) at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--targets", type=int, default=80,
                        help="http targets polled every second during the flood")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if args.client:
        print(json.dumps(asyncio.run(client(args.client, args.rate, args.duration,
                                            args.batch))))
        return
    asyncio.run(serve_and_flood(args))


if __name__ == "__main__":
    main()
