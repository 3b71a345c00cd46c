"""The wall's HTTP handlers: the page (``/``, ``/wall/{view}``) and its live stream.

The rendering and the deltas are the feed's (``web.wall_feed``); these handlers check who may
look (networks, the viewer role, a wall token exchanged for a cookie), read the page's query
and hand over. A page that cannot be shown (a bad query, an unknown view, no permission, a
failure) is answered with a readable page in the screen's language, with the same status a
client would get from the API: a TV shows no JSON. The stream and the API stay JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from ioc.config_types import parse_duration
from web import stream as sse
from web.errors import ApiError
from web.i18n import LANGS, Translator, pick_lang
from web.keys import AUTH, CONTEXT, WALL
from web.sessions import exchange_wall_token
from web.wall_feed import WallFeed

log = logging.getLogger("ioc.wall")

THEMES = ("dark", "light")
RETRY_AFTER_FAILURE = 30  # seconds before a screen showing the 500 page loads the wall again
MIN_ROTATE = 5.0
FIRST_RENDER_WAIT = 0.25  # seconds the page waits for store figures before rendering without


def parse_page_query(query: Mapping[str, str]) -> tuple[str, str, float | None]:
    """``?lang=``, ``?theme=`` and ``?rotate=``, or a 400 naming what is wrong."""
    lang = query.get("lang", "vi")
    if lang not in LANGS:
        raise ApiError(400, "invalid lang", f"expected one of {', '.join(LANGS)}, got {lang!r}")
    theme = query.get("theme", "dark")
    if theme not in THEMES:
        raise ApiError(400, "invalid theme",
                       f"expected one of {', '.join(THEMES)}, got {theme!r}")
    rotate: float | None = None
    if query.get("rotate"):
        try:
            rotate = parse_duration(query["rotate"])
        except ValueError as exc:
            raise ApiError(400, "invalid rotate", str(exc)) from None
        if rotate < MIN_ROTATE:
            raise ApiError(400, "invalid rotate", f"rotate must be at least {MIN_ROTATE:g}s")
    return pick_lang(lang), theme, rotate


# ---- handlers --------------------------------------------------------------------------------


def _feed(request: web.Request) -> WallFeed:
    return request.app[WALL]


def _require_viewer(request: web.Request) -> None:
    request.app[AUTH].require(request, "viewer")


def error_page(request: web.Request, status: int, detail: object = None) -> web.Response:
    """The wall's error as a page: large words in the screen's language, the reason, and the
    views there are; a failure reloads itself after a while."""
    feed = _feed(request)
    lang = pick_lang(request.query.get("lang"))
    theme = request.query.get("theme", "dark")
    html = feed.templates.get_template("wall_error.html").render(
        t=Translator(lang, feed.ctx.config().province.timezone), lang=lang,
        theme=theme if theme in THEMES else "dark", status=status,
        message_key=f"error_{status}" if status in (400, 403, 404, 500) else "error_title",
        detail="" if detail is None else str(detail),
        views=[v.name for v in feed.views], home=f"/?lang={lang}",
        refresh=RETRY_AFTER_FAILURE if status >= 500 else None)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def html_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Answer the wall page's errors with :func:`error_page` (redirects pass through)."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            detail = f"{exc.error}: {exc.detail}" if exc.detail else exc.error
            return error_page(request, exc.status, detail)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_page(request, exc.status, exc.reason)
        except Exception:
            log.exception("wall page failed", extra={"fields": {"path": request.path}})
            return error_page(request, 500)
    return wrapped


@html_errors
async def page(request: web.Request) -> web.StreamResponse:
    feed = _feed(request)
    feed.allowed(request)
    exchanged = exchange_wall_token(request)
    if exchanged is not None:
        raise exchanged  # a redirect to the same address without the token
    _require_viewer(request)
    view = feed.view(request.match_info.get("view"))
    lang, theme, rotate = parse_page_query(request.query)
    now = feed.clock()
    if feed.state.due(now):
        task = feed.state.refresh_soon(request.app[CONTEXT].samples, now)
        try:
            async with asyncio.timeout(FIRST_RENDER_WAIT):
                await asyncio.shield(task)
        except TimeoutError:
            pass  # render without the 24 h figures; the stream brings them
    await feed.load_security()
    doc = feed.document(view, now)
    html = feed.render(view, doc, lang=lang, theme=theme, rotate=rotate, query=request.query)
    return web.Response(text=html, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def stream(request: web.Request) -> web.StreamResponse:
    feed = _feed(request)
    feed.allowed(request)
    _require_viewer(request)
    feed.on_screen()
    return await sse.serve(request, feed.stream, feed.clock, on_idle=feed.on_idle)
