"""The alerting API: alerts with why they are (not) notified, acks, silences, deliveries and the
history of it all. Reads need the viewer role, writes the operator role; every write is
recorded with the token's name in the alert history."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from alerts.acks import DEFAULT_ACK_SECONDS
from alerts.rules import localized
from ioc.config_types import parse_duration
from web.auth import PRINCIPAL, Principal
from web.bodies import body_limits, parse_json, read_body
from web.console_time import looks_local, typed_field
from web.context import AlertDesk
from web.errors import ApiError
from web.i18n import DEFAULT_LANG, LANGS
from web.keys import AUTH, CONTEXT, request_now

MAX_LIMIT = 1000
ALERT_FILTERS = ("state", "severity", "department", "alertname", "receiver")


def _dispatcher(request: web.Request) -> AlertDesk:
    return request.app[CONTEXT].alerts


def _require(request: web.Request, role: str) -> Principal:
    return request.app[AUTH].require(request, role)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


async def _body(request: web.Request) -> dict[str, Any]:
    """A JSON object of at most ``service.body_limits.alerts`` bytes; else a clear 4xx."""
    raw = await read_body(request, body_limits(request).alerts)
    if not raw.strip():
        return {}
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid body", "expected a JSON object")
    return data


def _number(data: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = data.get(name, default)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ApiError(400, f"invalid {name}", f"expected unix seconds, got {value!r:.80}") \
            from None
    if not math.isfinite(number) or abs(number) > 1e11:  # beyond: no int64 milliseconds
        raise ApiError(400, f"invalid {name}", "expected a finite number of at most 1e11")
    return number


def _duration(data: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = data.get(name)
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ApiError(400, f"invalid {name}", str(exc)) from None


def _limit(params: Mapping[str, str], default: int = 100) -> int:
    raw = params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "invalid limit", f"expected 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


# -- alerts ----------------------------------------------------------------------------------


def filter_alerts(alerts: list[dict[str, Any]],
                  params: Mapping[str, str]) -> list[dict[str, Any]]:
    """``?state=firing&severity=critical&department=STP&receiver=oncall&muted=false``."""
    out = alerts
    for name in ALERT_FILTERS:
        wanted = params.get(name)
        if not wanted:
            continue
        if name == "state":
            out = [a for a in out if a["state"] == wanted]
        elif name == "receiver":
            out = [a for a in out if wanted in a["receivers"]]
        else:
            out = [a for a in out if a["labels"].get(name) == wanted]
    muted = params.get("muted")
    if muted in ("true", "false"):
        out = [a for a in out if bool(a["muted"]) is (muted == "true")]
    elif muted:
        raise ApiError(400, "invalid muted", "expected true or false")
    return out


TEXT_KEYS = ("title", "summary", "description")  # the annotations `text` gives per language


def with_text(alerts: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Each row with ``text``: its title, summary and description in ``lang`` (``summary_en``
    where the rule gives it, else the default text); ``annotations`` stay as rendered."""
    return [{**a, "text": {k: localized(a["annotations"], k, lang) for k in TEXT_KEYS}}
            for a in alerts]


async def list_alerts(request: web.Request) -> web.Response:
    _require(request, "viewer")
    lang = request.query.get("lang", DEFAULT_LANG)
    if lang not in LANGS:
        raise ApiError(400, "invalid lang", f"expected one of {', '.join(LANGS)}, got {lang!r}")
    now = request_now(request)
    alerts = filter_alerts(_dispatcher(request).view(now), request.query)
    return _ok({"generated_at": now, "alerts": with_text(alerts, lang)})


async def ack_alert(request: web.Request) -> web.Response:
    # A console session stands in for the token before _require looks (web.sessions).
    channel = "console" if request.get(PRINCIPAL) is not None else "api"
    who = _require(request, "operator")
    data = await _body(request)
    comment = data.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1000:
        raise ApiError(400, "invalid comment", "a text of at most 1000 characters")
    duration = _duration(data, "duration", DEFAULT_ACK_SECONDS)
    assert duration is not None
    fingerprint = request.match_info["fingerprint"]
    try:
        ack = await _dispatcher(request).acknowledge(
            fingerprint, by=who.name, comment=comment, now=request_now(request),
            duration=duration, channel=channel)
    except ValueError as exc:
        raise ApiError(400, "invalid ack", str(exc)) from None
    if ack is None:
        raise ApiError(404, "no such firing alert", f"no firing alert {fingerprint!r}")
    return _ok({"ack": ack.to_dict()})


