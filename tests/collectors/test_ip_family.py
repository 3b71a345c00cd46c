"""``ip_family`` is a preference with fallback (blackbox's preferred_ip_protocol), or with
``ip_family_fallback: false`` a restriction, against real servers on the IPv4 and IPv6
loopbacks.

This machine's ``localhost`` may resolve to one family only, so names resolving to both are
given by a hosts-file-like resolver (a real aiohttp resolver, as aiodns or the system's would
be), and the preference is applied to what it returns by the same code as in production.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from collectors.http import HttpCollector
from collectors.probe.family import prefer_family
from ioc.pipeline import PollOutcome
from tests.collectors.probe_support import ProbeHarness, collector_config

V4, V6 = "127.0.0.1", "::1"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind((V6, 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")


class HostsResolver(AbstractResolver):
    """Names to fixed addresses, in the order given, like /etc/hosts."""

    def __init__(self, hosts: dict[str, list[str]]) -> None:
        self.hosts = hosts

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list[ResolveResult]:
        if host not in self.hosts:
            raise OSError(socket.EAI_NONAME, f"unknown name {host}")
        found = [ResolveResult(hostname=host, host=address, port=port,
                               family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                               proto=0, flags=socket.AI_NUMERICHOST)
                 for address in self.hosts[host]]
        return [r for r in found if family in (socket.AF_UNSPEC, r["family"])]

    async def close(self) -> None:
        return None


RESOLVER = HostsResolver({
    "both-v4-first.haugiang.test": [V4, V6],
    "both-v6-first.haugiang.test": [V6, V4],
    "v4-only.haugiang.test": [V4],
})


@dataclass
class OneFamilyServer:
    """An HTTP server on one loopback; the same port on the other one refuses connections."""

    port: int
    seen: list[str]


@asynccontextmanager
async def one_family_server(address: str) -> AsyncIterator[OneFamilyServer]:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.remote or "")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, address, 0)
    await site.start()
    port = runner.addresses[0][1]
    other = socket.AF_INET if ":" in address else socket.AF_INET6
    # Bound but not listening: nothing else can take the port, and connecting is refused.
    with socket.socket(other, socket.SOCK_STREAM) as blocker:
        blocker.bind((V4 if other == socket.AF_INET else V6, port))
        try:
            yield OneFamilyServer(port, seen)
        finally:
            await runner.cleanup()


@pytest.fixture
async def v6_server() -> AsyncIterator[OneFamilyServer]:
    async with one_family_server(V6) as server:
        yield server


@pytest.fixture
async def v4_server() -> AsyncIterator[OneFamilyServer]:
    async with one_family_server(V4) as server:
        yield server


async def check(probe: ProbeHarness, name: str, url: str, **options: object) -> PollOutcome:
    config = collector_config({"type": "http", "name": name, "url": url, **options})
    return await probe.runner_for(HttpCollector(config, resolver=RESOLVER)).poll()


async def test_ipv6_preferred_reaches_a_server_on_ipv6_only(
        probe: ProbeHarness, v6_server: OneFamilyServer) -> None:
    url = f"http://both-v4-first.haugiang.test:{v6_server.port}/"
    v6 = await check(probe, "v6", url, ip_family="ipv6")
    assert v6.result.up, v6.result.error
    assert v6_server.seen == [V6]
    # Preferring IPv4 tries only the IPv4 address: the server is down *over IPv4*, which is
    # what such a check is for (no fallback on a failed connect).
    v4 = await check(probe, "v4", url, ip_family="ipv4")
    assert v4.result.reason == "connect_refused"
    assert v6_server.seen == [V6]


async def test_ipv4_preferred_reaches_a_server_on_ipv4_only(
        probe: ProbeHarness, v4_server: OneFamilyServer) -> None:
    url = f"http://both-v6-first.haugiang.test:{v4_server.port}/"
    v4 = await check(probe, "v4", url, ip_family="ipv4")
    assert v4.result.up, v4.result.error
    assert v4_server.seen == [V4]
    v6 = await check(probe, "v6", url, ip_family="ipv6")
    assert v6.result.reason == "connect_refused"


async def test_a_name_without_the_preferred_family_falls_back_unless_told_not_to(
        probe: ProbeHarness, v4_server: OneFamilyServer) -> None:
    url = f"http://v4-only.haugiang.test:{v4_server.port}/"
    fallback = await check(probe, "fallback", url, ip_family="ipv6")
    assert fallback.result.up, fallback.result.error
    assert v4_server.seen == [V4]
    strict = await check(probe, "strict", url, ip_family="ipv6", ip_family_fallback=False)
    assert strict.result.reason == "dns"
    assert "no IPv6 address" in (strict.result.error or "")
    assert v4_server.seen == [V4]


def localhost_families() -> set[int]:
    return {info[0] for info in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}


@pytest.fixture
def v4_only_localhost() -> Iterator[None]:
    if localhost_families() != {socket.AF_INET}:
        pytest.skip("localhost resolves to IPv6 here too")
    yield


async def test_system_resolver_fallback_for_http_and_tcp(
        probe: ProbeHarness, v4_server: OneFamilyServer, v4_only_localhost: None) -> None:
    url = f"http://localhost:{v4_server.port}/"
    http = await probe.runner({"type": "http", "name": "h", "url": url,
                               "ip_family": "ipv6"}).poll()
    tcp = await probe.runner({"type": "tcp", "name": "t", "host": "localhost",
                              "port": v4_server.port, "ip_family": "ipv6"}).poll()
    assert http.result.up and tcp.result.up, (http.result.error, tcp.result.error)
    strict_http = await probe.runner({"type": "http", "name": "sh", "url": url,
                                      "ip_family": "ipv6",
                                      "ip_family_fallback": False}).poll()
    strict_tcp = await probe.runner({"type": "tcp", "name": "st", "host": "localhost",
                                     "port": v4_server.port, "ip_family": "ipv6",
                                     "ip_family_fallback": False}).poll()
    assert strict_http.result.reason == "dns" and strict_tcp.result.reason == "dns"
    assert "no IPv6 address" in (strict_tcp.result.error or "")


def test_prefer_family_keeps_resolver_order_within_a_family() -> None:
    found = [(socket.AF_INET6, "2001:db8::1"), (socket.AF_INET, "203.0.113.1"),
             (socket.AF_INET6, "2001:db8::2")]

    def family(item: tuple[int, str]) -> int:
        return item[0]

    assert prefer_family(found, socket.AF_INET6, True, family) == [found[0], found[2]]
    assert prefer_family(found, socket.AF_INET, False, family) == [found[1]]
    assert prefer_family(found, socket.AF_UNSPEC, False, family) == found
    assert prefer_family(found[:1], socket.AF_INET, True, family) == found[:1]
    assert prefer_family(found[:1], socket.AF_INET, False, family) == []
