"""The ``siem`` collector: pull security events from a SIEM's HTTP API, exactly once.

Two shapes:

* ``wazuh`` — the Wazuh indexer (OpenSearch) ``POST /<index>/_search`` on ``wazuh-alerts-*``,
  oldest first, paged with ``search_after``; ``rule.level`` becomes the severity and
  ``rule.groups`` the category (tables in docs/events.md).
* ``json`` — any HTTP endpoint returning a JSON list of events newer than ``?since=``; the list
  and each field are found with JMESPath expressions.

The cursor is the newest event time seen plus the ids seen at exactly that time (several
events can share a millisecond, and a query "from that time on" returns them again). Each page
is written to the store together with the cursor after it in one transaction
(``EventState.commit``), so a restart of ioc resumes after the last stored page: nothing is
skipped, and anything fetched twice is recognised by ``(source, id)`` and not counted again.
Parsing is pure (:func:`wazuh_event`, :func:`json_event`, :class:`Cursor`); ``collect`` only
fetches pages and commits them.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import Field, SecretStr, field_validator

from collectors.probe.body import read_capped
from collectors.probe.errors import classify_http_error
from ioc import trace
from ioc.collector import CollectorFailure
from ioc.config_types import CollectorConfig, Duration, StrictModel
from ioc.events import (
    Severity,
    TimeWindow,
    parse_time,
    validate_event,
    wazuh_category,
    wazuh_severity,
)
from ioc.model import CollectResult, Event

log = logging.getLogger("ioc.collector")

MAX_RESPONSE_BYTES = 32 << 20


def _check_jmespath(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        jmespath.compile(value)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {value!r}: {exc}") from None
    return value


class SiemFields(StrictModel):
    """JMESPath expressions for each event field, evaluated on one item of the list."""

    id: str = "id"
    occurred_at: str = "timestamp"
    severity: str = "severity"
    category: str | None = "category"
    title: str = "title"
    message: str | None = "message"
    host: str | None = "host"
    labels: str | None = None

    @field_validator("*")
    @classmethod
    def _check_paths(cls, value: str | None) -> str | None:
        return _check_jmespath(value)


class SiemConfig(CollectorConfig):
    type: Literal["siem"]
    shape: Literal["wazuh", "json"] = "wazuh"
    url: str = Field(description="Wazuh indexer base URL, or the JSON list endpoint")
    index: str = Field("wazuh-alerts-*", pattern=r"^[A-Za-z0-9_.*,\-]+$")
    username: str | None = None
    password: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True
    page_size: int = Field(500, ge=1, le=10_000)
    max_pages: int = Field(20, ge=1, le=1000)
    lookback: Duration = Field(3600.0, description="how far back the very first poll reads")
    event_department: str | None = Field(
        None, description="JMESPath to the event's department code in an item")
    items: str = "@"
    fields: SiemFields = SiemFields()
    severity_map: dict[str, Severity] = Field(default_factory=dict)
    since_param: str = "since"
    limit_param: str = "limit"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value

    @field_validator("items", "event_department")
    @classmethod
    def _check_paths(cls, value: str | None) -> str | None:
        return _check_jmespath(value)


class EventState(Protocol):
    """Where a SIEM collector keeps its cursor and stores its pages (the event sink)."""

    window: TimeWindow  # events.max_past / max_future, clamping

    def count_out_of_window(self, ingest: str, sides: Mapping[str, int]) -> None: ...

    async def load_cursor(self, name: str) -> str | None: ...

    async def commit(self, events: Sequence[Event], cursor: tuple[str, str]) -> list[Event]: ...


@dataclass(frozen=True, slots=True)
class Cursor:
    """Newest event time seen (ms) and the ids seen at exactly that time."""

    ts_ms: int
    ids: frozenset[str] = field(default_factory=frozenset)

    def seen(self, ts_ms: int, event_id: str) -> bool:
        return ts_ms < self.ts_ms or (ts_ms == self.ts_ms and event_id in self.ids)

    def advance(self, events: Sequence[tuple[int, Event]]) -> Cursor:
        """Past ``events``, each with its time on the SIEM's own timeline (ms)."""
        ts, ids = self.ts_ms, set(self.ids)
        for ms, event in events:
            if ms > ts:
                ts, ids = ms, {event.id}
            elif ms == ts:
                ids.add(event.id)
        return Cursor(ts, frozenset(ids))

    def dumps(self) -> str:
        return json.dumps({"ts_ms": self.ts_ms, "ids": sorted(self.ids)})

    @classmethod
    def loads(cls, text: str) -> Cursor:
        data = json.loads(text)
        return cls(int(data["ts_ms"]), frozenset(str(i) for i in data["ids"]))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def wazuh_event(hit: dict[str, Any], source: str, department_path: str | None
                ) -> dict[str, Any]:
    """One ``_search`` hit as an event document (checked afterwards by validate_event)."""
    doc = hit.get("_source") or {}
    rule = doc.get("rule") or {}
    agent = doc.get("agent") or {}
    try:
        level = int(rule.get("level", 0))
    except (TypeError, ValueError):
        level = 0
    groups = [str(g) for g in rule.get("groups") or [] if isinstance(g, str | int)]
    alert_id = _text(doc.get("id")) or _text(hit.get("_id")) or ""
    manager = (doc.get("manager") or {}).get("name")
    labels = {"rule_id": _text(rule.get("id")) or "", "level": str(level),
              "agent": _text(agent.get("name")) or "", "groups": ",".join(groups)[:500]}
    event: dict[str, Any] = {
        "source": source,
        # Filebeat may index an alert twice under two _ids; the alert's own id (per manager)
        # is the same both times, so the second copy is recognised as a duplicate.
        "id": f"{manager}/{alert_id}" if manager else alert_id,
        "severity": wazuh_severity(level),
        "category": wazuh_category(groups),
        "title": (_text(rule.get("description")) or f"Wazuh rule {rule.get('id')}")[:500],
        "message": (_text(doc.get("full_log")) or "")[:10_000],
        "host": _text(agent.get("name")) or _text(agent.get("ip")),
        "occurred_at": doc.get("timestamp") or doc.get("@timestamp"),
        "labels": {k: v for k, v in labels.items() if v},
    }
    if department_path:
        event["department"] = _text(jmespath.search(department_path, doc))
    return event


