"""The wall's feed: renders the page and turns what happens into stream deltas.

The page is rendered on the server (it shows real numbers before any script runs; the
handlers are in ``web.wall_page``). The feed subscribes, through the web context, to the
pipeline, the event sink and alert delivery: after a poll it rebuilds the tile of the polled
target's department and the panels whose metrics the poll brought; a stored batch of security
events updates the security panel; every change of the alerts (an evaluation, a silence, an
ack, a maintenance window, and the moment one starts or ends) updates the alerts panel at
once. Each is rendered as an HTML fragment in every language (with the same autoescaping
templates as the page) and published when it changed. Screens swap fragments in; they never
build markup from data themselves.

A tile is rebuilt at most every ``TILE_SPACING`` per department: at once for the first poll
after a quiet spell (a fault still reaches the screens within milliseconds), then once more at
the end of the spacing with whatever the polls meanwhile changed. Rebuilding costs work
proportional to the department's size, and with 10,000 targets a department of ~300 is
polled ten times a second: rebuilding on every poll was a third of ioc's CPU.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cache, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
import markupsafe
from aiohttp import web

from ioc.bidi import strip_bidi
from ioc.events import SEVERITY_RANK, event_document
from ioc.model import Event
from ioc.status import StatusBoard, build_status
from ioc.store.announcement import Announcement
from ioc.store.base import StoreError
from ioc.store.events import EventQuery
from web.change_timer import ChangeTimer
from web.context import WebContext
from web.errors import ApiError
from web.i18n import LANGS, Translator, catalogue
from web.stream import EventStream
from web.wall import (
    DEFAULT_VIEW,
    LEGACY_DEFAULT_VIEW,
    PANEL_METRICS,
    SECURITY_LISTED,
    SECURITY_SHOWN,
    SIDE_PANELS,
    WallState,
    WallView,
    department_tile,
    duty_line,
    grid_shape,
    latest_security,
    side_panels,
    sparkline,
    views_from_config,
    wall_document,
)

if TYPE_CHECKING:
    from ioc.pipeline import PollOutcome

log = logging.getLogger("ioc.wall")

_PANEL_METRICS_ITEMS = tuple((k, frozenset(v)) for k, v in PANEL_METRICS.items())
# Words the page's script needs; everything else arrives rendered.
SCRIPT_WORDS = ("offline_banner", "updated", "age_seconds", "age_minutes", "age_hours",
                "age_days", "live", "offline", "stale", "sound_blocked", "dur_seconds",
                "dur_minutes", "dur_hours", "dur_days")
EVENTS_PER_DELTA = 20  # security events carried by one `event` stream delta
TILE_SPACING = 0.5  # seconds between two rebuilds of one department's tile


@cache
def make_templates() -> jinja2.Environment:
    """The wall's and console's templates, compiled once per process: every app (tests start
    hundreds) shares one environment, which holds only pure globals and filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=True,  # every value: target and department names are untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.globals["sparkline"] = sparkline
    # Untrusted text (names, titles, annotations, comments): isolated where it is shown, so a
    # bidi override in it cannot reorder what follows (ioc/bidi.py); the styles isolate every
    # element marked translate="no" as well.
    env.filters["bdi"] = isolate
    env.filters["plain"] = plain
    return env


def isolate(value: object) -> markupsafe.Markup:
    """``value`` escaped inside ``<bdi>``: its direction cannot leak into the text around."""
    return markupsafe.Markup("<bdi>%s</bdi>") % str(value)


PLAIN_MAX = 120  # characters of an <option> label: a select is as wide as its longest one


def plain(value: object, limit: int | None = PLAIN_MAX) -> str:
    """For places that cannot hold markup (``<option>``, ``title=``): bidi controls removed,
    cut to ``limit`` characters with an ellipsis (``None``: whole, for a tooltip that must
    carry all of a text shown cut)."""
    text = strip_bidi(str(value))
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


# How long a freshly rendered page is counted as a screen before its stream connects.
PAGE_CONNECT_GRACE = 30.0


