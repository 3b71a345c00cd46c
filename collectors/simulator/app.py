"""The simulator's aiohttp application: one small website per unit, plus a fault-control API.

It stands in for the province's real department systems so the demo and the tests have a real
HTTP target to monitor, with realistic per-unit latency and faults injected at run time.

The fault API can take a site "down", so it is guarded: it is disabled unless a token is
configured, and writes need ``Authorization: Bearer <token>``. The token is never logged and
never appears in a ``repr``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html import escape
from http import HTTPStatus

from aiohttp import web

from ioc import clock

from .faults import Effect, FaultBoard, FaultSpecError, parse_fault
from .portal import add_portal_routes
from .portal_model import PortalClock
from .province import Unit, province_name, units

log = logging.getLogger("ioc.simulator")

MAX_BODY = 64 * 1024
MIN_LATENCY = 0.020
MAX_LATENCY = 0.180
JITTER = 0.2  # fraction of the base latency added at random, at most
SIMULATOR_BACKLOG = 4096  # pending connections the listening socket queues (see start_simulator)

SPAM_TITLE = "Nhà cái uy tín - Cá cược bóng đá - Nổ hũ - Casino"
SPAM_TEXT = (
    "Nhà cái uy tín - cá cược bóng đá - nổ hũ - casino trực tuyến. "
    "Đăng ký nhận thưởng 100% lần nạp đầu, rút tiền siêu tốc 24/7."
)

_DISABLED_DETAIL = "set simulator.token (IOC_SIM_TOKEN) to enable it"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def base_latency(code: str) -> float:
    """A unit's stable latency in seconds (20–180 ms), derived from its code.

    Hashing (not Python's salted ``hash``) keeps it the same across runs and machines, so a
    given department is always "the slow one" in every demo.
    """
    digest = hashlib.sha256(code.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:4], "big") / 0xFFFFFFFF
    return MIN_LATENCY + fraction * (MAX_LATENCY - MIN_LATENCY)


@dataclass(slots=True)
class SimulatorState:
    """Everything one simulator app instance owns; stored on the app under :data:`STATE`."""

    units: dict[str, Unit]
    province: str
    token: bytes | None = field(repr=False)
    latency_scale: float
    rng: random.Random = field(repr=False)
    faults: FaultBoard = field(default_factory=FaultBoard)

    def latency(self, code: str) -> float:
        base = base_latency(code)
        return (base + self.rng.uniform(0.0, JITTER * base)) * self.latency_scale


STATE = web.AppKey("ioc_simulator_state", SimulatorState)


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


# --- HTML --------------------------------------------------------------------------------------

def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="vi">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def unit_page(unit: Unit, province: str, *, spam: bool = False) -> str:
    """The unit's home page; with ``spam`` it imitates an SEO-spam defacement."""
    name = escape(unit.name)
    main = (
        f"<h1>{name}</h1>\n"
        f"<p>Trang thông tin điện tử của {name}, {escape(province)}. "
        "Hệ thống đang hoạt động bình thường.</p>\n"
    )
    if not spam:
        return _page(f"{unit.name} — {province}", main)
    injected = (
        f'<div class="promo"><h2>{escape(SPAM_TITLE)}</h2>\n'
        f"<p>{escape(SPAM_TEXT)}</p></div>\n"
    )
    return _page(SPAM_TITLE, injected + main)


def index_page(all_units: list[Unit], province: str) -> str:
    headings = {"department": "Sở, ban, ngành", "district": "UBND cấp huyện",
                "shared": "Hệ thống dùng chung"}
    parts = [f"<h1>Hệ thống mô phỏng — {escape(province)}</h1>\n"]
    for kind, heading in headings.items():
        items = "".join(
            f'<li><a href="{escape(u.path)}">{escape(u.name)}</a> ({escape(u.code)})</li>\n'
            for u in all_units if u.kind == kind
        )
        parts.append(f"<h2>{heading}</h2>\n<ul>\n{items}</ul>\n")
    return _page(f"Hệ thống mô phỏng — {province}", "".join(parts))


# --- unit sites ---------------------------------------------------------------------------------

def _unit(request: web.Request) -> Unit:
    found = request.app[STATE].units.get(request.match_info["code"])
    if found is None:
        raise web.HTTPNotFound(text="Không tìm thấy trang / not found\n")
    return found


def _drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the socket without answering, so clients see a disconnect, not an HTTP status.

    aiohttp then fails to write the returned response to the closed transport and drops it
    quietly (it treats that as the client having gone away).
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=503)


