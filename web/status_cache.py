"""The public status pages' snapshots and rendered bodies (``web.status_page`` serves them).

Every request is answered from a cached snapshot: the status board, the public incidents and
the planned windows are read at most every ``refresh`` seconds (the shortest of the pages'),
the 90 days of availability every :data:`HISTORY_REFRESH` seconds (one batched read of the
poll history, :mod:`ioc.store.availability`), both in the background while the previous
snapshot keeps being served. Each page, language and kind asked for is rendered once per
snapshot (HTML or JSON, and its gzip) in a thread, so a request costs a dictionary lookup
and a write: 200 requests a second are cheap. A service's bars are summed and rendered once
per read of the history. Per page, a token bucket per client address limits requests.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from ioc.availability import Tally, tally
from ioc.logs import fields
from ioc.status_page_config import StatusPageConfig
from ioc.store.base import StoreError
from ioc.store.incidents import PublicIncident
from ioc.tasks import cancel_and_wait
from web.client_limits import FailureLimiter
from web.context import WebContext
from web.i18n import format_time
from web.status_badge import badge_svg
from web.status_view import (
    Inputs,
    bar_days,
    build_document,
    duration_text,
    service_targets,
    word,
)
from web.status_windows import PlannedWindow, planned_windows

log = logging.getLogger("ioc.web")

HISTORY_REFRESH = 300.0   # seconds between reads of the availability history
MAX_TRACKED_CLIENTS = 10_000


class Unavailable(Exception):
    """No snapshot could be built yet: the page answers 503, readable, and tries again."""


@dataclass(slots=True)
class Rendered:
    body: bytes
    gzipped: bytes
    etag: str
    last_modified: float
    content_type: str


@dataclass(slots=True)
class _Version:
    key: str               # hash of the document without its update time
    updated_at: float      # when that content was first served
    rendered: dict[str, Rendered] = field(default_factory=dict)


class StatusPages:
    """The snapshots and rendered bodies of every configured page, and the rate limits."""

    def __init__(self, context: WebContext, templates: jinja2.Environment) -> None:
        self.context = context
        self.templates = templates
        self._inputs: Inputs | None = None
        self._built_at = -math.inf            # monotonic
        self._serial = 0                      # snapshots built so far
        self._tallies: dict[str, list[Tally]] | None = None
        self._tallies_for: tuple[Any, ...] = ()
        self._tallies_at = -math.inf
        self._memo: dict[Any, Any] = {}       # bars per service until the history is reread
        self._refreshing: asyncio.Task[None] | None = None
        self._history_task: asyncio.Task[None] | None = None
        self._versions: dict[tuple[str, str], tuple[int, dict[str, Any], _Version]] = {}
        # (page slug, lang) -> the kinds (html, json) asked for so far
        self._wanted: dict[tuple[str, str], set[str]] = {}
        self._history_version = 0             # reads of the availability history so far
        self._limiters: dict[str, tuple[tuple[int, float], FailureLimiter]] = {}

    # -- pages in force ------------------------------------------------------------------

    def pages(self) -> tuple[StatusPageConfig, ...]:
        return tuple(self.context.config().status_pages)

    def page(self, slug: str | None) -> StatusPageConfig | None:
        pages = self.pages()
        if not pages:
            return None
        if slug is None:
            return pages[0]
        return next((p for p in pages if p.slug == slug), None)

    def page_of_service(self, slug: str) -> StatusPageConfig | None:
        return next((p for p in self.pages() if any(s.slug == slug for s in p.services())),
                    None)

    # -- rate limits ---------------------------------------------------------------------

    def retry_after(self, page: StatusPageConfig, client: str) -> float:
        """0 when ``client`` may have this page now (and takes a token), else seconds."""
        limit = page.rate_limit
        settings = (limit.burst, limit.requests / limit.per)
        held = self._limiters.get(page.slug)
        if held is None or held[0] != settings:  # new, or changed by a reload
            window = limit.burst / settings[1]
            held = self._limiters[page.slug] = (
                settings, FailureLimiter(limit.burst, window, MAX_TRACKED_CLIENTS))
        limiter = held[1]
        now = self.context.monotonic()
        wait = limiter.retry_after(client, now)
        if wait > 0:
            return wait
        limiter.fail(client, now)  # a token bucket: one request takes one token
        return 0.0

    # -- snapshot ------------------------------------------------------------------------

    async def snapshot(self) -> Inputs:
        """The current inputs, rebuilt in the background once older than ``refresh``.

        Under load a request never waits: it gets the previous snapshot while the next one
        is built. After a quiet spell (older than twice ``refresh``) the first request waits
        for the rebuild rather than showing what was true minutes ago.
        """
        pages = self.pages()
        refresh = min((p.refresh for p in pages), default=5.0)
        age = self.context.monotonic() - self._built_at
        if age >= refresh and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self._rebuild(), name="ioc-status-page")
        if self._inputs is None or (age >= 2 * refresh and self._refreshing is not None):
            assert self._refreshing is not None
            await asyncio.shield(self._refreshing)
            if self._inputs is None:  # tried again after ``refresh``
                raise Unavailable
        return self._inputs

    def start(self) -> None:
        """Begin building the first snapshot in the background."""
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._rebuild(), name="ioc-status-page")

    async def refresh(self) -> None:
        """Rebuild the snapshot now, the availability history included (after an operator's
        change the next request shows it without waiting for ``refresh``)."""
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.gather(self._refreshing, return_exceptions=True)
        self._tallies_for = ()  # read the history again, and wait for it
        self._refreshing = asyncio.create_task(self._rebuild(), name="ioc-status-page")
        await asyncio.shield(self._refreshing)

    async def close(self) -> None:
        await cancel_and_wait(self._refreshing, self._history_task)

    async def _rebuild(self) -> None:
        """A new snapshot; a failure is logged and the previous snapshot stays in use (with
        none yet, the requests waiting for it get :class:`Unavailable`)."""
        try:
            await self._build()
        except Exception as exc:
            log.exception("status page: cannot build the snapshot",
                          extra=fields(error=f"{type(exc).__name__}: {exc}"))
            self._built_at = self.context.monotonic()  # not again at every request

    async def _build(self) -> None:
        context = self.context
        config = context.config()
        pages = self.pages()
        tz = ZoneInfo(config.province.timezone)
        now = context.clock()
        started = context.monotonic()
        targets = {t.name: t.department for t in context.board.targets.values()}
        shown = sorted({t for p in pages for s in p.services()
                        for t in service_targets(s, targets)})
        days = max((p.history_days for p in pages), default=90)
        bounds = bar_days(now, tz, days)
        incident_days = max((p.incident_days for p in pages), default=14)
        span_start = min(bounds[0][1], now - incident_days * 86400)
        alerts = context.alerts
        windows = planned_windows(alerts.settings.maintenance, alerts.windows.values(),
                                  span_start, now + 15 * 86400, tz)
        incidents: list[PublicIncident] = []
        try:
            incidents = await context.incidents.public_between(
                now - incident_days * 86400, now + 1, shown)
        except StoreError as exc:
            log.warning("status page: cannot read incidents", extra=fields(error=str(exc)))
            incidents = [] if self._inputs is None else list(self._inputs.incidents)
        key = (bounds[0][0], bounds[-1][0], tuple(shown))
        if self._tallies is None or key != self._tallies_for:
            # the bars must be of the days and targets shown: wait for them (the first
            # snapshot, a new day, a reload that changed the services)
            await self._read_history(shown, bounds, windows, now, key)
        elif started - self._tallies_at >= HISTORY_REFRESH and (
                self._history_task is None or self._history_task.done()):
            # a periodic re-read takes seconds at 1,000 targets: snapshots go on meanwhile
            self._history_task = asyncio.create_task(
                self._read_history(shown, bounds, windows, now, key),
                name="ioc-status-page-history")
        inputs = Inputs(
            now=now, tz=tz, targets=targets,
            # copies: the board's states change on the loop while a thread renders
            states={n: replace(t) for n, t in context.board.targets.items()},
            days=[d for d, _, _ in bounds], tallies=self._tallies, incidents=incidents,
            windows=windows, memo=self._memo, history_version=self._history_version)
        serial = self._serial + 1
        for slug, lang in sorted(self._wanted):
            page = self.page(slug)
            if page is None or page.slug != slug:  # a reload removed it
                self._wanted.pop((slug, lang), None)
                self._versions.pop((slug, lang), None)
                continue
            await self._prepare(page, lang, inputs, serial)
        self._inputs = inputs
        self._built_at = started
        self._serial = serial

    async def _read_history(self, shown: list[str], bounds: list[tuple[Any, float, float]],
                            windows: list[PlannedWindow], now: float,
                            key: tuple[Any, ...]) -> None:
        history = self.context.history
        if history is None:
            return
        wanted = set(shown)
        intervals = {t.name: t.interval for t in self.context.board.targets.values()
                     if t.name in wanted}
        try:
            found = await history.histories(bounds[0][1], bounds[-1][2], intervals=intervals,
                                            targets=wanted)
        except StoreError as exc:
            log.warning("status page: cannot read the availability history",
                        extra=fields(error=str(exc)))
            self._tallies_at = self.context.monotonic()  # try again later, not per request
            return

        def compute() -> dict[str, list[Tally]]:
            out: dict[str, list[Tally]] = {}
            for name, h in found.items():
                planned = [(w.starts_at, w.ends_at) for w in windows
                           if w.covers((h.department,))]
                out[name] = [tally(h.segments, a, b, now=now, monitored_from=h.monitored_from,
                                   planned=planned) for _, a, b in bounds]
            return out

        # CPU for a few hundred milliseconds at 1,000 targets: off the loop.
        self._tallies = await asyncio.to_thread(compute)
        self._memo = {}
        self._history_version += 1
        self._tallies_for = key
        self._tallies_at = self.context.monotonic()
        self._built_at = -math.inf  # the next request takes the new bars into a snapshot

    # -- documents and bodies --------------------------------------------------------------

    async def document(self, page: StatusPageConfig, lang: str, kind: str = "html"
                       ) -> tuple[dict[str, Any], _Version]:
        """The public document of a page and its version, with ``kind`` (html or json)
        rendered ahead.

        A page, language and kind asked for once is prepared again after every snapshot, in
        the background: requests never wait for a render, they get the newest one ready.
        """
        await self.snapshot()
        key = (page.slug, lang)
        held = self._versions.get(key)
        if held is None or kind not in held[2].rendered:
            assert self._inputs is not None
            self._wanted.setdefault(key, set()).add(kind)
            await self._prepare(page, lang, self._inputs, self._serial)
            held = self._versions[key]
        return held[1], held[2]

    async def _prepare(self, page: StatusPageConfig, lang: str, inputs: Inputs,
                       serial: int) -> None:
        key = (page.slug, lang)
        held = self._versions.get(key)
        previous = None if held is None else held[2]
        extras = {"tz": self.context.config().province.timezone,
                  "json_href": json_href(page, self.pages())}
        kinds = frozenset(self._wanted.get(key, ()))
        # Building and rendering 50 services x 90 days takes tens of milliseconds of CPU:
        # in a thread, so the loop keeps answering (and polling) meanwhile.
        doc, version = await asyncio.to_thread(self._make, page, lang, inputs, previous,
                                               extras, kinds)
        self._versions[key] = (serial, doc, version)

    def _make(self, page: StatusPageConfig, lang: str, inputs: Inputs,
              previous: _Version | None, extras: dict[str, str], kinds: frozenset[str]
              ) -> tuple[dict[str, Any], _Version]:
        doc = build_document(page, lang, inputs)
        # The bars come from the memo, the same objects until the history is read again
        # (distinct lists alive together have distinct ids): the digest names the read and
        # the list rather than hashing 90 days of every service again.
        digest = hashlib.sha256(json.dumps(
            {**doc, "groups": [{**g, "services": [{**s, "days": id(s["days"])}
                                                  for s in g["services"]]}
                               for g in doc["groups"]], "history": inputs.history_version},
            sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
        if previous is not None and previous.key == digest:
            version = previous  # same content: same bodies, ETag and Last-Modified
        else:
            version = _Version(digest, inputs.now)
        doc["updated_at"] = version.updated_at
        if "html" in kinds and "html" not in version.rendered:
            bars = {}
            fragment = self.templates.get_template("status_bars.html")
            for group in doc["groups"]:
                for s in group["services"]:
                    key = ("bars", s["slug"], s["name"], lang, id(s["days"]))
                    if key not in inputs.memo:  # the days list is the memo's own object
                        inputs.memo[key] = Markup(fragment.render(s=s, w=words(lang)))
                    bars[s["slug"]] = inputs.memo[key]
            html = self.templates.get_template("status.html").render(
                doc=doc, lang=lang, w=words(lang), at=time_format(extras["tz"]),
                duration=duration_format(lang), json_href=extras["json_href"], bars=bars).encode()
            self._render(version, "html", lambda: html, "text/html; charset=utf-8")
        if "json" in kinds and "json" not in version.rendered:
            self._render(version, "json", lambda: json.dumps(
                public_json(doc), ensure_ascii=False, separators=(",", ":")).encode(),
                "application/json; charset=utf-8")
        return doc, version

    def _render(self, version: _Version, kind: str, make: Any, content_type: str
                ) -> Rendered:
        found = version.rendered.get(kind)
        if found is None:
            body: bytes = make()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            found = version.rendered[kind] = Rendered(
                body, gzip.compress(body, compresslevel=6, mtime=0), etag,
                version.updated_at, content_type)
        return found

    async def html(self, page: StatusPageConfig, lang: str) -> Rendered:
        _, version = await self.document(page, lang, "html")
        return version.rendered["html"]

    async def json(self, page: StatusPageConfig, lang: str) -> Rendered:
        _, version = await self.document(page, lang, "json")
        return version.rendered["json"]

    async def badge(self, page: StatusPageConfig, slug: str, lang: str) -> Rendered:
        doc, version = await self.document(page, lang, "json")
        service = next(s for g in doc["groups"] for s in g["services"] if s["slug"] == slug)
        return self._render(version, f"badge:{slug}", lambda: badge_svg(
            service["name"], service["state_label"], service["state"]).encode(),
            "image/svg+xml; charset=utf-8")


def public_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as ``/status.json`` serves it: the days without the page's labels."""
    groups = [{**g, "services": [{**s, "days": [{k: v for k, v in d.items() if k != "label"}
                                                 for d in s["days"]]}
                                 for s in g["services"]]} for g in doc["groups"]]
    return {**doc, "groups": groups}


def words(lang: str) -> Any:
    def w(key: str, **values: object) -> str:
        return word(lang, key, **values)
    return w


def time_format(tz: str) -> Any:
    def at(ts: object) -> str:
        return format_time(ts, tz, "%H:%M %d/%m/%Y")
    return at


def duration_format(lang: str) -> Any:
    def text(seconds: float) -> str:
        return duration_text(seconds, lang)
    return text


def json_href(page: StatusPageConfig, pages: tuple[StatusPageConfig, ...]) -> str:
    return "/status.json" if pages and pages[0].slug == page.slug else \
        f"/status/{page.slug}.json"
