"""Why a target fails, in words an operator understands (the wall's tiles).

A poll's failure reason (``ioc.model.FAILURE_REASONS``) is a small technical vocabulary kept
for metrics, incidents and the API. The room reads plain words instead: "Không phản hồi"
rather than ``timeout``, "Trang báo lỗi (HTTP 503)" rather than ``http_status``. The
technical reason and the target's own error text stay in the tile's tooltip.

One reason needs the error text to be told truthfully: ``protocol_error`` covers both a peer
that answered something that is not HTTP (or DNS) and a peer that closed the connection before
its answer was complete — the probe's words for the latter are "connection closed before any
answer" / "connection closed after N body bytes" (collectors/probe/wire.py), aiohttp's
"Server disconnected" and "Response payload is not completed … Not enough data to satisfy
content length" (keep-alive and proxy targets), the tcp collector's "connection failed: …"
and the dns collector's "closed/dropped the TCP connection". An operator must read that as a
dropped connection, not as a "protocol error".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ioc.model import FAILURE_REASONS

# How the collectors word a peer that went away mid-answer (see the module docstring).
_DROPPED = re.compile(
    r"connection closed|closed the (?:tcp )?connection|dropped the (?:tcp )?connection"
    r"|server disconnected|connection (?:reset|aborted|lost)|reset by peer|broken pipe"
    r"|connection failed|payload is not completed|not enough data",
    re.IGNORECASE)
_HTTP_STATUS = re.compile(r"\bstatus (\d{3})\b")


@dataclass(frozen=True, slots=True)
class Cause:
    """A catalogue key (``cause_*`` in web/locales) and the values its words take."""

    key: str
    status: int | None = None  # the HTTP status, for ``cause_http_status``


def cause_of(reason: str | None, error: str | None = None,
             value: float | None = None) -> Cause:
    """The plain cause of a failed poll from its ``reason``, ``last_error`` and headline
    ``value`` (an HTTP check's status code); an unknown reason reads as ``error``."""
    if reason == "protocol_error" and error and _DROPPED.search(error):
        return Cause("cause_dropped")
    if reason == "http_status":
        status = _status(error, value)
        return Cause("cause_http_status", status) if status else Cause("cause_http_status_bare")
    if reason in FAILURE_REASONS:
        return Cause(f"cause_{reason}")
    return Cause("cause_error")


def _status(error: str | None, value: float | None) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value) and 100 <= value <= 599 and value == int(value):
        return int(value)
    found = _HTTP_STATUS.search(error or "")
    return int(found.group(1)) if found else None
