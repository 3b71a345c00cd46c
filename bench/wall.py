"""The wall under load: first render with 1,000 targets, a change reaching 50 screens, the
cost of 50 idle screens, the page's weight, and an alert change reaching the screens' alerts
panel (pushed by delivery as it happens; it used to be looked at every second).

The service side runs in this process (the real web app, store and wall feed; no scheduler:
target states are published through the pipeline as polls would). The 50 screens are a
separate process of SSE clients, so the CPU figure is the server's alone (read from
/proc/self/stat) and the latency is measured across processes with the same clock.

    .venv/bin/python bench/wall.py [--targets 1000] [--clients 50] [--idle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.model import Alert, AlertState
from collectors.simulator import units
from ioc import clock
from ioc.model import CollectResult, Sample, make_labels
from ioc.pipeline import PollOutcome
from service.app import IocApp
from service.config import parse_config
from web.app import create_web_app

SCREENS = r"""
import asyncio, json, sys, time
import aiohttp

async def screen(session, url, kind, marker, arrived):
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        event = None
        async for raw in resp.content:
            line = raw.decode().rstrip()
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == kind and marker in line:
                arrived.append(time.time())
                return

async def main(url, count, kind, marker):
    arrived = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(screen(session, url, kind, marker, arrived))
                 for _ in range(count)]
        print("connecting", flush=True)
        await asyncio.gather(*tasks)
    print(json.dumps({"first": min(arrived), "last": max(arrived), "n": len(arrived)}),
          flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
"""


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build(directory: Path, targets: int) -> IocApp:
    depts = units()
    config = parse_config({
        "storage": {"url": f"sqlite+aiosqlite:///{directory / 'ioc.db'}"},
        "service": {"listen": "127.0.0.1:0"},
        "logging": {"level": "warning"},
        "wall": {"max_clients": 200, "max_clients_per_address": 200},
        "departments": [{"code": u.code, "name": u.name} for u in depts],
        "collectors": [{"type": "http", "name": f"target-{i:04d}",
                        "department": depts[i % len(depts)].code,
                        "url": f"http://127.0.0.1:9/{i}"} for i in range(targets)],
    }, env={})
    return IocApp(config)


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
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU sampling")
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--alert-changes", type=int, default=5,
                        help="alert changes timed on their way to the screens")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = build(Path(tmp), args.targets)
        await app.store.open()
        await app.event_store.open()  # the security panel reads the latest events
        await app.wall.open()
        await app.dispatcher.open()  # delivery's tables: an evaluation's result is recorded
        runner = web.AppRunner(create_web_app(app.web, app.wall, app.console), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        now = clock.now()
        for name in app.runners:
            poll(app, name, True, now)
        try:
            await measure(app, base, args)
        finally:
            await runner.cleanup()
            await app.dispatcher.stop()
            await app.wall.aclose()
            await app.event_store.close()
            await app.store.close()


async def measure(app: IocApp, base: str, args: argparse.Namespace) -> None:
    print(f"load average before: {loadavg()}")
    # 1. first render (cold: includes the 24 h availability read), then steady renders
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.get(base + "/") as resp:
            html = await resp.text()
        cold = time.perf_counter() - started
        server: list[float] = []
        total: list[float] = []
        view = app.wall.views[0]
        for _ in range(args.renders):
            started = time.perf_counter()
            now = clock.now()
            doc = app.wall.document(view, now)
            app.wall.render(view, doc, lang="vi", theme="dark", rotate=None, query={})
            server.append(time.perf_counter() - started)
            started = time.perf_counter()
            async with session.get(base + "/") as resp:
                await resp.read()
            total.append(time.perf_counter() - started)
        tiles = len(re.findall(r'class="tile ', html))
        print(f"first render, {args.targets} targets in {tiles} tiles: cold request "
              f"{cold * 1000:.0f} ms; server time median {statistics.median(server) * 1000:.0f}"
              f" ms, max {max(server) * 1000:.0f} ms; request median "
              f"{statistics.median(total) * 1000:.0f} ms")

        # 4. page weight: the page and everything it loads (all four font files, worst case)
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
        css = ""
        weight = len(html.encode())
        for path in dict.fromkeys(assets):
            async with session.get(base + path) as resp:
                body = await resp.read()
            weight += len(body)
            if path.endswith(".css"):
                css = body.decode()
        for font in dict.fromkeys(re.findall(r"url\((/static/fonts/[^)]+)\)", css)):
            if font in assets:
                continue
            async with session.get(base + font) as resp:
                weight += len(await resp.read())
        print(f"page weight: {weight / 1000:.0f} kB (HTML {len(html.encode()) / 1000:.0f} kB,"
              f" script, style and every font file)")

    # 2. a state change reaching N screens; 3. their idle cost
    proc = await screens(app, base, args.clients, "tile", "")
    assert proc.stdout is not None
    try:
        await asyncio.sleep(1.0)  # let the first heartbeats settle
        baseline_cpu, baseline_at = cpu_seconds(), time.monotonic()
        await asyncio.sleep(args.idle)
        busy = (cpu_seconds() - baseline_cpu) / (time.monotonic() - baseline_at)
        print(f"{args.clients} idle screens: server CPU {busy * 100:.2f} % of one core "
              f"over {args.idle:.0f} s (heartbeat {app.config.wall.heartbeat:g} s)")
        target = next(iter(app.runners))
        changed_at = time.time()
        poll(app, target, False, clock.now())
        result = json.loads(await proc.stdout.readline())
        print(f"a tile change reached {result['n']} screens: first after "
              f"{(result['first'] - changed_at) * 1000:.0f} ms, last after "
              f"{(result['last'] - changed_at) * 1000:.0f} ms")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

    # 5. an alert change (an evaluation's result handed to delivery) reaching the screens'
    # alerts panel: delivery tells the wall at once, nothing looks every second
    firsts: list[float] = []
    lasts: list[float] = []
    for n in range(args.alert_changes):
        name = f"BenchAlert{n}"
        proc = await screens(app, base, args.clients, "panel", name)
        assert proc.stdout is not None
        try:
            await asyncio.sleep(0.5)  # every screen past its first deltas
            now = clock.now()
            alert = Alert(labels=make_labels({"alertname": name, "department": "STTTT",
                                              "severity": "critical"}),
                          annotations=(("summary", name),), state=AlertState.FIRING,
                          value=0.0, active_at=now, fired_at=now, last_eval=now)
            changed_at = time.time()
            await app.dispatcher.update([alert], now)
            result = json.loads(await proc.stdout.readline())
            firsts.append(result["first"] - changed_at)
            lasts.append(result["last"] - changed_at)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    print(f"an alert change reached {args.clients} screens' alerts panel "
          f"({args.alert_changes} changes): first after median "
          f"{statistics.median(firsts) * 1000:.0f} ms, last after median "
          f"{statistics.median(lasts) * 1000:.0f} ms, max {max(lasts) * 1000:.0f} ms")
    print(f"load average after: {loadavg()}")


async def screens(app: IocApp, base: str, count: int, kind: str,
                  marker: str) -> asyncio.subprocess.Process:
    """Start ``count`` screens (one process) waiting for a ``kind`` delta holding ``marker``;
    return once all of them are connected."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCREENS, base + "/api/v1/stream", str(count), kind, marker,
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    await proc.stdout.readline()
    for _ in range(600):  # up to 30 s for every screen to connect
        if app.wall.stream.client_count >= count:
            break
        await asyncio.sleep(0.05)
    return proc


if __name__ == "__main__":
    asyncio.run(main())
