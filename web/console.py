"""The operator console (``GET /console``): sign in with an operator token, then see the
firing alerts with ack and silence buttons, the silences (create, end), the departments in a
maintenance window (announce one, end one early), the wall's announcement and the recent
history of who did what; the duty roster (who is on duty now and next in each team), which an
admin edits here too (``PUT /api/v1/oncall/roster``).

The alerts, silences and pending targets stay live: ``GET /console/stream`` (a console
session only) carries them as they change (``web.console_feed``). The alerts can be filtered
by severity, department and rule (kept in the address, so a filtered view is a bookmark),
selected and acked or silenced together (``web.console_bulk``); the silence builder previews
the alerts a silence would match before it is made. Incidents have their own page
(``web.console_incidents``).

The page is rendered on the server from the same functions the JSON API answers with
(``Dispatcher.view``, the silences, the history). Every action is taken by
``web/static/console.js`` through that JSON API — ``POST /api/v1/alerts/{fp}/ack``,
``POST``/``DELETE /api/v1/silences``, ``POST``/``DELETE /api/v1/maintenance``,
``POST``/``DELETE /api/v1/announcement`` — with the
session cookie and the page's CSRF token (``web.sessions``), so the API's checks and its
history records are the only ones there are.

Signing in and out are the only forms posted to the console itself; they are refused when the
browser says they come from another origin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from web import stream as sse
from web.bodies import body_limits, read_form
from web.console_feed import CONSOLE, SEVERITIES, SILENCE_DURATIONS
from web.console_time import HTML_PATTERN, PATTERN
from web.errors import ApiError
from web.i18n import LANGS, Translator, pick_lang
from web.keys import AUTH, CONTEXT, WALL, request_now
from web.sessions import (
    SESSIONS,
    Session,
    clear_session_cookie,
    session_id,
    set_session_cookie,
)

CONSOLE_PAGES = ("/console", "/console/incidents")  # where a sign-in may lead back to


def _lang(request: web.Request) -> str:
    lang = request.query.get("lang", "vi")
    if lang not in LANGS:
        raise ApiError(400, "invalid lang", f"expected one of {', '.join(LANGS)}, got {lang!r}")
    return pick_lang(lang)


def _same_origin(request: web.Request) -> None:
    """Refuse a sign-in or sign-out posted from another site's page."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:  # every current browser says where a request comes from
        if site != "same-origin":
            raise ApiError(403, "forbidden", "the form was posted from another origin")
        return
    # Older browsers: the Origin header ("null" under our no-referrer policy says nothing).
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser; the CSRF token still guards sign-out
    if urlsplit(origin).netloc != request.host:
        raise ApiError(403, "forbidden", "the form was posted from another origin")


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def _render(request: web.Request, template: str, lang: str, status: int = 200,
            **values: Any) -> web.Response:
    config = request.app[CONTEXT].config()
    t = Translator(lang, config.province.timezone)
    html = request.app[WALL].templates.get_template(template).render(
        t=t, lang=lang, title=config.service.title_in(lang), **values)
    return _html(html, status)


async def _form(request: web.Request) -> dict[str, str]:
    return await read_form(request, body_limits(request).console)


def console_session(request: web.Request) -> tuple[str, Session] | None:
    """The request's console session (id and session), or None when it has none."""
    sid = session_id(request)
    session = request.app[SESSIONS].get(sid, request_now(request))
    if session is None or sid is None:
        return None
    return sid, session


