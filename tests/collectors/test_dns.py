"""The dns collector against real local DNS servers (UDP and TCP) and the system resolver.

Each server is written here on asyncio (a datagram protocol and a stream server on one port)
with dnspython building the messages, and told how to misbehave: junk or forged datagrams
before the answer, answers from another port, truncation, TCP that fails, silence, DNS-level
errors. No test asks a server outside this machine.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from alerts.engine import Evaluator
from alerts.model import AlertState
from alerts.rules import compile_rules, default_rules_text, parse_rule_text
from collectors.dns import DnsCollector, answer_values, soa_serial, split_server
from ioc.cache import SeriesCache
from ioc.collector import CollectorFailure
from ioc.exposition import Exposition
from ioc.metrics import SampleExporter
from ioc.model import Labels
from tests.collectors.probe_support import ProbeHarness, collector_config, labels, samples_of

NAME = "dichvucong.haugiang.gov.vn"
GOOD = ["10.10.0.5", "10.10.0.6"]
ZONE = {
    (f"{NAME}.", "A"): GOOD,
    ("haugiang.gov.vn.", "MX"): ["10 mail.haugiang.gov.vn."],
    ("haugiang.gov.vn.", "SOA"): ["ns1.haugiang.gov.vn. hostmaster.haugiang.gov.vn. "
                                  "{serial} 3600 600 1209600 300"],
}

Reply = Callable[[dns.message.Message], list[bytes]]


def answer(query: dns.message.Message, serial: int = 2026120601) -> dns.message.Message:
    response = dns.message.make_response(query)
    question = query.question[0]
    key = (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
    values = ZONE.get(key)
    if values is None:
        known = any(name == key[0] for name, _ in ZONE)
        response.set_rcode(dns.rcode.NOERROR if known else dns.rcode.NXDOMAIN)
    else:
        response.answer.append(dns.rrset.from_text_list(
            question.name, 300, "IN", key[1], [v.format(serial=serial) for v in values]))
    return response


def good(query: dns.message.Message) -> list[bytes]:
    return [answer(query).to_wire()]


def forged(query: dns.message.Message) -> dns.message.Message:
    """The right question and ID with another address: what a spoofer would send."""
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text_list(query.question[0].name, 300, "IN", "A",
                                                    ["10.6.6.6"]))
    return response


def other_id(query: dns.message.Message) -> list[bytes]:
    response = forged(query)
    response.id = (query.id + 1) % 65536
    return [response.to_wire()]


def other_question(query: dns.message.Message) -> list[bytes]:
    other = dns.message.make_query("khac.haugiang.gov.vn", "A", id=query.id)
    response = dns.message.make_response(other)
    response.answer.append(dns.rrset.from_text_list(other.question[0].name, 300, "IN", "A",
                                                    ["10.6.6.6"]))
    return [response.to_wire()]


def junk(query: dns.message.Message) -> list[bytes]:
    forward_pointer = struct.pack("!HHHHHH", query.id, 0x8180, 1, 0, 0, 0) + b"\xc0\xff"
    return [b"\xff\xff", b"\x00", b"not dns at all", forward_pointer, answer(query).to_wire()[:20]]


def truncated(query: dns.message.Message) -> list[bytes]:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.TC
    return [response.to_wire()]


def rcode(code: dns.rcode.Rcode) -> Reply:
    def reply(query: dns.message.Message) -> list[bytes]:
        response = dns.message.make_response(query)
        response.set_rcode(code)
        return [response.to_wire()]
    return reply


def wrong_address(query: dns.message.Message) -> list[bytes]:
    return [forged(query).to_wire()]


def other_owner(query: dns.message.Message) -> list[bytes]:
    """The address of another name in the answer section: not an answer for the name asked."""
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text_list("haugiang.gov.vn.", 300, "IN", "A",
                                                    GOOD))
    return [response.to_wire()]


def silent(query: dns.message.Message) -> list[bytes]:
    return []


def then(*replies: Reply) -> Reply:
    return lambda query: [wire for reply in replies for wire in reply(query)]


@dataclass
class FakeDns:
    """How one local DNS server behaves, and what it saw."""

    udp: Reply = good
    stray: Reply = silent        # sent first, from another UDP port of this machine
    tcp: str = "answer"          # answer, other_id, close, garbage, silent, refuse
    host: str = "127.0.0.1"
    serial: int = 2026120601
    port: int = 0
    udp_queries: int = 0
    tcp_queries: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ServerUdp(asyncio.DatagramProtocol):
    def __init__(self, fake: FakeDns, stray: asyncio.DatagramTransport) -> None:
        self.fake = fake
        self.stray = stray

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.fake.udp_queries += 1
        query = dns.message.from_wire(data)
        for wire in self.fake.stray(query):
            self.stray.sendto(wire, addr)
        replies = answer_with_serial(self.fake, self.fake.udp)(query)
        for wire in replies:
            self.transport.sendto(wire, addr)  # type: ignore[attr-defined]


def answer_with_serial(fake: FakeDns, reply: Reply) -> Reply:
    if reply is not good:
        return reply
    return lambda query: [answer(query, fake.serial).to_wire()]


async def start(fake: FakeDns) -> list[Any]:
    """UDP and TCP on one free port (another UDP port if its TCP twin is taken)."""
    loop = asyncio.get_running_loop()

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            query = dns.message.from_wire(await reader.readexactly(length))
            fake.tcp_queries += 1
            if fake.tcp == "answer":
                reply = answer(query, fake.serial).to_wire()
                writer.write(struct.pack("!H", len(reply)) + reply)
            elif fake.tcp == "other_id":
                reply = other_id(query)[0]
                writer.write(struct.pack("!H", len(reply)) + reply)
            elif fake.tcp == "garbage":
                writer.write(struct.pack("!H", 5) + b"\xff" * 5)
            elif fake.tcp == "silent":
                await fake.released.wait()
            await writer.drain()
        finally:
            writer.close()

    stray, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                   local_addr=(fake.host, 0))
    for _ in range(50):
        udp, _ = await loop.create_datagram_endpoint(lambda: ServerUdp(fake, stray),
                                                     local_addr=(fake.host, 0))
        fake.port = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(on_tcp, fake.host, fake.port)
        except OSError:  # another process holds this TCP port: take another UDP port
            udp.close()
            continue
        if fake.tcp == "refuse":
            tcp.close()
            await tcp.wait_closed()
        return [stray, udp, tcp]
    pytest.fail("no port free on both UDP and TCP after 50 tries")


async def stop(fake: FakeDns, parts: list[Any]) -> None:
    fake.released.set()
    stray, udp, tcp = parts
    stray.close()
    udp.close()
    tcp.close()
    await tcp.wait_closed()


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Any]]:
    """Start FakeDns servers on demand; all stop at the end of the test."""
    started: list[tuple[FakeDns, list[Any]]] = []

    async def make(**behaviour: Any) -> FakeDns:
        fake = FakeDns(**behaviour)
        started.append((fake, await start(fake)))
        return fake

    yield make
    for fake, parts in started:
        await stop(fake, parts)


@pytest.fixture
async def dns_server() -> AsyncIterator[int]:
    """One well-behaved server's port (UDP and TCP), for tests of the whole service."""
    fake = FakeDns()
    parts = await start(fake)
    yield fake.port
    await stop(fake, parts)


