"""The web application's shared keys, in one small module every handler imports at the top.

Each key holds one object ``web.app.create_web_app`` builds; a handler reads it from
``request.app``. Keys private to one module stay beside it (``bodies.BODY_LIMITS``,
``sessions.SESSIONS``/``WALL_COOKIES``, ``events_api.INGEST_GATE``).
"""

from __future__ import annotations

import jinja2
from aiohttp import web

from ioc.exposition import Exposition
from web.auth import Authenticator
from web.context import WebContext
from web.metrics_auth import MetricsGuard
from web.wall_feed import WallFeed

CONTEXT: web.AppKey[WebContext] = web.AppKey("context", WebContext)
WALL: web.AppKey[WallFeed] = web.AppKey("wall", WallFeed)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
AUTH: web.AppKey[Authenticator] = web.AppKey("auth", Authenticator)
METRICS_GUARD: web.AppKey[MetricsGuard] = web.AppKey("metrics_guard", MetricsGuard)
EXPOSITION: web.AppKey[Exposition] = web.AppKey("exposition", Exposition)


def request_now(request: web.Request) -> float:
    """The time a handler works at: the context's clock (ioc.clock in the service)."""
    return request.app[CONTEXT].clock()
