"""The service's edges under hostile clients: does the room still get its wall?

Starts ``ioc run`` (uvloop, the simulator, SQLite) and fills the events table with 1,000
events of ~10 KB, so ``/api/v1/events?limit=1000`` is a ~10 MB answer. A separate attacker
process then holds, for ``--seconds``:

* 2,000 half-open connections (a request head never finished), spread over 40 loopback
  addresses (50 each, under ``service.max_connections_per_address``), each reopened as soon
  as ``service.header_timeout`` closes it;
* 100 live-stream connections from one address (``wall.max_clients_per_address`` admits 20;
  the rest are refused and retried every second);
* 60 clients from one address asking for ``/api/v1/events?limit=1000`` with a 4 KB receive
  window and never reading (cut off by ``service.write_timeout`` and reopened).

Meanwhile this process plays the room: 20 screens (127.0.0.1) that each load the wall page
and open the stream (first render = page complete + first stream event), hold it 3 s and do
it again; a Prometheus-like scraper (``/metrics`` every second); and a probe of ``/healthz``
every 50 ms. It prints first-render p95, ``/healthz`` p99, scrape durations, ioc's RSS before,
during (peak) and after (``--settle`` s after the attackers left), the refusal counters and the
load average (the machine is shared: read the figures with it).

``service.max_connections`` is raised to 4,096 here: with the default 2,048 the global cap
would (correctly) start refusing everyone once the 2,160 attacker connections are held; the
point is to show the per-address caps and timeouts keeping the room served.

    .venv/bin/python bench/edges.py [--seconds 40] [--settle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness

INGEST = "bench-ingest-token-0123456789"
HALF_OPEN = 2000
HALF_OPEN_ADDRESSES = 40
SSE_FLOOD = 100
NON_READERS = 60
SCREENS = 20


# -- the attacker process ----------------------------------------------------------------------


async def _open(port: int, source: str, rcvbuf: int | None = None
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=4096)


async def _hold(port: int, source: str, request: bytes, rcvbuf: int | None,
                counts: dict[str, int], kind: str, stop: asyncio.Event) -> None:
    """Keep one hostile connection open: send ``request``, reopen when it is closed.

    Half-open and stream connections read until the server closes them (a half-open one
    gets nothing before that). A non-reader never reads, so it cannot see the server's reset
    behind its full window: it is reopened every ``write_timeout`` + 5 s instead.
    """
    while not stop.is_set():
        try:
            reader, writer = await _open(port, source, rcvbuf)
        except OSError:
            counts[kind + "_connect_errors"] = counts.get(kind + "_connect_errors", 0) + 1
            await asyncio.sleep(0.5)
            continue
        counts[kind + "_opened"] = counts.get(kind + "_opened", 0) + 1
        writer.write(request)
        waiting = [asyncio.ensure_future(stop.wait()),
                   asyncio.ensure_future(asyncio.sleep(35) if kind == "slow"
                                         else _read_to_end(reader))]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for task in waiting:
            task.cancel()
        writer.close()
        if kind == "sse" and not stop.is_set():
            await asyncio.sleep(1.0)  # a refused client retries each second


async def _read_to_end(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        return


async def attack(port: int, seconds: float, kinds: str) -> None:
    stop = asyncio.Event()
    counts: dict[str, int] = {}
    tasks = []
    half = b"GET / HTTP/1.1\r\nHost: ioc\r\nUser-Agent: slow\r\nX-Never: "
    for i in range(HALF_OPEN if "half" in kinds else 0):
        source = f"127.0.1.{1 + i % HALF_OPEN_ADDRESSES}"
        tasks.append(asyncio.create_task(_hold(port, source, half, None, counts, "half",
                                               stop)))
    sse = b"GET /api/v1/stream HTTP/1.1\r\nHost: ioc\r\nAccept: text/event-stream\r\n\r\n"
    for _ in range(SSE_FLOOD if "sse" in kinds else 0):
        tasks.append(asyncio.create_task(_hold(port, "127.0.2.1", sse, None, counts, "sse",
                                               stop)))
    big = b"GET /api/v1/events?limit=1000 HTTP/1.1\r\nHost: ioc\r\n\r\n"
    for _ in range(NON_READERS if "slow" in kinds else 0):
        tasks.append(asyncio.create_task(_hold(port, "127.0.3.1", big, 4096, counts, "slow",
                                               stop)))
    print("attacking", flush=True)
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)


# -- the room ----------------------------------------------------------------------------------


async def screen(base: str, until: float, renders: list[float], failures: list[str],
                 source: str) -> None:
    """One wall screen (its own address, as TVs in a room have): load the page, open the
    stream, wait for its first event; repeat."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        while time.monotonic() < until:
            start = time.perf_counter()
            try:
                async with asyncio.timeout(10):
                    await _render(session, base, start, renders, failures)
            except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError,
                    TimeoutError) as exc:
                failures.append(type(exc).__name__)
                await asyncio.sleep(1)