# Servers that answer get plenty of time; a test that waits for a timeout gives 300 ms.
ANSWER_TIME = "1500ms"
SILENCE_TIME = "300ms"


def block(*fakes: FakeDns, **extra: Any) -> dict[str, Any]:
    where: dict[str, Any] = ({"server": fakes[0].address} if len(fakes) == 1
                             else {"servers": [f.address for f in fakes]})
    return {"type": "dns", "query": NAME, "query_timeout": ANSWER_TIME, **where, **extra}


def server_labels(fake: FakeDns, **extra: str) -> Labels:
    return labels("dns", server=fake.address, **extra)


@dataclass(frozen=True)
class Case:
    name: str
    server: dict[str, Any]
    reason: str | None              # None: the target is up
    error: str = ""                 # in the error text
    trace: str = ""                 # in the trace, as the last step of the query
    ignored: tuple[int, int] = (0, 0)  # malformed, mismatch
    config: dict[str, Any] = field(default_factory=dict)


TABLE = [
    Case("plain answer", {}, None, trace="udp: answered 10.10.0.5, 10.10.0.6"),
    Case("junk before the answer", {"udp": then(junk, good)}, None,
         trace="udp: answered 10.10.0.5, 10.10.0.6", ignored=(5, 0)),
    Case("forged answers with another ID before the real one", {"udp": then(other_id, good)},
         None, ignored=(0, 1)),
    Case("an answer to another question before the real one",
         {"udp": then(other_question, good)}, None, ignored=(0, 1)),
    Case("forged answer from another port before the real one",
         {"stray": wrong_address}, None, trace="udp: answered 10.10.0.5, 10.10.0.6"),
    Case("only an answer with another ID", {"udp": other_id}, "timeout",
         error="1 datagrams ignored", ignored=(0, 1)),
    Case("only junk", {"udp": junk}, "timeout", error="5 datagrams ignored", ignored=(5, 0),
         trace="udp: no answer"),
    Case("only an answer from another port", {"udp": silent, "stray": good}, "timeout",
         error="within 0.3s"),
    Case("silent", {"udp": silent}, "timeout", error="no answer to "
         "dichvucong.haugiang.gov.vn. A from 127.0.0.1:"),
    Case("truncated, then TCP answers", {"udp": truncated}, None,
         trace="tcp: answered 10.10.0.5, 10.10.0.6"),
    Case("junk, then truncated, then TCP answers", {"udp": then(junk, truncated)}, None,
         trace="tcp: answered", ignored=(5, 0)),
    Case("truncated with another ID is ignored",
         {"udp": then(lambda q: [other_id(q)[0][:2] + truncated(q)[0][2:]], good)}, None,
         trace="udp: answered", ignored=(0, 1)),
    Case("truncated, then TCP closes", {"udp": truncated, "tcp": "close"}, "protocol_error",
         error="closed the TCP connection"),
    Case("truncated, then TCP answers with another ID", {"udp": truncated, "tcp": "other_id"},
         "protocol_error", error="bad DNS answer over tcp"),
    Case("truncated, then TCP sends garbage", {"udp": truncated, "tcp": "garbage"},
         "protocol_error", error="bad DNS answer over tcp"),
    Case("truncated, then TCP refused", {"udp": truncated, "tcp": "refuse"},
         "connect_refused"),
    Case("truncated, then TCP silent", {"udp": truncated, "tcp": "silent"}, "timeout",
         trace="tcp: no answer"),
    Case("SERVFAIL", {"udp": rcode(dns.rcode.SERVFAIL)}, "dns", error="SERVFAIL"),
    Case("REFUSED", {"udp": rcode(dns.rcode.REFUSED)}, "dns", error="REFUSED"),
    Case("NXDOMAIN", {}, "dns", error="does not exist (NXDOMAIN)",
         config={"query": "khong-co.haugiang.gov.vn"}),
    Case("no record of the type", {}, "dns", error="has no AAAA record",
         config={"record_type": "AAAA"}),
    Case("records of another name only", {"udp": other_owner}, "dns",
         error="has no A record"),
    Case("wrong address", {"udp": wrong_address}, "content", error="missing 10.10.0.5",
         config={"expected": ["10.10.0.5"]}),
    Case("forced TCP", {"udp": silent}, None, trace="tcp: answered 10.10.0.5, 10.10.0.6",
         config={"transport": "tcp"}),
    Case("forced TCP, silent", {"tcp": "silent"}, "timeout", trace="tcp: no answer",
         config={"transport": "tcp"}),
]


