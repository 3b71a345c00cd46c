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
from dataclasses import dataclass, field

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
    # Which configured token (name, secret and roles) this principal came from; a console
    # session keeps it and is ended when no token has it any more (``Authenticator.current``).
    fingerprint: str = field(default="", compare=False)

    def has(self, role: str) -> bool:
        return role in self.roles


# Set by web.sessions when a request comes with a valid session or wall cookie instead.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def token_fingerprint(name: str, digest: bytes, roles: frozenset[str]) -> str:
    """One configured token's identity: its name, secret (as a digest) and roles together."""
    text = b"\0".join([name.encode(), digest, ",".join(sorted(roles)).encode()])
    return hashlib.sha256(b"ioc-token:" + text).hexdigest()


class Authenticator:
    def __init__(self, tokens: Iterable[tuple[str, str, Iterable[str]]],
                 anonymous_roles: Iterable[str] = ("viewer",)) -> None:
        """``tokens`` are (name, secret value, roles) triples."""
        self.replace(tokens, anonymous_roles)

    def replace(self, tokens: Iterable[tuple[str, str, Iterable[str]]],
                anonymous_roles: Iterable[str]) -> None:
        """Take a reloaded token list; requests already past ``require`` are unaffected."""
        self._entries: list[tuple[bytes, Principal]] = []
        for name, secret, roles in tokens:
            if not secret:
                continue
            digest = hashlib.sha256(secret.encode()).digest()
            expanded = expand_roles(roles)
            self._entries.append((digest, Principal(name, expanded,
                                                    token_fingerprint(name, digest, expanded))))
        self._current = {p.fingerprint: p for _, p in self._entries}
        self._viewer_keys: dict[str, list[tuple[bytes, str]]] = {}
        for digest, principal in self._entries:
            if principal.has("viewer"):
                self._viewer_keys.setdefault(principal.name, []).append(
                    (digest, principal.fingerprint))
        self.anonymous = Principal("anonymous", expand_roles(anonymous_roles))

    def current(self, fingerprint: str) -> Principal | None:
        """The principal of a token still configured as it was when ``fingerprint`` was taken.

        None once the token has been removed, or its value or roles changed, by a reload:
        that is what ends the console sessions it opened.
        """
        return self._current.get(fingerprint)

    def viewer_keys(self, name: str) -> list[tuple[bytes, str]]:
        """(digest, fingerprint) of the configured tokens named ``name`` that may view: the
        keys of the wall cookies issued for them (``web.sessions.WallCookies``)."""
        return self._viewer_keys.get(name, [])

    def identify(self, authorization: str | None) -> Principal:
        """The principal behind an Authorization header; ApiError 401 for a bad token."""
        if not authorization:
            return self.anonymous
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "unauthorized", "use Authorization: Bearer <token>")
        digest = hashlib.sha256(value.strip().encode()).digest()
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest) and found is None:
                found = principal
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
