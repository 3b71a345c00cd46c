"""The fresh-connection HTTP engine (collectors.probe.wire) on the wire: framing, redirects,
headers and DNS caching, each against a raw local server that sends exactly the bytes the case
needs and records what it received."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from collectors.http import HttpCollector
from collectors.probe.phases import PhaseTimer
from collectors.probe.tls import shared_client_context
from collectors.probe.wire import WireClient
from tests.collectors.probe_support import ProbeHarness, collector_config, labels

Reply = Callable[[bytes], bytes]


class RawServer:
    """A TCP server that answers each request with ``reply(request_bytes)`` and closes."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.replies: list[Reply] = []
        self.server: asyncio.Server | None = None

    async def start(self, *replies: Reply) -> str:
        self.replies = list(replies)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
                writer.write(reply(request))
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.port}/"

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[], RawServer]]:
    made: list[RawServer] = []

    def make() -> RawServer:
        made.append(RawServer())
        return made[-1]

    yield make
    for server in made:
        server.close()


def fixed(data: bytes) -> Reply:
    return lambda _request: data


def ok(body: bytes = b"hello", extra: bytes = b"") -> Reply:
    return fixed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body))


async def poll(probe: ProbeHarness, block: dict[str, Any]) -> Any:
    return (await probe.runner({"type": "http", "forbidden_keywords": [], **block},
                               timeout=2.0).poll()).result


async def test_default_targets_use_the_wire_engine_and_proxy_keepalive_do_not() -> None:
    base = {"type": "http", "url": "http://127.0.0.1:1/"}
    assert HttpCollector(collector_config(base))._wire is not None
    assert HttpCollector(collector_config({**base, "keepalive": True}))._wire is None
    assert HttpCollector(collector_config({**base, "proxy": "http://127.0.0.1:2/"}))._wire is None


