"""Cookies that stand in for a bearer token: the operator console's session and a wall
screen's viewer cookie.

**Console sessions.** Signing in with an operator token creates a session kept in memory (a
restart signs everyone out, which is what an operator expects of a restarted service). Its
id is 32 random bytes in an ``HttpOnly; SameSite=Strict`` cookie; its CSRF token is an
HMAC-SHA256 of the id under a per-process secret, so it needs no storage and cannot be
guessed from the cookie. Writes (any method but GET/HEAD/OPTIONS) made with the session must
carry the CSRF token in ``X-CSRF-Token``; the console's script reads it from the page.

**Wall cookie.** A TV cannot send an Authorization header; when ``auth.anonymous`` lacks the
viewer role, a screen opens the wall once with ``?token=…`` and gets a long-lived cookie
naming the token and proving it with an HMAC keyed by the token's digest. It survives
restarts and only ever grants the viewer role, whatever the token's own roles.

**Revocation is immediate.** Both kinds are checked against the tokens configured *now* on
every request: a session remembers the fingerprint of the token that opened it (its name,
secret and roles, ``web.auth.token_fingerprint``) and ends as soon as a reload removes or
changes that token; a wall cookie is verified with the keys of the current viewer tokens, so
it stops working when its token is removed, changed or loses the viewer role, and a viewer
token added by a reload can issue cookies at once.

Either way the principal is attached to the request (``web.auth.PRINCIPAL``) and
``Authenticator.require`` checks roles exactly as for a bearer token: the console uses the
same JSON API as every other client.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from web.auth import PRINCIPAL, Authenticator, Principal
from web.errors import ApiError
from web.keys import AUTH

SESSION_COOKIE = "ioc_session"
WALL_COOKIE = "ioc_wall"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600.0  # one shift
MAX_SESSIONS = 1000  # the oldest is signed out beyond this
WALL_COOKIE_SECONDS = 400 * 86400  # the longest a browser keeps a cookie
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    expires_at: float


class SessionStore:
    """Console sessions in memory, bounded; one per app.

    With ``current`` (``Authenticator.current``) a session is only good while the token that
    opened it is configured unchanged; without it (pure tests) sessions only expire.
    """

    def __init__(self, secret: bytes | None = None,
                 current: Callable[[str], Principal | None] | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._current = current

    def create(self, principal: Principal, now: float) -> str:
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = Session(principal, now + SESSION_SECONDS)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid

    def get(self, sid: str | None, now: float) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires_at <= now:
            del self._sessions[sid]
            return None
        if self._current is not None:
            principal = self._current(session.principal.fingerprint)
            if principal is None:  # its token was removed or changed by a reload
                del self._sessions[sid]
                return None
        return session

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def csrf(self, sid: str) -> str:
        return hmac.new(self._secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(sid), token or "")


class WallCookies:
    """Viewer cookies for wall screens, checked against the tokens the authenticator holds
    now (so a reload that removes, changes or adds a viewer token applies at once)."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    def _mac(self, name: str, key: bytes) -> str:
        return hmac.new(key, b"ioc-wall-viewer:" + name.encode(), hashlib.sha256).hexdigest()

    def issue(self, principal: Principal) -> str:
        """The cookie for the token ``principal`` was identified by (it must hold viewer)."""
        for key, fingerprint in self._auth.viewer_keys(principal.name):
            if fingerprint == principal.fingerprint:
                return f"{principal.name}.{self._mac(principal.name, key)}"
        raise KeyError(f"no current viewer token named {principal.name!r}")

    def principal(self, cookie: str | None) -> Principal | None:
        if not cookie:
            return None
        name, _, mac = cookie.rpartition(".")
        found = False
        for key, _fingerprint in self._auth.viewer_keys(name):
            found |= hmac.compare_digest(self._mac(name, key), mac)
        return Principal(name, frozenset({"viewer"})) if found else None


SESSIONS: web.AppKey[SessionStore] = web.AppKey("console_sessions", SessionStore)
WALL_COOKIES: web.AppKey[WallCookies] = web.AppKey("wall_cookies", WallCookies)


def session_id(request: web.Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


def make_middleware(now: Callable[[], float]) -> Any:
    """Attach the principal of a valid session or wall cookie to requests without a token."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.headers.get("Authorization"):
            return await handler(request)
        sid = session_id(request)
        session = request.app[SESSIONS].get(sid, now())
        if session is not None and sid is not None:
            if request.method not in SAFE_METHODS and not request.path.startswith("/console"):
                if not request.app[SESSIONS].csrf_ok(sid, request.headers.get(CSRF_HEADER)):
                    raise ApiError(403, "CSRF check failed",
                                   f"a write made with the console's session needs the "
                                   f"{CSRF_HEADER} header of its page")
            request[PRINCIPAL] = session.principal
        elif request.method in SAFE_METHODS:
            viewer = request.app[WALL_COOKIES].principal(request.cookies.get(WALL_COOKIE))
            if viewer is not None:
                request[PRINCIPAL] = viewer
        return await handler(request)

    return middleware


def set_session_cookie(response: web.StreamResponse, sid: str, secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, sid, max_age=int(SESSION_SECONDS), path="/",
                        httponly=True, samesite="Strict", secure=secure)


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")


def set_wall_cookie(response: web.StreamResponse, value: str, secure: bool) -> None:
    # Lax, not Strict: a link to the wall in a notification (another site) must still open it;
    # the cookie only ever lets its holder read.
    response.set_cookie(WALL_COOKIE, value, max_age=WALL_COOKIE_SECONDS, path="/",
                        httponly=True, samesite="Lax", secure=secure)


def exchange_wall_token(request: web.Request) -> web.HTTPSeeOther | None:
    """``?token=`` on a wall address: check it, set the wall cookie, drop it from the URL."""
    token = request.query.get("token")
    if token is None:
        return None
    principal = request.app[AUTH].identify(f"Bearer {token}")
    if not principal.has("viewer"):
        raise ApiError(403, "forbidden", f"token {principal.name!r} lacks the viewer role")
    query = {k: v for k, v in request.query.items() if k != "token"}
    response = web.HTTPSeeOther(str(request.rel_url.with_query(query)))
    set_wall_cookie(response, request.app[WALL_COOKIES].issue(principal),
                    secure=request.secure)
    response.headers["Cache-Control"] = "no-store"
    return response
