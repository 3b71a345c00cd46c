"""The ``tcp`` collector: does a port accept connections, and does it speak as expected.

Connect (optionally TLS), optionally send a line, optionally wait for an answer matching a
regular expression (an SMTP or SSH banner, a Redis ``+PONG``). The deadline is the runner's,
for the whole check; a timeout while connecting is reported as ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from collectors.probe.errors import classify_os_error
from collectors.probe.family import FAMILIES, FAMILY_NAMES, prefer_family
from collectors.probe.phases import PhaseTimer
from collectors.probe.tls import TlsInfo, check_cert_days, shared_client_context, tls_info
from ioc.collector import CollectorFailure, mark_interrupted_phase
from ioc.config_types import CollectorConfig
from ioc.model import CollectResult, Sample, make_labels
from ioc.regex import compile_bytes_pattern


class TcpConfig(CollectorConfig):
    type: Literal["tcp"]
    host: str = Field(min_length=1, description="name or address to connect to")
    port: int = Field(ge=1, le=65535)
    send: str | None = None
    expect: str | None = None
    max_read_bytes: int = Field(default=64 * 1024, ge=1, le=1 << 24)
    tls: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    server_name: str | None = None
    cert_min_days: float | None = Field(default=None, ge=0)
    ip_family: Literal["any", "ipv4", "ipv6"] = Field(
        "any", description="preferred address family; any: the resolver's first address")
    ip_family_fallback: bool = Field(
        True, description="use the other family when the name has no preferred address")

    @field_validator("expect")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            compile_bytes_pattern(value)  # RE2: linear time whatever the pattern
        return value


class TcpCollector:
    kind: ClassVar[str] = "tcp"
    Config: ClassVar[type[CollectorConfig]] = TcpConfig

    def __init__(self, config: TcpConfig) -> None:
        self.config = config
        self._expect = compile_bytes_pattern(config.expect) if config.expect else None
        self._send = config.send.encode() if config.send is not None else None
        self._ssl = shared_client_context(config.verify_tls, config.ca_file) if config.tls else None
        self._labels = make_labels(config.labels, target=config.name,
                                   department=config.department, kind=self.kind)

    @property
    def host(self) -> str | None:
        return f"{self.config.host}:{self.config.port}"

    async def collect(self, session: object, now: float) -> CollectResult:
        cfg = self.config
        timer = PhaseTimer(tls=cfg.tls)
        writer: asyncio.StreamWriter | None = None
        try:
            timer.enter("dns")
            address = await self._resolve()
            timer.enter("connect")
            try:
                reader, writer = await asyncio.open_connection(address, cfg.port)
            except OSError as exc:
                raise classify_os_error(exc) from exc
            tls: TlsInfo | None = None
            if self._ssl is not None:
                timer.enter("tls")
                try:
                    await writer.start_tls(self._ssl, server_hostname=cfg.server_name or cfg.host)
                except (OSError, ConnectionError) as exc:
                    raise classify_os_error(exc) from exc
                tls = tls_info(writer.get_extra_info("ssl_object"))
            timer.enter("processing")
            if self._send is not None:
                writer.write(self._send)
                await writer.drain()
            problem = await self._expect_answer(reader) if self._expect is not None else None
            timer.finish()
        except asyncio.CancelledError as exc:
            mark_interrupted_phase(exc, timer.current)
            raise
        except (ConnectionError, OSError) as exc:
            raise CollectorFailure("protocol_error", f"connection failed: {exc}") from exc
        finally:
            if writer is not None:
                writer.transport.abort()
        samples = self._samples(timer, tls, now)
        try:
            check_cert_days(tls, cfg.cert_min_days, now)
        except CollectorFailure as exc:
            return CollectResult(up=False, samples=samples, reason="tls", error=str(exc))
        if problem is not None:
            return CollectResult(up=False, samples=samples, reason="content", error=problem)
        return CollectResult(up=True, samples=samples)

    async def _resolve(self) -> str:
        cfg = self.config
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise CollectorFailure("dns", f"name did not resolve: {cfg.host} "
                                          f"({exc.strerror})") from exc
        family = FAMILIES[cfg.ip_family]
        chosen = prefer_family(infos, family, cfg.ip_family_fallback, lambda info: info[0])
        if not chosen:
            raise CollectorFailure("dns", f"{cfg.host} has no {FAMILY_NAMES[family]} address "
                                          "(ip_family_fallback is off)")
        return str(chosen[0][4][0])

    async def _expect_answer(self, reader: asyncio.StreamReader) -> str | None:
        """None when the answer matches ``expect``; otherwise what went wrong."""
        assert self._expect is not None
        received = b""
        limit = self.config.max_read_bytes
        while len(received) <= limit:
            chunk = await reader.read(min(4096, limit + 1 - len(received)))
            if not chunk:
                shown = received[:80].decode("utf-8", "replace")
                return f"connection closed before the answer matched {self.config.expect!r} " \
                       f"(got {shown!r})"
            received += chunk
            if self._expect.search(received):
                return None
        return f"no match for {self.config.expect!r} in the first {limit} bytes"

    def _samples(self, timer: PhaseTimer, tls: TlsInfo | None,
                 now: float) -> tuple[Sample, ...]:
        samples = [Sample("ioc_probe_phase_duration_seconds",
                          make_labels(self._labels, phase=phase), seconds, now)
                   for phase, seconds in timer.durations.items()]
        if tls is not None:
            samples.append(Sample("ioc_probe_tls_cert_expiry_timestamp_seconds", self._labels,
                                  tls.not_after, now))
            samples.append(Sample("ioc_probe_tls_version_info",
                                  make_labels(self._labels, version=tls.version), 1.0, now))
        return tuple(samples)
