"""On call over HTTP: who is on duty, the roster's edits, and the ack page of a signed link.

* ``GET /api/v1/oncall`` (viewer): per team who is on duty now and next, the lead, and the
  day's holiday — names only; addresses and chat ids stay out of the read API.
* ``GET``/``PUT /api/v1/oncall/roster`` (admin): the stored roster as JSON; a PUT replaces it
  (validated like config.yaml, errors name their path) and is recorded in the alert history
  and, like every write, in the audit log.
* ``GET /oncall/ack/{token}``: the confirmation page of an e-mail or Zalo link. Nothing
  changes on GET (mail scanners and link previews open links); the page's button POSTs to the
  same address with a field only this page has (an HMAC of the token), and the POST is refused
  when the browser says it comes from another site. The link itself is the credential: signed,
  bound to one alert and one person, expiring, single-use, and honoured only while the person
  is on the roster. The ack is recorded as that person, channel ``email`` or ``zalo``, in the
  alert history; the audit log names them as ``oncall:<person>``.

Time comes from the dispatcher's clock (the real one in ``ioc run``), so what a link is
checked against is the same time delivery and escalation run on.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from alerts.acks import DEFAULT_ACK_SECONDS
from alerts.oncall import RosterConfig
from alerts.oncall_links import LinkError
from ioc.store.base import StoreError
from ioc.store.oncall import LinkUsedError, OncallStore
from web.auth import PRINCIPAL, Principal
from web.bodies import body_limits, read_body, read_form
from web.console import _lang, _render, _same_origin
from web.console_feed import CONSOLE
from web.context import AlertDesk
from web.errors import ApiError
from web.keys import AUTH, CONTEXT, WALL
from web.openapi_parts import REF as _REF
from web.openapi_parts import json_response as _resp

if TYPE_CHECKING:
    from alerts.escalation import Escalator

MAX_ROSTER_BYTES = 256 << 10


def _dispatcher(request: web.Request) -> AlertDesk:
    return request.app[CONTEXT].alerts


def _escalator(request: web.Request) -> Escalator:
    escalator = _dispatcher(request).escalator
    if escalator is None:
        raise ApiError(404, "on call not configured", "alerts.oncall is not set up")
    return escalator


def _require(request: web.Request, role: str) -> Principal:
    return request.app[AUTH].require(request, role)


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda d: json.dumps(d, ensure_ascii=False))


async def oncall_now(request: web.Request) -> web.Response:
    _require(request, "viewer")
    now = _dispatcher(request).clock()
    return _ok({"generated_at": now, "teams": _escalator(request).roster.view(now)})


async def get_roster(request: web.Request) -> web.Response:
    _require(request, "admin")
    return _ok({"roster": _escalator(request).roster.config.model_dump(mode="json")})


async def put_roster(request: web.Request) -> web.Response:
    who = _require(request, "admin")
    limit = min(body_limits(request).alerts * 16, MAX_ROSTER_BYTES)
    raw = await read_body(request, limit)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid JSON", str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("roster"), dict):
        raise ApiError(400, "invalid body", 'expected {"roster": {"people": […], "teams": […], '
                                            '"holidays": […]}}')
    try:
        roster = RosterConfig.model_validate(data["roster"])
    except ValidationError as exc:
        first = exc.errors(include_url=False)
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'roster'}: "
            f"{str(e['msg']).removeprefix('Value error, ')}" for e in first[:10])
        raise ApiError(400, "invalid roster", detail) from None
    try:
        await _escalator(request).replace_roster(roster, by=who.name,
                                                  now=_dispatcher(request).clock())
    except ValueError as exc:
        raise ApiError(400, "invalid roster", str(exc)) from None
    # the wall's duty line and the console's on-call card follow the edit at once
    request.app[WALL].on_alerts_changed()
    request.app[CONSOLE].on_alerts_changed()
    return _ok({"roster": roster.model_dump(mode="json")})


# -- the ack page ------------------------------------------------------------------------------


def _refuse(request: web.Request, lang: str, error: str, status: int) -> web.Response:
    return _render(request, "oncall_ack.html", lang, status=status, error=error, done=False)


async def _checked(request: web.Request, lang: str, now: float) -> Any:
    """(link, person, alert) of a usable link, or the refusal page to answer with."""
    escalator = _escalator(request)
    token = request.match_info["token"]
    if escalator.signer is None:
        return _refuse(request, lang, "oncall_refused_tampered", 404)
    try:
        link = escalator.signer.verify(token, now)
    except LinkError as exc:
        return _refuse(request, lang, f"oncall_refused_{exc.code}",
                       410 if exc.code == "expired" else 403)
    person = escalator.roster.people.get(link.person)
    if person is None:
        return _refuse(request, lang, "oncall_refused_person", 403)
    store = _dispatcher(request).store
    try:
        if isinstance(store, OncallStore) and await store.link_used(link.nonce):
            return _refuse(request, lang, "oncall_refused_used", 409)
    except StoreError:
        return _refuse(request, lang, "oncall_refused_store", 503)
    alert = _dispatcher(request).alerts.get(link.fingerprint)
    if alert is None or alert.state.value != "firing":
        return _refuse(request, lang, "oncall_refused_gone", 410)
    return link, person, alert


async def ack_page(request: web.Request) -> web.Response:
    lang = _lang(request)
    now = _dispatcher(request).clock()
    checked = await _checked(request, lang, now)
    if isinstance(checked, web.Response):
        return checked
    _, person, alert = checked
    escalator = _escalator(request)
    token = request.match_info["token"]
    assert escalator.signer is not None
    dept = alert.label("department")
    return _render(request, "oncall_ack.html", lang, error=None, done=False, token=token,
                   csrf=escalator.signer.csrf(token), person=person.name,
                   summary=dict(alert.annotations).get("summary") or alert.label("alertname"),
                   where=escalator.department_names.get(dept, dept),
                   since=alert.fired_at or alert.active_at)


async def ack_post(request: web.Request) -> web.Response:
    lang = _lang(request)
    try:
        _same_origin(request)
    except ApiError:
        return _refuse(request, lang, "oncall_refused_form", 403)
    now = _dispatcher(request).clock()
    checked = await _checked(request, lang, now)
    if isinstance(checked, web.Response):
        return checked
    link, person, _ = checked
    escalator = _escalator(request)
    token = request.match_info["token"]
    form = await read_form(request, body_limits(request).console)
    assert escalator.signer is not None
    if not escalator.signer.csrf_ok(token, form.get("csrf")):
        return _refuse(request, lang, "oncall_refused_form", 403)
    request[PRINCIPAL] = Principal(f"oncall:{person.id}", frozenset())  # for the audit log
    channel = link.channel
    try:
        ack = await _dispatcher(request).acknowledge(
            link.fingerprint, by=f"{person.name} ({person.id})", comment="", now=now,
            duration=DEFAULT_ACK_SECONDS, channel=channel, nonce=(link.nonce, person.id))
    except LinkUsedError:
        return _refuse(request, lang, "oncall_refused_used", 409)
    except StoreError:
        return _refuse(request, lang, "oncall_refused_store", 503)
    if ack is None:
        return _refuse(request, lang, "oncall_refused_gone", 410)
    return _render(request, "oncall_ack.html", lang, error=None, done=True,
                   person=person.name)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/oncall", oncall_now)
    app.router.add_get("/api/v1/oncall/roster", get_roster)
    app.router.add_put("/api/v1/oncall/roster", put_roster)
    app.router.add_get("/oncall/ack/{token}", ack_page)
    app.router.add_post("/oncall/ack/{token}", ack_post)


# -- OpenAPI description (merged into web/openapi.py) ----------------------------------------

_ERR = {"$ref": _REF + "Error"}
_DUTY = {"oneOf": [{"type": "null"}, {"type": "object", "required": [
    "person", "name", "reason", "starts_at", "ends_at"], "properties": {
    "person": {"type": "string"}, "name": {"type": "string"},
    "reason": {"type": "string", "enum": ["rotation", "override", "holiday"]},
    "starts_at": {"type": "number"}, "ends_at": {"type": "number"}}}]}


_DENIED = {"401": _resp(_ERR, "no or unknown token"),
           "403": _resp(_ERR, "the token lacks the role")}

ONCALL_SCHEMAS: dict[str, Any] = {
    "OncallTeam": {"type": "object", "required": ["team", "now", "next", "lead", "holiday"],
                   "properties": {"team": {"type": "string"}, "now": _DUTY, "next": _DUTY,
                                  "lead": {"type": ["object", "null"]},
                                  "holiday": {"type": ["string", "null"]}}},
    "Oncall": {"type": "object", "required": ["generated_at", "teams"],
               "properties": {"generated_at": {"type": "number"},
                              "teams": {"type": "array",
                                        "items": {"$ref": _REF + "OncallTeam"}}}},
    "Roster": {"type": "object", "required": ["roster"], "properties": {"roster": {
        "type": "object", "description": "people, teams, holidays as in alerts.oncall "
                                         "(docs/configuration.md)"}}},
}

ONCALL_PATHS: dict[str, Any] = {
    "/api/v1/oncall": {"get": {
        "summary": "Who is on duty now and next, per team (viewer)",
        "operationId": "oncall",
        "responses": {"200": _resp({"$ref": _REF + "Oncall"}, "the teams"), **_DENIED}}},
    "/api/v1/oncall/roster": {
        "get": {"summary": "The duty roster as stored (admin)", "operationId": "getRoster",
                "responses": {"200": _resp({"$ref": _REF + "Roster"}, "the roster"),
                              **_DENIED}},
        "put": {"summary": "Replace the duty roster (admin; recorded in the history)",
                "operationId": "putRoster",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": _REF + "Roster"}}}},
                "responses": {"200": _resp({"$ref": _REF + "Roster"}, "stored"),
                              "400": _resp(_ERR, "invalid roster; each error names its path"),
                              **_DENIED}}},
}