def filter_choices(alerts: list[dict[str, Any]], departments: Mapping[str, str],
                   rules: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The options of the alert filters: every severity, configured department and rule,
    and whatever the current alerts name besides (a rule removed by a reload still fires)."""
    severities = list(SEVERITIES) + sorted({a["labels"].get("severity", "") for a in alerts}
                                           - set(SEVERITIES) - {""})
    depts = dict(departments)
    for a in alerts:
        code = a["labels"].get("department", "")
        if code and code not in depts:
            depts[code] = a.get("department_name") or code
    names = sorted(set(rules) | {a["labels"].get("alertname", "") for a in alerts} - {""})
    return {"severity": [(s, s) for s in severities],
            "department": sorted(depts.items(), key=lambda kv: kv[0]),
            "rule": [(n, n) for n in names]}


async def page(request: web.Request) -> web.Response:
    lang = _lang(request)
    now = request_now(request)
    found = console_session(request)
    if found is None:
        return _render(request, "console_login.html", lang, error=None, back=request.path_qs)
    sid, session = found
    context = request.app[CONTEXT]
    dispatcher = context.alerts
    feed = request.app[CONSOLE]
    alerts = feed.alerts(now)
    silences = feed.silences(now)
    pending = feed.pending(alerts)
    history = await feed.history(now)
    maintenance, windows = feed.maintenance(now)
    oncall = feed.oncall(now)
    escalator = dispatcher.escalator
    roster = (json.dumps(escalator.roster.config.model_dump(mode="json"), ensure_ascii=False,
                         indent=2)
              if escalator is not None and session.principal.has("admin") else None)
    targets = sorted(context.board.targets.values(), key=lambda s: (s.department, s.name))
    return _render(
        request, "console.html", lang, oncall=oncall, roster=roster,
        who=session.principal.name, csrf=request.app[SESSIONS].csrf(sid), now=now,
        alerts=alerts, silences=silences, pending=pending, history=history,
        maintenance=maintenance, windows=windows,
        departments=context.department_names, announcement=request.app[WALL].announcement,
        durations=SILENCE_DURATIONS, since=feed.stream.last_id,
        choices=filter_choices(alerts, context.department_names, _rule_names(request)),
        targets=[(s.name, s.department) for s in targets],
        filters={k: request.query.get(k, "") for k in ("severity", "department", "rule")},
        time_pattern=PATTERN, time_html_pattern=HTML_PATTERN, page_name="alerts")


def _rule_names(request: web.Request) -> list[str]:
    """Rule names for the filters and the silence builder: the rules in force, and the
    alerts seen so far (a rule removed by a reload may still have alerts)."""
    context = request.app[CONTEXT]
    return sorted(({a.label("alertname") for a in context.alerts.alerts.values()}
                   | set(context.rule_names())) - {""})


async def stream(request: web.Request) -> web.StreamResponse:
    """The console's live stream: only for a console session (viewer at least), so nothing
    an operator sees is streamed to a page or script without one."""
    found = console_session(request)
    if found is None or not found[1].principal.has("viewer"):
        raise ApiError(401, "unauthorized", "the console's stream needs a console session; "
                                            "sign in at /console")
    feed = request.app[CONSOLE]
    feed.on_page()
    return await sse.serve(request, feed.stream, feed.clock)


def back_to(raw: str, lang: str) -> str:
    """Where a sign-in leads: the console page (and its filters) the sign-in form was shown
    on, only ever one of the console's own pages — a form field naming another site must
    not turn the sign-in into a redirect there."""
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or parts.path not in CONSOLE_PAGES:
        return f"/console?lang={lang}"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("lang", "cursor")]
    return f"{parts.path}?{urlencode([*query, ('lang', lang)])}"


async def login(request: web.Request) -> web.Response:
    _same_origin(request)
    lang = _lang(request)
    form = await _form(request)
    token = form.get("token", "").strip()
    error = None
    status = 200
    try:
        principal = request.app[AUTH].identify(f"Bearer {token}" if token else None)
        if principal is request.app[AUTH].anonymous:
            error, status = "console_error_token", 401
        elif not principal.has("operator"):
            error, status = "console_error_role", 403
    except ApiError:
        error, status = "console_error_token", 401
    if error is not None:
        return _render(request, "console_login.html", lang, status=status, error=error,
                       back=form.get("back", ""))
    sid = request.app[SESSIONS].create(principal, request_now(request))
    response = web.HTTPSeeOther(back_to(form.get("back", ""), lang))
    set_session_cookie(response, sid, secure=request.secure)
    raise response


async def logout(request: web.Request) -> web.Response:
    _same_origin(request)
    form = await _form(request)
    sid = session_id(request)
    sessions = request.app[SESSIONS]
    if sid is not None and sessions.get(sid, request_now(request)) is not None:
        if not sessions.csrf_ok(sid, form.get("csrf")):
            raise ApiError(403, "CSRF check failed", "sign out from the console's own page")
        sessions.end(sid)
    response = web.HTTPSeeOther("/console")
    clear_session_cookie(response)
    raise response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", page)
    app.router.add_get("/console/stream", stream)
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout)

