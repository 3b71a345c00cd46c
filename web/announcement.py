"""The wall's announcement banner as a JSON API: read it, set it, clear it.

``GET /api/v1/announcement`` needs the viewer role (which ``auth.anonymous`` grants by default,
like the wall itself); ``POST`` and ``DELETE`` need the operator role. A change is stored with
who made it (``ioc.store.announcement``, recorded in the alert history too) and reaches every
wall screen through the live stream at once.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from aiohttp import web

from ioc.store.base import StoreError
from web.bodies import body_limits, parse_json, read_body
from web.errors import ApiError
from web.keys import AUTH, WALL, request_now
from web.wall_feed import WallFeed

MAX_TEXT = 500  # the same bound as wall.announcement in config


def _feed(request: web.Request) -> WallFeed:
    return request.app[WALL]


def _require(request: web.Request, role: str) -> str:
    return request.app[AUTH].require(request, role).name


def _ok(data: Any) -> web.Response:
    return web.json_response(data, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def clean_text(value: object) -> str:
    """The banner text: one line, no control characters, at most MAX_TEXT characters."""
    if not isinstance(value, str):
        raise ApiError(400, "invalid text", "expected a string")
    text = " ".join(value.split())
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise ApiError(400, "invalid text", "control characters are not allowed")
    if not text:
        raise ApiError(400, "invalid text", "empty; use DELETE to clear the announcement")
    if len(text) > MAX_TEXT:
        raise ApiError(400, "invalid text", f"at most {MAX_TEXT} characters, got {len(text)}")
    return text


async def _text_from_body(request: web.Request) -> str:
    raw = await read_body(request, body_limits(request).announcement)
    data = parse_json(raw)
    if not isinstance(data, dict) or "text" not in data:
        raise ApiError(400, "invalid body", 'expected {"text": "..."}')
    return clean_text(data["text"])


async def get_announcement(request: web.Request) -> web.Response:
    _require(request, "viewer")
    return _ok({"announcement": _feed(request).announcement.to_dict()})


async def set_announcement(request: web.Request) -> web.Response:
    who = _require(request, "operator")
    text = await _text_from_body(request)
    try:
        current = await _feed(request).set_announcement(text, by=who, now=request_now(request))
    except StoreError as exc:
        raise ApiError(503, "store unavailable", str(exc)) from None
    return _ok({"announcement": current.to_dict()})


async def clear_announcement(request: web.Request) -> web.Response:
    who = _require(request, "operator")
    try:
        current = await _feed(request).set_announcement("", by=who, now=request_now(request))
    except StoreError as exc:
        raise ApiError(503, "store unavailable", str(exc)) from None
    return _ok({"announcement": current.to_dict()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/announcement", get_announcement)
    app.router.add_post("/api/v1/announcement", set_announcement)
    app.router.add_delete("/api/v1/announcement", clear_announcement)


# -- OpenAPI description (merged into web/openapi.py) ----------------------------------------

_REF = "#/components/schemas/"
_RESULT = {"description": "the announcement now", "content": {"application/json": {
    "schema": {"$ref": _REF + "AnnouncementResult"}}}}
_ERRORS = {code: {"description": text, "content": {"application/json": {
    "schema": {"$ref": _REF + "Error"}}}} for code, text in (
    ("400", "invalid request"), ("401", "no or unknown token"),
    ("403", "the token lacks the role"), ("413", "body too large"),
    ("503", "the store is unavailable; nothing changed"))}
_WRITE = "Needs `Authorization: Bearer <token>` (or a console session) with the operator role."

ANNOUNCEMENT_SCHEMAS: dict[str, Any] = {
    "Announcement": {
        "type": "object", "required": ["text", "set_by", "set_at"],
        "properties": {
            "text": {"type": "string", "description": "the banner; empty when cleared"},
            "set_by": {"type": "string", "description": "token name, or config"},
            "set_at": {"type": ["number", "null"], "description": "unix seconds"}}},
    "AnnouncementResult": {
        "type": "object", "required": ["announcement"],
        "properties": {"announcement": {"$ref": _REF + "Announcement"}}},
    "NewAnnouncement": {
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
                                "examples": ["Họp giao ban lúc 14:00 tại phòng họp số 2"]}}},
}

ANNOUNCEMENT_PATHS: dict[str, Any] = {
    "/api/v1/announcement": {
        "get": {"summary": "The wall's announcement banner", "operationId": "announcement",
                "responses": {"200": _RESULT, **_ERRORS}},
        "post": {"summary": "Set the wall's announcement (shown on every screen at once)",
                 "operationId": "setAnnouncement", "description": _WRITE,
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": _REF + "NewAnnouncement"}}}},
                 "responses": {"200": _RESULT, **_ERRORS}},
        "delete": {"summary": "Clear the wall's announcement",
                   "operationId": "clearAnnouncement", "description": _WRITE,
                   "responses": {"200": _RESULT, **_ERRORS}},
    },
}
