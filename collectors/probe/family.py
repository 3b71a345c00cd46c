"""``ip_family``: which addresses of a name a probe connects to.

A preference, like blackbox_exporter's ``preferred_ip_protocol``: when the name has addresses
of the preferred family only those are tried, and when it has none the other family is used
instead (``ip_family_fallback: true``, the default; ``ip_protocol_fallback`` in blackbox).
With ``ip_family_fallback: false`` the preference becomes a restriction, and a name without
an address of that family fails with reason ``dns``. A connect that fails on the preferred
family does *not* fall back: "the IPv6 site is down" is what such a check is there to say.

``any`` leaves the resolver's order alone (aiohttp then tries the addresses with happy
eyeballs). An address written in the URL is used as written.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiohttp.abc import AbstractResolver, ResolveResult

FAMILIES: dict[str, int] = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET,
                            "ipv6": socket.AF_INET6}
FAMILY_NAMES: dict[int, str] = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}

T = TypeVar("T")


def prefer_family(addresses: Sequence[T], family: int, fallback: bool,
                  family_of: Callable[[T], int]) -> list[T]:
    """The addresses to try, in resolver order: the preferred family's, else (with
    ``fallback``) the others, else none."""
    if family == socket.AF_UNSPEC:
        return list(addresses)
    preferred = [a for a in addresses if family_of(a) == family]
    if preferred or not fallback:
        return preferred
    return list(addresses)


class NoAddressOfFamily(socket.gaierror):
    """The name resolved, but not to the family the probe is restricted to."""


class PreferredFamilyResolver(AbstractResolver):
    """Resolves both families through ``inner`` and keeps what :func:`prefer_family` keeps.

    It asks for every family, whatever the connector asks, because a preference can only be
    applied knowing what the other family would have offered.
    """

    def __init__(self, inner: AbstractResolver, family: int, fallback: bool) -> None:
        self.inner = inner
        self.family = family
        self.fallback = fallback

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, socket.AF_UNSPEC)
        chosen = prefer_family(found, self.family, self.fallback, lambda r: r["family"])
        if not chosen:
            wanted = FAMILY_NAMES.get(self.family, str(self.family))
            raise NoAddressOfFamily(socket.EAI_NONAME,
                                    f"{host} has no {wanted} address (ip_family_fallback "
                                    "is off)")
        return chosen

    async def close(self) -> None:
        await self.inner.close()
