"""The ``http`` collector: is a department's web system answering, correctly, fast, unaltered.

One check is one request (redirects followed up to a limit) on a fresh connection unless the
target asks for ``keepalive``. The verdict looks at the status, the content conditions, the
forbidden (defacement) keywords, the page title and the TLS certificate; the samples carry
the status, the body size, the redirect count, the TLS expiry and version and the time spent
in each phase. Parsing and judging live in ``collectors.probe``; this module fetches.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Generator
from typing import ClassVar, Literal, TypeVar, cast
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from pydantic import Field, SecretStr, field_validator, model_validator

from collectors.probe.body import read_body
from collectors.probe.conditions import (
    DEFAULT_FORBIDDEN_KEYWORDS,
    ContentRules,
    Keywords,
    PageText,
    compile_jmespath,
    page_title,
    read_page,
)
from collectors.probe.errors import classify_http_error
from collectors.probe.head import (
    AIOHTTP_MAX_HEADERS,
    AIOHTTP_MAX_LINE,
    DEFAULT_MAX_HEAD_BYTES,
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEADER_LINE,
    HeadLimits,
    check_head,
    classify_head_error,
)
from collectors.probe.phases import CURRENT_TIMER, PhaseTimer
from collectors.probe.session import open_probe_session
from collectors.probe.tls import (
    CertificateFailure,
    TlsInfo,
    check_cert_days,
    explain_certificate_failure,
    shared_client_context,
    tls_info,
)
from collectors.probe.trace_hooks import note_content, note_http
from collectors.probe.wire import WireClient, WireResponse
from ioc import clock
from ioc.collector import CollectorFailure, mark_interrupted_phase
from ioc.config_types import CollectorConfig, Duration, StrictModel
from ioc.model import CollectResult, Event, Labels, Sample, make_labels
from ioc.regex import check_pattern, compile_pattern

URL_LABEL_MAX = 200
T = TypeVar("T")


def url_label(url: str) -> str:
    """``url`` as a label value: scheme, host, port and path only, at most 200 characters.

    A redirect target's query string or fragment often carries a session id, a timestamp or a
    token; as a label it would make a new series on every poll and could put a secret on
    /metrics. User info is dropped for the same reason.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    label = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    return label[:URL_LABEL_MAX]


def parse_status_spec(spec: list[int | str]) -> tuple[tuple[int, int], ...]:
    """``[200, "300-399"]`` → inclusive ranges; raises ValueError naming the bad item."""
    ranges: list[tuple[int, int]] = []
    for item in spec:
        if isinstance(item, bool):
            raise ValueError(f"expected a status code or range like 200-299, got {item!r}")
        if isinstance(item, int):
            low = high = item
        else:
            text = str(item).strip()
            low_text, sep, high_text = text.partition("-")
            if not low_text.isdigit() or (sep and not high_text.isdigit()):
                raise ValueError(f"expected a status code or range like 200-299, got {item!r}")
            low = int(low_text)
            high = int(high_text) if sep else low
        if not (100 <= low <= high <= 599):
            raise ValueError(f"status codes must be within 100-599 and low <= high, got {item!r}")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("at least one expected status is required")
    return tuple(ranges)


def _default_status() -> list[int | str]:
    return ["200-299"]


def _default_forbidden() -> list[str]:
    return list(DEFAULT_FORBIDDEN_KEYWORDS)


