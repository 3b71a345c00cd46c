"""``POST /api/v1/events`` (push, ingest role) and ``GET /api/v1/events`` (newest first).

A push is checked whole before anything is queued: a batch with one bad event is refused
with every problem listed and nothing stored, so the sender fixes and resends the batch
without wondering which half arrived. An accepted batch is queued (202) and written by the
event sink; resending it is harmless because events are stored once per ``(source, id)``.

Parsing and checking a 1,000-event batch is CPU work that must not hold up the event loop the
uptime probes run on. An :class:`IngestGate` lets one push be parsed at a time, in a worker
thread, with at most 4 MiB of bodies waiting; pushes beyond that get 503 with ``Retry-After``
at once, before their bodies cost anything. The thread does not add CPU (the GIL is shared),
but the interpreter hands the GIL back to the loop every few milliseconds, so a probe waits
milliseconds for its turn instead of the whole batch's parse (bench/events_flood.py).

A push's body is capped at ``service.body_limits.events`` (1 MiB by default) and the line of
waiting bodies at four times that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from aiohttp import web

from ioc.event_sink import EventsNotStored
from ioc.events import (
    CATEGORIES,
    MAX_BATCH,
    SEVERITIES,
    EventBatchError,
    TimeWindow,
    event_document,
    parse_time,
    validate_events,
    validate_events_json,
)
from ioc.model import Event
from ioc.overflow import OverflowLog
from ioc.store.events import EventCursor, EventQuery
from web.bodies import (
    BODY_LIMITS,
    body_limits,
    check_json_depth,
    parse_json,
    read_body,
    too_large,
)
from web.context import WebContext
from web.errors import ApiError, json_error
from web.keys import AUTH, CONTEXT, request_now
from web.streaming import JsonArrayWriter

log = logging.getLogger("ioc.web")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
RETRY_AFTER = "1"  # seconds; a 1,000-event batch takes milliseconds to parse
DURABLE_WAIT = 10.0  # seconds a durable push waits for its commit before answering 503
INLINE_BYTES = 16 * 1024  # about 60 events


class IngestGate:
    """One push parsed at a time, at most ``waiting_bytes`` of bodies in line; the rest refused.

    Without it a flood of pushes would each start parsing as soon as its body arrived, and
    the loop (and the default thread pool) would be shared by all of them at once. The line
    is measured in bytes because parsing cost follows the body's size, not the number of
    requests: many small batches may wait where a few full ones would fill it. A push is
    always let in when the line is empty, however large.

    Refusals (a full line, or a full event queue behind it) are logged once when they start
    and once when a push is accepted with nobody waiting behind it: during a flood some
    pushes still get through, and each of them must not end the episode.
    """

    def __init__(self, waiting_bytes: int) -> None:
        self._limit = waiting_bytes
        self._entered = 0
        self._turn = asyncio.Lock()
        self.overflow = OverflowLog(log, "event push intake", action="refusing",
                                    waiting_bytes=waiting_bytes)

    @property
    def idle(self) -> bool:
        return self._entered == 0

    def full(self, size: int) -> bool:
        return self._entered > 0 and self._entered + size > self._limit

    @asynccontextmanager
    async def turn(self, size: int) -> AsyncIterator[bool]:
        """Yields False at once when the line is full, else True when it is this push's turn."""
        if self.full(size):
            yield False
            return
        self._entered += size
        try:
            async with self._turn:
                yield True
        finally:
            self._entered -= size


INGEST_GATE: web.AppKey[IngestGate] = web.AppKey("events_ingest_gate", IngestGate)
WAITING_PUSHES = 4  # full-size bodies that may wait for their turn


def add_routes(app: web.Application) -> None:
    app[INGEST_GATE] = IngestGate(WAITING_PUSHES * app[BODY_LIMITS].events)
    app.router.add_get("/api/v1/events", get_events)
    app.router.add_post("/api/v1/events", post_events)