@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
async def test_server_behaviour(case: Case, probe: ProbeHarness,
                                servers: Callable[..., Any]) -> None:
    fake = await servers(**case.server)
    wait = SILENCE_TIME if case.reason == "timeout" else ANSWER_TIME
    config = {"expected": GOOD[:1], "query_timeout": wait, **case.config}
    outcome = await probe.runner(block(fake, **config)).poll()
    result = outcome.result
    assert result.reason == case.reason, (result.error, result.trace)
    assert result.up is (case.reason is None)
    assert case.error in (result.error or "")
    assert any(case.trace in line for line in result.trace), result.trace
    ignored = samples_of(outcome, "ioc_probe_dns_ignored_datagrams")
    assert ignored == {server_labels(fake, reason="malformed"): case.ignored[0],
                       server_labels(fake, reason="mismatch"): case.ignored[1]}
    assert samples_of(outcome, "ioc_probe_dns_server_up") == {
        server_labels(fake): float(result.up)}


async def test_ignored_datagrams_are_on_metrics(probe: ProbeHarness,
                                                servers: Callable[..., Any]) -> None:
    fake = await servers(udp=then(junk, other_id, good))
    await probe.runner(block(fake)).poll()
    registry = CollectorRegistry()
    registry.register(SampleExporter(probe.cache))
    body, _ = await Exposition().render(registry)
    text = body.decode()
    def series(metric: str, reason: str = "") -> str:
        why = f'reason="{reason}",' if reason else ""
        return (f'{metric}{{department="STP",kind="dns",{why}server="{fake.address}",'
                f'target="stp-web"}}')

    assert f"{series('ioc_probe_dns_ignored_datagrams', 'malformed')} 5.0" in text, text
    assert f"{series('ioc_probe_dns_ignored_datagrams', 'mismatch')} 1.0" in text
    assert f"{series('ioc_probe_dns_server_up')} 1.0" in text


