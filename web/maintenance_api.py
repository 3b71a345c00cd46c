"""Maintenance windows over the JSON API: ``GET``/``POST /api/v1/maintenance`` and
``DELETE /api/v1/maintenance/{id}``.

Reading needs the viewer role and lists every window — the config's, marked ``source:
"config"`` and read-only, and those operators announced (``source: "api"``). Announcing and
ending one need the operator role; both are stored with an event in the alert history naming
the token, and both take effect at once in the dispatcher (``Dispatcher.maintenance_now``), so
the console, the wall's alert marks and the notifications agree. Only fixed ranges can be
announced: a standing weekly slot is configuration (``alerts.maintenance``).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from alerts.maintenance import MAX_WINDOW_SECONDS, parse_instant
from web.alerts_api import _body, _dispatcher, _ok, _require
from web.console_time import looks_local, typed_field
from web.errors import ApiError
from web.keys import request_now

MAX_COMMENT_CHARS = 1000
MAX_OPEN_WINDOWS = 500  # pending or active at once: more is a runaway script, not planning


async def list_maintenance(request: web.Request) -> web.Response:
    _require(request, "viewer")
    now = request_now(request)
    return _ok({"generated_at": now, "windows": _dispatcher(request).maintenance_view(now)})


async def create_maintenance(request: web.Request) -> web.Response:
    who = _require(request, "operator")
    data = await _body(request)
    now = request_now(request)
    dispatcher = _dispatcher(request)
    tz = ZoneInfo(dispatcher.settings.timezone)
    department = data.get("department")
    if not isinstance(department, str) or not department:
        raise ApiError(400, "invalid department", "give the department code, e.g. STP")
    comment = data.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise ApiError(400, "invalid comment", f"a text of at most {MAX_COMMENT_CHARS} "
                       "characters")
    lang = request.query.get("lang", "en")
    starts_at = _instant(data, "start", now, tz, lang)
    if "end" not in data or data["end"] in (None, ""):
        raise ApiError(400, "missing end", "give end: unix seconds or an ISO 8601 time")
    ends_at = _instant(data, "end", now, tz, lang)
    if sum(1 for w in dispatcher.windows.values() if w.ends_at > now) >= MAX_OPEN_WINDOWS:
        raise ApiError(409, "too many windows", f"at most {MAX_OPEN_WINDOWS} pending or "
                       "active windows; end some first")
    try:
        window = await dispatcher.add_maintenance(
            department=department, starts_at=starts_at, ends_at=ends_at, comment=comment,
            created_by=who.name, now=now)
    except ValueError as exc:
        raise ApiError(400, "invalid window", str(exc)) from None
    return _ok({"window": _shown(request, window.to_dict(now))}, status=201)


async def end_maintenance(request: web.Request) -> web.Response:
    who = _require(request, "operator")
    now = request_now(request)
    window_id = request.match_info["id"]
    if window_id.startswith("config-"):
        raise ApiError(409, "read-only window", "this window is set in the configuration "
                       "file (alerts.maintenance); change it there")
    ended = await _dispatcher(request).end_maintenance(window_id, by=who.name, now=now)
    if ended is None:
        raise ApiError(404, "no such open window", f"no pending or active window {window_id!r}")
    return _ok({"window": _shown(request, ended.to_dict(now))})


def _instant(data: dict[str, Any], name: str, default: float, tz: ZoneInfo,
             lang: str) -> float:
    value = data.get(name)
    if value is None or value == "":
        return default
    if looks_local(value):  # typed in the console: dd/mm/yyyy HH:MM (web.console_time)
        return typed_field(value, name, tz, lang)
    try:
        return parse_instant(value, tz)
    except ValueError as exc:
        raise ApiError(400, f"invalid {name}", str(exc)) from None


def _shown(request: web.Request, row: dict[str, Any]) -> dict[str, Any]:
    names = _dispatcher(request).settings.department_names or {}
    return {**row, "department_name": names.get(row["department"], "")}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/maintenance", list_maintenance)
    app.router.add_post("/api/v1/maintenance", create_maintenance)
    app.router.add_delete("/api/v1/maintenance/{id}", end_maintenance)


# -- OpenAPI description (merged into web/openapi.py) ----------------------------------------

_REF = "#/components/schemas/"
_ERRORS = {code: {"description": text, "content": {"application/json": {
    "schema": {"$ref": _REF + "Error"}}}} for code, text in (
    ("400", "invalid request"), ("401", "no or unknown token"),
    ("403", "the token lacks the role"), ("413", "body too large"))}
_WRITE = {"description": "Needs `Authorization: Bearer <token>` with the operator role (or the "
          "console's session cookie and X-CSRF-Token)."}


def _resp(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


_INSTANT_TEXT = ("unix seconds, ISO 8601 or dd/mm/yyyy HH:MM; without an offset, the "
                 "province's time")
_INSTANT: dict[str, Any] = {"oneOf": [{"type": "number"}, {"type": "string"}],
                            "description": _INSTANT_TEXT,
                            "examples": ["2026-12-05T22:00", 1796482800]}
_RANGE = {"type": "object", "properties": {"start": {"type": "string"},
                                           "end": {"type": "string"}}}
_WEEKLY = {"type": "object", "properties": {"days": {"type": "array",
                                                     "items": {"type": "string"}},
                                            "start": {"type": "string"},
                                            "end": {"type": "string"}}}

MAINTENANCE_SCHEMAS: dict[str, Any] = {
    "MaintenanceWindow": {
        "type": "object",
        "required": ["source", "id", "department", "department_name", "comment", "state",
                     "read_only"],
        "properties": {
            "source": {"type": "string", "enum": ["config", "api"]},
            "id": {"type": "string", "description": "config-N for the config's windows"},
            "department": {"type": "string"}, "department_name": {"type": "string"},
            "comment": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "active", "expired", "scheduled"],
                      "description": "config windows: active or scheduled"},
            "read_only": {"type": "boolean"},
            "starts_at": {"type": "number"}, "ends_at": {"type": "number"},
            "created_by": {"type": "string", "description": "token name of the author"},
            "created_at": {"type": "number"},
            "ended_by": {"type": ["string", "null"], "description": "who ended it early"},
            "ranges": {"type": "array", "items": _RANGE},
            "weekly": {"type": "array", "items": _WEEKLY},
        },
    },
    "MaintenanceList": {"type": "object", "required": ["generated_at", "windows"],
                        "properties": {"generated_at": {"type": "number"},
                                       "windows": {"type": "array", "items": {
                                           "$ref": _REF + "MaintenanceWindow"}}}},
    "MaintenanceResult": {"type": "object", "required": ["window"],
                          "properties": {"window": {"$ref": _REF + "MaintenanceWindow"}}},
    "NewMaintenance": {
        "type": "object", "required": ["department", "end", "comment"],
        "properties": {
            "department": {"type": "string", "description": "a configured department code"},
            "start": {**_INSTANT, "description": "default now; " + _INSTANT_TEXT},
            "end": _INSTANT,
            "comment": {"type": "string", "description": "what the work is (required)"}},
    },
}

MAINTENANCE_PATHS: dict[str, Any] = {
    "/api/v1/maintenance": {
        "get": {"summary": "Maintenance windows: the config's (read-only) and announced ones",
                "operationId": "maintenance",
                "responses": {"200": _resp("MaintenanceList", "windows"), **_ERRORS}},
        "post": {"summary": "Announce a maintenance window (a fixed range of at most "
                            f"{MAX_WINDOW_SECONDS / 86400:g} days) for one department",
                 "operationId": "createMaintenance", **_WRITE,
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": _REF + "NewMaintenance"}}}},
                 "responses": {"201": _resp("MaintenanceResult", "announced"),
                               "409": _resp("Error", "too many open windows"), **_ERRORS}},
    },
    "/api/v1/maintenance/{id}": {"delete": {
        "summary": "End an announced window now (it stays in the history)",
        "operationId": "endMaintenance", **_WRITE,
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "description": "window id", "schema": {"type": "string"}}],
        "responses": {"200": _resp("MaintenanceResult", "ended"),
                      "404": _resp("Error", "no such open window"),
                      "409": _resp("Error", "the window is set in the config"), **_ERRORS},
    }},
}
