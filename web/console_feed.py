"""The console's live feed: firing alerts, silences, pending targets, the announcement,
maintenance and the history, pushed to every open console page over its own Server-Sent
Events stream (``GET /console/stream``).

It reuses the wall's stream machinery (``web.stream.EventStream``: resume, heartbeat, caps,
slow clients cut off) on a second instance, so nothing an operator sees reaches a wall screen
or an anonymous viewer: the console's stream needs a console session.

What it listens to, through the web context as the wall's feed does: alert delivery (every
change of the alerts, acks, silences and maintenance windows, and a single loop timer for the
instants when time alone changes them, ``AlertDesk.next_change``) and the pipeline (a poll
that makes a target start or stop failing changes the pending list). Each part is rendered
in every language with the page's own macros (``console_parts.html``, autoescaped) and
published only when it changed — the alert and pending tables row by row, as deltas
(``web.console_rows``), the short silence list whole; the page swaps rows in and filters and
selects over their data attributes, it never builds rows itself.

The announcement (the wall feed's listener), the maintenance card (with the alerts: windows
are alert delivery's state) and the history card are sent whole when they change. The history
is read from the store at most once per ``HISTORY_SPACING`` after a change, so a burst of
acks is one read, and the event a change wrote is committed by then.

A *pending* target is one whose last poll failed (``raw_up`` false) or whose debounced state
is down (``up`` false) while no firing alert names it: trouble the alerts do not show yet
(a rule's ``for`` still running, or no rule for it), shown with since when it fails
(``failing_since``, the first failed poll of the run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from ioc.status import TargetState
from ioc.store.announcement import Announcement
from web.causes import cause_of
from web.change_timer import ChangeTimer
from web.console_rows import RowCache, alert_signature, pending_signature
from web.context import WebContext
from web.i18n import LANGS, Translator
from web.stream import EventStream

if TYPE_CHECKING:
    from ioc.pipeline import PollOutcome

log = logging.getLogger("ioc.console")

CONSOLE_RING = 200          # events kept for a page that reconnects
CONSOLE_MAX_CLIENTS = 100   # open console pages in all (sessions are capped at 1,000)
CONSOLE_PER_ADDRESS = 20    # from one address: a desk with a few tabs, not a script
PENDING_SPACING = 0.25      # seconds between two rebuilds of the pending list
HISTORY_SPACING = 0.5       # seconds from a change to the history's re-read
HISTORY_SHOWN = 30          # events the history card lists
HISTORY_DAYS = 7            # and how far back
SILENCE_DURATIONS = ("1h", "2h", "4h", "8h", "24h")
SEVERITIES = ("critical", "warning", "info")


def firing_alerts(view: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in view if a["state"] == "firing"]


def is_pending(state: TargetState) -> bool:
    """Failing by its last poll or down by its debounced state (before any alert says so)."""
    return state.raw_up is False or state.up is False


def pending_targets(targets: Mapping[str, TargetState], alerted: set[str],
                    departments: Mapping[str, str]) -> list[dict[str, Any]]:
    """The pending rows, longest failing first: failing targets no firing alert names."""
    rows = []
    for s in targets.values():
        if not is_pending(s) or s.name in alerted:
            continue
        cause = cause_of(s.reason, s.last_error, s.last_value)  # plain words, as the wall
        rows.append({"target": s.name, "department": s.department,
                     "department_name": departments.get(s.department, s.department),
                     "down": s.up is False, "since": s.failing_since, "reason": s.reason or "",
                     "cause": cause.key, "cause_status": cause.status})
    rows.sort(key=lambda r: (r["since"] is None, r["since"] or 0.0, r["target"]))
    return rows


def silence_rows(silences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Silences not yet over, newest first (the console's list)."""
    rows = [s for s in silences if s["state"] != "expired"]
    rows.sort(key=lambda s: s["created_at"], reverse=True)
    return rows