async def test_forced_tcp_never_asks_over_udp(probe: ProbeHarness,
                                              servers: Callable[..., Any]) -> None:
    fake = await servers()
    outcome = await probe.runner(block(fake, transport="tcp")).poll()
    assert outcome.result.up
    assert (fake.udp_queries, fake.tcp_queries) == (0, 1)


async def test_truncation_retries_over_tcp_once(probe: ProbeHarness,
                                                servers: Callable[..., Any]) -> None:
    fake = await servers(udp=truncated)
    outcome = await probe.runner(block(fake)).poll()
    assert outcome.result.up and outcome.result.value == 2
    assert (fake.udp_queries, fake.tcp_queries) == (1, 1)
    assert [line.split(" ", 1)[1] for line in outcome.result.trace] == [
        f"udp: query {NAME}. A (ID {line_id(outcome.result.trace[0])})",
        "udp: answer truncated (TC); asking again over tcp",
        f"tcp: query {NAME}. A (ID {line_id(outcome.result.trace[0])})",
        "tcp: answered 10.10.0.5, 10.10.0.6",
    ]


def line_id(line: str) -> str:
    return line.rsplit("ID ", 1)[1].rstrip(")")


async def test_a_flood_of_junk_is_counted_and_summed_up_in_the_trace(
        probe: ProbeHarness, servers: Callable[..., Any]) -> None:
    fake = await servers(udp=then(*[junk] * 40, good))
    outcome = await probe.runner(block(fake)).poll()
    assert outcome.result.up, outcome.result.error
    assert samples_of(outcome, "ioc_probe_dns_ignored_datagrams")[
        server_labels(fake, reason="malformed")] == 200
    assert len(outcome.result.trace) < 10


async def test_a_lost_query_is_sent_again(probe: ProbeHarness,
                                          servers: Callable[..., Any]) -> None:
    queries: list[int] = []

    def drop_first(query: dns.message.Message) -> list[bytes]:
        queries.append(query.id)
        return good(query) if len(queries) > 1 else []

    fake = await servers(udp=drop_first)
    outcome = await probe.runner(block(fake, query_timeout="2s", timeout="3s"),
                                 timeout=3.0).poll()
    assert outcome.result.up, outcome.result.trace
    assert len(queries) == 2 and queries[0] == queries[1]
    assert f"{fake.address} udp: no answer yet; sending the query again (2)" in \
        outcome.result.trace


async def test_nothing_listening_is_connect_refused(probe: ProbeHarness,
                                                   unused_udp_port: int) -> None:
    outcome = await probe.runner({"type": "dns", "query": NAME, "query_timeout": SILENCE_TIME,
                                  "server": f"127.0.0.1:{unused_udp_port}"}).poll()
    assert outcome.result.reason == "connect_refused", outcome.result.trace
    assert any("port unreachable" in line for line in outcome.result.trace)


