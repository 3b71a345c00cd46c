"""Bearer tokens and roles for the web layer.

Tokens come from config (their values from the environment) and are kept only as SHA-256
digests; a presented token is hashed and compared with every known digest in constant time,
so neither the token nor its position in the list leaks through timing.

Roles: ``viewer`` (wall, read API), ``operator`` (ack, silence, announcements), ``ingest``
(push events), ``admin`` (everything). ``admin`` implies every role and ``operator`` implies
``viewer``. Requests without a token get the config's ``auth.anonymous`` roles.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from web.errors import ApiError

ROLES = ("viewer", "operator", "ingest", "admin")
_IMPLIED = {"admin": set(ROLES), "operator": {"operator", "viewer"}}


def expand_roles(roles: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for role in roles:
        out |= _IMPLIED.get(role, {role})
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str           # the token's name from config, or "anonymous"
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles


# Set by web.sessions when a request comes with a valid session or wall cookie instead.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


class Authenticator:
    def __init__(self, tokens: Iterable[tuple[str, str, Iterable[str]]],
                 anonymous_roles: Iterable[str] = ("viewer",)) -> None:
        """``tokens`` are (name, secret value, roles) triples."""
        self.replace(tokens, anonymous_roles)

    def replace(self, tokens: Iterable[tuple[str, str, Iterable[str]]],
                anonymous_roles: Iterable[str]) -> None:
        """Take a reloaded token list; requests already past ``require`` are unaffected."""
        self._entries = [(hashlib.sha256(secret.encode()).digest(), name, expand_roles(roles))
                         for name, secret, roles in tokens if secret]
        self.anonymous = Principal("anonymous", expand_roles(anonymous_roles))

    def identify(self, authorization: str | None) -> Principal:
        """The principal behind an Authorization header; ApiError 401 for a bad token."""
        if not authorization:
            return self.anonymous
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "unauthorized", "use Authorization: Bearer <token>")
        digest = hashlib.sha256(value.strip().encode()).digest()
        found: Principal | None = None
        for known, name, roles in self._entries:
            if hmac.compare_digest(known, digest) and found is None:
                found = Principal(name, roles)
        if found is None:
            raise ApiError(401, "unauthorized", "unknown token")
        return found

    def require(self, request: web.Request, role: str) -> Principal:
        """The request's principal if it holds ``role``; 401 without a token, else 403.

        A principal already attached to the request (a console session or a wall screen's
        cookie, checked by ``web.sessions``) stands in for the Authorization header.
        """
        principal = request.get(PRINCIPAL) or self.identify(request.headers.get("Authorization"))
        request[PRINCIPAL] = principal  # the audit log names who made a write
        if principal.has(role):
            return principal
        if principal is self.anonymous:
            raise ApiError(401, "unauthorized", f"this needs a token with the {role} role")
        raise ApiError(403, "forbidden", f"token {principal.name!r} lacks the {role} role")
