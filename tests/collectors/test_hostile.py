"""Hostile targets, each a real local server: every one is classified with the right reason
within its timeout plus one second, memory stays bounded, and healthy targets polled
alongside keep their schedule."""

from __future__ import annotations

import asyncio
import gzip
import socket
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors.simulator import hostile as hostile_answers
from ioc.scheduler import Job, Scheduler
from service.app import IocApp
from service.config import parse_config
from tests.collectors.probe_support import (
    ProbeHarness,
    serve,
)
from tests.conftest import PollWatcher, demo_raw, free_port

# ioc runs on uvloop; the probes are checked on asyncio's loop too (tests/conftest.py).
pytestmark = pytest.mark.both_loops

TIMEOUT = 1.0
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start raw asyncio TCP servers (for answers no HTTP framework would send)."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def start(handler: Handler) -> str:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.transport.abort()
                tasks.discard(task)

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"

    yield start
    for task in list(tasks):
        task.cancel()
    for server in servers:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def timed(probe: ProbeHarness, block: dict[str, Any],
                deadline: float = TIMEOUT) -> tuple[str | None, str, float]:
    """Poll once; the verdict must come within the deadline plus one second."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await probe.runner(block, timeout=deadline).poll()
    elapsed = loop.time() - started
    assert elapsed < deadline + 1.0, f"classified after {elapsed:.2f}s"
    return outcome.result.reason, outcome.result.error or "", elapsed


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(3600)


async def dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    while True:
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(1.0)


async def one_gigabyte(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """1 GB announced and streamed lazily (64 KiB at a time, never allocated whole)."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n")
    chunk = b"<p>" + b"a" * (64 * 1024 - 3)
    for _ in range((1 << 30) // len(chunk)):
        writer.write(chunk)
        await writer.drain()


def bomb() -> bytes:
    """64 MiB of spaces gzipped to about 64 KiB."""
    compressor = gzip.compress(b" " * (64 << 20), compresslevel=9)
    return compressor


BOMB = bomb()


async def gzip_bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
                 b"Content-Length: " + str(len(BOMB)).encode() + b"\r\n\r\n" + BOMB)
    await writer.drain()
    await asyncio.sleep(3600)


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    await writer.drain()
    await asyncio.sleep(3600)


async def test_accepts_and_never_answers_is_timeout(probe, raw_server) -> None:
    url = await raw_server(silent)
    reason, error, _ = await timed(probe, {"type": "http", "url": url})
    assert reason == "timeout" and "processing" in error


async def test_drip_feed_hits_the_deadline_for_the_whole_check(probe, raw_server) -> None:
    url = await raw_server(dripping)
    reason, error, elapsed = await timed(probe, {"type": "http", "url": url}, deadline=1.5)
    assert reason == "timeout" and "transfer" in error
    assert elapsed >= 1.5


async def test_one_gigabyte_body_stops_at_max_body_bytes(probe, raw_server) -> None:
    url = await raw_server(one_gigabyte)
    tracemalloc.start()
    try:
        reason, error, _ = await timed(probe, {"type": "http", "url": url})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason == "too_large" and "max_body_bytes 1048576" in error
    assert peak < 16 << 20, f"peak {peak} bytes"


async def test_announced_size_over_the_limit_is_refused_unread(probe, aiohttp_server) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(1 << 30)})
        await response.prepare(request)
        await response.write(b"x" * 1024)
        await asyncio.sleep(3600)
        return response

    url = await serve(aiohttp_server, big)
    reason, error, _ = await timed(probe, {"type": "http", "url": url,
                                           "max_body_bytes": 4096})
    assert reason == "too_large" and "Content-Length" in error


async def test_gzip_bomb_is_capped_after_decompression(probe, raw_server) -> None:
    url = await raw_server(gzip_bomb)
    tracemalloc.start()
    try:
        reason, error, _ = await timed(probe, {"type": "http", "url": url})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason == "too_large" and "decompressed body" in error
    assert peak < 16 << 20, f"peak {peak} bytes"


async def test_small_gzip_body_is_decompressed_and_judged(probe, aiohttp_server) -> None:
    async def zipped(request: web.Request) -> web.Response:
        assert "gzip" in request.headers.get("Accept-Encoding", "")
        return web.Response(body=gzip.compress("Sở Tư pháp — nổ hũ".encode()),
                            headers={"Content-Encoding": "gzip",
                                     "Content-Type": "text/html; charset=utf-8"})

    url = await serve(aiohttp_server, zipped)
    reason, error, _ = await timed(probe, {"type": "http", "url": url})
    assert reason == "content" and "nổ hũ" in error


async def test_endless_redirect_loop(probe, aiohttp_server) -> None:
    async def loop(request: web.Request) -> web.Response:
        n = int(request.query.get("n", "0"))
        raise web.HTTPFound(f"/?n={n + 1}")

    url = await serve(aiohttp_server, loop)
    reason, error, _ = await timed(probe, {"type": "http", "url": url})
    assert reason == "redirect_loop" and "10 redirects" in error
    reason, _, _ = await timed(probe, {"type": "http", "url": url, "name": "three",
                                       "max_redirects": 3})
    assert reason == "redirect_loop"