class WallFeed:
    """Renders the wall and turns pipeline outcomes, events and alert changes into stream
    deltas; one per app. It reads the service only through its :class:`WebContext`."""

    def __init__(self, context: WebContext, epoch: str) -> None:
        cfg = context.config().wall
        self.ctx = context
        self.clock = context.clock
        self.cfg = cfg
        self.views = views_from_config(cfg)
        self.state = WallState(announcement=cfg.announcement)
        self.announcement = Announcement(cfg.announcement, "config", None)
        # called after an operator sets or clears it (the console's feed shows it too)
        self.announcement_listeners: list[Callable[[], None]] = []
        self.announcements = context.announcements
        self._alerts_timer = ChangeTimer(context, self._refresh_alerts)
        self.templates = make_templates()
        self.parts = self.templates.get_template("wall_parts.html")
        self.stream = EventStream(context.registry, epoch=epoch, ring_size=cfg.replay_events,
                                  max_clients=cfg.max_clients, heartbeat=cfg.heartbeat,
                                  max_clients_per_address=cfg.max_clients_per_address)
        self.networks = [ipaddress.ip_network(n, strict=False) for n in cfg.allowed_networks]
        self._sent_tiles: dict[str, dict[str, Any]] = {}
        self._tile_built: dict[str, float] = {}  # department → loop time of its last rebuild
        self._tile_due: dict[str, asyncio.TimerHandle] = {}  # trailing rebuilds scheduled
        self._sent_panels: dict[str, Any] = {}
        self._dept_targets: dict[str, list[str]] = {}
        self._indexed = -1
        self._security_loaded = False
        self._idle = False
        self._promised_until = 0.0  # a page rendered until then may still connect and resume

    def attach(self) -> None:
        """Subscribe to what the wall shows: polls, stored security events, alert changes."""
        self.ctx.add_poll_hook(self.on_outcome)
        self.ctx.events.subscribe(self.on_events)
        self.ctx.alerts.subscribe(self.on_alerts_changed)

    @property
    def departments(self) -> Mapping[str, str]:
        """Department code -> name: the service's one mapping, which reload keeps current."""
        return self.ctx.department_names

    # ---- documents ---------------------------------------------------------------------

    def province(self) -> dict[str, str]:
        cfg = self.ctx.config()
        return {"code": cfg.province.code, "name": cfg.province.name,
                "title": cfg.service.title}

    def translators(self) -> dict[str, Translator]:
        tz = self.ctx.config().province.timezone
        return {lang: Translator(lang, tz) for lang in LANGS}

    def document(self, view: WallView, now: float) -> dict[str, Any]:
        self.load_alerts(now)
        status = build_status(self.ctx.board, self.departments, now=now,
                              province=self.province())
        return wall_document(status, view=view, departments=self.departments,
                             cache=self.ctx.cache, state=self.state,
                             stale_after=self.cfg.stale_after, now=now,
                             events_cache=self.ctx.event_counts)

    def view(self, name: str | None) -> WallView:
        if name is None:
            return self.views[0]
        for view in self.views:
            if view.name == name:
                return view
        if name == LEGACY_DEFAULT_VIEW and [v.name for v in self.views] == [DEFAULT_VIEW]:
            return self.views[0]  # screens set up before the view was named toan-tinh
        raise ApiError(404, "unknown view",
                       f"no wall view {name!r}; views: {', '.join(v.name for v in self.views)}")

    # ---- the pipeline hook -------------------------------------------------------------

    def _watched(self) -> bool:
        """Whether any screen reads deltas now.

        Rendering deltas costs work per poll proportional to a department's size; with no
        screen connected nobody would read them (measured: a third of ioc's CPU at 10,000
        targets). Skip them, and make any screen that resumes across the gap reload.

        A page rendered while deltas were rendered counts as watching until its stream has
        had time to connect: otherwise, when the last screen leaves meanwhile, the first poll
        between the page and its stream starts a new epoch, and the new screen reloads itself
        once for nothing.
        """
        if self.stream.client_count == 0 and self.clock() >= self._promised_until:
            if not self._idle:
                self._idle = True
                self.stream.restart(format(int(self.clock() * 1000), "x"))
                self._sent_tiles.clear()
                self._sent_panels.clear()
            return False
        self._idle = False
        return True

    def on_remote_update(self, departments: Collection[str], now: float) -> None:
        """Other shards' polls, read from the shared store (service.shared_board)."""
        if not self._watched():
            return
        for department in departments:
            self.tile_changed(department)

    def on_outcome(self, outcome: PollOutcome) -> None:
        if not self._watched():
            return
        now = outcome.ts
        state = self.ctx.board.targets.get(outcome.target)
        if state is not None:
            self.tile_changed(state.department)
        metrics = {s.metric for s in outcome.samples}
        for panel, names in _PANEL_METRICS_ITEMS:
            if metrics.intersection(names):
                self.publish_panels(now, only=panel)

    # ---- security events ---------------------------------------------------------------

    def on_events(self, events: Sequence[Event]) -> None:
        """Event-sink listener: newly stored events go to the stream and the security panel.

        One ``event`` delta per stored batch, however large, carrying the most severe and
        newest of it (at most ``EVENTS_PER_DELTA``) and the batch's size: a flood of pushed
        events must not flood the screens' queues too.
        """
        if not events:
            return
        chosen = sorted(events, key=lambda e: (-SEVERITY_RANK.get(e.severity, -1),
                                               -e.occurred_at))[:EVENTS_PER_DELTA]
        self.stream.publish("event", {"count": len(events),
                                      "events": [event_document(e) for e in chosen]})
        self.state.security = latest_security(self.state.security, events, self.departments)
        self.publish_panels(self.clock(), only="security")

    async def load_security(self) -> None:
        """The latest high and critical events from the store, once (the sink adds the rest)."""
        if self._security_loaded:
            return
        self._security_loaded = True
        try:
            # Rows dated beyond the future bound (stored before times were bounded, or by
            # hand) would otherwise stay the "latest" events for as long as they are kept.
            until = self.clock() + self.ctx.config().events.max_future
            stored = await self.ctx.events.store.query(
                EventQuery(severities=SECURITY_LISTED, limit=SECURITY_SHOWN, until=until))
        except StoreError as exc:  # the panel still shows what arrives from now on
            self._security_loaded = False
            log.warning("wall: latest security events not loaded",
                        extra={"fields": {"error": str(exc)}})
            return
        self.state.security = latest_security(self.state.security, (s.event for s in stored),
                                              self.departments)

    def forget_target_index(self) -> None:
        """Targets were added or removed by a config reload: rebuild the index on next use."""
        self._indexed = -1
        self._sent_tiles.clear()

    def _targets_of(self, department: str) -> list[str]:
        board = self.ctx.board
        if self._indexed != len(board.targets):
            self._dept_targets = {}
            for name, target in board.targets.items():
                self._dept_targets.setdefault(target.department, []).append(name)
            self._indexed = len(board.targets)
        return self._dept_targets.get(department, [])

    def tile(self, department: str, now: float) -> dict[str, Any]:
        board = self.ctx.board
        subset = StatusBoard()
        subset.targets = {n: board.targets[n] for n in self._targets_of(department)
                          if n in board.targets}
        rows = build_status(subset, self.departments, now=now,
                            province=self.province())["targets"]
        return department_tile(department, self.departments.get(department, department), rows,
                               self.state.availability, self.state.strips.get(department))

    def tile_changed(self, department: str) -> None:
        """Rebuild the department's tile now, or once at the end of its spacing."""
        if department in self._tile_due:
            return  # a trailing rebuild is scheduled and will see this change too
        loop = asyncio.get_running_loop()
        since = loop.time() - self._tile_built.get(department, -TILE_SPACING)
        if since >= TILE_SPACING:
            self._tile_built[department] = loop.time()
            self.publish_tile(department, self.clock())
        else:
            self._tile_due[department] = loop.call_later(
                TILE_SPACING - since, self._rebuild_due_tile, department)

    def _rebuild_due_tile(self, department: str) -> None:
        self._tile_due.pop(department, None)
        self._tile_built[department] = asyncio.get_running_loop().time()
        if self.stream.client_count:
            self.publish_tile(department, self.clock())

    def cancel_due_tiles(self) -> None:
        for handle in self._tile_due.values():
            handle.cancel()
        self._tile_due.clear()

    def publish_tile(self, department: str, now: float) -> None:
        tile = self.tile(department, now)
        shown = {k: v for k, v in tile.items() if k != "last_check"}
        if self._sent_tiles.get(department) == shown:
            return
        self._sent_tiles[department] = shown
        self.stream.publish("tile", {
            "code": department, "state": tile["state"], "updated": tile["last_check"],
            # a template's macros are attributes jinja2 makes at run time
            "html": {lang: str(self.parts.module.tile(tile, t, now))  # type: ignore[attr-defined]
                     for lang, t in self.translators().items()},
        })

    def publish_panels(self, now: float, only: str | None = None) -> None:
        failing = ({n: t.failing_since for n, t in self.ctx.board.targets.items()
                    if t.failing_since is not None}
                   if only in (None, "alerts") else None)
        panels = side_panels(self.ctx.cache, self.state, now, self.cfg.stale_after,
                             self.ctx.event_counts, failing)
        for name in SIDE_PANELS:
            if only is not None and name != only:
                continue
            data = panels[name]
            shown = None if data is None else {k: v for k, v in data.items() if k != "updated"}
            if name in self._sent_panels and self._sent_panels[name] == shown:
                continue
            self._sent_panels[name] = shown
            self.stream.publish("panel", {
                "panel": name,
                # a template's macros are attributes jinja2 makes at run time
                "html": {lang: str(self.parts.module.side_panel(  # type: ignore[attr-defined]
                    name, data, t, now)) for lang, t in self.translators().items()},
            })

    def publish_announcement(self) -> None:
        self.stream.publish("announcement", {"text": self.state.announcement})

    # ---- announcement ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the announcement's store; an operator's last change wins over the config."""
        await self.announcements.open()
        stored = await self.announcements.load()
        if stored is not None:
            self.announcement = stored
            self.state.announcement = stored.text

    async def aclose(self) -> None:
        await self.announcements.close()

    async def set_announcement(self, text: str, *, by: str, now: float) -> Announcement:
        """Store (with who and when, in the history too), then show it on every screen."""
        announcement = Announcement(text, by, now)
        await self.announcements.save(announcement)
        self.announcement = announcement
        self.state.announcement = text
        self.publish_announcement()
        for listener in self.announcement_listeners:
            listener()
        return announcement

    # ---- alerts ------------------------------------------------------------------------

    def load_alerts(self, now: float) -> None:
        """Take the firing alerts from delivery: the rows ``GET /api/v1/alerts`` returns."""
        desk = self.ctx.alerts
        self.state.alerts = [a for a in desk.view(now) if a["state"] == "firing"]
        escalator = desk.escalator
        self.state.duty = duty_line(escalator.roster.view(now)) if escalator else ""
        evaluated = [a.last_eval for a in desk.alerts.values() if a.last_eval]
        self.state.alerts_updated = max(evaluated) if evaluated else None

    def publish_alerts(self, now: float) -> None:
        duty = self.state.duty
        self.load_alerts(now)
        self.publish_panels(now, only="alerts")
        if self.state.duty != duty:  # a shift changed or the roster was edited
            self.stream.publish("duty", {"text": self.state.duty})

    def on_alerts_changed(self) -> None:
        """Delivery's listener: the alerts changed, so the panel follows now (when a screen
        reads it), and again when time alone changes them next (``AlertDesk.next_change``)."""
        if self.stream.client_count:
            self.publish_alerts(self.clock())
        self._alerts_timer.arm()

    def on_screen(self) -> None:
        """A screen connected to the stream: bring its alerts panel up to date once it is
        registered (the panels it rendered may be older than the last change)."""
        asyncio.get_running_loop().call_soon(self._refresh_alerts)

    def _refresh_alerts(self) -> None:
        """The timer's and a new screen's way in: one timer stays armed whichever calls."""
        try:
            self.on_alerts_changed()
        except Exception:  # the next change tries again; the screens keep what they have
            log.exception("wall alerts not refreshed")

    def on_idle(self) -> None:
        """Between events: refresh the store figures once a minute and stream what moved."""
        now = self.clock()
        if not self.state.due(now):
            return
        task = self.state.refresh_soon(self.ctx.samples, now)

        def done(_: object) -> None:
            for department in list(self.departments):
                self.publish_tile(department, self.clock())
            self.publish_panels(self.clock())

        task.add_done_callback(done)

    def close(self) -> None:
        self.cancel_due_tiles()
        self.stream.close_all()
        self.state.cancel()
        self._alerts_timer.cancel()

    # ---- rendering ---------------------------------------------------------------------

    def render(self, view: WallView, doc: Mapping[str, Any], *, lang: str, theme: str,
               rotate: float | None, query: Mapping[str, str]) -> str:
        tz = self.ctx.config().province.timezone
        t = Translator(lang, tz)
        if self.stream.client_count or not self._idle:
            # Deltas are being rendered, so the page's ``since`` is in the running epoch:
            # keep it resumable until the page's stream connects. An idle wall keeps its
            # epoch anyway, so a page rendered then (a health check fetching the wall every
            # few seconds, say) costs no delta rendering.
            self._promised_until = self.clock() + PAGE_CONNECT_GRACE
        cols, rows = grid_shape(len(doc["departments"]))
        words = {k: catalogue(lang)[k] for k in SCRIPT_WORDS}
        rotation = [_view_url(v, query) for v in self.views] if rotate else []
        return self.templates.get_template("wall.html").render(
            doc=doc, view=view, t=t, lang=lang, theme=theme, cols=cols, rows=rows,
            title=(view.title_en if lang == "en" else "") or view.title
            or self.ctx.config().service.title_in(lang),
            config={
                "lang": lang, "tz": tz,
                "since": self.stream.last_id, "offline_after": self.cfg.offline_after,
                "stale_after": self.cfg.stale_after, "rendered_at": doc["generated_at"],
                "rotate": rotate, "views": rotation,
                "current": _view_url(view, query), "words": words,
                "sound": self.cfg.sound,
            },
            config_json=partial(json.dumps, ensure_ascii=False),
        )

    def allowed(self, request: web.Request) -> None:
        if not self.networks:
            return
        try:
            address = ipaddress.ip_address(request.remote or "")
        except ValueError:
            address = None
        if address is None or not any(address in net for net in self.networks):
            raise ApiError(403, "forbidden", "this address may not see the wall "
                                             "(wall.allowed_networks)")


def _view_url(view: WallView, query: Mapping[str, str]) -> str:
    keep = {k: query[k] for k in ("lang", "theme", "rotate") if k in query}
    return f"/wall/{view.name}" + (f"?{urlencode(keep)}" if keep else "")