def silence_matchers(alert: Mapping[str, Any]) -> list[str]:
    """Matchers that silence this alert and its like: its name, department and target."""
    labels = alert["labels"]
    return [f'{name}="{_quote(labels[name])}"' for name in ("alertname", "department", "target")
            if labels.get(name)]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ConsoleFeed:
    """Renders the console's live parts and streams them when they change; one per app."""

    def __init__(self, context: WebContext, epoch: str, templates: jinja2.Environment,
                 announcement: Callable[[], Announcement] | None = None) -> None:
        self.ctx = context
        self.clock: Callable[[], float] = context.clock
        self.templates = templates
        # the wall feed's current announcement (the console shows and clears the same one)
        self.announcement = announcement or (lambda: Announcement("", "config", None))
        self.stream = EventStream(context.registry, epoch=epoch, ring_size=CONSOLE_RING,
                                  max_clients=CONSOLE_MAX_CLIENTS,
                                  heartbeat=context.config().wall.heartbeat,
                                  max_clients_per_address=CONSOLE_PER_ADDRESS, name="console")
        self._sent: dict[str, Any] = {}
        self._alert_rows = RowCache(self._render_alert)
        self._pending_rows = RowCache(self._render_pending)
        self._pending: dict[str, tuple[Any, ...]] = {}  # target -> what its row shows
        self._alerted: set[str] = set()                 # targets a firing alert names
        self._pending_due: asyncio.TimerHandle | None = None
        self._alerts_timer = ChangeTimer(context, self._refresh)
        self._history_due: asyncio.TimerHandle | None = None
        # One task renders and publishes at a time; requests meanwhile are gathered for its
        # next round ("alerts" = alerts, silences and pending; "pending" alone).
        self._task: asyncio.Task[None] | None = None
        self._wanted: set[str] = set()
        self._force = False

    def attach(self) -> None:
        """Subscribe to what the console shows live: alert changes and polls."""
        self.ctx.alerts.subscribe(self.on_alerts_changed)
        self.ctx.add_poll_hook(self.on_outcome)

    @property
    def parts(self) -> Any:
        # a template's macros are attributes jinja2 makes at run time
        return self.templates.get_template("console_parts.html").module

    def translators(self) -> dict[str, Translator]:
        tz = self.ctx.config().province.timezone
        return {lang: Translator(lang, tz) for lang in LANGS}

    # ---- what the page shows -----------------------------------------------------------

    def alerts(self, now: float) -> list[dict[str, Any]]:
        """The firing alerts, each with the matchers its row's silence button sends."""
        return [{**a, "silence_matchers": silence_matchers(a)}
                for a in firing_alerts(self.ctx.alerts.view(now))]

    def silences(self, now: float) -> list[dict[str, Any]]:
        return silence_rows([s.to_dict(now) for s in self.ctx.alerts.silences.values()])

    def maintenance(self, now: float) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
        """Departments muted now (code, comment) and the announced windows not yet over."""
        desk = self.ctx.alerts
        windows = [w.to_dict(now) for w in sorted(desk.windows.values(),
                                                  key=lambda w: w.starts_at)
                   if w.ends_at > now]
        return sorted(desk.maintenance_now(now).items()), windows

    def oncall(self, now: float) -> list[dict[str, Any]]:
        """Who is on duty now and next in each team. The change timer fires at each handoff
        (``AlertDesk.next_change``), so a console left open all shift names the right
        person."""
        escalator = self.ctx.alerts.escalator
        return escalator.roster.view(now) if escalator is not None else []

    async def history(self, now: float) -> list[dict[str, Any]]:
        return await self.ctx.alerts.store.history(start=now - HISTORY_DAYS * 86400, end=now,
                                                   limit=HISTORY_SHOWN)

    def pending(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        alerted = {a["labels"].get("target", "") for a in alerts}
        return pending_targets(self.ctx.board.targets, alerted, self.ctx.department_names)

    # ---- publishing ----------------------------------------------------------------------

    def _publish(self, kind: str, count: int, render: Callable[[Translator], str],
                 force: bool = False) -> None:
        html = {lang: render(t) for lang, t in self.translators().items()}
        if not force and self._sent.get(kind) == html:
            return
        self._sent[kind] = html
        self.stream.publish(kind, {"count": count, "html": html})

    def _render_alert(self, alert: dict[str, Any], t: Translator) -> str:
        return str(self.parts.alert_rows([alert], t, SILENCE_DURATIONS))

    def _render_pending(self, row: dict[str, Any], t: Translator) -> str:
        return str(self.parts.pending_rows([row], t))

    def request(self, what: str, force: bool = False) -> None:
        """Publish ``what`` soon (when a page reads): by the running task's next round, or a
        new task. Never renders inside the caller (delivery's listener, a poll hook)."""
        if not self.stream.client_count:
            return
        self._wanted.add(what)
        self._force |= force
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # changed outside the loop (before start): nothing to show
            return
        self._task = loop.create_task(self._publisher())

    async def _publisher(self) -> None:
        while self._wanted and self.stream.client_count:
            wanted, force = self._wanted, self._force
            self._wanted, self._force = set(), False
            try:
                if "alerts" in wanted:
                    await self.publish_alerts(self.clock(), force)
                elif "pending" in wanted:
                    await self.publish_pending(force)
                if "announcement" in wanted or force:  # only its listener changes it
                    self.publish_announcement(force)
                if "history" in wanted or force:
                    await self.publish_history(force)
            except Exception:  # the next change tries again; the pages keep what they have
                log.exception("console not refreshed")
        self._wanted.clear()

    async def publish_alerts(self, now: float, force: bool = False) -> None:
        """Alerts (rows that changed), then silences, then the pending list."""
        alerts = self.alerts(now)
        self._alerted = {a["labels"].get("target", "") for a in alerts}
        delta = await self._alert_rows.update(
            ((a["fingerprint"], alert_signature(a), a) for a in alerts), self.translators(),
            full=force)
        if delta is not None:
            self.stream.publish("alerts", delta)
        parts = self.parts
        silences = self.silences(self.clock())
        self._publish("silences", len(silences),
                      lambda t: str(parts.silence_rows(silences, t)), force)
        muted, windows = self.maintenance(self.clock())
        names = self.ctx.department_names
        self._publish("maintenance", len(muted) + len(windows),
                      lambda t: str(parts.maintenance_state(muted, windows, names, t)), force)
        oncall = self.oncall(self.clock())
        self._publish("oncall", len(oncall), lambda t: str(parts.oncall_state(oncall, t)),
                      force)
        await self.publish_pending(force)

    def publish_announcement(self, force: bool = False) -> None:
        current = self.announcement()
        self._publish("announcement", int(bool(current.text)),
                      lambda t: str(self.parts.announcement_state(current, t)), force)

    async def publish_history(self, force: bool = False) -> None:
        events = await self.history(self.clock())
        self._publish("history", len(events),
                      lambda t: str(self.parts.history_table(events, t)), force)

    async def publish_pending(self, force: bool = False) -> None:
        rows = pending_targets(self.ctx.board.targets, self._alerted,
                               self.ctx.department_names)
        self._pending = {r["target"]: _pending_key(r) for r in rows}
        delta = await self._pending_rows.update(
            ((r["target"], pending_signature(r), r) for r in rows), self.translators(),
            full=force)
        if delta is not None:
            self.stream.publish("pending", delta)

    # ---- listeners -----------------------------------------------------------------------

    def on_alerts_changed(self) -> None:
        """Delivery's listener: publish soon (when a page reads), re-arm the time-only timer,
        and read the history a moment later (the change's event is written by then)."""
        self.request("alerts")
        self._alerts_timer.arm()
        self._read_history_soon()

    def on_announcement(self) -> None:
        """The wall feed's listener: an operator set or cleared the announcement."""
        self.request("announcement")
        self._read_history_soon()

    def _read_history_soon(self) -> None:
        if not self.stream.client_count or self._history_due is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._history_due = loop.call_later(HISTORY_SPACING, self._reread_history)

    def _reread_history(self) -> None:
        self._history_due = None
        self.request("history")

    def on_outcome(self, outcome: PollOutcome) -> None:
        """A poll: when its target starts or stops pending (or its row changes), rebuild the
        pending list soon; polls in between are covered by that one rebuild."""
        if not self.stream.client_count or self._pending_due is not None:
            return
        state = self.ctx.board.targets.get(outcome.target)
        if state is None:
            return
        was = self._pending.get(outcome.target)
        now_key = None
        if is_pending(state) and state.name not in self._alerted:
            now_key = (state.up is False, state.failing_since, state.reason or "",
                       state.department)
        if was == now_key:
            return
        loop = asyncio.get_running_loop()
        self._pending_due = loop.call_later(PENDING_SPACING, self._rebuild_pending)

    def _rebuild_pending(self) -> None:
        self._pending_due = None
        self.request("pending")

    def on_page(self) -> None:
        """A page connected: once it is registered, send it everything (what it rendered may
        be older than the last change, and rows it has not seen come whole)."""
        asyncio.get_running_loop().call_soon(self.request, "alerts", True)

    def _refresh(self) -> None:
        """The change timer's way in: publish, and arm it for the next instant."""
        try:
            self.request("alerts")
            self._alerts_timer.arm()
        except Exception:
            log.exception("console alerts not refreshed")

    def close(self) -> None:
        self.stream.close_all()
        self._alerts_timer.cancel()
        for handle in (self._pending_due, self._history_due):
            if handle is not None:
                handle.cancel()
        self._pending_due = self._history_due = None
        if self._task is not None:
            self._task.cancel()


def _pending_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["down"], row["since"], row["reason"], row["department"])


CONSOLE: web.AppKey[ConsoleFeed] = web.AppKey("console", ConsoleFeed)
