"""The aiohttp application: routes, middleware and the page template environment."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from ioc import clock
from web import api
from web.auth import Authenticator
from web.errors import error_middleware, json_error
from web.openapi import openapi_document

if TYPE_CHECKING:
    from ioc.app import IocApp

IOC_APP: web.AppKey[IocApp] = web.AppKey("ioc_app")
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")

MAX_BODY_BYTES = 1 << 20


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app[IOC_APP]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2.0):
            await app.store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # report, don't raise: this endpoint exists to say what is wrong
        checks["store"] = f"unreachable: {type(exc).__name__}"
    checks["scheduler"] = "ok" if app.scheduler.running else "not running"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                             status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    app = request.app[IOC_APP]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(app.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def index(request: web.Request) -> web.Response:
    app = request.app[IOC_APP]
    doc = api.status_document(app, clock.now())
    html = request.app[TEMPLATES].get_template("status.html").render(
        doc=doc, refresh=max(5, int(min((r.interval for r in app.runners.values()),
                                        default=30))))
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def not_found(request: web.Request) -> web.Response:
    return json_error(404, "not found", f"no route for {request.method} {request.path}")


def create_web_app(ioc_app: IocApp) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[IOC_APP] = ioc_app
    auth = ioc_app.config.auth
    app[AUTH] = Authenticator(
        ((t.name, t.token.get_secret_value(), t.roles) for t in auth.tokens),
        anonymous_roles=auth.anonymous)
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=True,  # every page, every value: target names and errors are untrusted
        undefined=jinja2.StrictUndefined,
    )
    app[TEMPLATES].filters["clock"] = _format_clock
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/series", api.series)
    app.router.add_get("/api/openapi.json", openapi)
    return app


def _format_clock(ts: float | None) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%H:%M:%S %d/%m/%Y")
