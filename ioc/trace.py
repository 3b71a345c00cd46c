"""The trace of one poll run by ``ioc try``: what the collector did and saw, as plain data.

A collector does not know whether it is being tried. While ``ioc try`` (or ``POST
/api/v1/try/{name}``) runs a poll, a :class:`Trace` sits in a context variable, and the few
places that already hold the interesting values (the HTTP engine after each exchange, the JSON
statistics fetch, the JMESPath mapping, the content judge) hand them over with one call to
:func:`active`. During scheduled polls the variable is empty and each hook costs one context
variable read. The trace is rendered by ``ioc.trace_text`` (text, Vietnamese or English) or
dumped as JSON (:meth:`Trace.to_dict`): one piece of data, two views.

Everything put here may end up on a terminal or in an API answer, so secrets are masked on the
way in: authorization and cookie headers, secret-looking query parameters and user info in
URLs (:func:`mask_headers`, :func:`mask_url`), and the config's secret values wherever they
appear (:meth:`Trace.masked`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
PAYLOAD_EXCERPT = 2000        # characters of a statistics payload kept for the trace
HEADER_VALUE_MAX = 300
FIELD_UNITS_MAX = 50          # units whose mapped fields are listed one by one
SAMPLES_MAX = 500
EVENTS_MAX = 100
EXCHANGES_MAX = 20            # requests listed (redirect hops included)
HEADERS_MAX = 50              # headers listed per request and per answer

# Header names whose values are credentials or session state.
_SECRET_HEADERS = frozenset((
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-auth-token", "x-access-token", "x-csrf-token", "x-xsrf-token", "api-key", "apikey",
))
_SECRET_WORDS = re.compile(r"token|secret|passw|api[-_]?key|apikey|auth|session|signature|"
                           r"(^|[-_])sig($|[-_])|(^|[-_])key($|[-_])|credential",
                           re.IGNORECASE)

CURRENT_TRACE: ContextVar[Trace | None] = ContextVar("ioc_trace", default=None)


def active() -> Trace | None:
    """The trace of the poll running in this task, or None (the scheduled, untraced case)."""
    return CURRENT_TRACE.get()


@contextmanager
def tracing(trace: Trace) -> Iterator[Trace]:
    """Make ``trace`` the active one for the code run inside (one poll)."""
    token = CURRENT_TRACE.set(trace)
    try:
        yield trace
    finally:
        CURRENT_TRACE.reset(token)


class UnknownTarget(LookupError):
    """A name that is no collector of the config; the message lists the names there are."""

    def __init__(self, unknown: Sequence[str], known: Sequence[str]) -> None:
        listed = ", ".join(known) or "none"
        names = ", ".join(repr(n) for n in unknown) or "none given"
        super().__init__(f"no target named {names} in the config (targets: {listed})")
        self.unknown = list(unknown)
        self.known = list(known)


def secret_name(name: str) -> bool:
    """Whether a header or query parameter of this name carries a credential."""
    return name.lower() in _SECRET_HEADERS or bool(_SECRET_WORDS.search(name))


def mask_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers as (name, value) with credential values replaced and long values cut (at
    most ``HEADERS_MAX`` of them: a hostile server may send thousands)."""
    shown: list[tuple[str, str]] = []
    for name, value in headers:
        if len(shown) >= HEADERS_MAX:
            shown.append(("…", "more headers not shown"))
            break
        if secret_name(name):
            value = MASK
        elif len(value) > HEADER_VALUE_MAX:
            value = value[:HEADER_VALUE_MAX] + "…"
        shown.append((name, value))
    return shown