def _app(request: web.Request) -> WebContext:
    return request.app[CONTEXT]


def parse_json_body(body: bytes) -> Any:
    return parse_json(body, "malformed JSON")


def decode_events(body: bytes, *, now: float, window: TimeWindow,
                  departments: frozenset[str] | None,
                  out_of_window: Tally[str] | None = None) -> list[Event]:
    """The events of a push body, or ApiError (400) naming every problem.

    Runs in a worker thread. Valid batches take the one-pass path; only a refused batch is
    decoded again the slow way, for the precise error list.
    """
    check_json_depth(body)  # before either decoder recurses into it
    events = validate_events_json(body, now=now, window=window, departments=departments)
    if events is not None:
        return events
    payload = parse_json_body(body)
    try:
        return validate_events(payload, now=now, window=window, departments=departments,
                               out_of_window=out_of_window)
    except EventBatchError as exc:
        raise ApiError(400, "invalid events", [e.as_dict() for e in exc.errors]) from None


def _busy(request: web.Request, why: str) -> web.Response:
    _app(request).trust.rejected.labels(reason="ingest_busy").inc()
    request.app[INGEST_GATE].overflow.dropped(1)
    response = json_error(503, "ingest queue full",
                          f"{why}; retry the same batch shortly (it is stored once however "
                          "often it is sent)")
    response.headers["Retry-After"] = RETRY_AFTER
    return response


async def post_events(request: web.Request) -> web.Response:
    principal = request.app[AUTH].require(request, "ingest")
    durable = wants_durable(request)
    app = _app(request)
    limit = body_limits(request).events
    hint = f" per request; send at most {MAX_BATCH} events per batch"
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, hint)
    gate = request.app[INGEST_GATE]
    if gate.full(request.content_length or limit):
        return _busy(request, "ioc is parsing other pushes")
    body = await read_body(request, limit, hint)
    config = app.config()
    departments = frozenset(d.code for d in config.departments) or None
    async with gate.turn(len(body)) as admitted:
        if not admitted:
            return _busy(request, "ioc is parsing other pushes")
        out_of_window: Tally[str] = Tally()
        decode = partial(decode_events, body, now=request_now(request),
                         window=config.events.window(clamp=False), departments=departments,
                         out_of_window=out_of_window)
        # A small body is parsed in well under a millisecond: the thread hop would cost more.
        try:
            events = decode() if len(body) <= INLINE_BYTES else await asyncio.to_thread(decode)
        finally:
            app.events.count_out_of_window("push", out_of_window)
        committed = app.events.offer_durable(events) if durable else None
        if committed is None and (durable or not app.events.offer(events)):
            return _busy(request, "ioc is storing a backlog of events")
    if gate.idle:
        gate.overflow.ok()
    log.debug("events accepted", extra={"fields": {"token": principal.name,
                                                   "events": len(events)}})
    if committed is None:
        return web.json_response({"accepted": len(events)}, status=202)
    try:  # shielded: a client that leaves early does not unqueue the events
        await asyncio.wait_for(asyncio.shield(committed), DURABLE_WAIT)
    except (TimeoutError, EventsNotStored):
        app.trust.rejected.labels(reason="not_stored").inc()
        response = json_error(503, "not yet stored",
                              f"the events are queued but not committed within "
                              f"{DURABLE_WAIT:.0f} s; retry the same batch (it is stored "
                              "once however often it is sent)")
        response.headers["Retry-After"] = RETRY_AFTER
        return response
    response = web.json_response({"accepted": len(events), "stored": True}, status=200)
    response.headers["Preference-Applied"] = "durable"
    return response


def wants_durable(request: web.Request) -> bool:
    """``?durable=1`` (or ``true``), or ``Prefer: durable`` (RFC 7240), asks to wait."""
    flag = request.query.get("durable")
    if flag is not None:
        if flag.lower() not in ("1", "true", "0", "false"):
            raise ApiError(400, "invalid durable", "expected durable=1 or durable=0")
        return flag.lower() in ("1", "true")
    prefer = request.headers.get("Prefer", "")
    return any(p.split("=", 1)[0].strip().lower() == "durable" for p in prefer.split(","))


