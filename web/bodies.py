"""Request bodies read with the cap of the endpoint that reads them (``service.body_limits``).

aiohttp's ``client_max_size`` is one number for the whole application, so it is set to
``service.max_body_size`` and every endpoint that reads a body asks for its own, lower cap
here. A declared ``Content-Length`` over the cap is refused before a byte is read; a chunked
body is refused as soon as it grows past the cap, so a client that lies or streams cannot make
ioc buffer more than the cap plus one chunk. Every 413 is counted by
``web.client_limits.refusal_middleware``.

Malformed bodies are a 400, never a 500: :func:`parse_json` refuses JSON nested deeper than
:data:`MAX_JSON_DEPTH` before the decoder sees it (Python's decoder recurses and fails with
``RecursionError`` past ~1,000 levels), bytes that are not UTF-8, and ``NaN``/``Infinity``;
:func:`read_form` refuses a form that is not UTF-8. Each raises :class:`MalformedInput`,
whose ``reason`` ``web.client_limits.malformed_middleware`` counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

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


#: The deepest nesting of arrays and objects any JSON body of ioc's API may have; the deepest
#: real body (an event's labels in a batch) is 3.
MAX_JSON_DEPTH = 32

MALFORMED_REASONS = ("bad_header", "bad_form", "bad_json", "too_deep")


class MalformedInput(ApiError):
    """A 400 for input that is not what any client of ioc sends; ``reason`` is counted."""

    def __init__(self, reason: str, error: str, detail: Any = None) -> None:
        super().__init__(400, error, detail)
        self.reason = reason


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"\\')


def json_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep ``raw``'s arrays and objects nest, counting at most to ``limit + 1``.

    Only brackets, quotes and backslashes matter, so everything else is deleted in C first
    (``bytes.translate``) and the loop runs over what is left: for real bodies a few
    characters per event. Brackets inside strings do not count. Malformed JSON is left to
    the decoder; this only has to be right for input the decoder would recurse on.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw.translate(None, _NOT_BRACKETS):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if depth > limit:
                    return depth
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def check_json_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """MalformedInput when ``raw`` nests deeper than ``limit``."""
    if json_depth(raw, limit) > limit:
        raise MalformedInput("too_deep", "JSON too deep",
                             f"arrays and objects nest at most {limit} levels deep")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, error: str = "invalid JSON") -> Any:
    """A JSON body: 400 (MalformedInput) when too deep, not UTF-8 or not JSON."""
    check_json_depth(raw)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise MalformedInput("bad_json", error, "the body must be UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise MalformedInput("bad_json", error,
                             f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise MalformedInput("bad_json", error, str(exc)) from None


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
    except (UnicodeDecodeError, LookupError):  # not UTF-8, or a charset nobody knows
        raise MalformedInput("bad_form", "invalid form",
                             "the form must be UTF-8 encoded") from None
    except (ValueError, HttpProcessingError) as exc:  # a multipart body that is no such
        raise MalformedInput("bad_form", "invalid form",
                             str(exc).strip() or type(exc).__name__) from None
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    for name, value in fields.items():
        if not _is_text(name) or not _is_text(value):
            raise MalformedInput("bad_form", "invalid form", "the form must be UTF-8 encoded")
    return fields


def _is_text(value: str) -> bool:
    """False for a str holding lone surrogates (undecodable bytes passed through)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
