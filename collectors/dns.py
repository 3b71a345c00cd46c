"""The ``dns`` collector: does a name resolve, and to what it should.

Without ``server``/``servers`` an A/AAAA query goes through the system resolver
(``getaddrinfo``: the hosts file, nsswitch and resolv.conf, as the province's own systems
resolve); other record types use resolv.conf's servers through dnspython. With ``server`` the
query goes to that server directly; with ``servers`` to each of several (the authoritative
servers of one zone), each checked and reported under its own ``server`` label.

A query to a server behaves like a resolver's: over UDP, on a connected socket (so the kernel
drops datagrams from any other address or port, as Unbound's ``udp-connect`` does), datagrams
that do not parse or do not answer this query (another ID, another question) are ignored and
counted, and the wait goes on until the deadline; a query still unanswered is sent again
after 1 s, 2 s, 4 s… (same ID), as a datagram can be lost; an answer with the TC bit is asked
again over TCP within the same deadline. Reasons: no valid answer by the deadline is
``timeout`` (or ``connect_refused`` when the server's host said nothing listens on the port
and nothing valid came either); a DNS-level answer that is not the records asked for
(NXDOMAIN, SERVFAIL, REFUSED, no record of the type) is ``dns``; records that lack an
``expected`` value are ``content`` (a hijacked or stale record); a TCP answer that is not DNS
is ``protocol_error``.

Every result carries a ``trace``: one line per step, each naming the server and the transport
(which datagrams were ignored and why, the truncation and the retry over TCP, what answered).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Literal, cast

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
from pydantic import Field, field_validator, model_validator

from collectors.probe.errors import classify_os_error
from collectors.probe.phases import PhaseTimer
from ioc import clock
from ioc.collector import CollectorFailure
from ioc.config_types import CollectorConfig, Duration
from ioc.model import CollectResult, Labels, Sample, make_labels

RecordType = Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR"]

# Without `query_timeout` or a target `timeout`, how long one server has to answer: the
# per-server timeout of resolv.conf. A collection.timeout below it still ends the poll first
# (as `timeout` too, only without the per-server report).
DEFAULT_QUERY_TIMEOUT = 5.0
# With only the target's `timeout`, the servers get this share of it, so the collector's own
# report (which server, what was ignored) is ready before the runner's deadline cuts the poll.
TIMEOUT_SHARE = 0.9
# A query over UDP with no answer yet is sent again after 1 s, then 2 s, 4 s…, within its
# deadline: a datagram lost on the way must not fail the check (a resolver retries too).
RETRANSMIT_AFTER = 1.0
# Ignored datagrams described one by one in the trace per query; the rest are only counted.
TRACE_IGNORED = 5
IGNORED_REASONS = ("malformed", "mismatch")
SYSTEM = "system"  # the `server` label of lookups through the system resolver
MAX_SERVERS = 16


def split_server(value: str) -> tuple[str, int]:
    """``10.0.0.53``, ``10.0.0.53:5353``, ``[fd00::53]:53`` or ``fd00::53`` → (address, port)."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    else:
        host, port = text, 53
    host = str(ipaddress.ip_address(host))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be within 1-65535, got {port}")
    return host, port


def server_label(host: str, port: int) -> str:
    """The canonical text of a server: its ``server`` label and its name in traces."""
    shown = f"[{host}]" if ":" in host else host
    if port == 53:
        return host
    return f"{shown}:{port}"


def _check_server(value: str) -> str:
    try:
        split_server(value)
    except ValueError as exc:
        raise ValueError(f"expected an IP address with an optional port such as "
                         f"10.0.0.53 or 10.0.0.53:5353, got {value!r}") from exc
    return value


