"""``POST /api/v1/try/{name}`` (admin): poll one target now and answer with its trace.

The API face of ``ioc try`` (service.try_command): the same trace as data, plus the readable text
in the language asked for (``?lang=vi``, the default, or ``en``). It polls a real target, so
it is an admin write (audited by the middleware like every other), takes no body, and at most
``TRY_SLOTS`` run at once: another request meanwhile gets 429 instead of queueing polls. Each
poll is bounded by the target's own timeout and at most a minute (``API_LIMIT``); the answer
by the trace's own caps (payload excerpt, units, samples, events, headers).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ioc.trace import UnknownTarget
from ioc.trace_text import LANGS, render
from web.errors import ApiError
from web.keys import AUTH, CONTEXT
from web.openapi_parts import REF as _REF
from web.openapi_parts import json_response as _resp

TRY_SLOTS = 2
SLOTS: web.AppKey[asyncio.Semaphore] = web.AppKey("try_slots")


async def try_target(request: web.Request) -> web.Response:
    request.app[AUTH].require(request, "admin")
    lang = request.query.get("lang", "vi")
    if lang not in LANGS:
        raise ApiError(400, "invalid parameter", f"lang must be one of {', '.join(LANGS)}")
    if request.can_read_body and (request.content_length or 0) > 0:
        raise ApiError(400, "invalid body", "this endpoint takes no body")
    slots = request.app[SLOTS]
    if slots.locked():
        raise ApiError(429, "busy", f"{TRY_SLOTS} tries are running; try again when they end")
    async with slots:
        try:
            trace = await request.app[CONTEXT].try_target(request.match_info["name"])
        except UnknownTarget as exc:
            raise ApiError(404, "unknown target", str(exc)) from None
    return web.json_response({"up": trace.up, "trace": trace.to_dict(),
                              "text": render(trace, lang)})


def add_routes(app: web.Application) -> None:
    app[SLOTS] = asyncio.Semaphore(TRY_SLOTS)
    app.router.add_post("/api/v1/try/{name}", try_target)


_ERR = {"$ref": _REF + "Error"}

TRY_SCHEMAS: dict[str, Any] = {
    "TryResult": {
        "type": "object",
        "required": ["up", "trace", "text"],
        "properties": {
            "up": {"type": "boolean", "description": "the target would be up"},
            "trace": {"type": "object", "description": "what the poll did and saw (secrets "
                      "masked): phases, HTTP exchanges, TLS chain, checks, payload excerpt, "
                      "mapped fields, samples that would be published, events, notes"},
            "text": {"type": "string", "description": "the trace as readable text"},
        },
    },
}

TRY_PATHS: dict[str, Any] = {
    "/api/v1/try/{name}": {
        "post": {
            "summary": "Poll one target now, outside the schedule, and return its trace "
                       "(admin; nothing is stored)",
            "operationId": "tryTarget",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "the collector's name"},
                {"name": "lang", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(LANGS), "default": "vi"},
                 "description": "language of the readable text"},
            ],
            "responses": {
                "200": _resp({"$ref": _REF + "TryResult"}, "the poll ran (up or down)"),
                "400": _resp(_ERR, "bad lang, or a body was sent"),
                "401": _resp(_ERR, "no or unknown token"),
                "403": _resp(_ERR, "the token lacks the admin role"),
                "404": _resp(_ERR, "no target of that name"),
                "429": _resp(_ERR, "other tries are running"),
            },
        },
    },
}
