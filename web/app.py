"""The aiohttp application: routes, middleware and the page template environment.

Built around a :class:`web.context.WebContext` (what the web layer may use of the service)
and the wall's feed; the objects every handler shares are under the keys of ``web.keys``.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import jinja2
from aiohttp import web

from ioc.exposition import Exposition
from web import (
    alerts_api,
    announcement,
    api,
    audit_api,
    client_limits,
    console,
    console_bulk,
    console_incidents,
    events_api,
    forwarded,
    incidents_api,
    maintenance_api,
    oncall_api,
    reload_api,
    report_download,
    runbooks,
    sessions,
    status_page,
    try_api,
    wall_page,
)
from web.auth import Authenticator
from web.bodies import BODY_LIMITS, BodyLimits
from web.console_feed import CONSOLE, ConsoleFeed
from web.context import WebContext
from web.errors import error_middleware, json_error
from web.i18n import format_time
from web.keys import AUTH, CONTEXT, EXPOSITION, METRICS_GUARD, TEMPLATES, WALL
from web.metrics_auth import MetricsGuard
from web.openapi import openapi_document
from web.wall_feed import WallFeed


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2.0):
            await context.samples.ping()
        checks["store"] = "ok"
    except Exception as exc:  # report, don't raise: this endpoint exists to say what is wrong
        checks["store"] = f"unreachable: {type(exc).__name__}"
    checks["scheduler"] = "ok" if context.polling() else "not running"
    shard = context.shard_ready()
    if shard is not None:  # --shard auto: polls only while a proven member
        checks["shard"] = shard
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                             status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    guard = request.app[METRICS_GUARD]
    if not guard.allows(request.headers.get("Authorization")):
        response = json_error(401, "unauthorized", "this needs the metrics: credentials")
        response.headers["WWW-Authenticate"] = guard.challenge
        return response
    # At 10,000 targets a scrape is ~120,000 series: written in slices of a few milliseconds
    # on the loop, so polls go on meanwhile (ioc/exposition.py says why not in a thread).
    body, content_type = await request.app[EXPOSITION].render(
        request.app[CONTEXT].registry, request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# Every response: no inline scripts or styles, nothing from another origin (no CDN: the
# operations room may have no internet), no framing, no sniffing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    # the name only: no Python or aiohttp version handed to whoever scans the room's servers
    response.headers["Server"] = "ioc"


async def _close_streams(app: web.Application) -> None:
    app[WALL].close()
    app[CONSOLE].close()


async def not_found(request: web.Request) -> web.Response:
    return json_error(404, "not found", f"no route for {request.method} {request.path}")


def create_web_app(context: WebContext, wall: WallFeed,
                   console_feed: ConsoleFeed | None = None) -> web.Application:
    """The application; ``console_feed`` is the console's live feed the service built and
    attached (one is made here, attached, when a caller has none)."""
    config = context.config()
    service = config.service
    clock = context.clock
    trust = context.trust
    failures = client_limits.FailureLimiter(config.auth.max_failures,
                                            config.auth.failure_window)
    # Outermost first: refuse guessers and floods before anything else runs, count refused
    # bodies and audit the final status of every write, then JSON errors, then cookies
    # standing in for tokens.
    app = web.Application(middlewares=[
        # First of all, the real client behind a trusted proxy: every check below uses it.
        forwarded.middleware(context.proxies),
        client_limits.auth_middleware(failures, trust, clock),
        client_limits.concurrency_middleware(service.max_concurrent_requests, trust),
        client_limits.refusal_middleware(trust),
        audit_api.audit_middleware(context.audit, trust, clock),
        error_middleware, client_limits.malformed_middleware(trust, context.monotonic),
        sessions.make_middleware(clock)],
        client_max_size=service.max_body_size)
    app[CONTEXT] = context
    app[WALL] = wall
    if console_feed is None:
        console_feed = ConsoleFeed(context, wall.stream.epoch, wall.templates,
                                   lambda: wall.announcement)
        console_feed.attach()
        wall.announcement_listeners.append(console_feed.on_announcement)
    app[CONSOLE] = console_feed
    app[BODY_LIMITS] = BodyLimits.from_config(service)
    auth = config.auth
    app[AUTH] = Authenticator(
        ((t.name, t.token.get_secret_value(), t.roles) for t in auth.tokens),
        anonymous_roles=auth.anonymous)
    # Sessions and wall cookies are checked against the tokens configured now, on every
    # request: a reload that removes or changes a token ends what it opened (web.sessions).
    app[sessions.SESSIONS] = sessions.SessionStore(current=app[AUTH].current)
    app[sessions.WALL_COOKIES] = sessions.WallCookies(app[AUTH])
    app[METRICS_GUARD] = MetricsGuard(config.metrics)
    app[EXPOSITION] = Exposition()
    app[TEMPLATES] = page_templates()
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/", wall_page.page)
    app.router.add_get("/wall/{view}", wall_page.page)
    app.router.add_get("/api/v1/stream", wall_page.stream)
    app.router.add_static("/static", Path(__file__).parent / "static", append_version=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/series", api.series)
    events_api.add_routes(app)
    alerts_api.add_routes(app)
    maintenance_api.add_routes(app)
    oncall_api.add_routes(app)
    announcement.add_routes(app)
    console.add_routes(app)
    console_bulk.add_routes(app)
    console_incidents.add_routes(app)
    runbooks.add_routes(app)
    audit_api.add_routes(app)
    reload_api.add_routes(app)
    try_api.add_routes(app)
    incidents_api.add_routes(app)
    report_download.add_routes(app)
    status_page.add_routes(app)
    app.router.add_get("/api/openapi.json", openapi)
    return app


@functools.cache
def page_templates() -> jinja2.Environment:
    """The other pages' templates (status page, errors), compiled once per process: every
    app (tests start hundreds) shares one environment of pure filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=True,  # every page, every value: target names and errors are untrusted
        undefined=jinja2.StrictUndefined,
    )
    env.filters["clock"] = _format_clock
    return env


def _format_clock(ts: object) -> str:
    """Total, as every format filter: "—" for what is no time (None, NaN, year 10000)."""
    return format_time(ts, "Asia/Ho_Chi_Minh", "%H:%M:%S %d/%m/%Y")
