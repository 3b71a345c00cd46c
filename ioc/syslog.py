"""An optional syslog receiver (UDP and TCP; RFC 5424 and RFC 3164) that turns matching lines
into security events.

Firewalls, VPN concentrators and servers of the departments already speak syslog; pointing
them at ioc is the cheapest way to see brute-force logins or a WAF block storm on the wall.
Only lines matching a configured pattern become events, and each sender has a token bucket
so one chatty or hostile host cannot fill the event store. Rate limiting is counted per
message and logged twice per episode (``ioc.overflow``): when it starts, and at the first
message accepted after a whole bucket's refill time (``burst / rate_limit``) without any.
Parsing and matching are plain functions (:func:`parse_syslog`, :class:`SyslogMatcher`); the
asyncio servers only frame bytes.

RFC 3164 timestamps have neither year nor time zone, so a 3164 line's event gets the time it
was received; RFC 5424 timestamps are used as sent when they fall within ``events.max_past`` /
``events.max_future`` of the receive time, and are clamped to the receive time otherwise (the
sent time kept in the ``sent_at`` label, counted in ``ioc_security_events_out_of_window``):
an unauthenticated datagram dated 9999 must not become the wall's newest event for ever.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter

from ioc import clock
from ioc.config_types import split_listen
from ioc.event_sink import EventSink
from ioc.events import TimeWindow, bound_time, time_text
from ioc.events_config import SyslogConfig, SyslogPattern
from ioc.model import Event, make_labels
from ioc.overflow import EpisodeLog, OverflowLog
from ioc.regex import Pattern

log = logging.getLogger("ioc.syslog")

_PRI = re.compile(r"<(\d{1,3})>")
_RFC5424 = re.compile(
    r"1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$", re.DOTALL)
_RFC3164 = re.compile(
    r"(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?:(?P<tag>[^:\[\s]{1,48})(?:\[(?P<pid>[^\]]*)\])?: ?)?(?P<msg>.*)$", re.DOTALL)
_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

RESULTS = ("event", "unmatched", "rate_limited", "invalid", "too_large", "dropped",
           "bad_frame")
MAX_LENGTH_DIGITS = 6  # an octet count longer than this is no count max_message_bytes allows


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    facility: int
    level: int            # syslog severity 0 (emergency) .. 7 (debug)
    host: str
    app: str
    message: str
    timestamp: float | None  # None when the line carries no usable time (RFC 3164)
    rfc: int              # 5424 or 3164


def parse_syslog(raw: str) -> SyslogMessage:
    """One syslog line; ValueError when it is neither RFC 5424 nor RFC 3164."""
    text = raw.rstrip("\r\n\x00")
    pri = _PRI.match(text)
    if pri is None or int(pri.group(1)) > 191:
        raise ValueError("no <PRI> header")
    value = int(pri.group(1))
    rest = text[pri.end():]
    m5 = _RFC5424.match(rest)
    if m5 is not None:
        ts: float | None = None
        if m5["ts"] != "-":
            try:
                ts = datetime.fromisoformat(m5["ts"].replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ValueError(f"bad RFC 5424 timestamp {m5['ts']!r}") from None
        msg = (m5["msg"] or "").removeprefix("\ufeff")
        return SyslogMessage(value >> 3, value & 7, _nil(m5["host"]), _nil(m5["app"]), msg,
                             ts, 5424)
    m3 = _RFC3164.match(rest)
    if m3 is not None:
        return SyslogMessage(value >> 3, value & 7, m3["host"], m3["tag"] or "", m3["msg"],
                             None, 3164)
    raise ValueError("neither RFC 5424 nor RFC 3164")


def _nil(value: str) -> str:
    return "" if value == "-" else value


class TokenBuckets:
    """A token bucket per sender; the least recently seen senders are forgotten past a cap."""

    def __init__(self, rate: float, burst: int, max_senders: int = 10_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_senders = max_senders
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, sender: str, now: float) -> bool:
        tokens, last = self._buckets.pop(sender, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[sender] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_senders:
            self._buckets.popitem(last=False)
        return allowed


class SyslogMatcher:
    """Turns parsed messages into events by the configured patterns (first match wins)."""

    def __init__(self, config: SyslogConfig, window: TimeWindow | None = None) -> None:
        self.source = config.source
        self.window = window or TimeWindow(clamp=True)
        self.out_of_window: Tally[str] = Tally()  # past/future → clamped, read by the receiver
        self.patterns: list[tuple[SyslogPattern, Pattern]] = [
            (p, p.compiled()) for p in config.patterns]

    def match(self, msg: SyslogMessage, sender: str, now: float) -> Event | None:
        for pattern, regex in self.patterns:
            found = regex.search(msg.message)
            if found is None:
                continue
            values = {"host": msg.host or sender, "app": msg.app, "message": msg.message,
                      "pattern": pattern.name, "sender": sender}
            values.update({k: v for k, v in found.groupdict().items() if v is not None})
            title = _fill(pattern.title, values)
            labels = make_labels(pattern=pattern.name, sender=sender, app=msg.app,
                                 rfc=str(msg.rfc))
            occurred = now
            if msg.timestamp is not None:
                occurred, side = bound_time(msg.timestamp, now, self.window, self.out_of_window)
                if side is not None:
                    labels = make_labels(dict(labels), sent_at=time_text(msg.timestamp))
            return Event(
                source=self.source, id=uuid.uuid4().hex, severity=pattern.severity,
                category=pattern.category, title=title[:500] or pattern.name,
                occurred_at=occurred,
                message=msg.message[:10_000], department=pattern.department,
                host=(msg.host or sender)[:255], labels=labels)
        return None


def _fill(template: str, values: dict[str, str]) -> str:
    """``{name}`` fields of a title template; unknown names become empty, nothing else runs."""
    return _TEMPLATE_FIELD.sub(lambda m: values.get(m.group(1), ""), template)


class SyslogReceiver:
    """The UDP and TCP servers; every line goes through :meth:`handle`."""

    def __init__(self, config: SyslogConfig, sink: EventSink, registry: CollectorRegistry,
                 *, wall_clock: Callable[[], float] = clock.now,
                 monotonic: Callable[[], float] = clock.monotonic) -> None:
        self.config = config
        self.sink = sink
        self.matcher = SyslogMatcher(config, sink.window)
        self.buckets = TokenBuckets(config.rate_limit, config.burst)
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._limiting = OverflowLog(log, "syslog rate limit", full="reached",
                                     rate_limit=config.rate_limit, burst=config.burst)
        self._limited_at = 0.0
        self._bad_frames = EpisodeLog(log, "syslog TCP framing errors: connections closed")
        self._calm = config.burst / config.rate_limit  # seconds for an empty bucket to refill
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.messages = Counter(
            "ioc_syslog_messages", "Syslog messages received, by what became of them "
            "(event, unmatched, rate_limited, invalid, too_large, dropped; bad_frame: a TCP "
            "octet count that is no number, and the connection was closed).",
            ["transport", "result"], registry=registry)
        for transport in ("udp", "tcp"):
            for result in RESULTS:
                self.messages.labels(transport=transport, result=result)

    def handle(self, raw: bytes, sender: str, transport: str) -> str:
        """Parse, match, rate-limit and queue one message; return what became of it."""
        result = self._classify(raw, sender)
        self.messages.labels(transport=transport, result=result).inc()
        return result

    def _classify(self, raw: bytes, sender: str) -> str:
        if len(raw) > self.config.max_message_bytes:
            return "too_large"
        try:
            msg = parse_syslog(raw.decode("utf-8", errors="replace"))
        except ValueError:
            return "invalid"
        event = self.matcher.match(msg, sender, self._wall_clock())
        if self.matcher.out_of_window:
            self.sink.count_out_of_window("syslog", self.matcher.out_of_window)
            self.matcher.out_of_window.clear()
        if event is None:
            return "unmatched"
        now = self._monotonic()
        if not self.buckets.allow(sender, now):
            self._limited_at = now
            self._limiting.dropped(1, sender=sender)
            return "rate_limited"
        if self._limiting.active and now - self._limited_at >= self._calm:
            self._limiting.ok()
        return "event" if self.sink.submit([event]) else "dropped"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        if cfg.udp is not None:
            host, port = split_listen(cfg.udp)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port))
            self._transport = transport
            self.udp_address = transport.get_extra_info("sockname")[:2]
        if cfg.tcp is not None:
            host, port = split_listen(cfg.tcp)
            self._server = await asyncio.start_server(self._serve_tcp, host, port,
                                                      limit=cfg.max_message_bytes + 16)
            self.tcp_address = self._server.sockets[0].getsockname()[:2]
        log.info("syslog receiver listening", extra={"fields": {
            "udp": cfg.udp and f"{self.udp_address}", "tcp": cfg.tcp and f"{self.tcp_address}"}})

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        sender = str(peer[0]) if peer else "unknown"
        try:
            await self._read_frames(reader, sender)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)

    async def _read_frames(self, reader: asyncio.StreamReader, sender: str) -> None:
        """RFC 6587 framing: octet counting (``LEN SP MSG``) or one message per line."""
        limit = self.config.max_message_bytes
        while True:
            first = await reader.read(1)
            if not first:
                return
            if first.isdigit():
                length = await self._octet_count(reader, first, sender)
                if length is None:
                    return  # cannot resynchronise: close, the sender reconnects
                if length > limit:
                    self.messages.labels(transport="tcp", result="too_large").inc()
                    return
                self.handle(await reader.readexactly(length), sender, "tcp")
                continue
            try:
                line = first + await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self.messages.labels(transport="tcp", result="too_large").inc()
                return
            except asyncio.IncompleteReadError as exc:  # last line without a newline
                line = first + exc.partial
                if line.strip():
                    self.handle(line, sender, "tcp")
                return
            if line.strip():
                self.handle(line.rstrip(b"\r\n"), sender, "tcp")


    async def _octet_count(self, reader: asyncio.StreamReader, first: bytes,
                           sender: str) -> int | None:
        """The ``LEN`` of an RFC 6587 frame, or None (counted, logged once) when it is none."""
        digits = first
        while len(digits) <= MAX_LENGTH_DIGITS:
            byte = await reader.readexactly(1)
            if byte == b" ":
                length = int(digits)
                if length > 0:
                    return length
                break  # a frame of no bytes: no sender writes one
            if not byte.isdigit():
                break
            digits += byte
        self.messages.labels(transport="tcp", result="bad_frame").inc()
        self._bad_frames.hit(self._monotonic(), sender=sender, start=repr(digits[:16]))
        return None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.receiver.handle(data, str(addr[0]), "udp")