class DnsConfig(CollectorConfig):
    type: Literal["dns"]
    query: str = Field(min_length=1, max_length=253, description="name to resolve")
    record_type: RecordType = "A"
    server: str | None = Field(None, description="one DNS server to ask")
    servers: list[str] = Field(
        default_factory=list, max_length=MAX_SERVERS,
        description="several DNS servers to ask (a zone's authoritative servers)")
    up_when: Literal["all", "any"] = Field(
        "all", description="with `servers`: the target is up when all of them pass, or any")
    transport: Literal["udp", "tcp"] = "udp"
    query_timeout: Duration | None = Field(
        None, gt=0, description="how long one server has to answer (UDP, then TCP)")
    soa_zone: str | None = Field(
        None, min_length=1, max_length=253,
        description="also ask each server for this zone's SOA and report its serial")
    expected: list[str] = Field(default_factory=list)

    @field_validator("query", "soa_zone")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                dns.name.from_text(value)
            except dns.exception.DNSException as exc:
                raise ValueError(f"not a valid DNS name: {value!r} ({exc})") from None
        return value

    @field_validator("server")
    @classmethod
    def _check_one_server(cls, value: str | None) -> str | None:
        return None if value is None else _check_server(value)

    @field_validator("servers")
    @classmethod
    def _check_servers(cls, value: list[str]) -> list[str]:
        seen: set[tuple[str, int]] = set()
        for text in value:
            address = split_server(_check_server(text))
            if address in seen:
                raise ValueError(f"{text!r} is listed twice")
            seen.add(address)
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> DnsConfig:
        given = self.model_fields_set
        if self.server is not None and self.servers:
            raise ValueError("give either `server` (one) or `servers` (several), not both")
        if "servers" in given and not self.servers:
            raise ValueError("`servers` needs at least one address")
        if "up_when" in given and len(self.servers) < 2:
            raise ValueError("`up_when` applies to two or more `servers`")
        if self.soa_zone is not None and self.server is None and not self.servers:
            raise ValueError("`soa_zone` needs `server` or `servers` (a resolver's cached SOA "
                             "says nothing about the zone's servers)")
        if "transport" in given and self.server is None and not self.servers:
            raise ValueError("`transport` applies to queries to `server` or `servers`")
        if (self.query_timeout is not None and self.timeout is not None
                and self.query_timeout >= self.timeout):
            raise ValueError(f"query_timeout ({self.query_timeout:g}s) must be shorter than "
                             f"the target's timeout ({self.timeout:g}s)")
        return self

    @property
    def effective_query_timeout(self) -> float:
        if self.query_timeout is not None:
            return self.query_timeout
        if self.timeout is not None:
            return self.timeout * TIMEOUT_SHARE
        return DEFAULT_QUERY_TIMEOUT


def normalize_value(text: str) -> str:
    """Compare names without the trailing dot and case, addresses in canonical form."""
    value = text.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


# --------------------------------------------------------------------------------------------
# Reading answers (pure)


def answer_values(response: dns.message.Message, query: str, record_type: str) -> list[str]:
    """The records of ``record_type`` an answer gives for the name asked, following its CNAME
    chain as a resolver does (records of other names in the answer section are not the
    answer), or the DNS-level failure it stands for."""
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise CollectorFailure("dns", f"{query} does not exist (NXDOMAIN)")
    if rcode != dns.rcode.NOERROR:
        raise CollectorFailure("dns", f"server answered {dns.rcode.to_text(rcode)} for {query}")
    try:
        # dnspython parses an answer to a query into a QueryMessage (typed as its base class)
        chain = cast(dns.message.QueryMessage, response).resolve_chaining()
    except dns.message.ChainTooLong as exc:
        raise CollectorFailure("dns", f"the CNAME chain of {query} is too long") from exc
    except dns.exception.DNSException as exc:
        raise CollectorFailure("protocol_error", f"bad DNS answer for {query}: {exc}") from exc
    if chain.answer is None:
        raise CollectorFailure("dns", f"{query} has no {record_type} record")
    return [rdata.to_text() for rdata in chain.answer]