def _list_param(params: Mapping[str, str], name: str, allowed: tuple[str, ...] | None
                ) -> tuple[str, ...]:
    raw = params.get(name, "")
    values = tuple(v.strip() for v in raw.split(",") if v.strip())
    if allowed is not None:
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise ApiError(400, f"invalid {name}",
                           f"unknown {name} {unknown[0]!r}; expected one of "
                           f"{', '.join(allowed)} (comma-separated for several)")
    return values


def parse_event_query(params: Mapping[str, str]) -> EventQuery:
    since: float | None = None
    raw_since = params.get("since", "")
    if raw_since:
        try:
            since = parse_time(raw_since)
        except ValueError as exc:
            raise ApiError(400, "invalid since", str(exc)) from None
    limit = DEFAULT_LIMIT
    raw_limit = params.get("limit", "")
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise ApiError(400, "invalid limit", f"expected an integer, got {raw_limit!r}") \
                from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, "invalid limit", f"limit must be between 1 and {MAX_LIMIT}")
    return EventQuery(
        since=since, limit=limit,
        severities=_list_param(params, "severity", SEVERITIES),
        categories=_list_param(params, "category", CATEGORIES),
        departments=_list_param(params, "department", None),
        sources=_list_param(params, "source", None))


EVENT_PAGE = 50  # events read from the database at a time for one answer (≤ ~1.4 MB)


def _event_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


async def get_events(request: web.Request) -> web.StreamResponse:
    """The matching events, newest first: read in pages of ``EVENT_PAGE`` by a keyset cursor
    and written as they are read (web/streaming.py), so a client that asks for 1,000 large
    events and does not read holds one page in memory, not the whole answer."""
    request.app[AUTH].require(request, "viewer")
    query = parse_event_query(request.query)
    store = _app(request).events.store
    # The first page before the answer starts: a store that is away still gets its 503.
    page = await store.query(dataclasses.replace(query, limit=min(EVENT_PAGE, query.limit)))
    writer = JsonArrayWriter(request, "events", _event_json)
    await writer.start()
    while True:
        for stored in page:
            await writer.add(event_document(stored.event, stored.received_at))
        wanted = min(EVENT_PAGE, query.limit - writer.count)
        if len(page) < EVENT_PAGE or wanted <= 0:
            break
        page = await store.query(dataclasses.replace(query, limit=wanted,
                                                     after=EventCursor.of(page[-1])))
    return await writer.finish(count=writer.count)


# -- OpenAPI description (merged into web.openapi) -----------------------------------------

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_EVENT_FIELDS: dict[str, Any] = {
    "source": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.\\-]*$", "maxLength": 64,
               "description": "the sending system; ids are unique within a source"},
    "id": {"type": ["string", "integer"], "maxLength": 200,
           "description": "unique within the source; a resent event is stored once"},
    "severity": {"type": "string", "enum": list(SEVERITIES)},
    "category": {"type": "string", "enum": list(CATEGORIES), "default": "other"},
    "title": {"type": "string", "minLength": 1, "maxLength": 500},
    "message": {"type": "string", "maxLength": 10_000, "default": ""},
    "department": {"type": ["string", "null"],
                   "description": "department code from config.yaml"},
    "host": {"type": ["string", "null"], "maxLength": 255},
    "occurred_at": {"type": ["number", "string", "null"],
                    "description": "unix seconds or ISO 8601 with a time zone; default: now"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"},
               "maxProperties": 32},
}

