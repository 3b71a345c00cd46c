"""Limits the web layer puts on its clients: failed sign-ins and concurrent API requests.

**Failed credentials** (an unknown or malformed token, a wrong console sign-in, a wrong wall
token, wrong ``/metrics`` credentials) are counted per client address in a token bucket:
``auth.max_failures`` attempts at once, refilled over ``auth.failure_window``. An address
whose bucket is empty gets 429 with ``Retry-After`` for every request that *carries*
credentials, before any token is hashed, until the bucket refills; its anonymous reads (the
wall on a shared NAT address) go on working. Guessing a 16-character token at ten tries a
minute is hopeless, and a typo costs one try. Every refusal is counted in
``ioc_auth_failures_total{reason}``.

**Concurrent API requests** are capped at ``service.max_concurrent_requests``: one more gets
503 with ``Retry-After`` at once instead of queueing behind the rest, so a flood of reads
cannot starve the event loop the uptime probes run on. The live stream and the wall page
have their own caps (``wall.max_clients``) and are not counted here. A refusal episode is
logged twice (when refusals start, and when the load has fallen to half the cap again), not
once per refused request.

Every refusal of this kind, and every body over its cap (413, ``web.bodies``), is counted in
``ioc_http_requests_rejected_total{reason}``.

**Malformed input** is a 400, never a 500 with a traceback per request: a header holding bytes
that are not UTF-8 (a bearer token, ``/metrics`` credentials, a cookie), a form that is not
UTF-8, JSON nested deeper than ``web.bodies.MAX_JSON_DEPTH``, or not JSON at all. Each is
counted by kind (``bad_header``, ``bad_form``, ``bad_json``, ``too_deep``) in the same family,
and logged once per episode (``ioc.overflow.EpisodeLog``), so a flood cannot flood the log.

The buckets live in a bounded map (the oldest address is forgotten beyond
``MAX_TRACKED_CLIENTS``), so a scan from many addresses cannot grow memory without end.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, Counter, Gauge

from ioc.logs import fields
from ioc.overflow import EpisodeLog, OverflowLog
from web.bodies import MALFORMED_REASONS, MalformedInput
from web.errors import json_error

log = logging.getLogger("ioc.web")

MAX_TRACKED_CLIENTS = 10_000
AUTH_FAILURE_REASONS = ("missing", "invalid", "forbidden", "throttled")
REJECT_REASONS = ("busy", "too_large", "ingest_busy", "not_stored", *MALFORMED_REASONS,
                  "bad_http", "status_rate_limited", "report_link_refused")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TrustMetrics:
    """The web layer's refusal counters, registered when the app is built."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.auth_failures = Counter(
            "ioc_auth_failures_total",
            "Requests refused for their credentials: missing (401 without any), invalid "
            "(401 with wrong ones), forbidden (403, the role is lacking), throttled (429, too "
            "many invalid ones from the address).", ["reason"], registry=registry)
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason=reason)
        self.rejected = Counter(
            "ioc_http_requests_rejected_total",
            "Requests refused before they were answered: busy (503, "
            "service.max_concurrent_requests API requests were in flight), too_large (413, "
            "a body over its service.body_limits cap), ingest_busy (503, event pushes were "
            "waiting to be parsed or stored), not_stored (503, a durable push was not "
            "committed within 10 s); malformed input, each a 400: bad_header (a "
            "header that is not UTF-8), bad_form (a form that is not UTF-8), bad_json (a body "
            "that is not JSON), too_deep (JSON nested deeper than 32 levels), bad_http "
            "(no valid HTTP: a request line or header too long or malformed, answered by the "
            "HTTP parser itself); status_rate_limited (429, a client asked a public status page "
            "more often than its rate_limit); report_link_refused (a report download link "
            "that was malformed, altered or expired: 400, 403 or 410).", ["reason"],
            registry=registry)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)
        self.in_flight = Gauge("ioc_http_requests_in_flight",
                               "API requests being answered now.", registry=registry)
        self.audit_errors = Counter(
            "ioc_audit_write_errors_total",
            "Writes whose audit row could not be stored (the database was away).",
            registry=registry)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class FailureLimiter:
    """A token bucket of failed attempts per client address; time is passed in."""

    def __init__(self, capacity: int, window: float,
                 max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window  # tokens per second
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refill(self, client: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(client)
        if bucket is None:
            return None
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= self.capacity:
            del self._buckets[client]  # full again: nothing worth remembering
            return None
        return bucket

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        bucket = self._refill(client, now)
        if bucket is None or bucket.tokens >= 1.0:
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def fail(self, client: str, now: float) -> bool:
        """Take one token for a failed attempt; True when this one emptied the bucket."""
        bucket = self._refill(client, now)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(self.capacity, now)
        self._buckets.move_to_end(client)
        before = bucket.tokens
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return before >= 1.0 > bucket.tokens

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def carries_credentials(request: web.Request) -> bool:
    """Whether the request presents a secret that could be a guess."""
    if request.headers.get("Authorization"):
        return True
    if "token" in request.query:  # a wall screen's one-time ?token=
        return True
    return request.method == "POST" and request.path == "/console/login"


def auth_middleware(limiter: FailureLimiter, metrics: TrustMetrics,
                    now: Callable[[], float]) -> Any:
    """Refuse addresses that guessed too often; count every refusal for its credentials.

    Sits outside the error middleware, so it sees the final status of every response,
    whichever handler or guard produced it.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = client_address(request)
        presented = carries_credentials(request)
        if presented:
            wait = limiter.retry_after(client, now())
            if wait > 0:
                metrics.auth_failures.labels(reason="throttled").inc()
                refusal = json_error(429, "too many failed attempts",
                                     f"try again in {math.ceil(wait)} s")
                refusal.headers["Retry-After"] = str(math.ceil(wait))
                return refusal
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if status == 401:
                reason = "invalid" if presented else "missing"
                metrics.auth_failures.labels(reason=reason).inc()
                if presented and limiter.fail(client, now()):
                    log.warning("too many failed attempts; refusing credentials from this "
                                "address for a while", extra=fields(client=client))
            elif status == 403:
                metrics.auth_failures.labels(reason="forbidden").inc()

    return middleware


def is_api_request(request: web.Request) -> bool:
    """Requests the concurrency cap counts: the JSON API and admin endpoints, not streams."""
    path = request.path
    return (path.startswith("/api/") and path != "/api/v1/stream") or path.startswith("/-/")


def concurrency_middleware(limit: int, metrics: TrustMetrics) -> Any:
    """At most ``limit`` API requests at once; the next gets 503 with Retry-After.

    The refusal episode ends when half the cap is free again rather than at the first
    admitted request: at a steady load just over the cap, refusals and admissions alternate,
    and ending there would write two lines per request.
    """
    in_flight = 0
    calm = limit // 2
    overflow = OverflowLog(log, "API request cap", full="reached", action="refusing",
                           max_concurrent_requests=limit)
    busy = metrics.rejected.labels(reason="busy")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if not is_api_request(request):
            return await handler(request)
        if in_flight >= limit:
            busy.inc()
            overflow.dropped(1)
            response = json_error(503, "busy",
                                  f"{limit} API requests are in flight; try again shortly")
            response.headers["Retry-After"] = "1"
            return response
        in_flight += 1
        metrics.in_flight.inc()
        try:
            return await handler(request)
        finally:
            in_flight -= 1
            metrics.in_flight.dec()
            if overflow.active and in_flight <= calm:
                overflow.ok()

    return middleware


def refusal_middleware(metrics: TrustMetrics) -> Any:
    """Count every 413, whichever endpoint's cap (or aiohttp's own) refused the body."""
    too_large = metrics.rejected.labels(reason="too_large")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:
                too_large.inc()
            raise
        if response.status == 413:
            too_large.inc()
        return response

    return middleware


def _bad_header(request: web.Request) -> str | None:
    """The name of the first header whose value holds bytes that are not UTF-8, if any.

    aiohttp decodes header bytes as UTF-8 with ``surrogateescape``; a lone surrogate left in
    a value is what such bytes became, and encoding the value again (to hash a token, to
    decode basic credentials) would raise.
    """
    for name, value in request.headers.items():
        if value.isascii():
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return name
    return None


def malformed_middleware(metrics: TrustMetrics, monotonic: Callable[[], float]) -> Any:
    """400 for malformed input, counted by kind and logged once per episode.

    Sits just inside the error middleware, so the guards and handlers after it never see a
    header that is not UTF-8, and every ``MalformedInput`` they raise is counted here.
    """
    episode = EpisodeLog(log, "malformed requests refused with 400")

    def refuse(request: web.Request, exc: MalformedInput) -> web.Response:
        metrics.rejected.labels(reason=exc.reason).inc()
        episode.hit(monotonic(), reason=exc.reason, path=request.path[:200],
                    client=client_address(request))
        return json_error(400, exc.error, exc.detail)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = _bad_header(request)
        if name is not None:
            return refuse(request, MalformedInput(
                "bad_header", "invalid header", f"{name} must be UTF-8 (ASCII for tokens)"))
        try:
            return await handler(request)
        except MalformedInput as exc:
            return refuse(request, exc)

    return middleware


class BadHttpFilter(logging.Filter):
    """Count and quiet aiohttp's log of requests its HTTP parser refused with a 400.

    aiohttp answers a request line or header that is too long or not HTTP with a 400 of its
    own, before any middleware, and logs each one at ERROR with a traceback: a flood of them
    would flood the log. This filter, on the logger ioc hands the server, turns those
    records into ``ioc_http_requests_rejected_total{reason="bad_http"}`` and one line per
    episode; any other record (a real server error) passes untouched.
    """

    def __init__(self, metrics: TrustMetrics, monotonic: Callable[[], float]) -> None:
        super().__init__()
        self._counter = metrics.rejected.labels(reason="bad_http")
        self._monotonic = monotonic
        self._episode = EpisodeLog(log, "malformed HTTP refused with 400 by the parser")

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not 400 <= (exc.code or 400) < 500:
            return True
        self._counter.inc()
        self._episode.hit(self._monotonic(), error=type(exc).__name__)
        return False


def server_logger(metrics: TrustMetrics, monotonic: Callable[[], float]) -> logging.Logger:
    """The logger ioc gives aiohttp's server, with :class:`BadHttpFilter` on it.

    One per app, outside the logging module's registry (its records still reach the
    handlers of ``ioc.web`` and the root), so each app counts into its own registry.
    """
    logger = logging.Logger("ioc.web.server")
    logger.parent = logging.getLogger("ioc.web")
    logger.addFilter(BadHttpFilter(metrics, monotonic))
    return logger