async def _apply(request: web.Request, unit: Unit) -> Effect | web.StreamResponse:
    """Simulate latency and the unit's fault; a response means "answer with this instead"."""
    state = request.app[STATE]
    latency = state.latency(unit.code)
    if latency > 0:
        await asyncio.sleep(latency)
    effect = state.faults.effect(unit.code, clock.monotonic())
    if effect.disconnect:
        return _drop_connection(request)
    if effect.delay:
        await asyncio.sleep(effect.delay)
    if effect.status is not None:
        try:
            reason = HTTPStatus(effect.status).phrase
        except ValueError:  # e.g. 599: valid to send, but has no standard phrase
            reason = "Error"
        return web.Response(status=effect.status, text=f"{effect.status} {reason}\n")
    return effect


async def unit_home(request: web.Request) -> web.StreamResponse:
    unit = _unit(request)
    effect = await _apply(request, unit)
    if isinstance(effect, web.StreamResponse):
        return effect
    html = unit_page(unit, request.app[STATE].province, spam=effect.spam)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def unit_health(request: web.Request) -> web.StreamResponse:
    unit = _unit(request)
    effect = await _apply(request, unit)
    if isinstance(effect, web.StreamResponse):
        return effect
    status = "degraded" if effect.spam else "ok"
    return web.json_response(
        {"status": status, "unit": unit.code, "name": unit.name, "time": int(clock.now())}
    )


async def unit_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently(_unit(request).path)


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    html = index_page(list(state.units.values()), state.province)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


# --- /_sim control API ----------------------------------------------------------------------------

async def list_units(request: web.Request) -> web.Response:
    return web.json_response([
        {"code": u.code, "name": u.name, "kind": u.kind, "path": u.path}
        for u in request.app[STATE].units.values()
    ])


async def list_faults(request: web.Request) -> web.Response:
    now = clock.monotonic()
    return web.json_response([f.describe(now) for f in request.app[STATE].faults.active(now)])


def _auth_failure(request: web.Request) -> web.Response | None:
    """None when the request may write; otherwise the 403/401 response to send."""
    token = request.app[STATE].token
    if not token:
        return _error(403, "fault injection disabled", _DISABLED_DETAIL)
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    presented = credentials.strip().encode("utf-8")
    if scheme.lower() == "bearer" and hmac.compare_digest(presented, token):
        return None
    log.warning("rejected %s %s from %s: bad or missing token",
                request.method, request.path, request.remote)
    response = _error(401, "unauthorized", "send 'Authorization: Bearer <simulator token>'")
    response.headers["WWW-Authenticate"] = 'Bearer realm="ioc-simulator"'
    return response


def requires_token(handler: Handler) -> Handler:
    """Wrap a write endpoint so it runs only with the configured bearer token."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        failure = _auth_failure(request)
        return failure if failure is not None else await handler(request)
    guarded.__doc__ = handler.__doc__
    return guarded


class _Reply(Exception):
    """Carries a finished response out of a helper; caught by the handler that called it."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


