"""Request bodies read with the cap of the endpoint that reads them (``service.body_limits``).

aiohttp's ``client_max_size`` is one number for the whole application, so it is set to
``service.max_body_size`` and every endpoint that reads a body asks for its own, lower cap
here. A declared ``Content-Length`` over the cap is refused before a byte is read; a chunked
body is refused as soon as it grows past the cap, so a client that lies or streams cannot make
ioc buffer more than the cap plus one chunk. Every 413 is counted by
``web.client_limits.refusal_middleware``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from web.errors import ApiError

if TYPE_CHECKING:
    from ioc.config import ServiceConfig


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The caps in force, in bytes: each endpoint's own, never above ``max_body_size``."""

    events: int
    alerts: int
    announcement: int
    console: int

    @classmethod
    def from_config(cls, service: ServiceConfig) -> BodyLimits:
        limits = service.body_limits
        cap = service.max_body_size
        return cls(events=min(limits.events, cap), alerts=min(limits.alerts, cap),
                   announcement=min(limits.announcement, cap),
                   console=min(limits.console, cap))


BODY_LIMITS: web.AppKey[BodyLimits] = web.AppKey("body_limits", BodyLimits)


def body_limits(request: web.Request) -> BodyLimits:
    return request.app[BODY_LIMITS]


def too_large(limit: int, hint: str = "") -> ApiError:
    return ApiError(413, "body too large", f"at most {limit} bytes{hint}")


def _capped(request: web.Request, limit: int, hint: str) -> web.BaseRequest:
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, hint)
    # A clone shares the connection's payload stream but stops reading past its own cap.
    return request.clone(client_max_size=limit)


async def read_body(request: web.Request, limit: int, hint: str = "") -> bytes:
    """The whole body, or 413 as soon as it is longer than ``limit`` bytes."""
    try:
        return await _capped(request, limit, hint).read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit, hint) from None


async def read_form(request: web.Request, limit: int) -> dict[str, str]:
    """The text fields of a posted form (file parts ignored), or 413 past ``limit`` bytes."""
    try:
        form = await _capped(request, limit, "").post()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    return {k: v for k, v in form.items() if isinstance(v, str)}