def soa_serial(response: dns.message.Message, zone: str) -> int:
    """The zone's SOA serial from an SOA answer (or, for a name below the apex, the SOA a
    server puts in the authority section of its empty answer)."""
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise CollectorFailure("dns", f"server answered {dns.rcode.to_text(rcode)} for the "
                                      f"SOA of {zone}")
    name = dns.name.from_text(zone)
    found = [rrset for rrset in response.answer if rrset.name == name] + \
        [rrset for rrset in response.authority if name.is_subdomain(rrset.name)]
    for rrset in found:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset) > 0:
            return int(rrset[0].serial)
    raise CollectorFailure("dns", f"{zone} has no SOA record (not authoritative?)")


def missing_expected(expected: set[str], values: list[str]) -> list[str]:
    return sorted(expected - {normalize_value(v) for v in values})


# --------------------------------------------------------------------------------------------
# One query to one server


@dataclass
class Exchange:
    """One query to one server: what it ignored, how it went, and what answered.

    Kept outside the deadline's scope so that a query cut short by the deadline still reports
    what it saw.
    """

    server: str
    what: str  # "dichvucong.haugiang.gov.vn. A"
    trace: list[str] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    response: dns.message.Message | None = None
    failure: CollectorFailure | None = None
    refused: bool = False  # the server's host said nothing listens (ICMP port unreachable)
    current: str = "udp"  # the transport in use, then the one that answered

    def note(self, transport: str, text: str) -> None:
        self.trace.append(f"{self.server} {transport}: {text}")

    def ignore(self, reason: str, text: str) -> None:
        self.ignored[reason] += 1
        if sum(self.ignored.values()) <= TRACE_IGNORED:
            self.note("udp", f"ignored {text}")

    def end_of_wait(self, seconds: float) -> CollectorFailure:
        """The failure of a query that had no valid answer when its deadline came."""
        total = sum(self.ignored.values())
        if total > TRACE_IGNORED:
            self.note("udp", f"ignored {total - TRACE_IGNORED} more datagrams")
        if self.refused:
            return CollectorFailure("connect_refused", f"nothing listens on {self.server} "
                                    f"(port unreachable) and no answer came within {seconds:g}s")
        ignored = f" ({total} datagrams ignored)" if total else ""
        return CollectorFailure("timeout", f"no answer to {self.what} from {self.server} "
                                           f"within {seconds:g}s{ignored}")


class UdpAnswer(asyncio.DatagramProtocol):
    """Receives the datagrams of one query and keeps the first that answers it.

    Written on asyncio's datagram protocol rather than with ``dns.asyncquery.udp``: dnspython
    can ignore unexpected datagrams (``ignore_unexpected``, ``ignore_errors``) but neither
    counts nor says what it ignored, and it ends the query at a port-unreachable error that an
    off-path sender could forge. Parsing and matching are dnspython's.
    """

    def __init__(self, query: dns.message.Message, exchange: Exchange,
                 answered: asyncio.Future[tuple[dns.message.Message, bool]]) -> None:
        self.query = query
        self.exchange = exchange
        self.answered = answered

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.answered.done():
            return
        truncated = False
        try:
            message = dns.message.from_wire(data, raise_on_truncation=True)
        except dns.message.Truncated as exc:
            message, truncated = exc.message(), True
        except Exception as exc:  # from_wire raises many kinds on junk; all mean "not DNS"
            text = str(exc) or type(exc).__name__
            self.exchange.ignore("malformed", f"{len(data)} bytes that do not parse ({text})")
            return
        try:
            answers = self.query.is_response(message)
        except Exception:  # an exception here would close the transport: junk, not a bug
            answers = False
        if not answers:
            self.exchange.ignore("mismatch", f"a message with ID {message.id} that does not "
                                             f"answer the query (ID {self.query.id}, "
                                             f"{self.exchange.what})")
            return
        self.answered.set_result((message, truncated))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error on the connected socket: remembered, but the wait goes on, as a forged
        # one must not end a query the server would have answered.
        if isinstance(exc, ConnectionRefusedError) and not self.exchange.refused:
            self.exchange.refused = True
            self.exchange.note("udp", "port unreachable (ICMP); still waiting")


