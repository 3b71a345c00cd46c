"""``POST /-/reload`` (admin): re-read the config file, like Prometheus's ``/-/reload``.

200 with what changed when the new config was applied; 400 with every error when it was
refused (the old config keeps running). ``GET /-/reload`` tells the outcome of the last
attempt, so a deploy script can check a SIGHUP took.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from web.keys import AUTH, CONTEXT
from web.openapi_parts import REF as _REF
from web.openapi_parts import json_response as _resp


async def reload_config(request: web.Request) -> web.Response:
    request.app[AUTH].require(request, "admin")
    result = await request.app[CONTEXT].reload()
    if not result.ok:
        return web.json_response({"error": "invalid config",
                                  "detail": {"errors": result.errors}}, status=400)
    return web.json_response({"reload": result.to_dict()})


async def last_reload(request: web.Request) -> web.Response:
    request.app[AUTH].require(request, "admin")
    last = request.app[CONTEXT].last_reload()
    return web.json_response({"reload": None if last is None else last.to_dict()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/-/reload", reload_config)
    app.router.add_get("/-/reload", last_reload)


_ERR = {"$ref": _REF + "Error"}
_NAMES = {"type": "array", "items": {"type": "string"}}

RELOAD_SCHEMAS: dict[str, Any] = {
    "Reload": {
        "type": "object",
        "required": ["ok", "at", "errors", "added", "removed", "changed", "rules",
                     "delivery", "restart_required"],
        "properties": {
            "ok": {"type": "boolean"}, "at": {"type": "number"},
            "errors": _NAMES, "added": _NAMES, "removed": _NAMES, "changed": _NAMES,
            "rules": {"type": "object", "additionalProperties": {"type": "integer"}},
            "delivery": {**_NAMES, "description": "the alert delivery keys (route, receivers, "
                         "inhibit_rules, maintenance) that changed and now apply"},
            "restart_required": {**_NAMES, "description": "changed config paths that only "
                                 "a restart applies; their running values are kept"},
        },
    },
}

RELOAD_PATHS: dict[str, Any] = {
    "/-/reload": {
        "post": {
            "summary": "Re-read the config file and apply it (admin)",
            "operationId": "reload",
            "responses": {
                "200": _resp({"type": "object", "required": ["reload"],
                              "properties": {"reload": {"$ref": _REF + "Reload"}}},
                             "applied"),
                "400": _resp(_ERR, "the new config is invalid; the old one keeps running"),
                "401": _resp(_ERR, "no or unknown token"),
                "403": _resp(_ERR, "the token lacks the admin role"),
            },
        },
        "get": {
            "summary": "The outcome of the last reload (admin)",
            "operationId": "lastReload",
            "responses": {
                "200": _resp({"type": "object", "required": ["reload"], "properties": {
                    "reload": {"oneOf": [{"$ref": _REF + "Reload"}, {"type": "null"}]}}},
                    "the last reload, or null"),
                "401": _resp(_ERR, "no or unknown token"),
                "403": _resp(_ERR, "the token lacks the admin role"),
            },
        },
    },
}