async def _render(session: aiohttp.ClientSession, base: str, start: float,
                  renders: list[float], failures: list[str]) -> None:
    """The page, then the stream's first event: what a screen needs to show the room."""
    async with session.get(base + "/") as resp:
        await resp.read()
        if resp.status != 200:
            failures.append(f"page {resp.status}")
            await asyncio.sleep(1)
            return
    async with session.get(base + "/api/v1/stream") as stream:
        if stream.status != 200:
            failures.append(f"stream {stream.status}")
            await asyncio.sleep(1)
            return
        await stream.content.readline()  # the first event has come
        renders.append(time.perf_counter() - start)
        await asyncio.sleep(3)  # watched for a while, then reloaded


async def probe(base: str, until: float, path: str, every: float,
                durations: list[float], failures: list[str]) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            start = time.perf_counter()
            try:
                async with session.get(base + path) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures.append(f"{path} {resp.status}")
                durations.append(time.perf_counter() - start)
            except (aiohttp.ClientError, OSError) as exc:
                failures.append(f"{path} {type(exc).__name__}")
            await asyncio.sleep(every)


async def warm(base: str, clients: int) -> None:
    async def one(session: aiohttp.ClientSession) -> None:
        async with session.get(base + "/api/v1/events?limit=1000") as resp:
            await resp.read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for _ in range(2):
            await asyncio.gather(*(one(session) for _ in range(clients)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sample_rss(pid: int, until: float, peak: list[float]) -> None:
    while time.monotonic() < until:
        peak.append(rss_mb(pid))
        await asyncio.sleep(0.5)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def push_events(base: str, count: int) -> None:
    message = "Chi tiết sự kiện " + "x" * 9_900
    async with aiohttp.ClientSession() as session:
        for start in range(0, count, 80):
            batch = [{"source": "bench", "id": f"big-{i}", "severity": "high",
                      "category": "intrusion", "title": f"Sự kiện {i}", "message": message,
                      "occurred_at": time.time() - 60 + i / 1000}
                     for i in range(start, min(count, start + 80))]
            async with session.post(base + "/api/v1/events", json=batch,
                                    headers={"Authorization": f"Bearer {INGEST}"}) as resp:
                assert resp.status == 202, await resp.text()
        for _ in range(100):  # until stored
            async with session.get(base + "/api/v1/events?limit=1000&source=bench") as resp:
                if (await resp.json())["count"] >= count:
                    return
            await asyncio.sleep(0.2)


def counters(base: str) -> dict[str, float]:
    text = harness.get(base + "/metrics").decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("ioc_http_connections_rejected_total",
                            "ioc_wall_stream_rejected_total", "ioc_http_connections ")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def room(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ioc-edges-"))
    port, sim_port = harness.free_port(), harness.free_port()
    from collectors.simulator import units

    chosen = units()[:20]
    config = {
        "service": {"listen": f"127.0.0.1:{port}", "max_connections": 4096},
        "storage": {"url": f"sqlite+aiosqlite:///{work / 'ioc.db'}"},
        "collection": {"interval": "15s"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}", "latency_scale": 0},
        "auth": {"tokens": [{"name": "bench", "token": INGEST, "roles": ["ingest"]}]},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in chosen],
        "collectors": [{"type": "http", "name": f"{u.code.lower()}-health",
                        "department": u.code,
                        "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"}
                       for u in chosen],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    log = work / "ioc.log"
    base = f"http://127.0.0.1:{port}"
    ioc = start_ioc(work, log)
    try:
        harness.wait_http(base + "/healthz", ioc, log)
        await push_events(base, 1000)
        print("events pushed", flush=True)
        big = len(harness.get(base + "/api/v1/events?limit=1000"))
        # Warm the caches a normal day fills (SQLite's page cache per pooled connection, the
        # allocator's arenas) with clients that do read: the growth measured below is then
        # what the hostile clients cost, not the first large reads.
        await warm(base, NON_READERS)
        await asyncio.sleep(2)
        before = rss_mb(ioc.pid)
        print(f"load before: {harness.loadavg()}; /api/v1/events?limit=1000 is "
              f"{big / 1e6:.1f} MB; ioc RSS {before:.0f} MB", flush=True)

        # Baseline: the room alone for a few seconds.
        quiet: dict[str, list[Any]] = {"renders": [], "health": [], "fail": []}
        until = time.monotonic() + 8
        await asyncio.gather(
            *(screen(base, until, quiet["renders"], quiet["fail"], f"127.0.4.{i + 1}")
              for i in range(SCREENS)),
            probe(base, until, "/healthz", 0.05, quiet["health"], quiet["fail"]))

        print("room alone measured; attacking", flush=True)
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--attack", str(port), "--seconds", str(args.seconds),
            "--kinds", args.kinds,
            stdout=subprocess.PIPE)
        assert attacker.stdout is not None
        await attacker.stdout.readline()  # "attacking"
        await asyncio.sleep(12)  # past header_timeout: the floods are at their steady state
        during: dict[str, list[Any]] = {"renders": [], "health": [], "scrape": [], "fail": [],
                                        "rss": []}
        until = time.monotonic() + args.seconds - 14
        await asyncio.gather(
            *(screen(base, until, during["renders"], during["fail"], f"127.0.4.{i + 1}")
              for i in range(SCREENS)),
            probe(base, until, "/healthz", 0.05, during["health"], during["fail"]),
            probe(base, until, "/metrics", 1.0, during["scrape"], during["fail"]),
            sample_rss(ioc.pid, until, during["rss"]))
        held = counters(base)
        load_during = harness.loadavg()
        print("attack measured; waiting for the attackers to leave", flush=True)
        attack_counts = (await attacker.stdout.read()).decode()
        await attacker.wait()
        await asyncio.sleep(args.settle)
        after = rss_mb(ioc.pid)
        print(f"load during: {load_during}; after: {harness.loadavg()}")
        print(f"attacker: {attack_counts.strip()}")
        print(f"{'':28}{'alone':>10}{'attacked':>10}")
        print(f"{'first render p50 (ms)':28}{pct(quiet['renders'], .5):10.0f}"
              f"{pct(during['renders'], .5):10.0f}")
        print(f"{'first render p95 (ms)':28}{pct(quiet['renders'], .95):10.0f}"
              f"{pct(during['renders'], .95):10.0f}")
        print(f"{'renders':28}{len(quiet['renders']):10}{len(during['renders']):10}")
        print(f"{'/healthz p50 (ms)':28}{pct(quiet['health'], .5):10.1f}"
              f"{pct(during['health'], .5):10.1f}")
        print(f"{'/healthz p99 (ms)':28}{pct(quiet['health'], .99):10.1f}"
              f"{pct(during['health'], .99):10.1f}")
        print(f"{'/metrics p95 (ms)':28}{'':>10}{pct(during['scrape'], .95):10.0f}")
        print(f"{'failed requests':28}{len(quiet['fail']):10}{len(during['fail']):10}")
        if during["fail"]:
            print("  failures:", sorted(set(during["fail"])))
        print(f"ioc RSS: before {before:.0f} MB, during peak {max(during['rss']):.0f} MB "
              f"(median {statistics.median(during['rss']):.0f}), "
              f"{args.settle:g} s after {after:.0f} MB")
        for name, value in sorted(held.items()):
            print(f"  {name} {value:g}")
    finally:
        ioc.send_signal(signal.SIGTERM)
        ioc.wait(timeout=30)


def start_ioc(work: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "ioc", "run", "-c",
                                 str(work / "config.yaml")], stdout=out, stderr=out,
                                cwd=Path(__file__).resolve().parent.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the attack")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds after the attack before RSS is read again")
    parser.add_argument("--kinds", default="half,sse,slow",
                        help="which hostile clients to run (to see what each one costs)")
    parser.add_argument("--attack", type=int, help=argparse.SUPPRESS)  # the attacker process
    args = parser.parse_args()
    import uvloop

    if args.attack:
        uvloop.run(attack(args.attack, args.seconds, args.kinds))
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        uvloop.run(room(args))


if __name__ == "__main__":
    main()
