"""Bounds on a response head, the same for both HTTP engines.

A target decides how long its status line and headers are and how many headers it sends; left
unbounded, one target that never ends its head, or sends thousands of headers, holds memory
and CPU that every other check shares. Both engines stop at the same limits with the same
reason, so a target's verdict does not depend on whether it uses ``keepalive`` or a ``proxy``:

- a line (status line or one header) longer than ``max_header_line_bytes``, more than
  ``max_header_count`` headers (interim 1xx answers and chunked trailers included) or a head
  over ``max_head_bytes`` ends the check with reason ``too_large`` and a message naming the
  limit;
- a head not complete within ``head_timeout`` ends it with reason ``timeout``.

The defaults are no looser than aiohttp's own client limits (8190 bytes a line, 128 headers,
so about 1 MiB a head): 100 headers, 8190 bytes a line, 64 KiB a head. Real sites send
2–30 headers and well under 8 KiB of them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import http_exceptions

from ioc.collector import CollectorFailure

# aiohttp's client limits (ClientSession's max_line_size, max_field_size, max_headers): the
# configured limits may not be looser, so aiohttp never stops an answer ioc would accept.
AIOHTTP_MAX_LINE = 8190
AIOHTTP_MAX_HEADERS = 128

MAX_INTERIM = 16  # interim (1xx) answers before the response: servers send one or two
DEFAULT_MAX_HEADER_COUNT = 100
DEFAULT_MAX_HEADER_LINE = 8190
DEFAULT_MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HeadLimits:
    count: int = DEFAULT_MAX_HEADER_COUNT
    line: int = DEFAULT_MAX_HEADER_LINE
    total: int = DEFAULT_MAX_HEAD_BYTES
    timeout: float | None = None   # seconds from the request sent to the head complete

    def too_many(self) -> CollectorFailure:
        return CollectorFailure(
            "too_large", f"response has more than {self.count} headers "
                         f"(max_header_count {self.count})")

    def line_too_long(self) -> CollectorFailure:
        return CollectorFailure(
            "too_large", f"a line of the response head is longer than {self.line} bytes "
                         f"(max_header_line_bytes {self.line})")

    def head_too_large(self) -> CollectorFailure:
        return CollectorFailure(
            "too_large", f"response head is over {self.total} bytes "
                         f"(max_head_bytes {self.total})")

    def head_late(self, received: int | None = None) -> CollectorFailure:
        got = f"; {received} bytes of it received" if received is not None else ""
        return CollectorFailure(
            "timeout", f"response head not complete after {self.timeout:g}s "
                       f"(head_timeout{got})")


def interim_flood() -> CollectorFailure:
    return CollectorFailure("too_large", f"more than {MAX_INTERIM} interim (1xx) answers "
                                         "before the response")


def limit_interim_answers(protocol: Any) -> None:
    """Stop an aiohttp connection at the ``MAX_INTERIM``-th interim answer in a row.

    aiohttp's client reads interim answers until a final one comes, queueing every one it
    parsed and reading them back without yielding to the loop: an endless run of
    ``100 Continue`` holds the loop and grows the queue until the poll's deadline. The
    protocol's ``feed_data`` (one call per parsed answer) is wrapped to count them. The
    wrapper holds the protocol weakly and calls the class's method, so it adds no
    reference cycle per connection.
    """
    feed = type(protocol).feed_data
    owner = weakref.ref(protocol)
    seen = 0

    def counted(item: Any, size: int = 0) -> None:
        nonlocal seen
        target = owner()
        if target is None:
            return
        code = getattr(item[0], "code", 0) if isinstance(item, tuple) and item else 0
        if 100 <= code < 200 and code != 101:
            seen += 1
            if seen > MAX_INTERIM:
                if seen == MAX_INTERIM + 1:
                    target.set_exception(interim_flood())
                    if target.transport is not None:
                        target.transport.abort()
                return
        else:
            seen = 0
        feed(target, item, size)

    protocol.feed_data = counted


def header_bytes(name: str | bytes, value: str | bytes) -> int:
    """What one header counts towards ``max_head_bytes``: ``name: value`` and its CRLF."""
    return len(name) + len(value) + 4


def check_head(limits: HeadLimits, reason_phrase: str,
               headers: Iterable[tuple[bytes, bytes]]) -> None:
    """The limits applied to a head another parser read whole (the aiohttp engine).

    aiohttp bounds each line and the count itself (with the limits passed to the request);
    the head's total size is checked here, counted as ``collectors.probe.wire`` counts it.
    """
    total = len(reason_phrase) + 15  # "HTTP/1.1 200 " + reason + CRLF
    count = 0
    for name, value in headers:
        count += 1
        if count > limits.count:
            raise limits.too_many()
        total += header_bytes(name, value)
        if total > limits.total:
            raise limits.head_too_large()


def classify_head_error(exc: BaseException, limits: HeadLimits) -> CollectorFailure | None:
    """aiohttp's head errors (a ClientResponseError caused by its parser) as ioc's reasons.

    aiohttp re-wraps its parser's error in a plain HttpProcessingError with the same message
    (client_proto.py), keeping the original as its cause: the chain is searched for either.
    """
    if not isinstance(exc, aiohttp.ClientResponseError):
        return None
    chain: list[http_exceptions.HttpProcessingError] = []
    cause: BaseException | None = exc.__cause__
    while cause is not None and len(chain) < 4:
        if isinstance(cause, http_exceptions.HttpProcessingError):
            chain.append(cause)
        cause = cause.__cause__
    if not chain:
        return None
    messages = " ".join(str(c.message) for c in chain).lower()
    if any(isinstance(c, http_exceptions.LineTooLong) for c in chain) or \
            "got more than" in messages:
        return limits.line_too_long()
    if "too many headers" in messages:
        return limits.too_many()
    what = "not an HTTP response" if any(
        isinstance(c, http_exceptions.BadStatusLine) for c in chain) or \
        "bad status line" in messages else "malformed HTTP response"
    return CollectorFailure("protocol_error", f"{what}: {chain[0].message}"[:500])
