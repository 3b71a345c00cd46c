"""Acting on several alerts at once, and seeing what a silence would match before making it.

* ``POST /api/v1/alerts/bulk`` (operator): ``{"action": "ack" | "silence", "fingerprints":
  [...], "comment": ..., "duration": "2h"}`` (a silence may give ``"end": "dd/mm/yyyy HH:MM"``
  in the province's time instead of a duration). One request, one result per fingerprint:
  an alert that stopped firing meanwhile is a 404 in its own item while the others go
  through. Each ack and silence is made by the same dispatcher call as the single endpoints,
  so the alert history names the operator once per alert, as if they had clicked each row;
  alerts whose silence would have the same matchers share one silence.
* ``POST /api/v1/silences/preview`` (viewer): ``{"matchers": [...]}`` → the firing alerts
  those matchers select now, and why not when they cannot be used. The console's silence
  builder and its raw-matcher field both call it before creating.

Both read a JSON body under ``service.body_limits.alerts``. Made with a console session, a
write also needs the page's CSRF token (``web.sessions``) and is refused when the browser
says it comes from another site.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from alerts.acks import DEFAULT_ACK_SECONDS
from alerts.matchers import matches_all, parse_matchers
from alerts.silences import new_silence
from ioc.config_types import parse_duration
from web.alerts_api import _body, _dispatcher, _ok, _require
from web.auth import PRINCIPAL
from web.console import _same_origin
from web.console_feed import firing_alerts, silence_matchers
from web.console_time import looks_local, typed_field
from web.errors import ApiError
from web.keys import request_now
from web.openapi_parts import REF, query_param, ref_response

MAX_BULK = 500          # alerts in one request: more than any province has firing at once
MAX_COMMENT = 1000
PREVIEW_SHOWN = 200     # alerts listed by a preview (the count is always whole)


def _from_session(request: web.Request) -> bool:
    return request.get(PRINCIPAL) is not None and not request.headers.get("Authorization")


def _lang(request: web.Request) -> str:
    return request.query.get("lang", "en")


def _comment(data: dict[str, Any], required: bool) -> str:
    comment = data.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise ApiError(400, "invalid comment", f"a text of at most {MAX_COMMENT} characters")
    if required and not comment.strip():
        raise ApiError(400, "invalid comment", "say why in comment (the on-call team reads it)")
    return comment


def _fingerprints(data: dict[str, Any]) -> list[str]:
    raw = data.get("fingerprints")
    if (not isinstance(raw, list) or not raw
            or not all(isinstance(f, str) and 0 < len(f) <= 200 for f in raw)):
        raise ApiError(400, "invalid fingerprints", "expected a non-empty list of alert "
                                                    "fingerprints")
    if len(raw) > MAX_BULK:
        raise ApiError(400, "too many alerts", f"at most {MAX_BULK} in one request")
    return list(dict.fromkeys(raw))  # each once, in the order given


def _duration(data: dict[str, Any], default: float | None) -> float | None:
    value = data.get("duration")
    if value in (None, ""):
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ApiError(400, "invalid duration", str(exc)) from None


def typed_time(request: web.Request, data: dict[str, Any], name: str) -> float | None:
    """``data[name]`` as unix seconds: a number, or ``dd/mm/yyyy HH:MM`` in the province's
    time (web.console_time); the error in the request's ``?lang=``."""
    value = data.get(name)
    if value in (None, ""):
        return None
    if looks_local(value):
        tz = ZoneInfo(_dispatcher(request).settings.timezone)
        return typed_field(value, name, tz, _lang(request))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"invalid {name}", "expected unix seconds or dd/mm/yyyy HH:MM")
    return float(value)


