"""The HTTP client sessions probes run on.

One function builds them for the app and for the collectors that need a connection policy of
their own (``keepalive: true`` or an IP family preference), so every probe session is traced the
same way and has the same limits.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from collectors.probe.family import FAMILIES, PreferredFamilyResolver
from collectors.probe.head import limit_interim_answers
from collectors.probe.phases import note_tcp_connected, phase_trace_config


class ProbeConnector(aiohttp.TCPConnector):
    """A TCPConnector that marks the end of the TCP connect for the phase timer, and bounds
    the interim answers a connection may send (collectors.probe.head).

    asyncio creates the connection's protocol right after the socket connected and before a
    TLS handshake starts, so wrapping the protocol factory splits ``connect`` from ``tls``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        factory = self._factory

        def traced_factory() -> Any:
            protocol = factory()
            note_tcp_connected(protocol)
            limit_interim_answers(protocol)
            return protocol

        # aiohttp types _factory as its own ResponseHandler factory; this one wraps it
        self._factory = traced_factory  # type: ignore[assignment]


def open_probe_session(*, limit: int = 256, limit_per_host: int = 16, keepalive: bool = False,
                       family: str = "any", family_fallback: bool = True,
                       resolver: AbstractResolver | None = None, user_agent: str = "ioc",
                       dns_cache_seconds: int | None = 60) -> aiohttp.ClientSession:
    """A traced session; ``keepalive=False`` opens a fresh connection for every check.

    ``family`` and ``family_fallback`` apply the target's ``ip_family`` (collectors.probe.family)
    to the names ``resolver`` (aiohttp's default: the system's) finds.
    """
    if family != "any":
        resolver = PreferredFamilyResolver(resolver or aiohttp.DefaultResolver(),
                                           FAMILIES[family], family_fallback)
    connector = ProbeConnector(
        limit=limit, limit_per_host=limit_per_host, force_close=not keepalive,
        resolver=resolver, ttl_dns_cache=dns_cache_seconds,
        use_dns_cache=dns_cache_seconds is not None,
    )
    return aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": user_agent},
        timeout=aiohttp.ClientTimeout(total=None), trace_configs=[phase_trace_config()],
    )
