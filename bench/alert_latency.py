"""Detection-to-webhook latency: from a fault injected in the simulator to the firing
notification arriving at a local webhook consumer, through the whole running service
(poll → pipeline → rule evaluation → routing/grouping → outbox → webhook).

    .venv/bin/python bench/alert_latency.py [--trials 20] [--interval 1s] [--for 2s]
        [--evaluation 1s]

Each trial takes a different simulated department down (so each is a new alert group), waits
for its firing notification, then clears the fault and waits for the resolved one. Prints the
latency distribution next to the configured bounds: the condition cannot fire before `for`
has elapsed, and should fire by interval + for + evaluation interval (+ group_wait, 0 here).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.simulator import units
from ioc.config_types import parse_duration
from service.app import IocApp
from service.config import parse_config

TOKEN = "bench-simulator-token"


class Consumer:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append((time.monotonic(), await request.json()))
        self.changed.set()
        return web.Response(text="ok")

    async def wait_for(self, department: str, status: str, since: int, limit: float) -> float:
        async with asyncio.timeout(limit):
            while True:
                for arrived, payload in self.arrivals[since:]:
                    if (payload["status"] == status
                            and payload["groupLabels"].get("department") == department):
                        return arrived
                self.changed.clear()
                await self.changed.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # "target down" lines are expected here
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--for", dest="for_", default="2s")
    parser.add_argument("--evaluation", default="1s")
    args = parser.parse_args()
    chosen = [u for u in units() if u.kind == "department"][: args.trials]

    consumer = Consumer()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", consumer.handle)
    hook_runner = web.AppRunner(hook_app, access_log=None)
    await hook_runner.setup()
    hook_port = free_port()
    await web.TCPSite(hook_runner, "127.0.0.1", hook_port).start()

    sim_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({
            "service": {"listen": "127.0.0.1:0"},
            "logging": {"level": "warning"},
            "storage": {"url": f"sqlite+aiosqlite:///{Path(tmp) / 'ioc.db'}"},
            "collection": {"interval": args.interval, "timeout": "500ms"},
            "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}",
                          "token": TOKEN, "latency_scale": 0.2},
            "departments": [{"code": u.code, "name": u.name} for u in chosen],
            "collectors": [{"type": "http", "name": f"{u.code.lower()}-health",
                            "department": u.code,
                            "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"}
                           for u in chosen],
            "alerts": {
                "evaluation_interval": args.evaluation, "default_rules": False,
                "rules": [{"name": "TargetDown", "metric": "ioc_target_up", "aggregate": "last",
                           "window": "1m", "op": "==", "threshold": 0, "for": args.for_,
                           "severity": "critical"}],
                "route": {"receiver": "oncall", "group_by": ["alertname", "department"],
                          "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
                "receivers": [{"name": "oncall",
                               "webhook": [{"url": f"http://127.0.0.1:{hook_port}/hook"}]}],
            },
        }, env={})
        app = IocApp(config)
        await app.start()
        latencies: list[float] = []
        try:
            sim = f"http://127.0.0.1:{sim_port}"
            headers = {"Authorization": f"Bearer {TOKEN}"}
            warmup = parse_duration(args.interval) * 2 + parse_duration(args.evaluation)
            await asyncio.sleep(warmup)  # let every target be polled and evaluated once
            async with aiohttp.ClientSession(headers=headers) as session:
                for unit in chosen:
                    mark = len(consumer.arrivals)
                    injected = time.monotonic()
                    async with session.post(f"{sim}/_sim/faults",
                                            json={"unit": unit.code, "fault": "down"}) as r:
                        r.raise_for_status()
                    arrived = await consumer.wait_for(unit.code, "firing", mark, 60)
                    latencies.append(arrived - injected)
                    mark = len(consumer.arrivals)
                    async with session.delete(f"{sim}/_sim/faults/{unit.code}") as r:
                        r.raise_for_status()
                    await consumer.wait_for(unit.code, "resolved", mark, 60)
        finally:
            await app.stop(grace=1.0)
            await hook_runner.cleanup()

    interval = parse_duration(args.interval)
    for_ = parse_duration(args.for_)
    evaluation = parse_duration(args.evaluation)
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(f"detection-to-webhook over {len(latencies)} trials "
          f"(interval {args.interval}, for {args.for_}, evaluation {args.evaluation}, "
          "group_wait 0s)")
    print(f"  configured minimum (for):                     {for_:.2f} s")
    print(f"  configured bound (interval + for + evaluation): "
          f"{interval + for_ + evaluation:.2f} s")
    print(f"  measured: min {ordered[0]:.2f} s, median {statistics.median(ordered):.2f} s, "
          f"p95 {p95:.2f} s, max {ordered[-1]:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
