"""The simulated public-service portal's statistics endpoints, in ioc's own JSON contract.

``GET /_portal/v1/dossiers`` and ``GET /_portal/v1/feedback`` answer what the province's
portal would (docs/integrations/portal.md): per unit, the counters of the current month. The
numbers come from :mod:`.portal_model`, a pure function of the time and a seed; this module
only reads the clock once per request and renders JSON.

Faults for the backlog live here too, under ``/_sim/portal/faults`` and guarded by the same
simulator token as the site faults: a backlog spike (many dossiers received at once and not
moving) or an overdue surge (many dossiers past their deadline) in one unit, to watch ioc's
rates and alerts react.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from aiohttp import web

from ioc import clock
from ioc.domain import DossierCounts, FeedbackCounts

from .portal_model import (
    CATALOGUE,
    TIMEZONE,
    Dossier,
    PortalClock,
    PortalModel,
    overdue_dossiers,
    period_end,
    period_start,
    spike_dossiers,
)

log = logging.getLogger("ioc.simulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Guard = Callable[[Handler], Handler]

PortalFaultKind = Literal["backlog_spike", "overdue_surge"]
PORTAL_FAULT_KINDS: tuple[PortalFaultKind, ...] = ("backlog_spike", "overdue_surge")
DEFAULT_COUNT: dict[PortalFaultKind, int] = {"backlog_spike": 300, "overdue_surge": 40}
MAX_COUNT = 100_000
MAX_UNTIL = 7 * 24 * 3600.0
MAX_BODY = 64 * 1024


class PortalFaultError(ValueError):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PortalFault:
    unit: str
    kind: PortalFaultKind
    count: int
    since: float
    expires_at: float | None

    def dossiers(self) -> list[Dossier]:
        if self.kind == "backlog_spike":
            return spike_dossiers(self.since, self.count)
        return overdue_dossiers(self.since, self.count)

    def describe(self, now: float) -> dict[str, Any]:
        left = None if self.expires_at is None else max(0.0, self.expires_at - now)
        return {"unit": self.unit, "fault": self.kind, "count": self.count,
                "since": _iso(self.since), "expires_in": left}


def parse_portal_fault(body: object, units: set[str], now: float) -> PortalFault:
    """Validate ``{"unit": …, "fault": "backlog_spike"|"overdue_surge", "count"?, "until"?}``."""
    if not isinstance(body, dict):
        raise PortalFaultError("invalid fault", "body must be a JSON object")
    unknown = sorted(set(body) - {"unit", "fault", "count", "until"})
    if unknown:
        raise PortalFaultError("invalid fault", f"unknown key {unknown[0]!r} "
                               "(allowed: unit, fault, count, until)")
    unit = body.get("unit")
    if not isinstance(unit, str) or unit not in units:
        raise PortalFaultError("unknown unit", "'unit' must be the code of a unit with "
                               "dossiers; see GET /_portal/v1/dossiers")
    kind = body.get("fault")
    if kind not in PORTAL_FAULT_KINDS:
        raise PortalFaultError("unknown fault",
                               f"'fault' must be one of {', '.join(PORTAL_FAULT_KINDS)}")
    count = body.get("count", DEFAULT_COUNT[kind])
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise PortalFaultError("invalid option", f"'count' must be an integer 1-{MAX_COUNT}")
    until = body.get("until")
    if until is not None and (isinstance(until, bool) or not isinstance(until, int | float)
                              or not math.isfinite(until) or not 0 < until <= MAX_UNTIL):
        raise PortalFaultError("invalid option",
                               f"'until' must be seconds, > 0 and <= {MAX_UNTIL:g}")
    return PortalFault(unit, kind, count, now, None if until is None else now + until)


@dataclass(slots=True)
class PortalState:
    """The model, the unit names, the faults in force and the portal's clock.

    Everything the portal reports is at portal time (``time.at(real)``); a fault's ``since``
    is portal time too (its dossiers live in the model's time), while ``until`` counts real
    seconds, as the operator who set it means.
    """

    model: PortalModel
    names: dict[str, str]
    faults: dict[str, PortalFault] = field(default_factory=dict)
    time: PortalClock = field(default_factory=lambda: PortalClock(0.0))

    def active(self, now: float) -> list[PortalFault]:
        for unit in [u for u, f in self.faults.items()
                     if f.expires_at is not None and f.expires_at <= now]:
            del self.faults[unit]
        return [self.faults[u] for u in sorted(self.faults)]

    def extra(self, now: float) -> dict[str, list[Dossier]]:
        return {f.unit: f.dossiers() for f in self.active(now)}


PORTAL = web.AppKey("ioc_portal_state", PortalState)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, TIMEZONE).isoformat(timespec="seconds")


def _period(now: float) -> dict[str, str]:
    return {"start": _iso(period_start(now)), "end": _iso(period_end(now))}


def dossier_unit(code: str, name: str, c: DossierCounts) -> dict[str, Any]:
    return {
        "code": code, "name": name,
        "received": {"online": c.received_online, "direct": c.received_direct,
                     "postal": c.received_postal},
        "carried_over": c.carried_over,
        "resolved": {"early": c.resolved_early, "on_time": c.resolved_ontime,
                     "late": c.resolved_late},
        "in_progress": {"on_time": c.in_progress_ontime, "overdue": c.in_progress_overdue,
                        "due_soon": c.due_soon},
        "waiting_supplement": c.waiting_supplement, "paused": c.paused,
        "returned": c.returned, "withdrawn": c.withdrawn,
    }


def feedback_unit(code: str, name: str, c: FeedbackCounts) -> dict[str, Any]:
    return {"code": code, "name": name, "received": c.received, "in_progress": c.in_progress,
            "overdue": c.overdue,
            "resolved": {"on_time": c.resolved_ontime, "late": c.resolved_late}}


def dossiers_document(state: PortalState, now: float, real: float | None = None
                      ) -> dict[str, Any]:
    """The statistics at portal time ``now``; ``real`` (default ``now``) expires faults."""
    counts = state.model.dossiers(now, state.extra(now if real is None else real))
    return {
        "schema": "ioc.portal.dossiers/v1",
        "period": _period(now),
        "generated_at": _iso(now),
        "procedures": dict(CATALOGUE),
        "units": [dossier_unit(code, state.names.get(code, code), c)
                  for code, c in counts.items()],
    }


def feedback_document(state: PortalState, now: float) -> dict[str, Any]:
    counts = state.model.feedback(now)
    return {
        "schema": "ioc.portal.feedback/v1",
        "period": _period(now),
        "generated_at": _iso(now),
        "units": [feedback_unit(code, state.names.get(code, code), c)
                  for code, c in counts.items()],
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status,
                        content_type="application/json")


def _error(status: int, error: str, detail: str) -> web.Response:
    return _json({"error": error, "detail": detail}, status)


async def get_dossiers(request: web.Request) -> web.Response:
    state = request.app[PORTAL]
    real = clock.now()
    return _json(dossiers_document(state, state.time.at(real), real))


async def get_feedback(request: web.Request) -> web.Response:
    state = request.app[PORTAL]
    return _json(feedback_document(state, state.time.at(clock.now())))


async def list_portal_faults(request: web.Request) -> web.Response:
    now = clock.now()
    return _json([f.describe(now) for f in request.app[PORTAL].active(now)])


async def set_portal_fault(request: web.Request) -> web.Response:
    state = request.app[PORTAL]
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, "body too large", f"request body must be at most {MAX_BODY} bytes")
    try:
        body = json.loads((await request.read()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, "invalid JSON", f"request body is not valid JSON: {exc}")
    now = clock.now()
    try:
        fault = parse_portal_fault(body, set(state.model.units), now)
    except PortalFaultError as exc:
        return _error(400, exc.error, exc.detail)
    fault = replace(fault, since=state.time.at(now))
    state.faults[fault.unit] = fault
    log.info("portal fault %s on %s (%d dossiers)", fault.kind, fault.unit, fault.count)
    return _json(fault.describe(now))


async def clear_portal_fault(request: web.Request) -> web.Response:
    state = request.app[PORTAL]
    code = request.match_info["unit"]
    if code not in state.model.units:
        return _error(404, "unknown unit", "no unit with dossiers has that code")
    cleared = 1 if state.faults.pop(code, None) is not None else 0
    return _json({"cleared": cleared})


async def clear_all_portal_faults(request: web.Request) -> web.Response:
    state = request.app[PORTAL]
    cleared = len(state.faults)
    state.faults.clear()
    return _json({"cleared": cleared})


def add_portal_routes(app: web.Application, names: dict[str, str], *, seed: int | None,
                      guard: Guard, time: PortalClock | None = None,
                      min_monthly: int = 0) -> None:
    """Mount the portal on the simulator app; ``guard`` wraps the fault writes (token).

    ``time`` is the portal's clock (default: real time); ``min_monthly`` lifts the smallest
    offices' dossiers a month (see :class:`.portal_model.PortalModel`).
    """
    app[PORTAL] = PortalState(PortalModel(names, seed=seed or 0, min_monthly=min_monthly),
                              names, time=time or PortalClock(0.0))
    app.router.add_get("/_portal/v1/dossiers", get_dossiers)
    app.router.add_get("/_portal/v1/feedback", get_feedback)
    app.router.add_get("/_sim/portal/faults", list_portal_faults)
    app.router.add_post("/_sim/portal/faults", guard(set_portal_fault))
    app.router.add_delete("/_sim/portal/faults", guard(clear_all_portal_faults))
    app.router.add_delete("/_sim/portal/faults/{unit}", guard(clear_portal_fault))