async def _sliced(steps: Generator[None, None, T]) -> T:
    """Run a sliced computation, letting the event loop run between its slices."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return cast(T, stop.value)
        await asyncio.sleep(0)


def _drop_tracebacks(exc: BaseException) -> None:
    """Forget where a classified failure (and what caused it) was raised.

    A client keeps the error it met (aiohttp's protocol and response objects do) while the
    error's traceback holds the frames that hold them: a reference cycle per failed check,
    freed only by the cycle collector. The failure's reason and message are what is
    reported; the frames are not needed.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += (current.__cause__, current.__context__)


class BasicAuth(StrictModel):
    username: str
    password: SecretStr


class HttpConfig(CollectorConfig):
    type: Literal["http"]
    url: str = Field(description="http:// or https:// address to request")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    expected_status: list[int | str] = Field(
        default_factory=_default_status,
        description="status codes and ranges that count as up",
    )
    max_latency: Duration | None = None
    body_contains: list[str] = Field(default_factory=list)
    body_not_contains: list[str] = Field(default_factory=list)
    case_insensitive: bool = False
    body_regex: str | None = None
    json_condition: str | None = None
    expected_title: str | None = None
    forbidden_keywords: list[str] = Field(default_factory=_default_forbidden)
    forbidden_keywords_unaccented: bool | None = Field(
        default=None, description="also match the keywords written without diacritics "
                                  "(nha cai); unset: on for the built-in list only")
    detect_title_change: bool = False
    max_redirects: int = Field(default=10, ge=0, le=100)
    max_body_bytes: int = Field(default=1 << 20, ge=1, le=1 << 30)
    max_header_count: int = Field(
        default=DEFAULT_MAX_HEADER_COUNT, ge=1, le=AIOHTTP_MAX_HEADERS,
        description="headers a response may carry (interim answers and trailers included)")
    max_header_line_bytes: int = Field(
        default=DEFAULT_MAX_HEADER_LINE, ge=256, le=AIOHTTP_MAX_LINE,
        description="longest status or header line of a response")
    max_head_bytes: int = Field(
        default=DEFAULT_MAX_HEAD_BYTES, ge=1024, le=1 << 20,
        description="status line and headers of a response together")
    head_timeout: Duration | None = Field(
        default=None, description="time from the request to the end of the response head; "
                                   "unset: only the poll's timeout applies")
    ip_family: Literal["any", "ipv4", "ipv6"] = Field(
        "any", description="preferred address family; any: the resolver's order")
    ip_family_fallback: bool = Field(
        True, description="use the other family when the name has no preferred address")
    proxy: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    cert_min_days: float | None = Field(default=None, ge=0)
    keepalive: bool = False

    @field_validator("url", "proxy")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value

    @field_validator("expected_status")
    @classmethod
    def _check_status(cls, value: list[int | str]) -> list[int | str]:
        parse_status_spec(value)
        return value

    @field_validator("body_regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            check_pattern(value)  # RE2: linear time whatever the pattern
        return value

    @field_validator("json_condition")
    @classmethod
    def _check_jmespath(cls, value: str | None) -> str | None:
        if value is not None:
            compile_jmespath(value)
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> HttpConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("use either basic_auth or bearer_token, not both")
        return self


class HttpCollector:
    kind: ClassVar[str] = "http"
    Config: ClassVar[type[CollectorConfig]] = HttpConfig

    def __init__(self, config: HttpConfig, *, resolver: AbstractResolver | None = None) -> None:
        """``resolver`` looks names up for this target's own session (``ip_family`` or
        ``keepalive``); aiohttp's default asks the system."""
        self.config = config
        self._resolver = resolver
        self._ranges = parse_status_spec(config.expected_status)
        self._ssl: bool | ssl.SSLContext = config.verify_tls
        if config.verify_tls and config.ca_file:
            self._ssl = shared_client_context(True, config.ca_file)
        self._tls = urlsplit(config.url).scheme == "https"
        self._head = HeadLimits(count=config.max_header_count,
                                line=config.max_header_line_bytes,
                                total=config.max_head_bytes, timeout=config.head_timeout)
        self._rules = ContentRules(
            contains=tuple(config.body_contains),
            not_contains=tuple(config.body_not_contains),
            case_insensitive=config.case_insensitive,
            regex=compile_pattern(config.body_regex, case_insensitive=config.case_insensitive)
            if config.body_regex else None,
            json_query=compile_jmespath(config.json_condition)
            if config.json_condition else None,
            json_source=config.json_condition or "",
            expected_title=config.expected_title,
        )
        self._has_rules = any((config.body_contains, config.body_not_contains,
                               config.body_regex, config.json_condition,
                               config.expected_title))
        unaccented = config.forbidden_keywords_unaccented
        if unaccented is None:
            unaccented = tuple(config.forbidden_keywords) == DEFAULT_FORBIDDEN_KEYWORDS
        self._forbidden = Keywords.compile(config.forbidden_keywords, unaccented)
        self._headers = dict(config.headers)
        self._headers.setdefault("Accept-Encoding", "gzip, deflate")
        if config.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        if config.basic_auth is not None:
            pair = f"{config.basic_auth.username}:" \
                   f"{config.basic_auth.password.get_secret_value()}"
            self._headers["Authorization"] = \
                f"Basic {base64.b64encode(pair.encode()).decode('ascii')}"
        self._labels = make_labels(config.labels, target=config.name,
                                   department=config.department, kind=self.kind)
        self._phase_labels = {phase: make_labels(self._labels, phase=phase)
                              for phase in ("dns", "connect", "tls", "processing", "transfer")}
        # The fresh-connection default runs on the lean engine (collectors.probe.wire);
        # connection reuse and proxies need a full client and stay on aiohttp.
        self._wire: WireClient | None = None
        if not config.keepalive and config.proxy is None:
            self._wire = WireClient(
                url=config.url, method=config.method, headers=self._headers, body=config.body,
                ssl_context=shared_client_context(config.verify_tls, config.ca_file),
                max_redirects=config.max_redirects, max_body_bytes=config.max_body_bytes,
                family=config.ip_family, family_fallback=config.ip_family_fallback,
                resolver=resolver, head=self._head)
        self._own_policy = config.keepalive or config.ip_family != "any"
        self._own_session: aiohttp.ClientSession | None = None
        self._baseline_title: str | None = None
        self._url_labels: dict[str, Labels] = {}
        self._last_hits: tuple[str, ...] = ()
        self._last_tls: TlsInfo | None = None

    @property
    def host(self) -> str | None:
        parts = urlsplit(self.config.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    def status_ok(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self._ranges)

    def _session_for(self, shared: aiohttp.ClientSession) -> aiohttp.ClientSession:
        """The app's fresh-connection session, or this target's own for keepalive/family."""
        if not self._own_policy:
            return shared
        if self._own_session is None or self._own_session.closed:
            self._own_session = open_probe_session(
                limit=4, limit_per_host=4, keepalive=self.config.keepalive,
                family=self.config.ip_family, family_fallback=self.config.ip_family_fallback,
                resolver=self._resolver)
        return self._own_session

    async def close(self) -> None:
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    async def collect(self, session: aiohttp.ClientSession, now: float) -> CollectResult:
        cfg = self.config
        timer = PhaseTimer(tls=self._tls)
        started = clock.monotonic()
        try:
            if self._wire is not None:
                response = await self._wire.fetch(timer)
            else:
                response = await self._fetch_aiohttp(session, timer)
        except asyncio.CancelledError as exc:
            mark_interrupted_phase(exc, timer.current)
            raise
        except CollectorFailure as exc:
            _drop_tracebacks(exc)
            if isinstance(exc, CertificateFailure):
                raise await self._explained(exc, now) from None
            raise
        except Exception as exc:
            raise await self._explained(self._classified(exc), now) from exc
        timer.finish()
        status, body, final_url, tls = response.status, response.body, response.url, \
            response.tls
        charset = response.charset or "utf-8"
        elapsed = clock.monotonic() - started
        samples = self._samples(timer, status, len(body), tls, final_url, now)
        try:
            check_cert_days(tls, cfg.cert_min_days, now)
        except CollectorFailure as exc:
            return CollectResult(up=False, samples=samples, reason="tls", error=str(exc),
                                 value=status)
        if not self.status_ok(status):
            return CollectResult(up=False, samples=samples, reason="http_status",
                                 error=f"unexpected HTTP status {status}", value=status)
        problem, events = await self._judge_content(body, charset, final_url, now)
        if problem is not None:
            return CollectResult(up=False, samples=samples, events=events, reason="content",
                                 error=problem, value=status)
        if cfg.max_latency is not None and elapsed > cfg.max_latency:
            return CollectResult(up=True, samples=samples, value=status, degraded=True,
                                 error=f"answered in {elapsed:.3f}s, over max_latency "
                                       f"{cfg.max_latency:g}s")
        return CollectResult(up=True, samples=samples, value=status)

    async def _explained(self, failure: CollectorFailure, now: float) -> CollectorFailure:
        """A certificate failure with every cause its chain has (collectors.probe.tls)."""
        if isinstance(failure, CertificateFailure):
            return await explain_certificate_failure(failure, now, self.config.ca_file)
        return failure

    def _classified(self, exc: Exception) -> CollectorFailure:
        """The failure an engine's exception stands for (raising ``exc`` if none does).

        Returned rather than kept in a local of ``collect``, whose frame would otherwise
        hold the failure that its own traceback holds.
        """
        failure = classify_head_error(exc, self._head) or classify_http_error(exc)
        if failure is None:
            raise exc
        _drop_tracebacks(exc)
        return failure

    async def _fetch_aiohttp(self, session: aiohttp.ClientSession,
                             timer: PhaseTimer) -> WireResponse:
        """The check through aiohttp, for targets with ``keepalive`` or a ``proxy``."""
        cfg = self.config
        head = self._head
        token = CURRENT_TIMER.set(timer)
        try:
            request = self._session_for(session).request(
                cfg.method, cfg.url, headers=self._headers, data=cfg.body,
                ssl=self._ssl, allow_redirects=cfg.max_redirects > 0,
                max_redirects=max(cfg.max_redirects, 1), proxy=cfg.proxy,
                trace_request_ctx=timer, auto_decompress=False,
                max_line_size=head.line, max_field_size=head.line, max_headers=head.count)
            try:
                async with asyncio.timeout(head.timeout):
                    response = await request
            except TimeoutError as exc:
                raise head.head_late() from exc
            async with response:
                check_head(head, response.reason or "", response.raw_headers)
                tls = self._tls_of(response, timer)
                for hop in (*response.history, response):
                    note_http(str(hop.url), hop.status, hop.headers,
                              timer.ssl_object if hop is response else None,
                              hop.method, hop.request_info.headers)
                body = b"" if cfg.method == "HEAD" else await read_body(
                    response, cfg.max_body_bytes)
                return WireResponse(status=response.status, body=body,
                                    charset=response.charset, url=str(response.url), tls=tls)
        finally:
            CURRENT_TIMER.reset(token)

    def _tls_of(self, response: aiohttp.ClientResponse, timer: PhaseTimer) -> TlsInfo | None:
        """TLS details of the connection the answer came on (kept across keepalive reuse)."""
        if response.url.scheme != "https":
            return None
        info = tls_info(timer.ssl_object)
        if info is None and response.connection is not None \
                and response.connection.transport is not None:
            info = tls_info(response.connection.transport.get_extra_info("ssl_object"))
        if info is None:
            info = self._last_tls  # a reused keepalive connection: same handshake as before
        self._last_tls = info
        return info

    def _samples(self, timer: PhaseTimer, status: int, size: int, tls: TlsInfo | None,
                 final_url: str, now: float) -> tuple[Sample, ...]:
        labels = self._labels
        samples = [
            Sample("ioc_probe_http_status_code", labels, float(status), now),
            Sample("ioc_probe_http_content_length_bytes", labels, float(size), now),
            Sample("ioc_probe_http_redirects", labels, float(timer.redirects), now),
            Sample("ioc_probe_http_final_url_info", self._final_url_labels(final_url), 1.0, now),
        ]
        for phase, seconds in timer.durations.items():
            phase_labels = self._phase_labels.get(phase)
            if phase_labels is not None:
                samples.append(Sample("ioc_probe_phase_duration_seconds", phase_labels,
                                      seconds, now))
        if tls is not None:
            samples.append(Sample("ioc_probe_tls_cert_expiry_timestamp_seconds", labels,
                                  tls.not_after, now))
            samples.append(Sample("ioc_probe_tls_version_info",
                                  make_labels(labels, version=tls.version), 1.0, now))
        return tuple(samples)

    def _final_url_labels(self, final_url: str) -> Labels:
        """Labels of the final-URL series, remembered for the few URLs a target ends at."""
        found = self._url_labels.get(final_url)
        if found is None:
            if len(self._url_labels) >= 8:
                self._url_labels.clear()  # a target whose redirects keep changing
            found = self._url_labels[final_url] = make_labels(self._labels,
                                                              url=url_label(final_url))
        return found

    async def _judge_content(self, body: bytes, charset: str, final_url: str,
                             now: float) -> tuple[str | None, tuple[Event, ...]]:
        """The first content problem (or None) and a defacement event when one starts.

        Reading a large page is sliced (collectors.probe.conditions): the loop runs between
        slices, so a 1 MiB page does not hold every other check back.
        """
        cfg = self.config
        if not (self._has_rules or self._forbidden is not None or cfg.detect_title_change):
            return None, ()
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        forbidden = self._forbidden
        page: PageText = await _sliced(read_page(text))
        problem = self._rules.check(page) if self._has_rules else None
        hits = tuple(await _sliced(forbidden.search(page))) if forbidden is not None else ()
        title_problem = None
        if cfg.detect_title_change:
            title = page_title(text)
            if self._baseline_title is None and not hits and problem is None:
                self._baseline_title = title
            elif self._baseline_title is not None and title != self._baseline_title:
                title_problem = (f"page title changed from {self._baseline_title!r} "
                                 f"to {title!r}")
        note_content(self._rules, text, self._forbidden, hits, title_problem)
        defaced = bool(hits) or title_problem is not None
        events: tuple[Event, ...] = ()
        signature = hits + ((title_problem,) if title_problem else ())
        if defaced and signature != self._last_hits:
            events = (self._defacement_event(hits, title_problem, final_url, now),)
        self._last_hits = signature if defaced else ()
        if hits:
            return f"forbidden keywords on the page: {', '.join(hits)}", events
        if title_problem is not None:
            return title_problem, events
        return problem, events

    def _defacement_event(self, hits: tuple[str, ...], title_problem: str | None, url: str,
                          now: float) -> Event:
        cfg = self.config
        what = (f"forbidden keywords: {', '.join(hits)}" if hits else "") + \
            ("; " if hits and title_problem else "") + (title_problem or "")
        return Event(
            source="ioc-probe", id=f"defacement:{cfg.name}:{now:.3f}", severity="critical",
            category="defacement", title=f"Possible defacement of {cfg.name}",
            occurred_at=now, message=f"{url}: {what}", department=cfg.department,
            host=urlsplit(url).hostname, labels=self._labels)
