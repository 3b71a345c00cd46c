"""The incident ledger and reports over HTTP.

* ``GET /api/v1/incidents`` (viewer): newest first, filtered by department, target, time
  range and ``open``; ``cursor`` pages on (an opaque token from the previous page).
* ``POST /api/v1/incidents/{id}/notes`` (operator): one note on the incident's timeline,
  a JSON ``{"text": ...}`` under the alerts' body limit; the audit middleware records the
  write, the note itself records who wrote it.
* ``PUT`` (or ``POST``) ``/api/v1/incidents/{id}/public-note`` (operator): the one text the
  public status page shows for the incident, ``{"text": ...}``; empty text withdraws it.
  Audited like every write; the row keeps who wrote it and when.
* ``GET /api/v1/reports?period=2026-11&format=pdf`` (viewer): the report ``ioc report``
  writes, as a download. One report is built at a time (they read a month of history);
  a second request meanwhile gets 429 rather than doubling the load.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ioc.availability import is_week
from ioc.reports.render import CONTENT_TYPES, FORMATS, render
from ioc.store.base import StoreError
from ioc.store.incidents import NOTE_LIMIT, PUBLIC_NOTE_LIMIT, NotFound, Query
from web.bodies import body_limits, read_body
from web.context import WebContext
from web.errors import ApiError
from web.keys import AUTH, CONTEXT
from web.openapi_parts import REF as _REF
from web.openapi_parts import query_param as _param
from web.openapi_parts import ref_response as _resp

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
REPORT_BUSY: web.AppKey[asyncio.Lock] = web.AppKey("report_busy", asyncio.Lock)


def _app(request: web.Request, role: str) -> tuple[WebContext, str]:
    principal = request.app[AUTH].require(request, role)
    return request.app[CONTEXT], principal.name


MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: later times fit no calendar or column
CURSOR_MAX = 2**63 - 1


def _number(raw: str | None, name: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"invalid {name}", f"expected unix seconds, got {raw!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_TIME:
        raise ApiError(400, f"invalid {name}",
                       f"expected unix seconds between 0 and {MAX_TIME} (year 9999)")
    return value


def encode_cursor(cursor: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{cursor[0]}:{cursor[1]}".encode()).decode()


def decode_cursor(raw: str) -> tuple[int, str]:
    try:
        at, ident = base64.urlsafe_b64decode(raw.encode()).decode().split(":", 1)
        if not -CURSOR_MAX <= int(at) <= CURSOR_MAX:  # the store's integers are 64-bit
            raise ValueError(at)
        return int(at), ident
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid cursor", "pass the next_cursor of a previous page") \
            from None


async def list_incidents(request: web.Request) -> web.Response:
    app, _ = _app(request, "viewer")
    params = request.query
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(400, "invalid limit", f"expected 1 to {MAX_LIMIT}, got {raw_limit!r}")
    open_raw = params.get("open", "false").lower()
    if open_raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid open", "expected true or false")
    since, until = _number(params.get("start"), "start"), _number(params.get("end"), "end")
    if since is not None and until is not None and since > until:
        raise ApiError(400, "invalid range", "start is after end")
    query = Query(department=params.get("department") or None,
                  target=params.get("target") or None, since=since, until=until,
                  open_only=open_raw in ("true", "1"),
                  before=decode_cursor(params["cursor"]) if params.get("cursor") else None,
                  limit=int(raw_limit))
    try:
        items, cursor = await app.incidents.list(query, app.clock())
    except StoreError as exc:
        raise ApiError(503, "store unavailable", str(exc)) from None
    return web.json_response(
        {"incidents": items, "next_cursor": None if cursor is None else encode_cursor(cursor)},
        dumps=lambda data: json.dumps(data, ensure_ascii=False))


async def _texts(request: web.Request, limit: int, *optional: str) -> dict[str, str]:
    """``text`` (required) and the ``optional`` string fields of a JSON body."""
    raw = await read_body(request, body_limits(request).alerts)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid JSON", str(exc)) from None
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise ApiError(400, "invalid text", f"expected {{\"text\": \"...\"}}, at most "
                                            f"{limit} characters")
    out = {"text": text}
    for name in optional:
        value = data.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ApiError(400, f"invalid {name}", f"expected a string, at most {limit} "
                                                   "characters")
        out[name] = value
    return out


async def _text(request: web.Request, limit: int) -> str:
    return (await _texts(request, limit))["text"]


async def add_note(request: web.Request) -> web.Response:
    app, who = _app(request, "operator")
    text = await _text(request, NOTE_LIMIT)
    try:
        note = await app.incidents.add_note(request.match_info["id"], actor=who, text=text,
                                            now=app.clock())
    except NotFound:
        raise ApiError(404, "no such incident", request.match_info["id"]) from None
    except ValueError as exc:
        raise ApiError(400, "invalid note", str(exc)) from None
    except StoreError as exc:
        raise ApiError(503, "store unavailable", str(exc)) from None
    return web.json_response(note, status=201,
                             dumps=lambda data: json.dumps(data, ensure_ascii=False))


async def set_public_note(request: web.Request) -> web.Response:
    app, who = _app(request, "operator")
    body = await _texts(request, PUBLIC_NOTE_LIMIT, "text_en")
    try:
        note = await app.incidents.set_public_note(request.match_info["id"], actor=who,
                                                   text=body["text"], text_en=body["text_en"],
                                                   now=app.clock())
    except NotFound:
        raise ApiError(404, "no such incident", request.match_info["id"]) from None
    except ValueError as exc:
        raise ApiError(400, "invalid public note", str(exc)) from None
    except StoreError as exc:
        raise ApiError(503, "store unavailable", str(exc)) from None
    return web.json_response(note, dumps=lambda data: json.dumps(data, ensure_ascii=False))


async def report(request: web.Request) -> web.Response:
    app, _ = _app(request, "viewer")
    params = request.query
    period = _period_param(params)
    fmt = params.get("format", "json")
    lang = params.get("lang", "vi")
    if fmt not in (*FORMATS, "json"):
        raise ApiError(400, "invalid format", f"expected json, {', '.join(FORMATS)}")
    if lang not in ("vi", "en"):
        raise ApiError(400, "invalid lang", "expected vi or en")
    busy = request.app[REPORT_BUSY]
    if busy.locked():
        raise ApiError(429, "a report is being built", "try again in a few seconds")
    config = app.config()
    async with busy:
        try:
            data = await app.report(period, app.clock(), params.get("department") or None)
        except ValueError as exc:
            raise ApiError(400, "invalid report", str(exc)) from None
        except StoreError as exc:
            raise ApiError(503, "store unavailable", str(exc)) from None
        if fmt == "json":
            return web.json_response(data, dumps=lambda d: json.dumps(d, ensure_ascii=False))
        names = {d.code: d.name for d in config.departments}
        # PDF layout takes CPU for a second or so: off the loop, polls keep their time.
        body = await asyncio.to_thread(render, data, fmt, lang=lang,
                                       tz=ZoneInfo(config.province.timezone),
                                       departments=names)
    name = f"ioc-report-{data['period']}{'-' + data['department'] if data['department'] else ''}"
    return web.Response(body=body, headers={
        "Content-Type": CONTENT_TYPES[fmt],
        "Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def _period_param(params: Mapping[str, str]) -> str:
    """``period=`` (a month, an ISO week or a day) or ``week=``, as ``ioc report`` takes them."""
    period, week = params.get("period", ""), params.get("week", "")
    if period and week:
        raise ApiError(400, "invalid report", "give period or week, not both")
    if week and not is_week(week):
        raise ApiError(400, "invalid report", f"week {week!r}: expected an ISO week (2026-W48)")
    if not (period or week):
        raise ApiError(400, "invalid report",
                       "give period (2026-11, 2026-W48 or 2026-11-30) or week (2026-W48)")
    return period or week


def add_routes(app: web.Application) -> None:
    app[REPORT_BUSY] = asyncio.Lock()
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_post("/api/v1/incidents/{id}/notes", add_note)
    app.router.add_put("/api/v1/incidents/{id}/public-note", set_public_note)
    app.router.add_post("/api/v1/incidents/{id}/public-note", set_public_note)
    app.router.add_get("/api/v1/reports", report)


_ERRORS = {"400": _resp("Error", "invalid query"), "401": _resp("Error", "no or unknown token"),
           "403": _resp("Error", "the token lacks the role"),
           "503": _resp("Error", "the store is unavailable")}

INCIDENT_SCHEMAS: dict[str, Any] = {
    "IncidentNote": {
        "type": "object", "required": ["at", "by", "text"],
        "properties": {"at": {"type": "number"}, "by": {"type": "string"},
                       "text": {"type": "string"}},
    },
    "Incident": {
        "type": "object",
        "required": ["id", "target", "department", "started_at", "ended_at", "open",
                     "duration_seconds", "failed_polls", "causes", "planned", "public_note",
                     "public_note_en", "alert",
                     "acked_by", "acked_at", "notes"],
        "properties": {
            "id": {"type": "string"}, "target": {"type": "string"},
            "department": {"type": "string"},
            "started_at": {"type": "number", "description": "the first failed poll"},
            "ended_at": {"type": ["number", "null"],
                         "description": "the first good poll after; null while open"},
            "open": {"type": "boolean"}, "duration_seconds": {"type": "number"},
            "failed_polls": {"type": "integer"},
            "causes": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "failure reason: failed polls"},
            "planned": {"type": "boolean",
                        "description": "started inside a maintenance window"},
            "public_note": {"type": ["string", "null"],
                            "description": "what the public status page says about it"},
            "public_note_en": {"type": ["string", "null"],
                               "description": "the same in English (the English page "
                                              "falls back to public_note without it)"},
            "alert": {"type": ["object", "null"]},
            "acked_by": {"type": ["string", "null"]}, "acked_at": {"type": ["number", "null"]},
            "notes": {"type": "array", "items": {"$ref": _REF + "IncidentNote"}},
        },
    },
    "PublicNote": {
        "type": "object", "required": ["id", "public_note", "public_note_en", "by", "at"],
        "properties": {"id": {"type": "string"}, "public_note": {"type": ["string", "null"]},
                       "public_note_en": {"type": ["string", "null"]},
                       "by": {"type": ["string", "null"]}, "at": {"type": ["number", "null"]}},
    },
    "IncidentPage": {
        "type": "object", "required": ["incidents", "next_cursor"],
        "properties": {"incidents": {"type": "array", "items": {"$ref": _REF + "Incident"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
    "Report": {"type": "object", "required": ["period", "summary", "departments", "incidents"],
               "description": "docs/reports.md describes every figure"},
}

INCIDENT_PATHS: dict[str, Any] = {
    "/api/v1/incidents": {"get": {
        "summary": "Incidents (outages of a target, from stored polls), newest first",
        "description": "Needs the viewer role.",
        "operationId": "incidents",
        "parameters": [_param("department", "department code", "string"),
                       _param("target", "target name", "string"),
                       _param("start", "still down at or after (unix seconds)", "number"),
                       _param("end", "started before (unix seconds)", "number"),
                       _param("open", "only incidents still open (true/false)", "boolean"),
                       _param("cursor", "next_cursor of the previous page", "string"),
                       _param("limit", f"at most this many (1-{MAX_LIMIT})", "integer")],
        "responses": {"200": _resp("IncidentPage", "one page of incidents"), **_ERRORS},
    }},
    "/api/v1/incidents/{id}/notes": {"post": {
        "summary": "Add a note to an incident's timeline",
        "description": f"Needs the operator role. Body {{\"text\": ...}}, at most "
                       f"{NOTE_LIMIT} characters.",
        "operationId": "addIncidentNote",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["text"],
            "properties": {"text": {"type": "string", "maxLength": NOTE_LIMIT}}}}}},
        "responses": {"201": _resp("IncidentNote", "the note as stored"),
                      "404": _resp("Error", "no such incident"),
                      "413": _resp("Error", "body too large"), **_ERRORS},
    }},
    "/api/v1/incidents/{id}/public-note": {method: {
        "summary": "Set the incident's public note (the public status page's wording)",
        "description": f"Needs the operator role. Body {{\"text\": ..., \"text_en\": ...}} "
                       f"(Vietnamese, and optionally English), each at most "
                       f"{PUBLIC_NOTE_LIMIT} characters; PUT replaces both, and empty text "
                       "withdraws it in both languages. PUT and POST do the same.",
        "operationId": f"{method}IncidentPublicNote",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["text"],
            "properties": {"text": {"type": "string", "maxLength": PUBLIC_NOTE_LIMIT},
                           "text_en": {"type": ["string", "null"],
                                       "maxLength": PUBLIC_NOTE_LIMIT}}}}}},
        "responses": {"200": _resp("PublicNote", "the note as stored"),
                      "404": _resp("Error", "no such incident"),
                      "413": _resp("Error", "body too large"), **_ERRORS},
    } for method in ("put", "post")},
    "/api/v1/reports": {"get": {
        "summary": "The availability and incident report of a period",
        "description": "Needs the viewer role. Give period or week (a period that has not "
                       "begun is refused). format json (default), html, pdf, xlsx or "
                       "csv; lang vi (default) or en.",
        "operationId": "report",
        "parameters": [_param("period", "2026-11, 2026-W48 or 2026-11-30", "string"),
                       _param("week", "an ISO week, 2026-W48 (instead of period)", "string"),
                       _param("department", "one department's code", "string"),
                       _param("format", "json, html, pdf, xlsx or csv", "string"),
                       _param("lang", "vi or en", "string")],
        "responses": {"200": {"description": "the report", "content": {
            "application/json": {"schema": {"$ref": _REF + "Report"}},
            "text/html": {}, "application/pdf": {}, "text/csv": {},
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}},
            "429": _resp("Error", "another report is being built"), **_ERRORS},
    }},
}
