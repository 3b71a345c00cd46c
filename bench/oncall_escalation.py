"""Escalation at outage scale: 1,000 critical alerts firing at once under one policy, on SQLite.

A department-wide outage or a network cut can fire hundreds of critical alerts in one cycle;
each gets an escalation. Measured with the service's own dispatcher and store (time passed
in, no network: the outbox is not run): starting the escalations in the engine's cycle, a
tick when no step is due (what every wake of the delivery loop costs), a tick when every
alert's second step is due (one fenced transaction per escalation: outbox rows, step count,
history), and the roster lookup each step makes per target.

    .venv/bin/python bench/oncall_escalation.py [--alerts 1000]

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from alerts.dispatcher import build_dispatcher
from alerts.escalation import OncallMetrics
from alerts.model import Alert, AlertState
from ioc.metrics import DeliveryMetrics
from service.config import parse_config

T0 = 1_800_000_000.0


def config(url: str) -> object:
    people = [{"id": f"p{i}", "name": f"Cán bộ {i}", "telegram": str(1000 + i),
               "email": f"p{i}@haugiang.gov.vn"} for i in range(5)]
    return parse_config({
        "storage": {"url": url},
        "alerts": {"default_rules": False, "route": {"receiver": "wall"},
                   "receivers": [{"name": "wall"}],
                   "oncall": {
                       "people": people,
                       "teams": [{"name": "vanhanh", "lead": "p4", "rotation": {
                           "start": "2027-01-01", "people": ["p0", "p1", "p2"]}}],
                       "policies": [{"name": "critical", "team": "vanhanh",
                                     "steps": [{"after": "0s", "notify": ["oncall"]},
                                               {"after": "10m", "notify": ["lead"]}]}],
                       "telegram": {"bot_token": "${T}", "api_url": "http://127.0.0.1:9"},
                       "email": {"sender": "ioc@haugiang.gov.vn",
                                 "smarthost": "127.0.0.1:9", "tls": "none"},
                       "link_secret": "${S}"}}}, env={"T": "1:x", "S": "s" * 32})


def firing(count: int) -> list[Alert]:
    return [Alert(labels=(("alertname", "TargetDown"), ("department", f"D{i % 40}"),
                          ("severity", "critical"), ("target", f"t{i}")),
                  annotations=(("summary", f"Hệ thống t{i} không truy cập được"),),
                  state=AlertState.FIRING, value=0.0, active_at=T0, fired_at=T0,
                  last_eval=T0) for i in range(count)]


async def run(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        now = [T0]
        dispatcher = build_dispatcher(config(f"sqlite+aiosqlite:///{tmp}/ioc.db"),
                                      DeliveryMetrics(CollectorRegistry()), lambda: now[0],
                                      OncallMetrics(CollectorRegistry()))
        await dispatcher.open()
        await dispatcher.load_log()
        escalator = dispatcher.escalator
        assert escalator is not None
        alerts = firing(count)

        start = time.perf_counter()
        await dispatcher.update(alerts, T0)
        started = time.perf_counter() - start

        start = time.perf_counter()
        first = await dispatcher.escalate(T0)  # step 1 of every escalation
        first_s = time.perf_counter() - start

        idle = []
        for i in range(20):
            t = T0 + 1 + i
            start = time.perf_counter()
            assert await dispatcher.escalate(t) == 0
            idle.append(time.perf_counter() - start)

        start = time.perf_counter()
        second = await dispatcher.escalate(T0 + 600)
        second_s = time.perf_counter() - start

        start = time.perf_counter()
        lookups = 20_000
        for i in range(lookups):
            escalator.roster.resolve("oncall", "vanhanh", T0 + i * 37.0)
        lookup_us = (time.perf_counter() - start) / lookups * 1e6
        rows = await dispatcher.store.pending_count()
        await dispatcher.stop()

    load = os.getloadavg()
    print(f"alerts firing at once:             {count}")
    print(f"start {count} escalations (1 cycle): {started * 1000:8.1f} ms")
    print(f"tick, step 1 of all ({first} steps):   {first_s * 1000:8.1f} ms "
          f"({first_s / max(first, 1) * 1000:.2f} ms per step)")
    print(f"tick, nothing due (median of 20):  {statistics.median(idle) * 1000:8.3f} ms")
    print(f"tick, step 2 of all ({second} steps):   {second_s * 1000:8.1f} ms "
          f"({second_s / max(second, 1) * 1000:.2f} ms per step)")
    print(f"outbox rows queued:                {rows}")
    print(f"roster lookup (oncall at a time):  {lookup_us:8.2f} µs")
    print(f"load average (1, 5, 15 min):       {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} CPUs, shared with other work")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.alerts))


if __name__ == "__main__":
    main()