async def bulk(request: web.Request) -> web.Response:
    if _from_session(request):
        _same_origin(request)
    who = _require(request, "operator")
    data = await _body(request)
    action = data.get("action")
    if action not in ("ack", "silence"):
        raise ApiError(400, "invalid action", "expected ack or silence")
    fingerprints = _fingerprints(data)
    comment = _comment(data, required=action == "silence")
    now = request_now(request)
    if action == "ack":
        duration = _duration(data, DEFAULT_ACK_SECONDS)
        assert duration is not None
        channel = "console" if _from_session(request) else "api"
        results = [await _ack(request, fp, who.name, comment, duration, channel, now)
                   for fp in fingerprints]
    else:
        ends_at = typed_time(request, data, "end")
        if ends_at is None:
            length = _duration(data, None)
            if length is None:
                raise ApiError(400, "missing end", "give duration (e.g. 2h) or end "
                                                   "(dd/mm/yyyy HH:MM)")
            ends_at = now + length
        results = await _silence(request, fingerprints, who.name, comment, ends_at, now)
    failed = sum(1 for r in results if not r["ok"])
    return _ok({"action": action, "ok": len(results) - failed, "failed": failed,
                "results": results})


async def _ack(request: web.Request, fingerprint: str, by: str, comment: str,
               duration: float, channel: str, now: float) -> dict[str, Any]:
    try:
        ack = await _dispatcher(request).acknowledge(
            fingerprint, by=by, comment=comment, now=now, duration=duration, channel=channel)
    except ValueError as exc:
        return _failure(fingerprint, 400, "invalid ack", str(exc))
    if ack is None:
        return _failure(fingerprint, 404, "no such firing alert",
                        f"no firing alert {fingerprint!r}")
    return {"fingerprint": fingerprint, "ok": True, "status": 200, "ack": ack.to_dict()}


async def _silence(request: web.Request, fingerprints: list[str], by: str, comment: str,
                   ends_at: float, now: float) -> list[dict[str, Any]]:
    desk = _dispatcher(request)
    firing = {a["fingerprint"]: a for a in firing_alerts(desk.view(now))}
    made: dict[tuple[str, ...], dict[str, Any]] = {}
    results = []
    for fp in fingerprints:
        alert = firing.get(fp)
        if alert is None:
            results.append(_failure(fp, 404, "no such firing alert", f"no firing alert {fp!r}"))
            continue
        matchers = tuple(silence_matchers(alert))
        if matchers not in made:
            try:
                silence = await desk.add_silence(matchers, starts_at=now, ends_at=ends_at,
                                                 created_by=by, comment=comment, now=now)
            except ValueError as exc:
                results.append(_failure(fp, 400, "invalid silence", str(exc)))
                continue
            made[matchers] = silence.to_dict(now)
        results.append({"fingerprint": fp, "ok": True, "status": 201,
                        "silence": made[matchers]})
    return results


def _failure(fingerprint: str, status: int, error: str, detail: str) -> dict[str, Any]:
    return {"fingerprint": fingerprint, "ok": False, "status": status, "error": error,
            "detail": detail}


async def preview(request: web.Request) -> web.Response:
    _require(request, "viewer")
    data = await _body(request)
    texts = data.get("matchers")
    if not isinstance(texts, list) or not all(isinstance(m, str) for m in texts):
        raise ApiError(400, "invalid matchers",
                       'expected a list such as ["department=\\"STP\\""]')
    texts = [m.strip() for m in texts if m.strip()]
    now = request_now(request)
    try:
        # The checks a silence gets (at least one matcher, not one matching every alert),
        # with a placeholder comment and end: only the matchers are being previewed.
        new_silence("preview", texts, starts_at=now, ends_at=now + 3600, created_by="",
                    comment="preview", now=now)
        matchers = parse_matchers(texts)
    except ValueError as exc:
        raise ApiError(400, "invalid matchers", str(exc)) from None
    matched = [a for a in firing_alerts(_dispatcher(request).view(now))
               if matches_all(matchers, a["labels"])]
    return _ok({"matchers": [str(m) for m in matchers], "count": len(matched),
                "alerts": [_shown(a) for a in matched[:PREVIEW_SHOWN]]})


