"""Where the time of one check went: dns, connect, tls, processing and transfer.

aiohttp's request tracing reports the DNS lookup, the connection set-up and the moment the
request headers were sent and the response headers arrived. It has no event between the TCP
connect and the TLS handshake, so the session's connector also notes when the connection's
protocol object is created, which asyncio does right after the socket connected and before
the handshake starts (see ``session.ProbeConnector``). The timer of the check in progress is
found through a context variable because that protocol factory is called without arguments.
"""

from __future__ import annotations

from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import aiohttp

from ioc import clock

PHASES = ("dns", "connect", "tls", "processing", "transfer")

# The timer of the check running in the current task (None outside a probe).
CURRENT_TIMER: ContextVar[PhaseTimer | None] = ContextVar("ioc_probe_timer", default=None)


class PhaseTimer:
    """Accumulates phase durations of one check (summed over redirects)."""

    __slots__ = ("_mark", "current", "durations", "protocol", "redirects", "ssl_object", "tls")

    def __init__(self, *, tls: bool = False) -> None:
        self.tls = tls  # whether a TLS handshake follows the TCP connect
        self.durations: dict[str, float] = {}
        self.current = ""  # unknown until the session's tracing reports the request start
        self.redirects = 0
        self.protocol: Any = None      # the newest connection's protocol (asyncio)
        self.ssl_object: Any = None    # its TLS state, taken while the connection is open
        self._mark = clock.monotonic()

    def enter(self, phase: str) -> None:
        """Close the running phase (adding its time) and start ``phase``."""
        now = clock.monotonic()
        if self.current:
            self.durations[self.current] = (
                self.durations.get(self.current, 0.0) + now - self._mark)
        self.current = phase
        self._mark = now

    def finish(self) -> None:
        self.enter("")


async def _on_request_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timer = ctx.trace_request_ctx
    if isinstance(timer, PhaseTimer):
        timer.enter("connect")


async def _on_dns_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timer = ctx.trace_request_ctx
    if isinstance(timer, PhaseTimer):
        timer.enter("dns")


async def _on_dns_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timer = ctx.trace_request_ctx
    if isinstance(timer, PhaseTimer):
        timer.enter("connect")


async def _on_connection_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timer = ctx.trace_request_ctx
    if isinstance(timer, PhaseTimer) and timer.protocol is not None:
        transport = getattr(timer.protocol, "transport", None)
        if transport is not None:
            timer.ssl_object = transport.get_extra_info("ssl_object")


async def _on_headers_sent(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timer = ctx.trace_request_ctx
    if isinstance(timer, PhaseTimer):
        timer.enter("processing")


async def _on_request_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timer = ctx.trace_request_ctx
    if isinstance(timer, PhaseTimer):
        timer.enter("transfer")


async def _on_redirect(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timer = ctx.trace_request_ctx
    if isinstance(timer, PhaseTimer):
        timer.redirects += 1
        timer.enter("connect")


def phase_trace_config() -> aiohttp.TraceConfig:
    """A TraceConfig that feeds the PhaseTimer passed as ``trace_request_ctx``.

    Requests without a PhaseTimer (other collectors on the same session) are left alone.
    """
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_on_request_start)
    trace.on_dns_resolvehost_start.append(_on_dns_start)
    trace.on_dns_resolvehost_end.append(_on_dns_end)
    trace.on_connection_create_end.append(_on_connection_end)
    trace.on_request_headers_sent.append(_on_headers_sent)
    trace.on_request_end.append(_on_request_end)
    trace.on_request_redirect.append(_on_redirect)
    return trace


def note_tcp_connected(protocol: Any) -> None:
    """Called when the TCP connection is up and before the TLS handshake (if any)."""
    timer = CURRENT_TIMER.get()
    if timer is None:
        return
    timer.protocol = protocol
    if timer.tls and timer.current == "connect":
        timer.enter("tls")
