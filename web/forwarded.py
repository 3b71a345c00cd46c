"""The client's real address and scheme behind a reverse proxy (``service.trusted_proxies``).

Behind nginx every connection comes from the proxy, so without this every client would be
127.0.0.1: ``wall.allowed_networks`` would admit everyone, the failed-credential throttle
would be one bucket for the whole province, the audit log would name the proxy, and cookies
would lack ``Secure`` although the browser spoke https.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are honoured only when the connection's peer is
in ``service.trusted_proxies``; from anyone else they are ignored, so a client cannot claim
an address by sending the header itself. The client is found by the rightmost-untrusted-hop
rule: walking ``X-Forwarded-For`` from the right (the hop the nearest proxy saw), every
address inside the trusted networks is another proxy and is skipped; the first one outside
them is the client. Whatever a client wrote further left is never read. Should every hop be
trusted, or a hop be unreadable, the last trusted address walked is the client.

``X-Forwarded-Proto`` is read from its rightmost value (what the nearest trusted proxy set)
and only ``http`` or ``https`` count. RFC 7239 ``Forwarded`` is not read: nginx does not send
it by default and reading two headers that may disagree is a way to be fooled.

The request is replaced by a clone with ``remote`` and ``scheme`` set (aiohttp's own way,
``BaseRequest.clone``), so every later middleware and handler sees the real values through
``request.remote`` and ``request.secure``. Written here rather than taken from
``aiohttp-remotes``: its ``XForwardedStrict`` needs the exact chain of proxies hop by hop and
``XForwardedRelaxed`` trusts any peer; neither implements a set of trusted networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def parse_address(text: str) -> Address | None:
    """An address from a header or a socket; IPv4-mapped IPv6 becomes IPv4, zone ids go."""
    text = text.strip().split("%", 1)[0]
    if text.startswith("[") and "]" in text:  # "[::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "10.0.0.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The networks whose forwarded headers are believed; pure, for tests and the middleware."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = parse_networks(cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | str | None) -> bool:
        if isinstance(address, str):
            address = parse_address(address)
        if address is None:
            return False
        return any(address.version == net.version and address in net for net in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client's address for a connection from ``peer`` carrying these header values."""
        if peer is None or not self.trusts(peer):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        last = parse_address(peer)
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break  # garbage where an address should be: stop at the last trusted hop
            last = address
            if not self.trusts(address):
                break
        return str(last) if last is not None else peer

    def scheme(self, peer: str | None, forwarded_proto: Sequence[str], default: str) -> str:
        if not forwarded_proto or peer is None or not self.trusts(peer):
            return default
        value = forwarded_proto[-1].split(",")[-1].strip().lower()
        return value if value in ("http", "https") else default


def middleware(proxies: TrustedProxies) -> Any:
    """Outermost middleware: put the real client's address and scheme on the request."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not proxies:
            return await handler(request)
        peer = request.remote
        forwarded_for = request.headers.getall("X-Forwarded-For", [])
        forwarded_proto = request.headers.getall("X-Forwarded-Proto", [])
        if not (forwarded_for or forwarded_proto) or not proxies.trusts(peer):
            return await handler(request)
        client = proxies.client(peer, forwarded_for)
        scheme = proxies.scheme(peer, forwarded_proto, request.scheme)
        if client is None:
            return await handler(request.clone(scheme=scheme))
        return await handler(request.clone(remote=client, scheme=scheme))

    return forwarded