def mask_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_name(k) for k, _ in pairs):
            query = urlencode([(k, MASK if secret_name(k) else v) for k, v in pairs],
                              safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def excerpt(raw: bytes | str, limit: int = PAYLOAD_EXCERPT) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else text[:limit] + "…"


def shown_value(value: Any, limit: int = 80) -> str:
    """A value read from a payload as JSON text (so a string number shows its quotes)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(slots=True)
class Exchange:
    """One HTTP request and its answer (each redirect hop is one)."""

    url: str
    status: int
    headers: list[tuple[str, str]]                 # the answer's
    method: str = "GET"
    request_headers: list[tuple[str, str]] = field(default_factory=list)  # as sent


@dataclass(slots=True)
class Certificate:
    subject: str
    issuer: str
    not_after: float


@dataclass(slots=True)
class TlsTrace:
    version: str
    chain: list[Certificate]
    earliest_not_after: float | None = None


@dataclass(slots=True)
class Check:
    """One condition the collector judged: what it was, whether it held, and why."""

    name: str
    ok: bool
    detail: str


@dataclass(slots=True)
class FieldRead:
    """One JMESPath read from a payload: where, the expression, what it found, what it gave.

    ``value`` is what ioc took (a count, a code) or None; ``note`` says why not, or how the
    raw value was turned into it.
    """

    scope: str            # "units[0] (STTTT)", "province", "items[0]"
    name: str             # canonical counter, "code", or an event field
    expression: str
    raw: str              # the value found, as JSON text ("null" when nothing)
    value: str | None
    note: str = ""


@dataclass(slots=True)
class SampleTrace:
    metric: str
    labels: dict[str, str]
    value: float


@dataclass(slots=True)
class Trace:
    """Everything one tried poll did, in the order a person reads it."""

    target: str
    kind: str
    url: str = ""
    started_at: float = 0.0
    duration: float | None = None
    up: bool | None = None
    degraded: bool = False
    reason: str | None = None
    error: str | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    tls: TlsTrace | None = None
    checks: list[Check] = field(default_factory=list)
    payload: str | None = None
    payload_bytes: int | None = None
    fields: list[FieldRead] = field(default_factory=list)
    fields_left_out: int = 0
    samples: list[SampleTrace] = field(default_factory=list)
    samples_left_out: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    events_left_out: int = 0
    exchanges_left_out: int = 0
    notes: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    # -- what the hooks call ------------------------------------------------------------------
    def exchange(self, url: str, status: int, headers: Iterable[tuple[str, str]],
                 method: str = "GET", sent: Iterable[tuple[str, str]] = ()) -> None:
        """One request (``method``, ``sent`` headers) and the answer's status and headers."""
        if len(self.exchanges) >= EXCHANGES_MAX:
            self.exchanges_left_out += 1
            return
        self.exchanges.append(Exchange(mask_url(url), status, mask_headers(headers), method,
                                       mask_headers(sent)))

    def set_payload(self, raw: bytes) -> None:
        self.payload_bytes = len(raw)
        self.payload = excerpt(raw)

    def read(self, scope: str, name: str, expression: str, raw: Any, value: Any,
             note: str = "") -> None:
        units = {f.scope for f in self.fields}
        if scope not in units and len(units) >= FIELD_UNITS_MAX:
            self.fields_left_out += 1
            return
        self.fields.append(FieldRead(scope, name, expression, shown_value(raw),
                                     None if value is None else str(value), note))

    def event(self, event: dict[str, Any]) -> None:
        if len(self.events) >= EVENTS_MAX:
            self.events_left_out += 1
            return
        self.events.append(event)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def sample(self, metric: str, labels: Mapping[str, str], value: float) -> None:
        if len(self.samples) >= SAMPLES_MAX:
            self.samples_left_out += 1
            return
        self.samples.append(SampleTrace(metric, dict(labels), value))

    # -- output -----------------------------------------------------------------------------
    def masked(self, text: str) -> str:
        for secret in self.secrets:
            if len(secret) >= 4 and secret in text:
                text = text.replace(secret, MASK)
        return text

    def to_dict(self) -> dict[str, Any]:
        """The trace as JSON-ready data (``--json`` and the API), secrets masked."""
        data = asdict(self)
        del data["secrets"]
        data["phases"] = [{"phase": p, "seconds": s} for p, s in self.phases]
        for exchange in data["exchanges"]:
            for key in ("headers", "request_headers"):
                exchange[key] = [{"name": n, "value": v} for n, v in exchange[key]]
        return _mask_all(data, self.masked)


def _mask_all(value: Any, mask: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _mask_all(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_all(v, mask) for v in value]
    return value