# -- silences --------------------------------------------------------------------------------


async def list_silences(request: web.Request) -> web.Response:
    _require(request, "viewer")
    now = request_now(request)
    state = request.query.get("state")
    if state not in (None, "", "active", "pending", "expired"):
        raise ApiError(400, "invalid state", "expected active, pending or expired")
    silences = [s.to_dict(now) for s in _dispatcher(request).silences.values()]
    if state:
        silences = [s for s in silences if s["state"] == state]
    silences.sort(key=lambda s: s["created_at"], reverse=True)
    return _ok({"silences": silences})


async def create_silence(request: web.Request) -> web.Response:
    who = _require(request, "operator")
    data = await _body(request)
    now = request_now(request)
    matchers = data.get("matchers")
    if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
        raise ApiError(400, "invalid matchers",
                       'expected a list such as ["department=\\"STP\\"", "severity=\\"warning\\""]')
    comment = data.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1000:
        raise ApiError(400, "invalid comment", "a text of at most 1000 characters")
    tz = ZoneInfo(_dispatcher(request).settings.timezone)
    lang = request.query.get("lang", "en")
    # The console sends typed times, "start"/"end" as dd/mm/yyyy HH:MM (web.console_time).
    starts_at = (typed_field(data["start"], "start", tz, lang) if looks_local(data.get("start"))
                 else _number(data, "starts_at", now))
    assert starts_at is not None
    duration = _duration(data, "duration", None)
    ends_at = (typed_field(data["end"], "end", tz, lang) if looks_local(data.get("end"))
               else _number(data, "ends_at", None if duration is None
                            else starts_at + duration))
    if ends_at is None:
        raise ApiError(400, "missing end", "give ends_at (unix seconds), end (dd/mm/yyyy "
                                           "HH:MM) or duration (e.g. 2h)")
    try:
        silence = await _dispatcher(request).add_silence(
            matchers, starts_at=starts_at, ends_at=ends_at, created_by=who.name,
            comment=comment, now=now)
    except ValueError as exc:
        raise ApiError(400, "invalid silence", str(exc)) from None
    return _ok({"silence": silence.to_dict(now)}, status=201)


async def delete_silence(request: web.Request) -> web.Response:
    who = _require(request, "operator")
    now = request_now(request)
    silence_id = request.match_info["id"]
    ended = await _dispatcher(request).expire_silence(silence_id, by=who.name, now=now)
    if ended is None:
        raise ApiError(404, "no such active silence", f"no active silence {silence_id!r}")
    return _ok({"silence": ended.to_dict(now)})


# -- deliveries and history ------------------------------------------------------------------


async def list_notifications(request: web.Request) -> web.Response:
    _require(request, "viewer")
    state = request.query.get("state") or None
    if state not in (None, "pending", "sent", "failed", "dropped"):
        raise ApiError(400, "invalid state", "expected pending, sent, failed or dropped")
    store = _dispatcher(request).store
    rows = await store.recent(limit=_limit(request.query), state=state,
                              receiver=request.query.get("receiver") or None)
    return _ok({"queue_depth": await store.pending_count(),
                "notifications": [r.to_dict() for r in rows]})


async def alert_history(request: web.Request) -> web.Response:
    _require(request, "viewer")
    now = request_now(request)
    params = request.query
    end = _number(params, "end", now)
    assert end is not None
    start = _number(params, "start", end - 7 * 86400)
    assert start is not None
    if start > end:
        raise ApiError(400, "invalid range", "start is after end")
    events = await _dispatcher(request).store.history(
        start=start, end=end, limit=_limit(params),
        fingerprint=params.get("fingerprint") or None)
    return _ok({"start": start, "end": end, "events": events})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/alerts/history", alert_history)
    app.router.add_post("/api/v1/alerts/{fingerprint}/ack", ack_alert)
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_delete("/api/v1/silences/{id}", delete_silence)
    app.router.add_get("/api/v1/notifications", list_notifications)


# -- OpenAPI description (merged into web/openapi.py) ----------------------------------------

_REF = "#/components/schemas/"
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_NUM_OR_NULL = {"type": ["number", "null"]}


