"""The dns collector against a real local DNS server (UDP and TCP) and the system resolver."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from tests.collectors.probe_support import ProbeHarness

ZONE = {
    ("dichvucong.haugiang.gov.vn.", "A"): ["10.10.0.5", "10.10.0.6"],
    ("haugiang.gov.vn.", "MX"): ["10 mail.haugiang.gov.vn."],
}


def answer(wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    question = query.question[0]
    key = (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
    values = ZONE.get(key)
    if values is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    else:
        response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", key[1],
                                                        values))
    return response.to_wire()


class Udp(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(answer(data), addr)  # type: ignore[attr-defined]


@pytest.fixture
async def dns_server() -> AsyncIterator[int]:
    """A DNS server on UDP and TCP at the same port (retrying if the TCP port is taken)."""
    loop = asyncio.get_running_loop()

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        reply = answer(await reader.readexactly(length))
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
        writer.close()

    for _ in range(50):
        transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            server = await asyncio.start_server(tcp, "127.0.0.1", port)
        except OSError:  # another process holds this TCP port: take another UDP port
            transport.close()
            continue
        break
    else:
        pytest.fail("no port free on both UDP and TCP after 50 tries")
    try:
        yield port
    finally:
        transport.close()
        server.close()


async def test_expected_addresses(probe: ProbeHarness, dns_server: int) -> None:
    block = {"type": "dns", "query": "dichvucong.haugiang.gov.vn",
             "server": f"127.0.0.1:{dns_server}"}
    good = await probe.runner({**block, "name": "a", "expected": ["10.10.0.5"]}).poll()
    hijacked = await probe.runner({**block, "name": "b", "expected": ["10.10.0.9"]}).poll()
    assert good.result.up and good.result.value == 2
    assert hijacked.result.reason == "content" and "10.10.0.9" in hijacked.result.error


async def test_tcp_transport_and_other_record_types(probe: ProbeHarness,
                                                    dns_server: int) -> None:
    outcome = await probe.runner({"type": "dns", "query": "haugiang.gov.vn",
                                  "record_type": "MX", "transport": "tcp",
                                  "server": f"127.0.0.1:{dns_server}",
                                  "expected": ["10 mail.haugiang.gov.vn"]}).poll()
    assert outcome.result.up, outcome.result.error


async def test_nxdomain_is_dns(probe: ProbeHarness, dns_server: int) -> None:
    outcome = await probe.runner({"type": "dns", "query": "khong-co.haugiang.gov.vn",
                                  "server": f"127.0.0.1:{dns_server}"}).poll()
    assert outcome.result.reason == "dns" and "NXDOMAIN" in outcome.result.error


async def test_unreachable_server_fails_as_dns_or_refused(probe: ProbeHarness,
                                                          unused_udp_port: int) -> None:
    outcome = await probe.runner({"type": "dns", "query": "haugiang.gov.vn",
                                  "server": f"127.0.0.1:{unused_udp_port}"},
                                 timeout=0.3).poll()
    assert outcome.result.reason in ("dns", "connect_refused")


async def test_system_resolver(probe: ProbeHarness) -> None:
    good = await probe.runner({"type": "dns", "query": "localhost", "name": "a",
                               "expected": ["127.0.0.1"]}).poll()
    bad = await probe.runner({"type": "dns", "query": "khong-ton-tai.invalid", "name": "b"},
                             timeout=3).poll()
    assert good.result.up, good.result.error
    assert bad.result.reason == "dns"
