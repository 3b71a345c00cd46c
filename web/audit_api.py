"""The audit trail of writes: recorded by a middleware, read by admins at ``GET /api/v1/audit``.

Every request with a method other than GET/HEAD/OPTIONS to a route that exists becomes one
row of :mod:`ioc.store.audit` — who (the token's or session's name, ``anonymous`` when none
was accepted), what (method, route, the id in the path), when, from where (the client's
address) and the status it got — refusals included, so a run of 403s is visible too. The row
is written before the response leaves; when the database is away the write still answers, the
failure is logged and counted in ``ioc_audit_write_errors_total``.

The request body is not recorded: it may hold secrets, and the record of what an ack or a
silence said is the alert history, written by the handler itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ioc.logs import fields
from ioc.store.audit import AuditEntry, AuditStore
from ioc.store.base import StoreError
from web.auth import PRINCIPAL
from web.client_limits import TrustMetrics, client_address
from web.errors import ApiError
from web.keys import AUTH, CONTEXT, request_now
from web.openapi_parts import REF as _REF
from web.openapi_parts import query_param as _param
from web.openapi_parts import ref_response as _resp

log = logging.getLogger("ioc.web")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DEFAULT_SPAN = 7 * 86400.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_of(request: web.Request) -> tuple[str, str | None] | None:
    """(route template, the ids in the path) of a matched route; None for no route."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return None
    # An ack link's token is a credential: the route is recorded, the token is not.
    target = ",".join(f"{k}={'***' if k == 'token' else v}" for k, v in info.items()) or None
    return resource.canonical, target


def audit_middleware(store: AuditStore, metrics: TrustMetrics, now: Callable[[], float]) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in SAFE_METHODS:
            return await handler(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            where = route_of(request)
            if where is not None:
                principal = request.get(PRINCIPAL)
                entry = AuditEntry(
                    ts=now(), actor=principal.name if principal is not None else "anonymous",
                    method=request.method, path=where[0], target=where[1],
                    client=client_address(request), status=status)
                try:
                    await store.record(entry)
                except StoreError as exc:
                    metrics.audit_errors.inc()
                    log.error("cannot write the audit log", extra=fields(
                        error=str(exc), method=entry.method, path=entry.path,
                        actor=entry.actor))

    return middleware


def _number(params: Mapping[str, str], name: str, default: float) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"invalid {name}", f"expected unix seconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"invalid {name}", "expected a finite number")
    return value


async def list_audit(request: web.Request) -> web.Response:
    request.app[AUTH].require(request, "admin")
    app = request.app[CONTEXT]
    params = request.query
    end = _number(params, "end", request_now(request))
    start = _number(params, "start", end - DEFAULT_SPAN)
    if start > end:
        raise ApiError(400, "invalid range", "start is after end")
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(400, "invalid limit", f"expected 1 to {MAX_LIMIT}, got {raw_limit!r}")
    actor = params.get("actor") or None
    try:
        entries = await app.audit.query(start=start, end=end, actor=actor,
                                        limit=int(raw_limit))
    except StoreError as exc:
        raise ApiError(503, "store unavailable", str(exc)) from None
    return web.json_response({"start": start, "end": end,
                              "entries": [e.to_dict() for e in entries]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/audit", list_audit)


# -- OpenAPI description (merged into web/openapi.py) ----------------------------------------


AUDIT_SCHEMAS: dict[str, Any] = {
    "AuditEntry": {
        "type": "object",
        "required": ["id", "ts", "actor", "method", "path", "target", "client", "status"],
        "properties": {
            "id": {"type": ["integer", "null"]},
            "ts": {"type": "number", "description": "unix seconds"},
            "actor": {"type": "string", "description": "token name, or anonymous"},
            "method": {"type": "string"},
            "path": {"type": "string", "description": "the route, e.g. /api/v1/silences/{id}"},
            "target": {"type": ["string", "null"], "description": "the ids in the path"},
            "client": {"type": "string", "description": "the client's address"},
            "status": {"type": "integer", "description": "the HTTP status answered"},
        },
    },
    "AuditLog": {
        "type": "object", "required": ["start", "end", "entries"],
        "properties": {"start": {"type": "number"}, "end": {"type": "number"},
                       "entries": {"type": "array", "items": {"$ref": _REF + "AuditEntry"}}},
    },
}

AUDIT_PATHS: dict[str, Any] = {
    "/api/v1/audit": {"get": {
        "summary": "Every write made through the web layer, newest first",
        "description": "Needs a token with the admin role.",
        "operationId": "audit",
        "parameters": [_param("start", "unix seconds (default end - 7d)", "number"),
                       _param("end", "unix seconds (default now)", "number"),
                       _param("actor", "only this token name", "string"),
                       _param("limit", "at most this many (1-1000)", "integer")],
        "responses": {
            "200": _resp("AuditLog", "audit entries"),
            "400": _resp("Error", "invalid query"),
            "401": _resp("Error", "no or unknown token"),
            "403": _resp("Error", "the token lacks the admin role"),
        },
    }},
}