async def test_poll_timeout_before_the_query_timeout_is_timeout(
        probe: ProbeHarness, servers: Callable[..., Any]) -> None:
    fake = await servers(udp=silent)
    runner = probe.runner({"type": "dns", "query": NAME, "server": fake.address},
                          timeout=0.3)
    outcome = await runner.poll()
    assert outcome.result.reason == "timeout"


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_server_over_udp_and_tcp(probe: ProbeHarness,
                                            servers: Callable[..., Any]) -> None:
    fake = await servers(host="::1", udp=then(junk, truncated))
    outcome = await probe.runner(block(fake)).poll()
    assert outcome.result.up, outcome.result.trace
    assert fake.address == f"[::1]:{fake.port}"
    assert outcome.result.trace[-1] == f"[::1]:{fake.port} tcp: answered 10.10.0.5, 10.10.0.6"
    assert samples_of(outcome, "ioc_probe_dns_ignored_datagrams")[
        server_labels(fake, reason="malformed")] == 5


async def test_other_record_types(probe: ProbeHarness, servers: Callable[..., Any]) -> None:
    fake = await servers()
    outcome = await probe.runner(block(fake, query="haugiang.gov.vn", record_type="MX",
                                       expected=["10 mail.haugiang.gov.vn"])).poll()
    assert outcome.result.up, outcome.result.error


# --------------------------------------------------------------------------------------------
# Several servers


async def test_every_server_is_checked_and_labelled(probe: ProbeHarness,
                                                    servers: Callable[..., Any]) -> None:
    first, second = await servers(), await servers(udp=rcode(dns.rcode.SERVFAIL))
    outcome = await probe.runner(block(first, second)).poll()
    result = outcome.result
    assert not result.up and result.reason == "dns"
    assert result.error == f"1 of 2 servers failed: {second.address}: server answered " \
                           f"SERVFAIL for {NAME}"
    assert samples_of(outcome, "ioc_probe_dns_server_up") == {
        server_labels(first): 1.0, server_labels(second): 0.0}
    assert samples_of(outcome, "ioc_probe_dns_answer_rrs") == {
        server_labels(first): 2.0, server_labels(second): 0.0}
    assert {line.split(" ")[0] for line in result.trace} == {first.address, second.address}


async def test_up_when_any_is_degraded_while_one_server_answers(
        probe: ProbeHarness, servers: Callable[..., Any]) -> None:
    first, second = await servers(udp=silent), await servers()
    some = await probe.runner(block(first, second, up_when="any", name="some",
                                    query_timeout=SILENCE_TIME)).poll()
    assert some.result.up and some.result.degraded
    assert some.result.error is not None and f"{first.address}: no answer" in some.result.error
    third = await servers(udp=junk)
    none = await probe.runner(block(first, third, up_when="any", name="none",
                                    query_timeout=SILENCE_TIME)).poll()
    assert not none.result.up and none.result.reason == "timeout"


async def test_a_silent_server_does_not_hide_the_others(probe: ProbeHarness,
                                                        servers: Callable[..., Any]) -> None:
    answering, silent_one = await servers(), await servers(udp=silent, tcp="silent")
    outcome = await probe.runner(block(answering, silent_one, timeout="2s",
                                       query_timeout=SILENCE_TIME),
                                 timeout=2.0).poll()
    assert outcome.result.reason == "timeout"
    assert samples_of(outcome, "ioc_probe_dns_server_up") == {
        server_labels(answering): 1.0, server_labels(silent_one): 0.0}


def soa_block(*fakes: FakeDns) -> dict[str, Any]:
    return block(*fakes, soa_zone="haugiang.gov.vn")


