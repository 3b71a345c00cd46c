"""The console's incidents page (``GET /console/incidents``): the incident ledger an operator
reads back after a night shift, and the notes they add to it.

The list is the one ``GET /api/v1/incidents`` answers, read through the web context
(``IncidentStore.list``), never over HTTP: filters by department, target, open only and a time
range typed as ``dd/mm/yyyy HH:MM`` (``web.console_time``), newest first, a page at a time with
the store's cursor. Each incident shows its start, end, duration, the causes of its failed
polls, the alert that fired for it and who acked it, and its notes' timeline; a note is added
through ``POST /api/v1/incidents/{id}/notes`` by the page's script, as every console action
goes through the JSON API. A public note is shown when the store has one (``public_note``).
The report download form links to ``GET /api/v1/reports``.

Bad filter input is shown on the page next to the form (the list then is unfiltered by it);
the page itself never fails on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from ioc.reports.render import FORMATS
from ioc.store.base import StoreError
from ioc.store.incidents import Query
from web.console import _lang, _render, console_session
from web.console_time import HTML_PATTERN, PATTERN, TimeInputError, parse_local
from web.errors import ApiError
from web.i18n import catalogue
from web.incidents_api import decode_cursor, encode_cursor
from web.keys import CONTEXT, request_now
from web.sessions import SESSIONS

PAGE_SIZE = 25
FILTERS = ("department", "target", "open", "start", "end")


def duration_text(seconds: float, t: Any) -> str:
    """``2 giờ 05 phút`` / ``2 h 05 min``: how long an incident lasted, to the minute (seconds
    under one)."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return t("console_duration_dh", d=days, h=hours)
    if hours:
        return t("console_duration_hm", h=hours, m=f"{minutes:02d}")
    if minutes:
        return t("console_duration_ms", m=minutes, s=f"{secs:02d}")
    return t("console_duration_s", s=secs)


def last_month(now: float, tz: ZoneInfo) -> str:
    """The report period an operator asks for most: the month before this one."""
    local = datetime.fromtimestamp(now, tz)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return f"{year:04d}-{month:02d}"


async def page(request: web.Request) -> web.Response:
    lang = _lang(request)
    found = console_session(request)
    if found is None:
        return _render(request, "console_login.html", lang, error=None,
                       back=request.path_qs)
    sid, session = found
    context = request.app[CONTEXT]
    config = context.config()
    tz = ZoneInfo(config.province.timezone)
    params = request.query
    filters = {k: params.get(k, "").strip() for k in FILTERS}
    errors: list[str] = []
    times: dict[str, float | None] = {"start": None, "end": None}
    for name in ("start", "end"):
        if filters[name]:
            try:
                times[name] = parse_local(filters[name], tz)
            except TimeInputError as exc:
                errors.append(exc.message(lang))
    if times["start"] is not None and times["end"] is not None \
            and times["start"] > times["end"]:
        errors.append(_words(lang)["console_error_range"])
        times = {"start": None, "end": None}
    cursor = None
    if params.get("cursor"):
        try:
            cursor = decode_cursor(params["cursor"])
        except ApiError:  # an edited address: start again at the first page
            errors.append(_words(lang)["console_error_cursor"])
    query = Query(department=filters["department"] or None, target=filters["target"] or None,
                  since=times["start"], until=times["end"], open_only=filters["open"] == "1",
                  before=cursor, limit=PAGE_SIZE)
    incidents: list[dict[str, Any]] = []
    next_cursor = None
    store_error = None
    try:
        incidents, after = await context.incidents.list(query, request_now(request))
        next_cursor = None if after is None else encode_cursor(after)
    except StoreError as exc:
        store_error = str(exc)
    kept = {k: v for k, v in filters.items() if v}
    base = {"lang": lang, **kept}
    targets = sorted(context.board.targets.values(), key=lambda s: (s.department, s.name))
    return _render(
        request, "console_incidents.html", lang, who=session.principal.name,
        csrf=request.app[SESSIONS].csrf(sid), incidents=incidents, filters=filters,
        errors=errors, store_error=store_error, departments=context.department_names,
        targets=[s.name for s in targets],
        next_url=(f"/console/incidents?{urlencode({**base, 'cursor': next_cursor})}"
                  if next_cursor else None),
        first_url=(f"/console/incidents?{urlencode(base)}" if cursor is not None else None),
        duration_text=duration_text, time_pattern=PATTERN, time_html_pattern=HTML_PATTERN,
        period=last_month(request_now(request), tz), formats=FORMATS, page_name="incidents")


def _words(lang: str) -> dict[str, str]:
    return catalogue(lang)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/incidents", page)