def json_event(item: Any, source: str, config: SiemConfig) -> dict[str, Any]:
    """One item of a generic JSON list as an event document."""
    f = config.fields

    def pick(path: str | None) -> Any:
        return None if path is None else jmespath.search(path, item)

    severity = pick(f.severity)
    severity_text = _text(severity)
    if severity_text is not None and severity_text in config.severity_map:
        severity = config.severity_map[severity_text]
    labels = pick(f.labels)
    event: dict[str, Any] = {
        "source": source, "id": _text(pick(f.id)), "severity": severity,
        "title": _text(pick(f.title)), "occurred_at": pick(f.occurred_at),
    }
    for name, value in (("category", pick(f.category)), ("message", _text(pick(f.message))),
                        ("host", _text(pick(f.host))),
                        ("department", _text(pick(config.event_department)))):
        if value is not None:
            event[name] = value
    if isinstance(labels, dict):
        event["labels"] = {str(k): _text(v) or "" for k, v in labels.items()}
    tracer = trace.active()
    if tracer is not None:  # ``ioc try``: each field's expression and what it found
        scope = f"item {event['id']}"
        for name, path in (("id", f.id), ("occurred_at", f.occurred_at),
                           ("severity", f.severity), ("title", f.title),
                           ("category", f.category), ("message", f.message), ("host", f.host),
                           ("department", config.event_department), ("labels", f.labels)):
            if path is not None:
                tracer.read(scope, name, path, pick(path), event.get(name))
    return event