async def test_request_bytes_carry_host_headers_auth_and_close(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(ok())
    result = await poll(probe, {
        "url": url + "tra cứu?q=hồ sơ&x=1", "bearer_token": "s3cret",
        "headers": {"X-Dept": "STP", "Connection": "keep-alive"}})
    assert result.up, result.error
    head = server.requests[0].decode("latin-1")
    lines = head.split("\r\n")
    assert lines[0] == "GET /tra%20c%E1%BB%A9u?q=h%E1%BB%93%20s%C6%A1&x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "X-Dept: STP" in lines and "User-Agent: ioc" in lines
    assert "Authorization: Bearer s3cret" in lines
    assert "Connection: close" in lines and "Connection: keep-alive" not in lines


async def test_post_sends_its_body_with_a_length(probe: ProbeHarness,
                                                 raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(ok())
    result = await poll(probe, {"url": url, "method": "POST", "body": '{"ping": "Hậu Giang"}'})
    assert result.up
    payload = '{"ping": "Hậu Giang"}'.encode()
    assert server.requests[0].endswith(b"\r\n\r\n" + payload)
    assert b"Content-Length: %d\r\n" % len(payload) in server.requests[0]


async def test_chunked_and_gzip_body_is_reassembled_and_inflated(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    page = "<title>Sở Tư pháp</title> tra cứu hồ sơ".encode()
    packed = gzip.compress(page)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(packed[i:i + 7]), packed[i:i + 7])
                      for i in range(0, len(packed), 7))
    server = raw()
    url = await server.start(fixed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n" + chunks + b"0\r\n\r\n"))
    result = await poll(probe, {"url": url, "body_contains": ["tra cứu hồ sơ"],
                                "expected_title": "Sở Tư pháp"})
    assert result.up, result.error
    assert probe.value("ioc_probe_http_content_length_bytes", labels()) == len(page)


async def test_body_framed_by_close_is_complete(probe: ProbeHarness,
                                                raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(fixed(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                                   b"he thong hoat dong"))
    result = await poll(probe, {"url": url, "body_contains": ["hoat dong"]})
    assert result.up, result.error
    assert probe.value("ioc_probe_http_content_length_bytes", labels()) == 18


async def test_body_cut_short_is_a_protocol_error(probe: ProbeHarness,
                                                  raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten!!"))
    result = await poll(probe, {"url": url})
    assert (result.up, result.reason) == (False, "protocol_error")
    assert "after 10 body bytes" in result.error


async def test_connection_closed_without_an_answer_is_a_protocol_error(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(fixed(b""))
    result = await poll(probe, {"url": url})
    assert (result.up, result.reason) == (False, "protocol_error")
    assert "before any answer" in result.error


async def test_head_ends_at_the_headers_whatever_length_they_declare(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n"))
    result = await poll(probe, {"url": url, "method": "HEAD"})
    assert result.up, result.error
    assert server.requests[0].startswith(b"HEAD / HTTP/1.1\r\n")


async def test_interim_100_continue_is_skipped(probe: ProbeHarness,
                                               raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(fixed(b"HTTP/1.1 100 Continue\r\n\r\n"
                                   b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    result = await poll(probe, {"url": url})
    assert result.up and result.value == 200, result.error


async def test_redirect_after_post_becomes_get_and_307_keeps_the_method(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(
        fixed(b"HTTP/1.1 302 Found\r\nLocation: /a\r\nContent-Length: 0\r\n\r\n"),
        fixed(b"HTTP/1.1 307 Temporary\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n"),
        ok())
    result = await poll(probe, {"url": url, "method": "POST", "body": "x=1"})
    assert result.up, result.error
    firsts = [r.split(b"\r\n", 1)[0] for r in server.requests]
    assert firsts == [b"POST / HTTP/1.1", b"GET /a HTTP/1.1", b"GET /b HTTP/1.1"]
    assert probe.value("ioc_probe_http_redirects", labels()) == 2
    final = [dict(s.labels)["url"] for s in probe.sink.samples
             if s.metric == "ioc_probe_http_final_url_info"]
    assert final == [f"http://127.0.0.1:{server.port}/b"]


async def test_authorization_is_dropped_when_a_redirect_changes_origin(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    other = raw()
    other_url = await other.start(ok())
    first = raw()
    url = await first.start(
        fixed(b"HTTP/1.1 301 Moved\r\nLocation: /same\r\nContent-Length: 0\r\n\r\n"),
        fixed(b"HTTP/1.1 301 Moved\r\nLocation: " + other_url.encode() +
              b"\r\nContent-Length: 0\r\n\r\n"))
    result = await poll(probe, {"url": url, "headers": {"Authorization": "Basic abc"}})
    assert result.up, result.error
    assert all(b"Authorization: Basic abc" in r for r in first.requests)
    assert b"Authorization" not in other.requests[0]


async def test_redirect_to_another_scheme_is_a_protocol_error(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(fixed(b"HTTP/1.1 302 Found\r\nLocation: ftp://files.example/\r\n"
                                   b"Content-Length: 0\r\n\r\n"))
    result = await poll(probe, {"url": url})
    assert (result.up, result.reason) == (False, "protocol_error")
    assert "bad redirect target" in result.error


async def test_max_redirects_zero_reports_the_redirect_itself(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    server = raw()
    url = await server.start(fixed(b"HTTP/1.1 302 Found\r\nLocation: /a\r\n"
                                   b"Content-Length: 0\r\n\r\n"))
    result = await poll(probe, {"url": url, "max_redirects": 0,
                                "expected_status": ["300-399"]})
    assert result.up and result.value == 302
    assert len(server.requests) == 1


class CountingResolver(AbstractResolver):
    """A hosts-file resolver that counts its lookups."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list[ResolveResult]:
        self.lookups += 1
        if host not in self.table:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [ResolveResult(hostname=host, host=self.table[host], port=port,
                              family=socket.AF_INET, proto=0, flags=0)]

    async def close(self) -> None:
        return None


async def test_a_name_is_looked_up_once_a_minute_not_once_a_check(
        raw: Callable[[], RawServer]) -> None:
    server = raw()
    await server.start(ok())
    resolver = CountingResolver({"cong.haugiang.gov.vn": "127.0.0.1"})
    client = WireClient(url=f"http://cong.haugiang.gov.vn:{server.port}/", method="GET",
                        headers={}, body=None, ssl_context=shared_client_context(True),
                        max_redirects=10, max_body_bytes=1 << 20, resolver=resolver)
    for _ in range(3):
        timer = PhaseTimer()
        response = await client.fetch(timer)
        timer.finish()
        assert response.status == 200
    assert resolver.lookups == 1
    assert f"Host: cong.haugiang.gov.vn:{server.port}".encode() in server.requests[0]


async def test_every_address_is_tried_until_one_accepts(
        raw: Callable[[], RawServer]) -> None:
    server = raw()
    await server.start(ok())

    class TwoAddresses(CountingResolver):
        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_UNSPEC
                          ) -> list[ResolveResult]:
            return [ResolveResult(hostname=host, host=address, port=port,
                                  family=socket.AF_INET, proto=0, flags=0)
                    for address in ("127.0.0.2", "127.0.0.1")]

    # 127.0.0.2 is loopback too, but nothing listens there on this port: refused, then next
    client = WireClient(url=f"http://portal.test:{server.port}/", method="GET", headers={},
                        body=None, ssl_context=shared_client_context(True), max_redirects=0,
                        max_body_bytes=1024, resolver=TwoAddresses({}))
    response = await client.fetch(PhaseTimer())
    assert response.status == 200


async def test_shared_tls_context_is_one_object_per_policy() -> None:
    assert shared_client_context(True) is shared_client_context(True)
    assert shared_client_context(False) is not shared_client_context(True)


async def test_a_failed_handshake_leaves_no_unretrieved_outcome(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    """The connection's end is also reported to the exchange; nothing may be left over for
    asyncio to log as 'Future exception was never retrieved'."""
    import gc

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        async def plain_http(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        result = await poll(probe, {"url": f"https://127.0.0.1:{port}/"})
        server.close()
        assert (result.up, result.reason) == (False, "tls")
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not [m for m in reported if "never retrieved" in m], reported


@pytest.mark.both_loops
async def test_checks_cut_short_at_any_point_leave_nothing_behind(
        raw: Callable[[], RawServer]) -> None:
    """Deadlines strike while connecting, writing or reading: each check ends with no outcome
    left for asyncio to report as never retrieved (on both event loops)."""
    import gc

    server = raw()
    await server.start(fixed(b""))  # reads the request, then closes without an answer
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    client = WireClient(url=f"http://127.0.0.1:{server.port}/", method="GET", headers={},
                        body=None, ssl_context=shared_client_context(True), max_redirects=0,
                        max_body_bytes=1024)
    try:
        for delay in range(60):
            task = asyncio.create_task(client.fetch(PhaseTimer()))
            for _ in range(delay % 12):  # cut after 0–11 turns of the loop
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for _ in range(20):
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not [m for m in reported if "never retrieved" in m], reported


# --------------------------------------------------------------------------------------------
# The head's limits (collectors.probe.head) as the wire engine applies them, slice by slice.


async def test_repeated_headers_are_kept_and_joined_once(
        probe: ProbeHarness, raw: Callable[[], RawServer]) -> None:
    cookies = b"".join(b"Set-Cookie: c%d=v\r\n" % n for n in range(60))
    server = raw()
    url = await server.start(ok(b"<title>S</title>", cookies + b"Content-Type: text/html\r\n"
                                                             b"Content-Type: charset=utf-8\r\n"))
    result = await poll(probe, {"url": url, "expected_title": "S"})
    assert result.up, result.error


async def test_a_head_split_anywhere_is_read_whole(probe: ProbeHarness,
                                                   raw: Callable[[], RawServer]) -> None:
    """Lines cut across reads and slices, up to the exact limits, are accepted."""
    line = b"X-Long: " + b"v" * (8190 - 10) + b"\r\n"  # name, ": ", value: 8188 bytes
    many = b"".join(b"X-%d: v\r\n" % n for n in range(98))
    server = raw()
    url = await server.start(ok(b"ok", line + many))
    result = await poll(probe, {"url": url})
    assert result.up, result.error


@pytest.mark.parametrize("answer,limit", [
    # a run of interim answers
    (b"HTTP/1.1 100 Continue\r\n\r\n" * 5000, "more than 16 interim (1xx) answers"),
    # interim answers within the count, whose heads are together too large
    (b"HTTP/1.1 103 Early Hints\r\n" + b"Link: <" + b"l" * 8000 + b">\r\n\r\n" * 1
     + b"HTTP/1.1 103 Early Hints\r\n" + b"".join(
         b"Link: <" + b"l" * 8000 + b">\r\n" for _ in range(9)) + b"\r\n",
     "(max_head_bytes 65536)"),
    # chunked trailers count as headers
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
     + b"".join(b"X-T-%d: v\r\n" % n for n in range(200)) + b"\r\n",
     "(max_header_count 100)"),
    # a header line over the limit, even when it completes within one read
    (b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 8200 + b"\r\nContent-Length: 0\r\n\r\n",
     "(max_header_line_bytes 8190)"),
    # the status line too
    (b"HTTP/1.1 200 " + b"O" * 8200 + b"\r\nContent-Length: 0\r\n\r\n",
     "(max_header_line_bytes 8190)"),
])
async def test_a_head_over_a_limit_is_too_large(probe: ProbeHarness,
                                                raw: Callable[[], RawServer],
                                                answer: bytes, limit: str) -> None:
    server = raw()
    url = await server.start(fixed(answer))
    result = await poll(probe, {"url": url})
    assert (result.up, result.reason) == (False, "too_large"), result.error
    assert limit in result.error


async def test_a_head_dripped_a_byte_at_a_time_is_read(probe: ProbeHarness) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for byte in answer:
            writer.write(bytes([byte]))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    try:
        result = await poll(probe, {"url": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/",
                                    "body_contains": ["ok"]})
    finally:
        server.close()
    assert result.up, result.error
