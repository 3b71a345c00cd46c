"""The web server's edges against hostile clients, through a running ioc on real sockets:
half-sent heads, connection floods from one address and from many, clients that never read,
stream floods, forged X-Forwarded-* headers. Every case asserts the status or the close,
the counter, and that the service still answers afterwards.

Clients come from distinct loopback addresses (127.0.0.2 …) so per-address caps can be told
apart from global ones; the server listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.app import IocApp
from tests.conftest import demo_config, free_port
from tests.events.conftest import Arrivals
from web.forwarded import TrustedProxies

INGEST = "ingest-token-0123456789"
VIEWER = "viewer-token-0123456789"
OPERATOR = "operator-token-0123456789"
ADMIN = "admin-token-0123456789"
PROXY = "127.0.0.9"
# ``ioc run`` serves on uvloop, whose transports differ from asyncio's: both are checked.
pytestmark = pytest.mark.both_loops


def edge_config(tmp_path: Path, **service: Any) -> Any:
    return demo_config(tmp_path, free_port(), codes=["STP"], interval="5s", extra={
        "service": {"listen": "127.0.0.1:0", "header_timeout": "300ms",
                    "keepalive_timeout": "3s", "write_timeout": "500ms",
                    "write_buffer": 16384, "max_connections": 12,
                    "max_connections_per_address": 4, "trusted_proxies": [f"{PROXY}/32"],
                    **service},
        "wall": {"max_clients": 10, "max_clients_per_address": 2, "heartbeat": "1s",
                 "allowed_networks": ["127.0.0.0/8", "203.0.113.0/24"]},
        "auth": {"max_failures": 2, "tokens": [
            {"name": "ingest-desk", "token": INGEST, "roles": ["ingest"]},
            {"name": "tv", "token": VIEWER, "roles": ["viewer"]},
            {"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]},
            {"name": "admin-desk", "token": ADMIN, "roles": ["admin"]}]},
    })


CHANGED = "connection-changed"


def watch_guard(app: IocApp) -> asyncio.Event:
    """An event set whenever the server releases or cuts off a connection or refuses a stream
    (the guard's own methods, wrapped here), so tests await the server's side of a close."""
    changed = asyncio.Event()
    guard = app.connections
    for name in ("release", "cut"):
        original = getattr(guard, name)

        def wrapped(*args: Any, _original: Any = original) -> Any:
            result = _original(*args)
            changed.set()
            return result
        setattr(guard, name, wrapped)
    stream = app.wall.stream
    unsubscribe = stream.unsubscribe

    def unsubscribed(client: Any) -> None:
        unsubscribe(client)
        changed.set()
    stream.unsubscribe = unsubscribed  # type: ignore[method-assign]
    return changed


@pytest.fixture
async def edge_app(tmp_path: Path) -> AsyncIterator[IocApp]:
    app = IocApp(edge_config(tmp_path))
    app.__dict__[CHANGED] = watch_guard(app)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


def rejected(app: IocApp, reason: str) -> float:
    value = app.registry.get_sample_value("ioc_http_connections_rejected_total",
                                          {"reason": reason})
    return value or 0.0


async def until(app: IocApp, predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait for the server's side of a socket event (a close it has not seen yet)."""
    changed: asyncio.Event = app.__dict__[CHANGED]
    async with asyncio.timeout(limit):
        while not predicate():
            changed.clear()
            await changed.wait()


async def connect(app: IocApp, source: str, *, rcvbuf: int | None = None
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", app.bound_port or 0))
    return await asyncio.open_connection(sock=sock)


async def read_to_end(reader: asyncio.StreamReader, limit: float = 10.0) -> bytes:
    """Everything until the server closes (or resets) the connection."""
    out = b""
    async with asyncio.timeout(limit):
        try:
            while chunk := await reader.read(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


async def healthy(app: IocApp, source: str = "127.0.0.1") -> None:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(app.url + "/healthz") as resp:
        assert resp.status == 200


GET = b"GET /healthz HTTP/1.1\r\nHost: ioc\r\n\r\n"


async def _nothing(writer: asyncio.StreamWriter) -> None:
    return None


async def _half_head(writer: asyncio.StreamWriter) -> None:
    writer.write(b"GET / HTTP/1.1\r\nHost: ioc\r\nX-Half: ")


async def _request_line_only(writer: asyncio.StreamWriter) -> None:
    writer.write(b"GET /api/v1/status HTTP/1.1\r\n")


async def _dribble(writer: asyncio.StreamWriter) -> None:
    """Slowloris: a byte every 50 ms, never finishing (the close ends the loop)."""
    for byte in b"GET / HTTP/1.1\r\nHost: ioc\r\n" + b"X-A: b\r\n" * 1000:
        if writer.is_closing():
            return
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.05)


async def _second_head_half(writer: asyncio.StreamWriter) -> None:
    writer.write(GET + b"GET /healthz HTTP/1.1\r\nHost")


async def _second_head_later(writer: asyncio.StreamWriter) -> None:
    writer.write(GET)
    await writer.drain()
    await asyncio.sleep(0.1)  # the client's pace, not a wait for the server
    writer.write(b"GET /healthz HTTP/1.1\r\nHost")


# A second head sent in the same packet as a whole first request is only bounded by
# service.keepalive_timeout (the parser's leftover is not visible; see web/connections.py).
@pytest.mark.parametrize("send, answered, counted", [
    (_nothing, 0, 1), (_half_head, 0, 1), (_request_line_only, 0, 1), (_dribble, 0, 1),
    (_second_head_later, 1, 1), (_second_head_half, 1, 0),
], ids=["nothing", "half-head", "request-line-only", "slowloris", "second-head-later",
        "pipelined-second-head-half"])
async def test_an_unfinished_request_head_is_closed_and_counted(
        edge_app: IocApp, send: Any, answered: int, counted: int) -> None:
    app = edge_app
    before = rejected(app, "header_timeout")
    reader, writer = await connect(app, "127.0.0.2")
    task = asyncio.create_task(send(writer))
    data = await read_to_end(reader)
    await task
    writer.close()
    assert data.count(b"HTTP/1.1 200") == answered
    assert rejected(app, "header_timeout") == before + counted
    await healthy(app)
    await until(app, lambda: app.connections.open == 0)


async def test_idle_keepalive_connections_are_closed(edge_app: IocApp) -> None:
    app = edge_app
    reader, writer = await connect(app, "127.0.0.2")
    writer.write(GET)
    data = await read_to_end(reader)  # answered, then closed once idle (3 s)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1") == 1
    assert rejected(app, "header_timeout") == 0  # idle after an answer is no head timeout


async def _keepalive(app: IocApp, source: str) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
    """A connection that got one answer and now idles (held open by keep-alive)."""
    reader, writer = await connect(app, source)
    writer.write(GET)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    return reader, writer


async def test_connections_are_capped_per_address_and_in_all(edge_app: IocApp) -> None:
    app = edge_app
    held = [await _keepalive(app, "127.0.0.2") for _ in range(4)]
    reader, writer = await connect(app, "127.0.0.2")
    refusal = await read_to_end(reader)
    writer.close()
    assert refusal.startswith(b"HTTP/1.1 503") and b"max_connections_per_address" in refusal
    assert rejected(app, "max_connections_per_address") == 1
    await healthy(app, "127.0.0.3")  # another address is not affected

    # A trusted proxy carries many clients: it is exempt from the per-address cap.
    held += [await _keepalive(app, PROXY) for _ in range(6)]
    assert app.connections.open == 10
    held += [await _keepalive(app, "127.0.0.4") for _ in range(2)]
    reader, writer = await connect(app, "127.0.0.5")
    refusal = await read_to_end(reader)
    writer.close()
    assert refusal.startswith(b"HTTP/1.1 503") and rejected(app, "max_connections") == 1

    for _, w in held:
        w.close()
    await until(app, lambda: app.connections.open == 0)
    assert app.connections.by_address == {}
    assert app.registry.get_sample_value("ioc_http_connections") == 0
    await healthy(app, "127.0.0.2")  # the freed slots are usable again


async def _push_large_events(app: IocApp, count: int) -> None:
    arrivals = Arrivals()
    app.events.subscribe(arrivals)
    message = "x" * 9_900
    async with aiohttp.ClientSession() as session:
        for start in range(0, count, 80):
            batch = [{"source": "stp-portal", "id": f"big-{i}", "severity": "high",
                      "category": "intrusion", "title": f"Sự kiện {i}", "message": message,
                      "occurred_at": time.time() - 60 + i / 1000}
                     for i in range(start, min(count, start + 80))]
            async with session.post(app.url + "/api/v1/events", json=batch,
                                    headers={"Authorization": f"Bearer {INGEST}"}) as resp:
                assert resp.status == 202, await resp.text()
    await arrivals.until(count)


async def test_a_client_that_does_not_read_is_cut_off_and_the_answer_is_still_whole(
        edge_app: IocApp) -> None:
    app = edge_app
    await _push_large_events(app, 1000)  # ~10 MB as JSON: more than the kernel buffers hold
    async with aiohttp.ClientSession() as session, \
            session.get(app.url + "/api/v1/events?limit=1000") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["count"] == 1000 and len(body["events"]) == 1000
    times = [e["occurred_at"] for e in body["events"]]
    assert times == sorted(times, reverse=True)
    assert len({e["id"] for e in body["events"]}) == 1000

    readers = []
    for source in ("127.0.0.2", "127.0.0.3"):
        reader, writer = await connect(app, source, rcvbuf=4096)
        writer.write(b"GET /api/v1/events?limit=1000 HTTP/1.1\r\nHost: ioc\r\n\r\n")
        readers.append((reader, writer))
    await until(app, lambda: rejected(app, "slow_reader") == 2)
    await until(app, lambda: app.connections.open == 0)
    for _, writer in readers:
        writer.close()
    await healthy(app)


async def test_stream_clients_are_capped_per_address(edge_app: IocApp) -> None:
    app = edge_app
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(src, 0)))
                for src in ("127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3")]
    try:
        statuses = []
        opened = []
        for session in sessions:
            resp = await session.get(app.url + "/api/v1/stream")
            statuses.append(resp.status)
            opened.append(resp)
        assert statuses == [200, 200, 503, 200]
        assert "wall.max_clients_per_address" in (await opened[2].json())["detail"]
        assert app.registry.get_sample_value("ioc_wall_stream_rejected_total") == 1
        for resp in opened:
            resp.close()
        await until(app, lambda: app.wall.stream.client_count == 0)
    finally:
        for session in sessions:
            await session.close()


