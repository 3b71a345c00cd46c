"""The public status page for citizens over HTTP: ``/status``, ``/status/{slug}``, their JSON
twins and the services' badges.

The content comes ready from :mod:`web.status_cache`; these handlers admit the request (the
viewer role for a page with ``require_auth``, then the page's rate limit per client address,
the real one behind a trusted proxy, ``web.forwarded``: over it, 429 with ``Retry-After`` and a
readable page) and answer conditionally: ``ETag`` (a hash of the body; the gzip body has its
own) and ``Last-Modified`` (when the content last changed), 304 on ``If-None-Match`` or
``If-Modified-Since``, ``Cache-Control: public, max-age=…`` so a proxy or CDN in front can
take the load. No script at all: the page works with JavaScript disabled; the CSS is the
only other file it loads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import formatdate

from aiohttp import web

from ioc.status_page_config import StatusPageConfig
from web.errors import ApiError
from web.keys import AUTH, CONTEXT, TEMPLATES
from web.status_badge import unknown_badge_svg
from web.status_cache import Rendered, StatusPages, Unavailable, words
from web.status_view import word

# -- HTTP -------------------------------------------------------------------------------------

STATUS_PAGES: web.AppKey[StatusPages] = web.AppKey("status_pages", StatusPages)


def _lang(request: web.Request) -> str:
    return "en" if request.query.get("lang") == "en" else "vi"


def _error_page(request: web.Request, status: int, message: str,
                headers: Mapping[str, str] | None = None) -> web.Response:
    lang = _lang(request)
    body = request.app[TEMPLATES].get_template("status_error.html").render(
        lang=lang, w=words(lang), status=status, message=message)
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _unavailable(request: web.Request, kind: str) -> web.Response:
    message = word(_lang(request), "ui.unavailable")
    headers = {"Retry-After": "5", "Cache-Control": "no-store"}
    if kind == "html":
        return _error_page(request, 503, message, headers)
    if kind == "badge":
        return web.Response(status=503, text=message, headers=headers)
    return web.json_response({"error": "unavailable", "detail": message}, status=503,
                             headers=headers)


def _not_found_text(kind: str) -> web.Response:
    if kind == "badge":
        return web.Response(status=404, body=unknown_badge_svg().encode(),
                            content_type="image/svg+xml", charset="utf-8",
                            headers={"Cache-Control": "no-store"})
    return web.json_response({"error": "not found", "detail": "no such status page"},
                             status=404, headers={"Cache-Control": "no-store"})


def _admit(request: web.Request, pages: StatusPages, page: StatusPageConfig,
           kind: str) -> web.Response | None:
    """Auth for a private page, then the rate limit: a response to send instead, or None."""
    if page.require_auth:
        try:
            request.app[AUTH].require(request, "viewer")
        except ApiError as exc:
            if kind != "html":
                raise  # the JSON twin and badges answer as the API does
            # a person at a browser: a readable page saying where to sign in
            return _error_page(request, exc.status, word(_lang(request), "ui.private"),
                               {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {})
    wait = pages.retry_after(page, request.remote or "unknown")
    if wait <= 0:
        return None
    request.app[CONTEXT].trust.rejected.labels(reason="status_rate_limited").inc()
    seconds = max(1, math.ceil(wait))
    headers = {"Retry-After": str(seconds)}
    message = word(_lang(request), "ui.too_many", seconds=seconds)
    if kind == "html":
        return _error_page(request, 429, message, headers)
    if kind == "badge":
        return web.Response(status=429, text=message, headers={**headers,
                                                               "Cache-Control": "no-store"})
    return web.json_response({"error": "too many requests", "detail": message}, status=429,
                             headers={**headers, "Cache-Control": "no-store"})


def _gzip_etag(etag: str) -> str:
    """The gzip body's own tag: a strong ETag names one sequence of bytes."""
    return etag[:-1] + '-gz"'


def _not_modified(request: web.Request, rendered: Rendered) -> bool:
    match = request.headers.get("If-None-Match")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return "*" in tags or rendered.etag in tags or _gzip_etag(rendered.etag) in tags
    since = request.if_modified_since
    return since is not None and int(rendered.last_modified) <= since.timestamp()


def _respond(request: web.Request, page: StatusPageConfig, rendered: Rendered) -> web.Response:
    headers = {
        "ETag": rendered.etag,
        "Last-Modified": formatdate(int(rendered.last_modified), usegmt=True),
        "Cache-Control": f"{'private' if page.require_auth else 'public'}, "
                         f"max-age={int(page.max_age)}",
        "Vary": "Accept-Encoding" + (", Authorization, Cookie" if page.require_auth else ""),
    }
    zipped = "gzip" in request.headers.get("Accept-Encoding", "")
    if zipped:  # the tag of what this client would get
        headers["ETag"] = _gzip_etag(rendered.etag)
    if _not_modified(request, rendered):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = rendered.content_type
    if zipped:
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=rendered.gzipped, headers=headers)
    return web.Response(body=rendered.body, headers=headers)


async def _serve(request: web.Request, slug: str | None, kind: str) -> web.Response:
    pages = request.app[STATUS_PAGES]
    page = pages.page(slug)
    if page is None:
        if kind == "html":
            return _error_page(request, 404, word(_lang(request), "ui.not_found"))
        return _not_found_text(kind)
    refused = _admit(request, pages, page, kind)
    if refused is not None:
        return refused
    lang = _lang(request)
    try:
        rendered = await (pages.html(page, lang) if kind == "html" else pages.json(page, lang))
    except Unavailable:
        return _unavailable(request, kind)
    return _respond(request, page, rendered)


async def main_page(request: web.Request) -> web.Response:
    return await _serve(request, None, "html")


async def main_json(request: web.Request) -> web.Response:
    return await _serve(request, None, "json")


async def named_page(request: web.Request) -> web.Response:
    return await _serve(request, request.match_info["slug"], "html")


async def named_json(request: web.Request) -> web.Response:
    return await _serve(request, request.match_info["slug"], "json")


async def badge(request: web.Request) -> web.Response:
    pages = request.app[STATUS_PAGES]
    slug = request.match_info["service"]
    page = pages.page_of_service(slug)
    if page is None:
        return _not_found_text("badge")
    refused = _admit(request, pages, page, "badge")
    if refused is not None:
        return refused
    try:
        rendered = await pages.badge(page, slug, _lang(request))
    except Unavailable:
        return _unavailable(request, "badge")
    return _respond(request, page, rendered)


async def _warm(app: web.Application) -> None:
    """Start the first snapshot (the history read takes seconds at 1,000 targets) when the
    server starts, so the first citizen does not wait for it."""
    pages = app[STATUS_PAGES]
    if pages.pages():
        pages.start()


async def _close(app: web.Application) -> None:
    await app[STATUS_PAGES].close()


async def to_main_page(request: web.Request) -> web.Response:
    """``/status/`` as a citizen may type it: the page itself lives at ``/status``."""
    target = "/status" + (f"?{request.query_string}" if request.query_string else "")
    raise web.HTTPMovedPermanently(target)


def add_routes(app: web.Application) -> None:
    app[STATUS_PAGES] = StatusPages(app[CONTEXT], app[TEMPLATES])
    app.on_startup.append(_warm)
    app.on_cleanup.append(_close)
    app.router.add_get("/status", main_page)
    app.router.add_get("/status/", to_main_page)
    app.router.add_get("/status.json", main_json)
    app.router.add_get("/status/badge/{service}.svg", badge)
    app.router.add_get("/status/{slug}.json", named_json)
    app.router.add_get("/status/{slug}", named_page)