class SiemCollector:
    kind: ClassVar[str] = "siem"
    Config: ClassVar[type[CollectorConfig]] = SiemConfig

    def __init__(self, config: SiemConfig) -> None:
        self.config = config
        self._state: EventState | None = None
        self._cursor: Cursor | None = None
        self._ssl: bool = config.verify_tls
        self._headers = dict(config.headers)
        if config.username:
            secret = config.password.get_secret_value() if config.password else ""
            pair = f"{config.username}:{secret}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    @property
    def cursor_name(self) -> str:
        return f"siem:{self.config.name}"

    @property
    def host(self) -> str | None:
        parts = urlsplit(self.config.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    def bind(self, state: EventState) -> None:
        self._state = state

    async def collect(self, session: aiohttp.ClientSession, now: float) -> CollectResult:
        state = self._state
        if state is None:
            raise CollectorFailure("error", "siem collector is not connected to the event store")
        try:
            return await self._collect(session, state, now)
        except BaseException:
            self._cursor = None  # reread the stored cursor: it is the truth after a failure
            raise

    async def _collect(self, session: aiohttp.ClientSession, state: EventState,
                       now: float) -> CollectResult:
        cursor = self._cursor
        if cursor is None:
            stored = await state.load_cursor(self.cursor_name)
            cursor = (Cursor.loads(stored) if stored
                      else Cursor(round((now - self.config.lookback) * 1000)))
        start = cursor
        new_total = rejected = 0
        search_after: list[Any] | None = None
        for _ in range(self.config.max_pages):
            if self.config.shape == "wazuh":
                hits, search_after = await self._wazuh_page(session, start, search_after)
                docs = [wazuh_event(h, self.config.name, self.config.event_department)
                        for h in hits]
            else:
                hits = await self._json_page(session, cursor)
                docs = [json_event(item, self.config.name, self.config) for item in hits]
            events, bad = self._validate(docs, now, state)
            rejected += bad
            fresh = [(ms, e) for ms, e in events if not cursor.seen(ms, e.id)]
            if fresh:
                cursor = cursor.advance(fresh)
                added = await state.commit([e for _, e in fresh],
                                           (self.cursor_name, cursor.dumps()))
                new_total += len(added)
                self._cursor = cursor
            if len(hits) < self.config.page_size:
                break
            if not fresh and self.config.shape == "json":
                log.warning("siem: a full page held only events already seen; raise "
                            "page_size", extra={"fields": {"target": self.config.name}})
                break
        self._cursor = cursor
        if rejected:
            tracer = trace.active()
            if tracer is not None:
                tracer.note(f"{rejected} item(s) without a usable id, time or severity were "
                            "skipped")
            log.warning("siem: items without a usable id, time or severity were skipped",
                        extra={"fields": {"target": self.config.name, "skipped": rejected}})
        return CollectResult(up=True, value=float(new_total))

    def _validate(self, docs: list[dict[str, Any]], now: float, state: EventState
                  ) -> tuple[list[tuple[int, Event]], int]:
        """Valid events with their cursor time, and how many items were unusable.

        A time outside the window is clamped to ``now`` (the sent time kept in ``sent_at``);
        the cursor moves by the SIEM's own time, but never past ``now``, so one item dated
        2200 cannot make every later event look already seen.
        """
        events: list[tuple[int, Event]] = []
        bad = 0
        out_of_window: Tally[str] = Tally()
        for doc in docs:
            event, problems = validate_event(doc, index=None, now=now, window=state.window,
                                             out_of_window=out_of_window)
            if event is None:
                bad += 1
                log.debug("siem item rejected: %s", problems)
            else:
                at = event.occurred_at
                if "sent_at" in dict(event.labels):  # clamped: the SIEM's time, up to now
                    at = min(parse_time(doc["occurred_at"]), now)
                events.append((round(at * 1000), event))
        state.count_out_of_window("siem", out_of_window)
        return events, bad

    async def _fetch(self, session: aiohttp.ClientSession, method: str, url: str,
                     **kwargs: Any) -> Any:
        try:
            async with session.request(method, url, headers=self._headers, ssl=self._ssl,
                                       **kwargs) as response:
                body = await read_capped(response, MAX_RESPONSE_BYTES)
                tracer = trace.active()
                if tracer is not None:
                    tracer.exchange(str(response.url), response.status,
                                    response.headers.items(), method, self._headers.items())
                    tracer.set_payload(body)
                if len(body) > MAX_RESPONSE_BYTES:
                    raise CollectorFailure("too_large", "SIEM response larger than 32 MiB; "
                                                        "lower page_size")
                if response.status != 200:
                    raise CollectorFailure("http_status",
                                           f"SIEM answered HTTP {response.status}: "
                                           f"{body[:200].decode('utf-8', 'replace')}")
        except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as exc:
            # every client failure by the probes' own vocabulary (dns, tls, connect_timeout,
            # a head over aiohttp's limits, …), never the catch-all "error"
            failure = classify_http_error(exc) or CollectorFailure(
                "protocol_error", f"bad response: {exc}"[:500])
            raise failure from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise CollectorFailure("invalid_response", f"SIEM answer is not JSON: {exc}") \
                from exc

    async def _wazuh_page(self, session: aiohttp.ClientSession, start: Cursor,
                          search_after: list[Any] | None) -> tuple[list[dict[str, Any]],
                                                                   list[Any] | None]:
        query: dict[str, Any] = {
            "size": self.config.page_size,
            "query": {"range": {"timestamp": {"gte": start.ts_ms, "format": "epoch_millis"}}},
            "sort": [{"timestamp": {"order": "asc"}},
                     {"id": {"order": "asc", "unmapped_type": "keyword"}}],
        }
        if search_after is not None:
            query["search_after"] = search_after
        url = f"{self.config.url.rstrip('/')}/{self.config.index}/_search"
        body = await self._fetch(session, "POST", url, json=query)
        try:
            hits = body["hits"]["hits"]
            if not isinstance(hits, list):
                raise TypeError("hits.hits is not a list")
        except (KeyError, TypeError) as exc:
            raise CollectorFailure("invalid_response",
                                   f"not an OpenSearch _search answer: {exc}") from exc
        last = hits[-1].get("sort") if hits and isinstance(hits[-1], dict) else None
        return [h for h in hits if isinstance(h, dict)], last

    async def _json_page(self, session: aiohttp.ClientSession,
                         cursor: Cursor) -> list[Any]:
        params = {self.config.since_param: f"{cursor.ts_ms / 1000:.3f}",
                  self.config.limit_param: str(self.config.page_size)}
        body = await self._fetch(session, "GET", self.config.url, params=params)
        items = jmespath.search(self.config.items, body)
        if not isinstance(items, list):
            raise CollectorFailure("invalid_response",
                                   f"items expression {self.config.items!r} did not give a "
                                   "list")
        return items


__all__ = ["Cursor", "EventState", "SiemCollector", "SiemConfig", "json_event", "wazuh_event"]