async def test_not_http_at_all_is_protocol_error(probe, raw_server) -> None:
    url = await raw_server(not_http)
    reason, _, _ = await timed(probe, {"type": "http", "url": url})
    assert reason == "protocol_error"


async def test_closed_port_is_connect_refused(probe, unused_tcp_port) -> None:
    reason, _, _ = await timed(probe, {"type": "http",
                                       "url": f"http://127.0.0.1:{unused_tcp_port}/"})
    assert reason == "connect_refused"


async def test_name_that_does_not_resolve_is_dns(probe) -> None:
    reason, _, _ = await timed(probe, {"type": "http",
                                       "url": "http://khong-ton-tai.haugiang.invalid/"},
                               deadline=3.0)
    assert reason == "dns"


async def test_full_accept_queue_is_connect_timeout(probe) -> None:
    """A listener that never accepts: once its backlog is full the kernel drops SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        await asyncio.sleep(0.05)
        reason, _, _ = await timed(probe, {"type": "http", "url": f"http://127.0.0.1:{port}/"},
                                   deadline=0.5)
        assert reason == "connect_timeout"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_healthy_targets_keep_their_schedule_beside_hostile_ones(
        probe: ProbeHarness, raw_server, aiohttp_server) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="<title>Sở Tư pháp</title>", content_type="text/html")

    healthy = await serve(aiohttp_server, ok)
    hostile = [await raw_server(h) for h in (silent, dripping, one_gigabyte, gzip_bomb,
                                              not_http)]
    runners = [probe.runner({"type": "http", "url": healthy, "name": f"ok-{i}"},
                            timeout=1.0, interval=0.5) for i in range(50)]
    runners += [probe.runner({"type": "http", "url": url, "name": f"bad-{i}"},
                             timeout=1.0, interval=0.5) for i, url in enumerate(hostile)]
    scheduler = Scheduler()
    scheduler.add_jobs([Job(r.name, r.interval, r.poll) for r in runners])
    done = asyncio.Event()
    polls: dict[str, int] = {}

    def count(outcome: Any) -> None:
        polls[outcome.target] = polls.get(outcome.target, 0) + 1
        if all(polls.get(f"ok-{i}", 0) >= 5 for i in range(50)):
            done.set()

    probe.pipeline.add_hook(count)
    scheduler.start()
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await scheduler.shutdown(grace=0.5)
    lag_count = probe.registry.get_sample_value("ioc_scheduler_lag_seconds_count")
    on_time = probe.registry.get_sample_value("ioc_scheduler_lag_seconds_bucket", {"le": "1.0"})
    assert lag_count and on_time is not None
    assert on_time / lag_count >= 0.99
    assert all(probe.board.targets[f"ok-{i}"].up for i in range(50))
    assert all(probe.board.targets[f"bad-{i}"].up is False for i in range(len(hostile)))


# --------------------------------------------------------------------------------------------
# One table of hostile answers (collectors.simulator.hostile), the same verdict from both
# engines: the fresh-connection engine (collectors.probe.wire) and aiohttp (keepalive/proxy).

ENGINES = {"wire": {}, "aiohttp": {"keepalive": True}}
EXPECTED: dict[str, tuple[str | None, str]] = {
    # path: (reason, text the message must contain on both engines)
    "hang": ("timeout", ""),
    "slow-head": ("timeout", ""),
    "endless-line": ("too_large", "(max_header_line_bytes 8190)"),
    "endless-headers": ("too_large", "(max_header_count 100)"),
    "interim-flood": ("too_large", "more than 16 interim (1xx) answers"),
    "header-flood": ("too_large", "(max_header_count 100)"),
    "repeated-header": ("too_large", "(max_header_count 100)"),
    "big-head": ("too_large", "(max_head_bytes 65536)"),
    "long-status": ("too_large", "(max_header_line_bytes 8190)"),
    "bad-chunking": ("protocol_error", ""),
    "short-body": ("protocol_error", ""),
    "drip-body": ("timeout", ""),
    "huge-body": ("too_large", "max_body_bytes 1048576"),
    "gzip-bomb": ("too_large", "decompressed body"),
    "not-http": ("protocol_error", ""),
    "redirect-loop": ("redirect_loop", "10 redirects"),
    "entity-keyword": ("content", "nhà cái"),
    "nul-keyword": ("content", "tài xỉu"),
    "tag-split-keyword": ("content", "nhà cái"),
    "decomposed-keyword": ("content", "lô đề"),
    "unaccented-keyword": ("content", "nha cai"),
    "big-page": (None, ""),
    "ok": (None, ""),
}


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    server = await hostile_answers.start()
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()


def test_the_table_covers_every_hostile_answer() -> None:
    assert set(EXPECTED) == set(hostile_answers.ANSWERS)


@pytest.mark.parametrize("path", sorted(EXPECTED))
async def test_both_engines_give_the_same_verdict(probe: ProbeHarness, hostile: str,
                                                  path: str) -> None:
    reason, wanted = EXPECTED[path]
    seen = {}
    for engine, extra in ENGINES.items():
        got, error, _ = await timed(probe, {"type": "http", "url": hostile + path,
                                            "name": f"{path}-{engine}", **extra})
        seen[engine] = (got, error)
        assert got == reason, f"{engine}: {got} {error}"
        assert wanted in error, f"{engine}: {error}"
    assert len({got for got, _ in seen.values()}) == 1


@pytest.mark.parametrize("engine", sorted(ENGINES))
async def test_limits_are_the_targets_own(probe: ProbeHarness, hostile: str,
                                          engine: str) -> None:
    """Lower limits and a head deadline, configured per target, on both engines."""
    block = {"type": "http", **ENGINES[engine]}
    reason, error, _ = await timed(probe, {**block, "url": hostile + "ok", "name": "few",
                                           "max_header_count": 1})
    assert reason == "too_large" and "(max_header_count 1)" in error
    reason, error, _ = await timed(probe, {**block, "url": hostile + "big-head",
                                           "name": "lines", "max_header_line_bytes": 512})
    assert reason == "too_large" and "(max_header_line_bytes 512)" in error
    reason, error, _ = await timed(probe, {**block, "url": hostile + "big-head",
                                           "name": "bytes", "max_head_bytes": 2048})
    assert reason == "too_large" and "(max_head_bytes 2048)" in error
    reason, error, _ = await timed(probe, {**block, "url": hostile + "slow-head",
                                           "name": "late", "head_timeout": "300ms"})
    assert reason == "timeout" and "head_timeout" in error
    reason, _, _ = await timed(probe, {**block, "url": hostile + "ok", "name": "fine",
                                       "head_timeout": "300ms"})
    assert reason is None


async def test_the_service_answers_while_it_polls_hostile_targets(tmp_path: Path,
                                                                   hostile: str) -> None:
    """A running ioc polls every hostile answer beside a healthy target: /healthz keeps
    answering (loosely bounded here; bench/hostile_targets.py measures it), the healthy
    target stays up, each hostile one is down with its reason, and the loop's lag is on
    /metrics."""
    raw = demo_raw(tmp_path, free_port(), codes=["STP"], interval="500ms")
    # generous: the hostile server shares this test's loop and the machine may be busy
    raw["collection"]["timeout"] = "4s"
    raw["collectors"] += [{"type": "http", "name": f"bad-{path}", "department": "STP",
                           "url": hostile + path}
                          for path, (reason, _) in EXPECTED.items() if reason is not None]
    app = IocApp(parse_config(raw, env={}))
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    slowest = 0.0
    try:
        async with aiohttp.ClientSession() as client:
            loop = asyncio.get_running_loop()
            hostile_names = {f"bad-{p}" for p, (r, _) in EXPECTED.items() if r is not None}

            def all_polled_twice(seen: list[Any]) -> bool:
                counts: dict[str, int] = {}
                for outcome in seen:
                    counts[outcome.target] = counts.get(outcome.target, 0) + 1
                return all(counts.get(name, 0) >= 2 for name in hostile_names)

            waiting = asyncio.create_task(watcher.until(all_polled_twice, limit=60))
            while not waiting.done():
                started_at = loop.time()
                async with client.get(app.url + "/healthz") as response:
                    assert response.status == 200
                slowest = max(slowest, loop.time() - started_at)
                await asyncio.sleep(0.05)
            await waiting
            async with client.get(app.url + "/metrics") as response:
                assert "ioc_event_loop_lag_seconds_bucket" in await response.text()
    finally:
        await app.stop(grace=1.0)
    assert slowest < 1.0, f"/healthz took {slowest:.3f}s"
    targets = app.board.targets
    assert targets["stp-health"].up
    for path, (reason, _) in EXPECTED.items():
        if reason is not None:
            assert targets[f"bad-{path}"].up is False
            assert targets[f"bad-{path}"].reason == reason, path


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("path,word", [("entity-keyword", "nhà cái"),
                                       ("nul-keyword", "tài xỉu"),
                                       ("tag-split-keyword", "nhà cái"),
                                       ("decomposed-keyword", "lô đề"),
                                       ("unaccented-keyword", "nha cai")])
async def test_hidden_gambling_text_raises_a_defacement_event(
        probe: ProbeHarness, hostile: str, engine: str, path: str, word: str) -> None:
    outcome = await probe.runner({"type": "http", "url": hostile + path,
                                  **ENGINES[engine]}).poll()
    (event,) = outcome.events
    assert event.category == "defacement" and event.severity == "critical"
    assert word in event.message
