"""The public status page under load: 50 services over 1,000 targets, /status at 200 req/s.

The service side runs in this process (the real web app, store, status board and incident
ledger; no scheduler: target states are published through the pipeline as polls would, and
a day of polls every 5 minutes is stored first so the bars have history to read). The load
is a separate process: an open-loop client (wrk-like: raw HTTP/1.1 over 32 keep-alive
connections fed from one schedule) that issues a request every 1/rate seconds, whatever the
previous ones do, asking for gzip as browsers do, and reports each request's latency from
its send to its last byte (and how late the client itself sent, which on a busy machine is
the client's lag, not ioc's). The CPU figure is this process's alone (/proc/self/stat)
over the load, so it is ioc's cost. Goal: p95 under 20 ms.

    .venv/bin/python bench/status_page.py [--targets 1000] [--services 50] [--rate 200]
                                           [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.simulator import units
from ioc import clock
from ioc.model import CollectResult, Sample, make_labels
from ioc.pipeline import PollOutcome
from service.app import IocApp
from service.config import parse_config
from web.app import create_web_app

LOAD = r"""
import asyncio, json, sys, time
from urllib.parse import urlsplit

# A lean open-loop client (wrk-like): keep-alive connections fed from one schedule, a
# request due every 1/rate s; raw HTTP/1.1 so the client's own cost stays small.

async def connection(host, port, path, queue, latencies, lags, statuses):
    reader, writer = await asyncio.open_connection(host, port)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\n"
               f"User-Agent: bench\r\n\r\n").encode()
    while True:
        due = await queue.get()
        if due is None:
            writer.close()
            return
        started = time.perf_counter()
        lags.append(started - due)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1

async def main(url, rate, seconds, connections=32):
    parts = urlsplit(url)
    latencies, lags, statuses = [], [], {}
    queue = asyncio.Queue()
    workers = [asyncio.create_task(connection(parts.hostname, parts.port, parts.path, queue,
                                              latencies, lags, statuses))
               for _ in range(connections)]
    for _ in range(connections):  # warm every connection once
        queue.put_nowait(time.perf_counter())
    while len(latencies) < connections:
        await asyncio.sleep(0.05)
    latencies.clear(); lags.clear(); statuses.clear()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        queue.put_nowait(due)
    while len(latencies) < total:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    latencies.sort(); lags.sort()
    def q(values, p):
        return values[min(len(values) - 1, int(p * len(values)))]
    print(json.dumps({"n": len(latencies), "elapsed": elapsed, "statuses": statuses,
                      "p50": q(latencies, 0.50), "p95": q(latencies, 0.95),
                      "p99": q(latencies, 0.99), "max": latencies[-1],
                      "lag_p99": q(lags, 0.99)}), flush=True)

asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
"""


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build(directory: Path, targets: int, services: int) -> IocApp:
    depts = units()
    names = [f"target-{i:04d}" for i in range(targets)]
    per = max(1, targets // services)
    groups = []
    for g in range(0, services, 10):
        groups.append({"name": {"vi": f"Nhóm {g // 10 + 1}", "en": f"Group {g // 10 + 1}"},
                       "services": [{"slug": f"dich-vu-{s:02d}",
                                     "name": {"vi": f"Dịch vụ {s + 1}", "en": f"Service {s + 1}"},
                                     "targets": names[s * per:(s + 1) * per]}
                                    for s in range(g, min(g + 10, services))]})
    config = parse_config({
        "storage": {"url": f"sqlite+aiosqlite:///{directory / 'ioc.db'}"},
        "service": {"listen": "127.0.0.1:0"},
        "logging": {"level": "warning"},
        "collection": {"interval": "5m", "timeout": "10s"},
        "departments": [{"code": u.code, "name": u.name} for u in depts],
        "collectors": [{"type": "http", "name": name, "department": depts[i % len(depts)].code,
                        "url": f"http://127.0.0.1:9/{i}"} for i, name in enumerate(names)],
        "status_pages": [{
            "slug": "cong-dan", "title": {"vi": "Trạng thái dịch vụ", "en": "Service status"},
            "groups": groups,
            "rate_limit": {"requests": 1_000_000, "per": "1s", "burst": 1_000_000}}],
    }, env={})
    return IocApp(config)


async def seed(app: IocApp, hours: float) -> int:
    """Polls every 5 min over the last ``hours`` for every target, one short outage each."""
    now = clock.now()
    step = 300.0
    count = int(hours * 3600 / step)
    written = 0
    batch: list[Sample] = []
    for i, name in enumerate(app.runners):
        state = app.board.targets[name]
        labels = make_labels(target=name, department=state.department, kind="http")
        for k in range(count):
            ts = now - (count - k) * step
            up = k != (i % count)
            batch.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, ts))
        if len(batch) >= 50_000:
            await app.store.append(batch)
            written += len(batch)
            batch = []
    await app.store.append(batch)
    return written + len(batch)


def poll(app: IocApp, name: str, up: bool, now: float) -> None:
    state = app.board.targets[name]
    labels = make_labels(target=name, department=state.department, kind="http")
    app.pipeline.publish(PollOutcome(
        target=name, kind="http", ts=now, duration=0.05,
        result=CollectResult(up=up, reason=None if up else "timeout"),
        samples=(Sample("ioc_target_up", labels, 1.0 if up else 0.0, now),)))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--history-hours", type=float, default=24.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = build(Path(tmp), args.targets, args.services)
        await app.store.open()
        await app.incidents.open()
        await app.history.open()
        await app.dispatcher.open()
        started = time.perf_counter()
        stored = await seed(app, args.history_hours)
        print(f"seeded {stored} polls ({args.history_hours:g} h every 5 min) in "
              f"{time.perf_counter() - started:.1f} s")
        runner = web.AppRunner(create_web_app(app.web, app.wall, app.console), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        now = clock.now()
        for i, name in enumerate(app.runners):
            poll(app, name, i % 97 != 0, now)  # a few targets down: partial services
        try:
            await measure(app, f"http://127.0.0.1:{port}/status", args)
        finally:
            await runner.cleanup()
            await app.dispatcher.stop()
            await app.history.close()
            await app.incidents.close()
            await app.store.close()


async def measure(app: IocApp, url: str, args: argparse.Namespace) -> None:
    print(f"load average before: {loadavg()}")
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as resp:
            html = await resp.read()
        cold = time.perf_counter() - started
        async with session.get(url) as resp:
            raw = await resp.content.read()
            gzipped = int(resp.headers.get("Content-Length", len(raw)))
    print(f"cold first request (snapshot + {args.targets} targets' 90-day history read): "
          f"{cold * 1000:.0f} ms; page {len(html) / 1000:.0f} kB, "
          f"{gzipped / 1000:.0f} kB gzipped")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOAD, url, str(args.rate), str(args.seconds),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    # keep publishing polls meanwhile, as a running ioc would (a state change a second)
    stop = asyncio.Event()

    async def churn() -> None:
        names = list(app.runners)
        i = 0
        while not stop.is_set():
            poll(app, names[i % len(names)], i % 2 == 0, clock.now())
            i += 1
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    churning = asyncio.create_task(churn())
    cpu_before, wall_before = cpu_seconds(), time.monotonic()
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    line = await proc.stdout.readline()
    cpu = (cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
    stop.set()
    await churning
    await proc.wait()
    result = json.loads(line)
    print(f"{result['n']} requests at {args.rate:g}/s over {result['elapsed']:.1f} s "
          f"(statuses {result['statuses']}): p50 {result['p50'] * 1000:.1f} ms, "
          f"p95 {result['p95'] * 1000:.1f} ms, p99 {result['p99'] * 1000:.1f} ms, "
          f"max {result['max'] * 1000:.1f} ms (client's own send lag p99 "
          f"{result['lag_p99'] * 1000:.1f} ms)")
    print(f"ioc CPU over the load: {cpu * 100:.1f} % of one core")
    print(f"load average after: {loadavg()}")
    verdict = "met" if result["p95"] < 0.020 else "NOT met"
    print(f"goal p95 < 20 ms: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