async def test_soa_serial_per_server_and_their_disagreement(
        probe: ProbeHarness, servers: Callable[..., Any]) -> None:
    primary, secondary = await servers(serial=2026120601), await servers(serial=2026113002)
    outcome = await probe.runner(soa_block(primary, secondary)).poll()
    assert outcome.result.up, outcome.result.error  # the records are right on both
    assert samples_of(outcome, "ioc_probe_dns_soa_serial") == {
        server_labels(primary): 2026120601.0, server_labels(secondary): 2026113002.0}
    assert samples_of(outcome, "ioc_probe_dns_soa_serial_mismatch") == {labels("dns"): 1.0}
    assert outcome.result.trace[-1] == (f"SOA serials differ: {primary.address} 2026120601, "
                                        f"{secondary.address} 2026113002")
    secondary.serial = primary.serial
    again = await probe.runner(soa_block(primary, secondary) | {"name": "again"}).poll()
    assert samples_of(again, "ioc_probe_dns_soa_serial_mismatch") == {
        labels("dns", name="again"): 0.0}


async def test_soa_of_a_name_below_the_apex_comes_from_the_authority_section(
        probe: ProbeHarness, servers: Callable[..., Any]) -> None:
    fake = await servers(udp=lambda q: [soa_in_authority(q)])
    outcome = await probe.runner(block(fake, soa_zone=NAME, query="haugiang.gov.vn",
                                       record_type="SOA")).poll()
    assert samples_of(outcome, "ioc_probe_dns_soa_serial") == {server_labels(fake): 7.0}


def soa_in_authority(query: dns.message.Message) -> bytes:
    response = dns.message.make_response(query)
    response.authority.append(dns.rrset.from_text_list(
        "haugiang.gov.vn.", 300, "IN", "SOA", ["ns1. hostmaster. 7 3600 600 1209600 300"]))
    if query.question[0].rdtype == dns.rdatatype.SOA and \
            query.question[0].name == dns.name.from_text("haugiang.gov.vn"):
        response.answer, response.authority = response.authority, []
    return response.to_wire()


async def test_a_server_without_soa_fails_and_the_other_serial_stands_alone(
        probe: ProbeHarness, servers: Callable[..., Any]) -> None:
    good_one = await servers()
    refusing = await servers(udp=lambda q: (rcode(dns.rcode.REFUSED)(q)
                                            if q.question[0].rdtype == dns.rdatatype.SOA
                                            else good(q)))
    outcome = await probe.runner(soa_block(good_one, refusing)).poll()
    assert outcome.result.reason == "dns" and "REFUSED for the SOA" in str(outcome.result.error)
    assert samples_of(outcome, "ioc_probe_dns_soa_serial_mismatch") == {}
    assert list(samples_of(outcome, "ioc_probe_dns_soa_serial")) == [server_labels(good_one)]


async def test_serial_disagreement_pages_after_the_rules_hold_time(
        servers: Callable[..., Any]) -> None:
    """The default rule fires once the serials have disagreed for its `for` (1 h), time
    passed in: the collector polls at stepped `now`, the rule engine evaluates at the same."""
    primary, secondary = await servers(serial=2026120601), await servers(serial=2026113002)
    rules, problems = parse_rule_text(default_rules_text(), "defaults")
    assert not problems
    evaluator = Evaluator(compile_rules(
        [(rule, src) for rule, src in rules if rule.name == "DnsSoaSerialMismatch"]))
    collector = DnsCollector(collector_config(soa_block(primary, secondary)))
    cache = SeriesCache(7200, 1000)
    start = 1_796_500_000.0
    firing_at = []
    for minute in range(0, 91, 5):
        now = start + minute * 60
        if minute == 75:
            secondary.serial = primary.serial  # the transfer caught up
        result = await collector.collect(None, now)
        cache.add(result.samples)
        evaluator.evaluate([cache], now, data_since=start)
        alerts = [a for state in evaluator.states for a in state.alerts.values()
                  if a.state is AlertState.FIRING]
        if alerts:
            firing_at.append(minute)
            assert dict(alerts[0].labels)["target"] == "stp-web"
    assert firing_at == [60, 65, 70]


# --------------------------------------------------------------------------------------------
# Config, answers, the system resolver