# -- trusted proxies -------------------------------------------------------------------------

TRUSTED = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize("peer, forwarded_for, client", [
    ("127.0.0.1", [], "127.0.0.1"),                                  # the proxy itself
    ("127.0.0.1", ["203.0.113.5"], "203.0.113.5"),
    ("127.0.0.1", ["198.51.100.7, 203.0.113.5"], "203.0.113.5"),     # forged left part ignored
    ("127.0.0.1", ["203.0.113.5, 10.1.2.3"], "203.0.113.5"),          # a second proxy skipped
    ("127.0.0.1", ["203.0.113.5", "10.1.2.3"], "203.0.113.5"),        # two header lines
    ("127.0.0.1", ["10.9.9.9, 10.1.2.3"], "10.9.9.9"),                # all trusted: leftmost
    ("127.0.0.1", ["not-an-ip, 10.1.2.3"], "10.1.2.3"),               # garbage stops the walk
    ("127.0.0.1", ["garbage"], "127.0.0.1"),
    ("127.0.0.1", [""], "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.5:4711"], "203.0.113.5"),
    ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("127.0.0.1", ["::ffff:203.0.113.5"], "203.0.113.5"),
    ("::ffff:127.0.0.1", ["203.0.113.5"], "203.0.113.5"),             # mapped peer
    ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
    ("192.0.2.1", ["203.0.113.5"], "192.0.2.1"),                      # untrusted peer: ignored
    ("192.0.2.1", ["127.0.0.1"], "192.0.2.1"),
])
def test_the_client_is_the_rightmost_untrusted_hop(peer: str, forwarded_for: list[str],
                                                   client: str) -> None:
    assert TRUSTED.client(peer, forwarded_for) == client


