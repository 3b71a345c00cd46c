"""Latency and throughput of POST /api/v1/events: queued (202) against durable (?durable=1).

Starts ioc in this process (SQLite in a temporary directory, a few simulated targets polled
every second), then a separate client process runs SENDERS closed-loop senders, each pushing
batches of BATCH events and sending the next one as soon as the answer comes, for DURATION
seconds per mode. Reports, per mode, the answers per second, the acknowledged events per
second, the request latency (p50, p95, p99) and, for the queued mode, how long the last
events took to reach the database after the last answer. The client's JSON and HTTP work
never runs on ioc's event loop.

    .venv/bin/python bench/durable_push.py [--senders 8] [--batch 50] [--duration 8]
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
from typing import Any

TOKEN = "bench-ingest-token-0123456789"


async def client(url: str, senders: int, batch: int, duration: float, durable: bool,
                 tag: str) -> dict[str, Any]:
    """Closed-loop senders; the latency of every answered request, and the counts."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    target = url + ("?durable=1" if durable else "")
    latencies: list[float] = []
    counts = {"ok": 0, "other": 0, "events": 0}
    deadline = time.perf_counter() + duration

    async def sender(session: aiohttp.ClientSession, n: int) -> None:
        seq = 0
        while time.perf_counter() < deadline:
            body = json.dumps([{"source": f"bench-{tag}", "id": f"{n}-{seq}-{i}",
                                "severity": "high", "category": "auth_failure",
                                "title": "Đăng nhập sai", "occurred_at": time.time() - 1}
                               for i in range(batch)])
            seq += 1
            started = time.perf_counter()
            async with session.post(target, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status in (200, 202):
                    latencies.append(time.perf_counter() - started)
                    counts["ok"] += 1
                    counts["events"] += batch
                else:
                    counts["other"] += 1

    connector = aiohttp.TCPConnector(limit=senders)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session, n) for n in range(senders)))
    latencies.sort()
    return {**counts, "seconds": time.perf_counter() - started, "latencies": latencies}


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def serve_and_push(args: argparse.Namespace) -> None:
    from collectors.simulator import units
    from service.app import IocApp
    from service.config import parse_config

    logging.basicConfig(level=logging.WARNING)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sim_port = sock.getsockname()[1]
        known = units()[:8]
        config = parse_config({
            "service": {"listen": "127.0.0.1:0"},
            "logging": {"level": "warning"},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp}/ioc.db"},
            "collection": {"interval": "1s", "timeout": "900ms"},
            "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}",
                          "latency_scale": 0.1},
            "auth": {"tokens": [{"name": "bench", "token": TOKEN, "roles": ["ingest"]}]},
            "departments": [{"code": u.code, "name": u.name} for u in known],
            "collectors": [{"type": "http", "name": f"{u.code.lower()}-health",
                            "department": u.code,
                            "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"}
                           for u in known],
        }, env={})
        app = IocApp(config)
        await app.start()
        try:
            await asyncio.sleep(2)
            for mode in ("queued", "durable"):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--client", app.url + "/api/v1/events",
                    "--senders", str(args.senders), "--batch", str(args.batch),
                    "--duration", str(args.duration), "--mode", mode,
                    stdout=subprocess.PIPE)
                out, _ = await proc.communicate()
                answered = time.perf_counter()
                await app.events.flush()
                results[mode] = {**json.loads(out),
                                 "stored_after": time.perf_counter() - answered}
            load = os.getloadavg()
        finally:
            await app.stop(grace=2.0)
    print(f"{args.senders} closed-loop senders, batches of {args.batch} events, "
          f"{args.duration:g} s per mode, SQLite (WAL, synchronous=NORMAL)")
    for mode, r in results.items():
        lat = r["latencies"]
        print(f"{mode:8} {r['ok'] / r['seconds']:7,.0f} requests/s  "
              f"{r['events'] / r['seconds']:8,.0f} events/s acknowledged  latency p50 "
              f"{quantile(lat, 0.5) * 1000:6.1f} ms  p95 {quantile(lat, 0.95) * 1000:6.1f} ms  "
              f"p99 {quantile(lat, 0.99) * 1000:6.1f} ms  refused {r['other']}  "
              f"last events on disk {r['stored_after'] * 1000:.0f} ms after the last answer")
    print(f"load average    {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min) at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="queued", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        result = asyncio.run(client(args.client, args.senders, args.batch, args.duration,
                                    args.mode == "durable", args.mode))
        print(json.dumps(result))
        return
    from ioc.event_loop import choose, run

    run(serve_and_push(args), choose("auto"))  # uvloop where installed, as `ioc run`


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