@pytest.mark.parametrize(("extra", "message"), [
    ({"server": "127.0.0.1", "servers": ["127.0.0.2"]}, "either `server`"),
    ({"servers": []}, "at least one"),
    ({"servers": ["127.0.0.1", "127.0.0.1:53"]}, "listed twice"),
    ({"servers": ["ns1.haugiang.gov.vn"]}, "expected an IP address"),
    ({"server": "127.0.0.1", "up_when": "any"}, "two or more"),
    ({"soa_zone": "haugiang.gov.vn"}, "`soa_zone` needs"),
    ({"transport": "tcp"}, "`transport` applies"),
    ({"server": "127.0.0.1", "timeout": "2s", "query_timeout": "2s"}, "must be shorter"),
    ({"server": "127.0.0.1", "query_timeout": "0s"}, "greater than zero"),
    ({"servers": [f"10.0.0.{i}" for i in range(17)]}, "at most 16"),
    ({"query": "dichvucong..haugiang.gov.vn"}, "not a valid DNS name"),
    ({"query": "a" * 64 + ".gov.vn"}, "not a valid DNS name"),
    ({"server": "127.0.0.1", "soa_zone": "haugiang..gov.vn"}, "not a valid DNS name"),
])
def test_bad_config_is_refused_with_its_path(extra: dict[str, Any], message: str) -> None:
    from ioc.config import ConfigError

    with pytest.raises((ConfigError, ValidationError)) as info:
        collector_config({"type": "dns", "query": NAME} | extra)
    assert message in str(info.value) and "collectors[0]" in str(info.value)


def test_server_text_forms() -> None:
    assert split_server("10.0.0.53") == ("10.0.0.53", 53)
    assert split_server("[fd00::53]:5353") == ("fd00::53", 5353)
    assert split_server("FD00:0::53") == ("fd00::53", 53)
    collector = DnsCollector(collector_config({"type": "dns", "query": NAME,
                                               "servers": ["[fd00::53]:5353", "10.0.0.53"]}))
    assert collector.host is None
    one = DnsCollector(collector_config({"type": "dns", "query": NAME,
                                         "server": "[fd00::53]:5353"}))
    assert one.host == "[fd00::53]:5353"


def received(message: dns.message.Message) -> dns.message.Message:
    """A message as the collector gets it: through the wire (dnspython indexes it there)."""
    return dns.message.from_wire(message.to_wire())


def test_answer_and_serial_readers() -> None:
    query = dns.message.make_query(NAME, "A")
    assert sorted(answer_values(received(answer(query)), NAME, "A")) == GOOD
    chained = dns.message.make_response(query)
    chained.answer.append(dns.rrset.from_text(f"{NAME}.", 300, "IN", "CNAME", "web.gov.vn."))
    chained.answer.append(dns.rrset.from_text("web.gov.vn.", 300, "IN", "A", "10.10.0.7"))
    chained.answer.append(dns.rrset.from_text("other.gov.vn.", 300, "IN", "A", "10.6.6.6"))
    assert answer_values(received(chained), NAME, "A") == ["10.10.0.7"]
    other_owner = dns.message.make_response(query)
    other_owner.answer.append(dns.rrset.from_text("evil.vn.", 300, "IN", "A", "10.6.6.6"))
    with pytest.raises(CollectorFailure, match="has no A record"):
        answer_values(received(other_owner), NAME, "A")
    soa = answer(dns.message.make_query("haugiang.gov.vn", "SOA"), serial=42)
    assert soa_serial(received(soa), "haugiang.gov.vn") == 42
    with pytest.raises(CollectorFailure, match="no SOA record"):
        soa_serial(received(answer(query)), "haugiang.gov.vn")


async def test_system_resolver(probe: ProbeHarness) -> None:
    good_one = await probe.runner({"type": "dns", "query": "localhost", "name": "a",
                                   "expected": ["127.0.0.1"]}).poll()
    # An IPv4 literal has no IPv6 address: getaddrinfo says so without asking any server.
    bad = await probe.runner({"type": "dns", "query": "127.0.0.1", "record_type": "AAAA",
                              "name": "b"}).poll()
    assert good_one.result.up, good_one.result.error
    assert samples_of(good_one, "ioc_probe_dns_server_up") == {
        labels("dns", name="a", server="system"): 1.0}
    assert good_one.result.trace == ("system getaddrinfo: localhost A: 127.0.0.1",)
    assert bad.result.reason == "dns" and "did not resolve" in str(bad.result.error)
    assert samples_of(bad, "ioc_probe_dns_server_up") == {
        labels("dns", name="b", server="system"): 0.0}