@pytest.mark.parametrize("peer, proto, scheme", [
    ("127.0.0.1", ["https"], "https"), ("127.0.0.1", ["HTTPS"], "https"),
    ("127.0.0.1", ["http, https"], "https"), ("127.0.0.1", ["gopher"], "http"),
    ("127.0.0.1", [], "http"), ("192.0.2.1", ["https"], "http"),
])
def test_the_scheme_is_believed_only_from_a_trusted_proxy(peer: str, proto: list[str],
                                                         scheme: str) -> None:
    assert TRUSTED.scheme(peer, proto, "http") == scheme


async def _get(app: IocApp, source: str, path: str, headers: dict[str, str]
               ) -> aiohttp.ClientResponse:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        resp = await session.get(app.url + path, headers=headers, allow_redirects=False)
        await resp.read()
        return resp


@pytest.mark.parametrize("source, xff, status", [
    (PROXY, "203.0.113.5", 200),                  # an allowed client behind the proxy
    (PROXY, "198.51.100.7", 403),                 # a client outside wall.allowed_networks
    (PROXY, "203.0.113.5, 198.51.100.7", 403),    # the rightmost untrusted hop decides
    (PROXY, "198.51.100.7, 203.0.113.5", 200),    # what the client wrote itself is not read
    ("127.0.0.2", "198.51.100.7", 200),           # not a proxy: its own (allowed) address
], ids=["allowed", "outside", "rightmost", "forged-left", "untrusted-peer"])
async def test_allowed_networks_see_the_real_client(edge_app: IocApp, source: str, xff: str,
                                                    status: int) -> None:
    resp = await _get(edge_app, source, "/", {"X-Forwarded-For": xff})
    assert resp.status == status
    await healthy(edge_app)