async def ask(exchange: Exchange, query: dns.message.Message, host: str, port: int,
              transport: str) -> None:
    """Ask one server one query, over UDP with the retry over TCP on TC, or over TCP only.

    Sets ``exchange.response`` or ``exchange.failure``; the caller's deadline bounds it all.
    """
    exchange.current = transport
    if transport == "udp":
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[tuple[dns.message.Message, bool]] = loop.create_future()
        try:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpAnswer(query, exchange, answered), remote_addr=(host, port))
        except OSError as exc:
            exchange.failure = classify_os_error(exc)
            exchange.note("udp", f"cannot send: {exc}")
            return
        try:
            wire, wait, sent = query.to_wire(), RETRANSMIT_AFTER, 1
            exchange.note("udp", f"query {exchange.what} (ID {query.id})")
            udp.sendto(wire)
            while not (await asyncio.wait({answered}, timeout=wait))[0]:
                sent += 1
                exchange.note("udp", f"no answer yet; sending the query again ({sent})")
                udp.sendto(wire)
                wait *= 2
            response, truncated = answered.result()
        finally:
            udp.close()
        if not truncated:
            exchange.response = response
            return
        exchange.note("udp", "answer truncated (TC); asking again over tcp")
    exchange.current = "tcp"
    exchange.note("tcp", f"query {exchange.what} (ID {query.id})")
    try:
        exchange.response = await dns.asyncquery.tcp(query, host, port=port)
    except EOFError:
        exchange.failure = CollectorFailure(
            "protocol_error", f"{exchange.server} closed the TCP connection without answering")
    except dns.exception.DNSException as exc:
        exchange.failure = CollectorFailure("protocol_error", f"bad DNS answer over tcp from "
                                                              f"{exchange.server}: {exc}")
    except ConnectionRefusedError as exc:
        exchange.failure = classify_os_error(exc)
    except ConnectionError as exc:  # reset or aborted once connected: not a DNS server's way
        exchange.failure = CollectorFailure(
            "protocol_error", f"{exchange.server} dropped the TCP connection ({exc})")
    except OSError as exc:
        exchange.failure = classify_os_error(exc)
    if exchange.failure is not None:
        exchange.note("tcp", str(exchange.failure))


# --------------------------------------------------------------------------------------------
# One server's check, and the target's verdict


@dataclass
class ServerCheck:
    """What one server answered, as the target's verdict and samples need it."""

    server: str
    failure: CollectorFailure | None = None
    values: list[str] | None = None  # the records, when an answer with them came
    serial: int | None = None
    seconds: float = 0.0
    ignored: Counter[str] = field(default_factory=Counter)
    trace: list[str] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.failure is None


def verdict(checks: list[ServerCheck], up_when: str) -> CollectResult:
    """The target's verdict from its servers' checks (samples and trace added by the caller).

    With one server its failure is the target's, word for word. With several, ``all``: every
    server must pass, the first failing one (in config order) gives the reason; ``any``: one
    passing server is enough, the others' failures make the target degraded.
    """
    failed = [c for c in checks if c.failure is not None]
    value = next((float(len(c.values)) for c in checks if c.values is not None), None)
    if len(checks) == 1:
        only = checks[0].failure
        if only is None:
            return CollectResult(up=True, value=value)
        return CollectResult(up=False, reason=only.reason, error=str(only), value=value)
    if not failed:
        return CollectResult(up=True, value=value)
    text = "; ".join(f"{c.server}: {c.failure}" for c in failed)
    if up_when == "any" and len(failed) < len(checks):
        return CollectResult(up=True, degraded=True, value=value,
                             error=f"{len(failed)} of {len(checks)} servers failed: {text}")
    first = failed[0].failure
    assert first is not None
    return CollectResult(up=False, reason=first.reason, value=value,
                         error=f"{len(failed)} of {len(checks)} servers failed: {text}")