EVENT_SCHEMAS: dict[str, Any] = {
    "EventInput": {
        "type": "object", "required": ["source", "id", "severity", "title"],
        "properties": _EVENT_FIELDS, "additionalProperties": False,
    },
    "Event": {
        "type": "object",
        "required": ["source", "id", "department", "severity", "category", "title", "message",
                     "host", "occurred_at", "received_at", "labels"],
        "properties": {
            **_EVENT_FIELDS,
            "id": {"type": "string"},
            "occurred_at": {"type": "number", "description": "unix seconds"},
            "received_at": {"type": "number", "description": "unix seconds"},
        },
        "additionalProperties": False,
    },
    "EventList": {
        "type": "object", "required": ["events", "count"],
        "properties": {"events": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/Event"}},
                       "count": {"type": "integer", "minimum": 0}},
    },
    "EventsAccepted": {
        "type": "object", "required": ["accepted"],
        "properties": {"accepted": {"type": "integer", "minimum": 1},
                       "stored": {"type": "boolean",
                                  "description": "durable pushes: the events are committed"}},
    },
    "EventErrors": {
        "type": "object", "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string",
                      "description": "e.g. `invalid events` or `malformed JSON`"},
            "detail": {"anyOf": [
                {"type": "string", "description": "why the body is not JSON"},
                {"type": "array", "description": "every problem of the batch", "items": {
                    "type": "object", "required": ["index", "field", "message"],
                    "properties": {"index": {"type": ["integer", "null"]},
                                   "field": {"type": "string"},
                                   "message": {"type": "string"}}}},
            ]},
        },
    },
}


def _param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


EVENT_PATHS: dict[str, Any] = {
    "/api/v1/events": {
        "get": {
            "summary": "Stored security events, newest first", "operationId": "listEvents",
            "parameters": [
                _param("since", "unix seconds or ISO 8601: events that occurred at or after"),
                _param("severity", "comma-separated severities, e.g. high,critical"),
                _param("department", "comma-separated department codes"),
                _param("source", "comma-separated sources"),
                _param("category", "comma-separated categories"),
                _param("limit", f"at most this many (1-{MAX_LIMIT}, default {DEFAULT_LIMIT})"),
            ],
            "responses": {
                "200": _json_body({"$ref": "#/components/schemas/EventList"}, "events"),
                "400": _json_body(_ERROR_REF, "invalid query"),
                "401": _json_body(_ERROR_REF, "anonymous viewers are not allowed"),
            },
        },
        "post": {
            "summary": "Push security events (ingest role)", "operationId": "pushEvents",
            "description": f"One event object or a list of at most {MAX_BATCH}; body at most "
                           "service.body_limits.events (1 MiB by default). The batch is "
                           "checked whole: any bad event refuses the batch (nothing stored). "
                           "Idempotent by (source, id). With durable=1 (or the header "
                           "`Prefer: durable`) the answer is 200 only once the events are "
                           "committed to the database.",
            "parameters": [_param("durable", "1 or true: answer 200 only after the events "
                                             "are committed (default: 202 once queued)")],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [{"$ref": "#/components/schemas/EventInput"},
                          {"type": "array", "maxItems": MAX_BATCH, "minItems": 1,
                           "items": {"$ref": "#/components/schemas/EventInput"}}]}}}},
            "responses": {
                "200": _json_body({"$ref": "#/components/schemas/EventsAccepted"},
                                  "durable: committed; stored once per (source, id)"),
                "202": _json_body({"$ref": "#/components/schemas/EventsAccepted"},
                                  "queued; stored once per (source, id)"),
                "400": _json_body({"$ref": "#/components/schemas/EventErrors"},
                                  "malformed JSON or invalid events, each problem listed"),
                "401": _json_body(_ERROR_REF, "no token or unknown token"),
                "403": _json_body(_ERROR_REF, "the token lacks the ingest role"),
                "413": _json_body(_ERROR_REF, "body larger than service.body_limits.events"),
                "503": _json_body(_ERROR_REF, "ingest queue full, or (durable) not "
                                              "committed in time; retry after Retry-After"),
            },
        },
    },
}
