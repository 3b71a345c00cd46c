"""Hostile syslog traffic over UDP and TCP: counted, connections closed, nothing valid lost."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from ioc.store.events import EventQuery
from tests.events.conftest import Arrivals
from tests.events.test_syslog import SSH_FAIL, syslog_app

VALID = f"<38>Oct 11 22:14:15 fw01 sshd[1]: {SSH_FAIL}".encode()

# (TCP bytes, the result counted for them)
TCP_CASES: list[tuple[bytes, str]] = [
    (b"12abc <38>1 - - - - - - x", "bad_frame"),         # digits, then no space
    (b"9" * 40 + b" x", "bad_frame"),                     # a count no message can have
    (b"1" + b"2" * 100_000, "bad_frame"),                 # digits for ever
    (b"0 " + VALID, "bad_frame"),                         # a frame of no bytes
    (b"12\xff\xfe " + VALID, "bad_frame"),
    (b"70000 " + b"x" * 100, "too_large"),                # over max_message_bytes
    (b"\xff\xfe\xfd\n", "invalid"),
    (b"\x00" * 64 + b"\n", "invalid"),
    (b"<38>" + b"x" * 20_000, "too_large"),               # a line without end
]


async def _tcp(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` and read until ioc closes the connection (it must, or the test hangs)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def counted(app, transport: str, result: str) -> float:  # type: ignore[no-untyped-def]
    return app.registry.get_sample_value(
        "ioc_syslog_messages_total", {"transport": transport, "result": result}) or 0.0


async def test_hostile_syslog_is_counted_and_valid_lines_still_become_events(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = syslog_app(tmp_path)
    arrivals = Arrivals()
    app.events.subscribe(arrivals)
    caplog.set_level(logging.WARNING, "ioc.syslog")
    await app.start()
    try:
        assert app.syslog is not None and app.syslog.tcp_address and app.syslog.udp_address
        expected: dict[str, int] = {}
        for data, result in TCP_CASES:
            assert await _tcp(app.syslog.tcp_address, data) == b""
            expected[result] = expected.get(result, 0) + 1
        for result, count in expected.items():
            assert counted(app, "tcp", result) == count, result
        frame_logs = [r for r in caplog.records if "framing errors" in r.message]
        assert len(frame_logs) == 1  # one line for the episode, not one per connection
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for datagram in (b"", b"\xff" * 10, b"<999>1 - - - - - -", b"x" * 9000,
                             b"<38>1 yesterday h a - - - " + SSH_FAIL.encode()):
                udp.sendto(datagram, app.syslog.udp_address)
            udp.sendto(VALID, app.syslog.udp_address)
        framed = VALID.replace(b"fw01", b"fw02")
        await _tcp(app.syslog.tcp_address, b"%d %s" % (len(framed), framed))
        await arrivals.until(2)
        await app.events.flush()
        stored = await app.events.store.query(EventQuery(sources=("syslog",), limit=10))
        assert sorted(s.event.host or "" for s in stored) == ["fw01", "fw02"]
        assert counted(app, "udp", "too_large") == 1
        assert counted(app, "udp", "invalid") >= 3
    finally:
        await app.stop(grace=1.0)