async def test_cookies_are_secure_when_the_proxy_says_https(edge_app: IocApp) -> None:
    path = f"/?token={VIEWER}"
    behind = await _get(edge_app, PROXY, path, {"X-Forwarded-Proto": "https",
                                               "X-Forwarded-For": "203.0.113.5"})
    assert behind.status == 303 and "Secure" in behind.headers["Set-Cookie"]
    forged = await _get(edge_app, "127.0.0.2", path, {"X-Forwarded-Proto": "https"})
    assert forged.status == 303 and "Secure" not in forged.headers["Set-Cookie"]
    plain = await _get(edge_app, PROXY, path, {"X-Forwarded-For": "203.0.113.5"})
    assert plain.status == 303 and "Secure" not in plain.headers["Set-Cookie"]


async def test_throttle_and_audit_use_the_real_client(edge_app: IocApp) -> None:
    app = edge_app
    bad = {"Authorization": "Bearer wrong-token-0123456789"}
    statuses = [(await _get(app, PROXY, "/api/v1/status",
                            {**bad, "X-Forwarded-For": "203.0.113.5"})).status
                for _ in range(3)]
    assert statuses == [401, 401, 429]
    other = await _get(app, PROXY, "/api/v1/status", {**bad, "X-Forwarded-For": "203.0.113.6"})
    assert other.status == 401  # another client behind the same proxy keeps its own bucket

    connector = aiohttp.TCPConnector(local_addr=(PROXY, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(app.url + "/api/v1/announcement", json={"text": "Bảo trì"},
                                headers={"Authorization": f"Bearer {OPERATOR}",
                                         "X-Forwarded-For": "203.0.113.8"}) as resp:
            assert resp.status == 200
        async with session.get(app.url + "/api/v1/audit",
                               headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            entries = (await resp.json())["entries"]
    assert [(e["actor"], e["client"]) for e in entries] == [("ca-truc", "203.0.113.8")]


@pytest.mark.parametrize("xff, proto", [
    ("\u202e1.2.3.4".encode(), b"https"), (b"," * 500, b""), (b"1.2.3.4" * 100, b"x"),
    (b"::::", b"HTTP"), (b"300.1.1.1", b"https,https"), (b"%00", b"\t"),
    (b"\xff\xfe1.2.3.4", b"\xffhttps"), (b"1.2.3.4\x00", b"https\x00"),
    (b"1.1.1.1, " * 800, b"https"),
], ids=["rlo", "commas", "long", "colons", "bad-octet", "percent", "non-utf8", "nul",
        "many-hops"])
async def test_hostile_forwarded_headers_never_break_a_request(
        edge_app: IocApp, xff: bytes, proto: bytes) -> None:
    reader, writer = await connect(edge_app, PROXY)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ioc\r\nConnection: close\r\n"
                 b"X-Forwarded-For: " + xff + b"\r\nX-Forwarded-Proto: " + proto + b"\r\n\r\n")
    answer = await read_to_end(reader)
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    assert status in (200, 400), answer[:200]  # answered, or refused as malformed: never 5xx
    await healthy(edge_app)