def serials_disagree(checks: list[ServerCheck]) -> bool | None:
    """Whether the servers that gave a serial gave different ones; None with fewer than two."""
    serials = [c.serial for c in checks if c.serial is not None]
    if len(serials) < 2:
        return None
    return len(set(serials)) > 1


class DnsCollector:
    kind: ClassVar[str] = "dns"
    Config: ClassVar[type[CollectorConfig]] = DnsConfig

    def __init__(self, config: DnsConfig) -> None:
        self.config = config
        texts = [config.server] if config.server else config.servers
        self._servers = [split_server(text) for text in texts]
        self._expected = {normalize_value(v) for v in config.expected}
        self._timeout = config.effective_query_timeout
        self._labels = make_labels(config.labels, target=config.name,
                                   department=config.department, kind=self.kind)

    @property
    def host(self) -> str | None:
        if len(self._servers) == 1:
            return server_label(*self._servers[0])
        return None  # several servers: no one host's concurrency limit applies

    async def collect(self, session: object, now: float) -> CollectResult:
        timer = PhaseTimer()
        timer.enter("dns")
        if self._servers:
            checks = list(await asyncio.gather(*(self._check_server(host, port)
                                                 for host, port in self._servers)))
        else:
            checks = [await self._check_system()]
        timer.finish()
        for check in checks:
            if check.values is not None and check.failure is None:
                missing = missing_expected(self._expected, check.values)
                if missing:
                    got = ", ".join(sorted(check.values))
                    check.failure = CollectorFailure(
                        "content", f"{self.config.query} {self.config.record_type} is {got}; "
                                   f"missing {', '.join(missing)}")
        result = verdict(checks, self.config.up_when)
        trace = [line for check in checks for line in check.trace]
        disagree = serials_disagree(checks)
        if disagree:
            trace.append("SOA serials differ: " + ", ".join(
                f"{c.server} {c.serial}" for c in checks if c.serial is not None))
        samples = self._samples(checks, disagree, timer.durations.get("dns", 0.0), now)
        return CollectResult(up=result.up, samples=samples, reason=result.reason,
                             error=result.error, value=result.value, degraded=result.degraded,
                             trace=tuple(trace))

    async def _check_server(self, host: str, port: int) -> ServerCheck:
        cfg = self.config
        label = server_label(host, port)
        record = dns.message.make_query(cfg.query, dns.rdatatype.from_text(cfg.record_type))
        exchanges = [(Exchange(label, f"{record.question[0].name} {cfg.record_type}"), record)]
        if cfg.soa_zone is not None:
            soa = dns.message.make_query(cfg.soa_zone, dns.rdatatype.SOA)
            exchanges.append((Exchange(label, f"{soa.question[0].name} SOA"), soa))
        started = clock.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.gather(*(ask(ex, query, host, port, cfg.transport)
                                       for ex, query in exchanges))
        except TimeoutError:
            for ex, _ in exchanges:
                if ex.response is None and ex.failure is None:
                    ex.failure = ex.end_of_wait(self._timeout)
                    ex.note(ex.current, str(ex.failure))
        check = ServerCheck(label, seconds=clock.monotonic() - started)
        record_ex = exchanges[0][0]
        check.failure = record_ex.failure
        if record_ex.response is not None:
            try:
                check.values = answer_values(record_ex.response, cfg.query, cfg.record_type)
                record_ex.note(record_ex.current, f"answered {', '.join(sorted(check.values))}")
            except CollectorFailure as exc:
                check.failure, check.values = exc, []
                record_ex.note(record_ex.current, f"answered: {exc}")
        if len(exchanges) > 1:
            soa_ex = exchanges[1][0]
            if soa_ex.response is not None:
                try:
                    check.serial = soa_serial(soa_ex.response, str(cfg.soa_zone))
                    soa_ex.note(soa_ex.current, f"answered SOA serial {check.serial}")
                except CollectorFailure as exc:
                    soa_ex.note(soa_ex.current, f"answered: {exc}")
                    check.failure = check.failure or exc
            else:
                check.failure = check.failure or soa_ex.failure
        for ex, _ in exchanges:
            check.ignored.update(ex.ignored)
            check.trace.extend(ex.trace)
        return check

    async def _check_system(self) -> ServerCheck:
        """A lookup through the system resolver (getaddrinfo, or resolv.conf's servers)."""
        cfg = self.config
        check = ServerCheck(SYSTEM)
        started = clock.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                check.values = await self._system_lookup()
        except TimeoutError:
            check.failure = CollectorFailure("timeout", f"{cfg.query} not resolved within "
                                                        f"{self._timeout:g}s")
        except CollectorFailure as exc:
            check.failure = exc
        check.seconds = clock.monotonic() - started
        how = "getaddrinfo" if cfg.record_type in ("A", "AAAA") else "resolv.conf"
        outcome = ", ".join(check.values) if check.failure is None and check.values else \
            str(check.failure)
        check.trace.append(f"{SYSTEM} {how}: {cfg.query} {cfg.record_type}: {outcome}")
        return check

    async def _system_lookup(self) -> list[str]:
        cfg = self.config
        if cfg.record_type in ("A", "AAAA"):
            family = socket.AF_INET if cfg.record_type == "A" else socket.AF_INET6
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    cfg.query, None, family=family, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise CollectorFailure("dns", f"{cfg.query} did not resolve "
                                              f"({exc.strerror})") from exc
            return sorted({str(info[4][0]) for info in infos})
        try:
            resolver = dns.asyncresolver.Resolver()
            answer = await resolver.resolve(cfg.query, cfg.record_type, lifetime=3600)
            return [r.to_text() for r in answer]
        except dns.resolver.NXDOMAIN as exc:
            raise CollectorFailure("dns", f"{cfg.query} does not exist (NXDOMAIN)") from exc
        except dns.resolver.NoAnswer as exc:
            raise CollectorFailure("dns", f"{cfg.query} has no {cfg.record_type} record") \
                from exc
        except dns.resolver.NoNameservers as exc:
            raise CollectorFailure("dns", f"no server answered for {cfg.query}: {exc}") \
                from exc
        except dns.exception.DNSException as exc:
            raise CollectorFailure("protocol_error", f"bad DNS answer: {exc}") from exc
        except OSError as exc:
            raise CollectorFailure("connect_refused", f"DNS server unreachable: {exc}") \
                from exc

    def _samples(self, checks: list[ServerCheck], disagree: bool | None, seconds: float,
                 now: float) -> tuple[Sample, ...]:
        base = self._labels
        samples = [Sample("ioc_probe_phase_duration_seconds", make_labels(base, phase="dns"),
                          seconds, now)]
        for check in checks:
            labels: Labels = make_labels(base, server=check.server)
            samples.append(Sample("ioc_probe_dns_server_up", labels, float(check.up), now))
            samples.append(Sample("ioc_probe_dns_server_duration_seconds", labels,
                                  check.seconds, now))
            if check.values is not None:
                samples.append(Sample("ioc_probe_dns_answer_rrs", labels,
                                      float(len(check.values)), now))
            if check.server != SYSTEM:
                samples.extend(Sample("ioc_probe_dns_ignored_datagrams",
                                      make_labels(labels, reason=reason),
                                      float(check.ignored[reason]), now)
                               for reason in IGNORED_REASONS)
            if check.serial is not None:
                samples.append(Sample("ioc_probe_dns_soa_serial", labels, float(check.serial),
                                      now))
        if disagree is not None:
            samples.append(Sample("ioc_probe_dns_soa_serial_mismatch", base, float(disagree),
                                  now))
        return tuple(samples)


__all__ = ["DnsCollector", "DnsConfig", "answer_values", "soa_serial", "split_server"]