def _shown(alert: dict[str, Any]) -> dict[str, Any]:
    labels = alert["labels"]
    return {"fingerprint": alert["fingerprint"], "labels": labels,
            "summary": alert["annotations"].get("summary") or labels.get("alertname", ""),
            "department_name": alert.get("department_name") or labels.get("department", ""),
            "severity": labels.get("severity", ""), "fired_at": alert.get("fired_at"),
            "acked": alert.get("ack") is not None, "muted": bool(alert.get("muted"))}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/alerts/bulk", bulk)
    app.router.add_post("/api/v1/silences/preview", preview)


# -- OpenAPI description (merged into web/openapi.py) ----------------------------------------

_ERRORS = {code: ref_response("Error", text) for code, text in (
    ("400", "invalid request"), ("401", "no or unknown token"),
    ("403", "the token lacks the role, or a session's write came from another origin or "
            "without its CSRF token"), ("413", "body too large"))}

BULK_SCHEMAS: dict[str, Any] = {
    "BulkAction": {
        "type": "object", "required": ["action", "fingerprints"],
        "properties": {
            "action": {"type": "string", "enum": ["ack", "silence"]},
            "fingerprints": {"type": "array", "items": {"type": "string"},
                             "maxItems": MAX_BULK},
            "comment": {"type": "string", "maxLength": MAX_COMMENT,
                        "description": "required for silence"},
            "duration": {"type": "string", "description": "ack: how long it holds (default "
                         "24h); silence: its length, e.g. 2h"},
            "end": {"type": "string", "description": "silence: instead of duration, "
                    "dd/mm/yyyy HH:MM in the province's time"}},
    },
    "BulkResult": {
        "type": "object", "required": ["action", "ok", "failed", "results"],
        "properties": {
            "action": {"type": "string"}, "ok": {"type": "integer"},
            "failed": {"type": "integer"},
            "results": {"type": "array", "items": {
                "type": "object", "required": ["fingerprint", "ok", "status"],
                "properties": {"fingerprint": {"type": "string"}, "ok": {"type": "boolean"},
                               "status": {"type": "integer"}, "error": {"type": "string"},
                               "detail": {"type": "string"},
                               "ack": {"$ref": REF + "Ack"},
                               "silence": {"$ref": REF + "Silence"}}}}},
    },
    "SilencePreview": {
        "type": "object", "required": ["matchers", "count", "alerts"],
        "properties": {
            "matchers": {"type": "array", "items": {"type": "string"}},
            "count": {"type": "integer", "description": "firing alerts matched"},
            "alerts": {"type": "array", "description": f"at most {PREVIEW_SHOWN} of them",
                       "items": {"type": "object"}}},
    },
}

BULK_PATHS: dict[str, Any] = {
    "/api/v1/alerts/bulk": {"post": {
        "summary": "Ack or silence several firing alerts in one request, one result each",
        "description": "Needs the operator role (a bearer token, or the console's session "
                       "with X-CSRF-Token). Alerts that share a silence's matchers share "
                       "one silence; an alert no longer firing fails alone (404 in its item).",
        "operationId": "bulkAlerts",
        "parameters": [query_param("lang", "language of time errors: vi or en")],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF + "BulkAction"}}}},
        "responses": {"200": ref_response("BulkResult", "one result per fingerprint"),
                      **_ERRORS},
    }},
    "/api/v1/silences/preview": {"post": {
        "summary": "The firing alerts a silence with these matchers would mute now",
        "description": "Needs the viewer role. Nothing is created.",
        "operationId": "previewSilence",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["matchers"],
            "properties": {"matchers": {"type": "array", "items": {"type": "string"}}}}}}},
        "responses": {"200": ref_response("SilencePreview", "the matched alerts"),
                      **_ERRORS},
    }},
}
