"""The tcp collector against real local servers: connect, send/expect, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.collectors.probe_support import ProbeHarness


@pytest.fixture
async def redis_like() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(b"+PONG\r\n" if line.strip() == b"PING" else b"-ERR unknown\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_connect_only(probe: ProbeHarness, redis_like: int) -> None:
    outcome = await probe.runner({"type": "tcp", "host": "127.0.0.1",
                                  "port": redis_like}).poll()
    assert outcome.result.up
    phases = {dict(s.labels)["phase"] for s in outcome.samples
              if s.metric == "ioc_probe_phase_duration_seconds"}
    assert {"dns", "connect"} <= phases


async def test_send_and_expect(probe: ProbeHarness, redis_like: int) -> None:
    block = {"type": "tcp", "host": "localhost", "port": redis_like, "send": "PING\r\n"}
    good = await probe.runner({**block, "name": "a", "expect": r"^\+PONG"}).poll()
    bad = await probe.runner({**block, "name": "b", "send": "HELLO\r\n",
                              "expect": r"^\+PONG"}).poll()
    assert good.result.up
    assert bad.result.reason == "content" and "-ERR unknown" in bad.result.error


async def test_silent_banner_times_out(probe: ProbeHarness) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        outcome = await probe.runner({"type": "tcp", "host": "127.0.0.1", "port": port,
                                      "expect": "^SSH-"}, timeout=0.3).poll()
    finally:
        server.close()
    assert outcome.result.reason == "timeout" and "processing" in outcome.result.error


async def test_closed_port_and_bad_name(probe: ProbeHarness, unused_tcp_port: int) -> None:
    refused = await probe.runner({"type": "tcp", "host": "127.0.0.1", "name": "a",
                                  "port": unused_tcp_port}).poll()
    unknown = await probe.runner({"type": "tcp", "host": "khong-ton-tai.invalid", "name": "b",
                                  "port": 22}, timeout=3).poll()
    assert refused.result.reason == "connect_refused"
    assert unknown.result.reason == "dns"
