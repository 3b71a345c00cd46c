"""The ``dns`` collector: does a name resolve, and to what it should.

Without ``server`` an A/AAAA query goes through the system resolver (``getaddrinfo``: the
hosts file, nsswitch and resolv.conf, as the province's own systems resolve); other record
types use resolv.conf's servers through dnspython. With ``server`` the query goes to that
server directly. Expected values that are missing from the answer fail the check with reason
``content`` (a hijacked or stale record), an unknown name with reason ``dns``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import ClassVar, Literal

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
from pydantic import Field, field_validator

from collectors.probe.phases import PhaseTimer
from ioc.collector import CollectorFailure, mark_interrupted_phase
from ioc.config_types import CollectorConfig
from ioc.model import CollectResult, Sample, make_labels

RecordType = Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR"]


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
    ipaddress.ip_address(host)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be within 1-65535, got {port}")
    return host, port


class DnsConfig(CollectorConfig):
    type: Literal["dns"]
    query: str = Field(min_length=1, max_length=253, description="name to resolve")
    record_type: RecordType = "A"
    server: str | None = None
    transport: Literal["udp", "tcp"] = "udp"
    expected: list[str] = Field(default_factory=list)

    @field_validator("server")
    @classmethod
    def _check_server(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                split_server(value)
            except ValueError as exc:
                raise ValueError(f"expected an IP address with an optional port such as "
                                 f"10.0.0.53 or 10.0.0.53:5353, got {value!r}") from exc
        return value


def normalize_value(text: str) -> str:
    """Compare names without the trailing dot and case, addresses in canonical form."""
    value = text.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


class DnsCollector:
    kind: ClassVar[str] = "dns"
    Config: ClassVar[type[CollectorConfig]] = DnsConfig

    def __init__(self, config: DnsConfig) -> None:
        self.config = config
        self._server = split_server(config.server) if config.server else None
        self._expected = {normalize_value(v) for v in config.expected}
        self._labels = make_labels(config.labels, target=config.name,
                                   department=config.department, kind=self.kind)

    @property
    def host(self) -> str | None:
        return self.config.server

    async def collect(self, session: object, now: float) -> CollectResult:
        timer = PhaseTimer()
        timer.enter("dns")
        try:
            answers = await self._lookup()
        except asyncio.CancelledError as exc:
            mark_interrupted_phase(exc, "dns")
            raise
        timer.finish()
        samples = (
            Sample("ioc_probe_phase_duration_seconds", make_labels(self._labels, phase="dns"),
                   timer.durations.get("dns", 0.0), now),
            Sample("ioc_probe_dns_answer_rrs", self._labels, float(len(answers)), now),
        )
        missing = sorted(self._expected - {normalize_value(a) for a in answers})
        if missing:
            got = ", ".join(sorted(answers)) or "nothing"
            return CollectResult(up=False, samples=samples, reason="content",
                                 error=f"{self.config.query} {self.config.record_type} is "
                                       f"{got}; missing {', '.join(missing)}",
                                 value=len(answers))
        return CollectResult(up=True, samples=samples, value=len(answers))

    async def _lookup(self) -> list[str]:
        cfg = self.config
        if self._server is None and cfg.record_type in ("A", "AAAA"):
            return await self._system_lookup()
        try:
            if self._server is None:
                resolver = dns.asyncresolver.Resolver()
                answer = await resolver.resolve(cfg.query, cfg.record_type, lifetime=3600)
                return [r.to_text() for r in answer]
            return await self._direct_lookup(*self._server)
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

    async def _system_lookup(self) -> list[str]:
        cfg = self.config
        family = socket.AF_INET if cfg.record_type == "A" else socket.AF_INET6
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                cfg.query, None, family=family, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise CollectorFailure("dns", f"{cfg.query} did not resolve ({exc.strerror})") \
                from exc
        return sorted({str(info[4][0]) for info in infos})

    async def _direct_lookup(self, address: str, port: int) -> list[str]:
        cfg = self.config
        query = dns.message.make_query(cfg.query, dns.rdatatype.from_text(cfg.record_type))
        if cfg.transport == "tcp":
            response = await dns.asyncquery.tcp(query, address, port=port)
        else:
            response = await dns.asyncquery.udp(query, address, port=port)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            raise CollectorFailure("dns", f"{cfg.query} does not exist (NXDOMAIN)")
        if rcode != dns.rcode.NOERROR:
            raise CollectorFailure("dns", f"server answered {dns.rcode.to_text(rcode)} "
                                          f"for {cfg.query}")
        wanted = dns.rdatatype.from_text(cfg.record_type)
        values = [rdata.to_text() for rrset in response.answer if rrset.rdtype == wanted
                  for rdata in rrset]
        if not values:
            raise CollectorFailure("dns", f"{cfg.query} has no {cfg.record_type} record")
        return values
