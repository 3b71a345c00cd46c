"""Connection discipline: every connection to the web server is bounded in time, in number
and in what is buffered for it (``service.header_timeout``, ``keepalive_timeout``,
``write_timeout``, ``write_buffer``, ``max_connections``, ``max_connections_per_address``).

Without these, 2,000 connections that send half a request stay open until aiohttp's
keep-alive timer fires, 100 connections from one address hold every slot, and 60 clients
that ask for a large answer and never read it keep every byte of it in memory for as long as
they like. Here:

* **Head timeout.** A request's head (request line and headers) must be complete
  ``header_timeout`` after the connection opened, or after the first byte of the next request
  on a kept-alive connection; otherwise the connection is closed. aiohttp has no such timer
  (its keep-alive timer only closes connections idle between requests). One case is left to
  the keep-alive timer: part of a next head that arrives in the same packet as a whole
  request (pipelining) sits in aiohttp's parser where it cannot be seen, so that connection
  is closed ``keepalive_timeout`` after its answer instead.
* **Idle keep-alive** is aiohttp's own ``keepalive_timeout``, passed through.
* **Connection caps.** At most ``max_connections`` open at once, and
  ``max_connections_per_address`` from one peer address (peers in ``trusted_proxies`` are
  exempt: behind a proxy every client shares its address, and the proxy's own
  ``limit_conn`` does that job, see deploy/nginx/ioc.conf). One more gets a plain 503 and is
  closed before anything is parsed.
* **Slow readers.** The transport's write buffer pauses writing at ``write_buffer`` bytes, so
  a response written in pieces (the large API answers, web/streaming.py; the live stream)
  waits for the client instead of piling up in memory; a client that lets it wait
  ``write_timeout`` without reading is aborted, which frees the buffer at once.

Every refusal and cut-off is counted in ``ioc_http_connections_rejected_total{reason}`` and
logged once per episode (``ioc.overflow``); ``ioc_http_connections`` says how many are open.

This is written by hand because aiohttp offers no hook for it: ``RequestHandler`` is
subclassed (``connection_made``, ``data_received``, ``pause_writing``/``resume_writing``)
and the server that builds handlers is swapped in through ``GuardedAppRunner``. It relies on
two private attributes of aiohttp's ``Server`` (``_kwargs``, ``_loop``) and three of
``RequestHandler`` (``_messages``, ``_request_in_progress``, ``_loop``); aiohttp is pinned in
requirements.lock and tests/web/test_connections.py checks every behaviour against the
pinned version.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server
from prometheus_client import CollectorRegistry, Counter, Gauge

from ioc.overflow import OverflowLog
from web.forwarded import TrustedProxies, parse_address

log = logging.getLogger("ioc.web")

CONNECTION_REJECT_REASONS = ("max_connections", "max_connections_per_address",
                             "header_timeout", "slow_reader")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    header_timeout: float
    keepalive_timeout: float
    write_timeout: float
    write_buffer: int
    max_connections: int
    max_connections_per_address: int

    @classmethod
    def from_config(cls, service: Any) -> ConnectionSettings:
        return cls(service.header_timeout, service.keepalive_timeout, service.write_timeout,
                   service.write_buffer, service.max_connections,
                   service.max_connections_per_address)


class ConnectionGuard:
    """The counts behind the caps, and the metrics; one per web server."""

    def __init__(self, settings: ConnectionSettings, registry: CollectorRegistry,
                 proxies: TrustedProxies) -> None:
        self.settings = settings
        self.proxies = proxies
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.rejected = Counter(
            "ioc_http_connections_rejected_total",
            "Connections refused or cut off: max_connections and max_connections_per_address "
            "(503 at connect, service.max_connections[_per_address] were open), header_timeout "
            "(the request head was not complete within service.header_timeout), slow_reader "
            "(the client read nothing of a pending response for service.write_timeout).",
            ["reason"], registry=registry)
        for reason in CONNECTION_REJECT_REASONS:
            self.rejected.labels(reason=reason)
        self.gauge = Gauge("ioc_http_connections", "Connections open to the web server now.",
                           registry=registry)
        self._refusing = OverflowLog(log, "connection cap", full="reached", action="refusing",
                                     max_connections=settings.max_connections,
                                     max_connections_per_address=(
                                         settings.max_connections_per_address))
        self._cutting = OverflowLog(log, "connection timeouts",
                                    full="reached", action="closing stalled connections",
                                    header_timeout=settings.header_timeout,
                                    write_timeout=settings.write_timeout)

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; the refusal reason when over a cap."""
        if self.open >= self.settings.max_connections:
            return self._refuse("max_connections")
        exempt = self.proxies.trusts(address)
        if not exempt and self.by_address.get(address, 0) >= \
                self.settings.max_connections_per_address:
            return self._refuse("max_connections_per_address")
        self.open += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        self.gauge.set(self.open)
        if self._refusing.active and self.open <= self.settings.max_connections // 2:
            self._refusing.ok()
        return None

    def _refuse(self, reason: str) -> str:
        self.rejected.labels(reason=reason).inc()
        self._refusing.dropped(1, reason=reason)
        return reason

    def release(self, address: str) -> None:
        self.open -= 1
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)
        self.gauge.set(self.open)
        if self.open == 0:
            self._cutting.ok()

    def cut(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()
        self._cutting.dropped(1, reason=reason)


def _refusal(reason: str) -> bytes:
    body = json.dumps({"error": "too many connections",
                       "detail": f"{reason} reached; try again shortly"}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a head timeout, caps and a write timeout."""

    __slots__ = ("_address", "_admitted", "_guard", "_head_timer", "_write_timer")

    def __init__(self, manager: Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._address = "unknown"
        self._admitted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = parse_address(str(peer[0])) if peer else None
        self._address = str(address) if address is not None else "unknown"
        refusal = self._guard.admit(self._address)
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        tcp = cast(asyncio.Transport, transport)
        if refusal is not None:
            # Refused before aiohttp sees it: no task, no parser work, nothing registered.
            tcp.write(_refusal(refusal))
            tcp.close()
            return
        self._admitted = True
        super().connection_made(transport)
        tcp.set_write_buffer_limits(high=self._guard.settings.write_buffer)
        self._arm_head_timer()

    def _awaiting_head(self) -> bool:
        return not self._request_in_progress and not self._messages

    def _arm_head_timer(self) -> None:
        self._head_timer = self._loop.call_later(self._guard.settings.header_timeout,
                                                 self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is not None and self._awaiting_head():
            self._guard.cut("header_timeout")
            self.force_close()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._awaiting_head():
            self._arm_head_timer()  # the first byte of the next request on this connection
        super().data_received(data)
        if self._head_timer is not None and not self._awaiting_head():
            self._head_timer.cancel()
            self._head_timer = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(self._guard.settings.write_timeout,
                                                      self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        transport = self.transport
        if transport is not None:
            self._guard.cut("slow_reader")
            transport.abort()  # drops what is buffered for it now, not when it reads

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None
        if not self._admitted:
            return
        self._admitted = False
        self._guard.release(self._address)
        super().connection_lost(exc)


class GuardedServer(Server):
    """aiohttp's ``Server`` building ``GuardedRequestHandler`` for every connection."""

    def __init__(self, server: Server, guard: ConnectionGuard) -> None:
        super().__init__(server.request_handler, request_factory=server.request_factory,
                         handler_cancellation=server.handler_cancellation, loop=server._loop,
                         **server._kwargs)
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server guards its connections (see the module's docstring)."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=guard.settings.keepalive_timeout, **kwargs)
        self.guard = guard

    async def _make_server(self) -> Server:
        return GuardedServer(await super()._make_server(), self.guard)