def _resp(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


def _param(name: str, description: str, kind: str = "string",
           where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path",
            "description": description, "schema": {"type": kind}}


_ERRORS = {code: _resp("Error", text) for code, text in (
    ("400", "invalid request"), ("401", "no or unknown token"),
    ("403", "the token lacks the role"), ("413", "body too large"))}
_WRITE = {"description": "Needs `Authorization: Bearer <token>` with the operator role."}

ALERT_SCHEMAS: dict[str, Any] = {
    "Ack": {"type": "object", "required": ["fingerprint", "by", "comment", "at", "expires_at"],
            "properties": {"fingerprint": {"type": "string"}, "by": {"type": "string"},
                           "comment": {"type": "string"}, "at": {"type": "number"},
                           "expires_at": {"type": "number"}}},
    "Alert": {
        "type": "object",
        "required": ["fingerprint", "state", "labels", "annotations", "value", "active_at",
                     "fired_at", "resolved_at", "department_name", "receivers", "muted",
                     "ack"],
        "properties": {
            "fingerprint": {"type": "string"},
            "state": {"type": "string", "enum": ["firing", "resolved"]},
            "labels": _STRMAP, "annotations": _STRMAP, "value": _NUM_OR_NULL,
            "text": {"type": "object", "description": "title, summary and description in "
                     "the language asked for with ?lang= (the default text where the rule "
                     "gives no translation)",
                     "properties": {k: {"type": "string"} for k in TEXT_KEYS}},
            "active_at": {"type": "number"}, "fired_at": _NUM_OR_NULL,
            "resolved_at": _NUM_OR_NULL, "department_name": {"type": "string"},
            "receivers": {"type": "array", "items": {"type": "string"}},
            "muted": {"type": "object", "description": "why nobody is notified: silenced_by "
                      "(silence ids), inhibited_by (fingerprint), maintenance (comment)",
                      "properties": {
                          "silenced_by": {"type": "array", "items": {"type": "string"}},
                          "inhibited_by": {"type": "string"},
                          "maintenance": {"type": "string"}}},
            "ack": {"oneOf": [{"$ref": _REF + "Ack"}, {"type": "null"}]},
        },
    },
    "AlertList": {"type": "object", "required": ["generated_at", "alerts"],
                  "properties": {"generated_at": {"type": "number"},
                                 "alerts": {"type": "array",
                                            "items": {"$ref": _REF + "Alert"}}}},
    "AckResult": {"type": "object", "required": ["ack"],
                  "properties": {"ack": {"$ref": _REF + "Ack"}}},
    "Silence": {
        "type": "object",
        "required": ["id", "matchers", "starts_at", "ends_at", "created_by", "comment",
                     "created_at", "state"],
        "properties": {"id": {"type": "string"},
                       "matchers": {"type": "array", "items": {"type": "string"}},
                       "starts_at": {"type": "number"}, "ends_at": {"type": "number"},
                       "created_by": {"type": "string"}, "comment": {"type": "string"},
                       "created_at": {"type": "number"},
                       "state": {"type": "string", "enum": ["pending", "active", "expired"]}},
    },
    "SilenceList": {"type": "object", "required": ["silences"],
                    "properties": {"silences": {"type": "array",
                                                "items": {"$ref": _REF + "Silence"}}}},
    "SilenceResult": {"type": "object", "required": ["silence"],
                      "properties": {"silence": {"$ref": _REF + "Silence"}}},
    "NewSilence": {
        "type": "object", "required": ["matchers", "comment"],
        "properties": {
            "matchers": {"type": "array", "items": {"type": "string"},
                         "examples": [['department="STP"', 'alertname=~"Target.*"']]},
            "comment": {"type": "string"},
            "starts_at": {"type": "number", "description": "unix seconds (default now)"},
            "ends_at": {"type": "number", "description": "unix seconds"},
            "start": {"type": "string", "description": "instead of starts_at: dd/mm/yyyy "
                      "HH:MM in the province's time"},
            "end": {"type": "string", "description": "instead of ends_at: dd/mm/yyyy HH:MM "
                    "in the province's time"},
            "duration": {"type": "string", "description": "instead of ends_at, e.g. 2h"}},
    },
    "NewAck": {"type": "object", "properties": {
        "comment": {"type": "string"},
        "duration": {"type": "string", "description": "how long the ack holds (default 24h)"}}},
    "Notification": {
        "type": "object",
        "required": ["id", "dedup_key", "integration", "receiver", "group_key", "status",
                     "state", "attempts", "created_at", "updated_at", "next_attempt_at",
                     "last_error", "alerts"],
        "properties": {
            "id": {"type": "integer"}, "dedup_key": {"type": "string"},
            "integration": {"type": "string"}, "receiver": {"type": "string"},
            "group_key": {"type": "string"},
            "status": {"type": "string", "enum": ["firing", "resolved"]},
            "state": {"type": "string", "enum": ["pending", "sent", "failed", "dropped"]},
            "attempts": {"type": "integer"}, "created_at": {"type": "number"},
            "updated_at": {"type": "number"}, "next_attempt_at": {"type": "number"},
            "last_error": {"type": ["string", "null"]},
            "alerts": {"type": "array", "items": {"type": "string"}}},
    },
    "NotificationList": {"type": "object", "required": ["queue_depth", "notifications"],
                         "properties": {"queue_depth": {"type": "integer"},
                                        "notifications": {"type": "array", "items": {
                                            "$ref": _REF + "Notification"}}}},
    "AlertHistory": {
        "type": "object", "required": ["start", "end", "events"],
        "properties": {
            "start": {"type": "number"}, "end": {"type": "number"},
            "events": {"type": "array", "items": {
                "type": "object", "required": ["ts", "kind", "fingerprint", "actor", "detail"],
                "properties": {
                    "ts": {"type": "number"},
                    "kind": {"type": "string", "description": "firing, resolved, ack, "
                             "silence, silence_expired, notification_failed"},
                    "fingerprint": {"type": ["string", "null"]},
                    "actor": {"type": "string", "description": "token name, or ioc"},
                    "detail": {"type": "object"}}}}},
    },
}

ALERT_PATHS: dict[str, Any] = {
    "/api/v1/alerts": {"get": {
        "summary": "Firing alerts, with their receivers, ack and why any is muted",
        "operationId": "alerts",
        "parameters": [_param(n, f"only alerts with this {n}") for n in ALERT_FILTERS]
        + [_param("muted", "true or false"),
           _param("lang", "vi (default) or en: the language of each alert's `text`")],
        "responses": {"200": _resp("AlertList", "alerts"), **_ERRORS},
    }},
    "/api/v1/alerts/{fingerprint}/ack": {"post": {
        "summary": "Acknowledge a firing alert: it stops repeating until it resolves",
        "operationId": "ackAlert", **_WRITE,
        "parameters": [_param("fingerprint", "the alert's fingerprint", where="path")],
        "requestBody": {"content": {"application/json": {
            "schema": {"$ref": _REF + "NewAck"}}}},
        "responses": {"200": _resp("AckResult", "acknowledged"),
                      "404": _resp("Error", "no such firing alert"), **_ERRORS},
    }},
    "/api/v1/alerts/history": {"get": {
        "summary": "Every state change, ack, silence and failed delivery, with who and when",
        "operationId": "alertHistory",
        "parameters": [_param("start", "unix seconds (default end - 7d)", "number"),
                       _param("end", "unix seconds (default now)", "number"),
                       _param("fingerprint", "only this alert"),
                       _param("limit", "at most this many, newest first (1-1000)", "integer")],
        "responses": {"200": _resp("AlertHistory", "history"), **_ERRORS},
    }},
    "/api/v1/silences": {
        "get": {"summary": "Silences, newest first", "operationId": "silences",
                "parameters": [_param("state", "active, pending or expired")],
                "responses": {"200": _resp("SilenceList", "silences"), **_ERRORS}},
        "post": {"summary": "Create a silence", "operationId": "createSilence", **_WRITE,
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": _REF + "NewSilence"}}}},
                 "responses": {"201": _resp("SilenceResult", "created"), **_ERRORS}},
    },
    "/api/v1/silences/{id}": {"delete": {
        "summary": "End a silence now (it stays in the history)", "operationId": "endSilence",
        **_WRITE, "parameters": [_param("id", "silence id", where="path")],
        "responses": {"200": _resp("SilenceResult", "ended"),
                      "404": _resp("Error", "no such active silence"), **_ERRORS},
    }},
    "/api/v1/notifications": {"get": {
        "summary": "Recent deliveries and failures, newest first",
        "operationId": "notifications",
        "parameters": [_param("state", "pending, sent, failed or dropped"),
                       _param("receiver", "only this receiver"),
                       _param("limit", "at most this many (1-1000)", "integer")],
        "responses": {"200": _resp("NotificationList", "notifications"), **_ERRORS},
    }},
}