async def _read_json(request: web.Request) -> object:
    """Decode the body, mapping every way it can be wrong to a JSON 400/413."""
    too_large = _error(413, "body too large", f"request body must be at most {MAX_BODY} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _Reply(too_large)  # refuse before reading a byte of it
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Reply(too_large) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Reply(_error(400, "invalid JSON", f"request body is not valid JSON: {exc}")) \
            from None


@requires_token
async def set_fault(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        spec = parse_fault(await _read_json(request), state.units)
    except _Reply as reply:
        return reply.response
    except FaultSpecError as exc:
        return _error(400, exc.error, exc.detail)
    now = clock.monotonic()
    active, replaced = state.faults.set(spec, now)
    log.info("fault %s on %s%s", spec.kind, spec.unit, " (replacing previous)" if replaced else "")
    return web.json_response(active.describe(now))


@requires_token
async def clear_fault(request: web.Request) -> web.Response:
    state = request.app[STATE]
    code = request.match_info["unit"]
    if code not in state.units:
        return _error(404, "unknown unit", "no unit with that code; see GET /_sim/units")
    cleared = state.faults.clear(code)
    if cleared:
        log.info("fault cleared on %s", code)
    return web.json_response({"cleared": cleared})


@requires_token
async def clear_all_faults(request: web.Request) -> web.Response:
    cleared = request.app[STATE].faults.clear_all()
    log.info("all faults cleared (%d)", cleared)
    return web.json_response({"cleared": cleared})


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keep /_sim answers JSON and make sure no request ever gets a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/_sim/") or exc.status < 400:
            raise
        response = _error(exc.status, exc.reason.lower(), f"{request.method} {request.path}")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("simulator error on %s %s", request.method, request.path)
        return _error(500, "internal error", "see the simulator log")


# --- assembly -----------------------------------------------------------------------------------

def create_simulator_app(
    *, token: str | None = None, latency_scale: float = 1.0, seed: int | None = None,
    portal_time_scale: float = 1.0, portal_min_monthly: int = 0,
) -> web.Application:
    """Build the simulator. ``token`` None/empty disables fault injection; ``latency_scale``
    multiplies every unit's latency (0 = immediate); ``seed`` makes the jitter repeatable;
    ``portal_time_scale`` runs the portal's clock that many times faster from now on and
    ``portal_min_monthly`` lifts the smallest offices' dossiers a month (demo liveliness)."""
    if not isinstance(latency_scale, int | float) or not math.isfinite(latency_scale) \
            or latency_scale < 0:
        raise ValueError("latency_scale must be a finite number >= 0")
    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
    app[STATE] = SimulatorState(
        units={u.code: u for u in units()},
        province=province_name(),
        token=token.encode("utf-8") if token else None,
        latency_scale=float(latency_scale),
        rng=random.Random(seed),
    )
    code = "{code:[A-Za-z0-9][A-Za-z0-9-]*}"
    app.router.add_get("/", index)
    app.router.add_get("/_sim/units", list_units)
    app.router.add_get("/_sim/faults", list_faults)
    app.router.add_post("/_sim/faults", set_fault)
    app.router.add_delete("/_sim/faults", clear_all_faults)
    app.router.add_delete("/_sim/faults/{unit}", clear_fault)
    app.router.add_get(f"/{code}", unit_redirect)
    app.router.add_get(f"/{code}/", unit_home)
    app.router.add_get(f"/{code}/health", unit_health)
    add_portal_routes(app, {u.code: u.name for u in app[STATE].units.values()}, seed=seed,
                      guard=requires_token,
                      time=PortalClock(clock.now(), portal_time_scale),
                      min_monthly=portal_min_monthly)
    log.info("simulator ready: %d units, fault injection %s", len(app[STATE].units),
             "enabled" if token else "disabled")
    return app


async def start_simulator(
    host: str, port: int, *, token: str | None = None, latency_scale: float = 1.0,
    seed: int | None = None, portal_time_scale: float = 1.0, portal_min_monthly: int = 0,
) -> web.AppRunner:
    """Serve the simulator on ``host:port`` (port 0 picks a free one: see ``runner.addresses``).

    Returns the runner; the caller owns it and must ``await runner.cleanup()``.
    """
    app = create_simulator_app(token=token, latency_scale=latency_scale, seed=seed,
                               portal_time_scale=portal_time_scale,
                               portal_min_monthly=portal_min_monthly)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        # One process stands in for every department's server, each of which would have its
        # own accept queue: with aiohttp's default of 128, a thousand checks opening fresh
        # connections at once overflow it, and the dropped SYNs (retried after 1 s) look like
        # connect timeouts of the checked system. The kernel caps this at net.core.somaxconn.
        await web.TCPSite(runner, host, port, backlog=SIMULATOR_BACKLOG).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("simulator listening on %s", ", ".join(map(str, runner.addresses)))
    return runner
