"""Delivery: the ``AlertSink`` that turns each evaluation cycle into notifications.

After every cycle the engine hands over every firing alert plus those resolved in the cycle.
The dispatcher records state changes in the history, puts alerts into their aggregation
groups, and whenever a group's timer expires decides — after inhibition, silences, maintenance
windows and acks — whether its receiver hears about it. What is to be sent is written to the
outbox together with the notification log in one transaction; the outbox task sends it.

With several instances only the alert leader groups and sends (:meth:`Dispatcher.lead`, from
service.alert_role); every instance serves the alert API. Silences, acks and maintenance windows
may be written through any instance, so each re-reads them from the shared tables every
evaluation interval (:meth:`Dispatcher.refresh`), and a follower shows the alerts the leader
stored (:meth:`Dispatcher.show`).

Only the outer loop here reads the clock; everything it calls takes ``now``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from alerts.acks import Ack, new_ack
from alerts.escalation import Escalator, OncallMetrics
from alerts.grouping import Decision, Grouper, GroupSnapshot, NotifyLogEntry, decide
from alerts.inhibit import InhibitRule, inhibited
from alerts.maintenance import (
    MaintenanceConfig,
    OperatorWindow,
    config_window_dict,
    maintenance_now,
    new_operator_window,
    next_config_boundary,
)
from alerts.matchers import parse_matchers
from alerts.messages import Notification, NotifiedAlert
from alerts.model import Alert, AlertState
from alerts.notifiers import HttpSession, Integration, build_integrations
from alerts.oncall import ONCALL_PREFIX, SNOOZE_SECONDS
from alerts.oncall_notifiers import SNOOZE_TEXT
from alerts.oncall_telegram import Presses, TelegramPoller
from alerts.outbox import Outbox, OutboxCounters
from alerts.routing import Route, RouteConfig, build_route, receivers_used
from alerts.silences import Silence, new_silence, silenced_by
from ioc.logs import fields
from ioc.store.alert_delivery import (
    DeliveryStore,
    HistoryEvent,
    NewNotification,
    NflogRow,
    ms,
)
from ioc.store.base import Fence, NotLeaderError, StoreError
from ioc.store.maintenance_store import MaintenanceStore
from ioc.store.oncall import OncallStore
from ioc.tasks import cancel_and_wait, wait_woken

if TYPE_CHECKING:
    from alerts.config import AlertsConfig
    from ioc.config import DepartmentConfig, ProvinceConfig, ServiceConfig, StorageConfig

log = logging.getLogger("ioc.alerts.dispatcher")

NO_RECEIVER = "ioc-none"  # the receiver of an unconfigured tree: alerts are shown, not sent

RETRY_FLUSH_SECONDS = 2.0
PRUNE_EVERY_SECONDS = 3600.0
MAX_UNRECORDED = 10_000  # history events held while the store is away


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    route: Route
    integrations: Mapping[str, list[Integration]]   # receiver -> its channels
    inhibit_rules: tuple[InhibitRule, ...] = ()
    maintenance: tuple[MaintenanceConfig, ...] = ()
    department_names: Mapping[str, str] | None = None
    external_url: str = ""
    title: str = "Trung tâm Giám sát, điều hành thông minh"
    timezone: str = "Asia/Ho_Chi_Minh"
    retention: float = 30 * 86400.0


def _resend_intervals(settings: DeliverySettings) -> dict[str, float]:
    """Receivers with an Alertmanager re-send active alerts every resend_interval."""
    return {name: min(i.resend_interval for i in items if i.resend_interval)
            for name, items in settings.integrations.items()
            if any(i.resend_interval for i in items)}


class Dispatcher:
    def __init__(self, settings: DeliverySettings, store: DeliveryStore, outbox: Outbox,
                 clock: Callable[[], float], session: HttpSession | None = None, *,
                 maintenance_store: MaintenanceStore, escalator: Escalator | None = None,
                 oncall_metrics: OncallMetrics | None = None) -> None:
        self.settings = settings
        self.maintenance_store = maintenance_store  # the windows operators announce
        self.session = session
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self._tz = ZoneInfo(settings.timezone)
        self._resend = _resend_intervals(settings)
        self.grouper = Grouper(settings.route, self._resend)
        self.alerts: dict[str, Alert] = {}          # firing now (and just resolved)
        self.nflog: dict[tuple[str, str], NotifyLogEntry] = {}
        self.silences: dict[str, Silence] = {}
        # Stored silences whose matchers no longer compile (a pattern that is not RE2
        # syntax, stored before ioc matched with RE2): id -> reason; they mute nothing.
        self.unusable_silences: dict[str, str] = {}
        self.acks: dict[str, Ack] = {}
        self.windows: dict[str, OperatorWindow] = {}    # announced through the API
        self._lock = asyncio.Lock()
        # Operator writes and re-reads of the operator tables take turns, so a re-read never
        # replaces a silence, ack or window written while it was reading.
        self._operator_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._unrecorded: list[HistoryEvent] = []
        self._unacked: list[str] = []
        # fingerprint -> until when the ack of a resolved alert waits for it to fire again
        self._ack_grace: dict[str, float] = {}
        # Set while this instance is the alert leader (ioc.leader): every enqueue proves it.
        self.fence: Fence | None = None
        # On call (alerts.escalation): the roster, escalations, acks from the message.
        self.escalator = escalator
        self.oncall_metrics = oncall_metrics
        self.telegram: TelegramPoller | None = None
        if escalator is not None and escalator.config.telegram is not None \
                and session is not None:
            roster_of = escalator  # the roster is replaced when an admin edits it
            presses = Presses(lambda uid: roster_of.roster.by_telegram(uid),
                              self._telegram_press, settings.timezone)
            self.telegram = TelegramPoller(escalator.config.telegram, presses, session, clock)
        self._listeners: list[Callable[[], None]] = []

    # -- who is told of changes --------------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of what :meth:`view` returns (the wall's
        alerts panel follows this way, without looking every second)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener's failure must not stop delivery
                log.exception("alert change listener failed")

    def next_change(self, now: float) -> float | None:
        """The next instant after ``now`` at which time alone changes :meth:`view` or who is on
        duty: a silence or a maintenance window (announced or scheduled in the config) starts
        or ends, an ack runs out, a shift is handed over. None when nothing is scheduled."""
        instants = [t for s in self.silences.values() for t in (s.starts_at, s.ends_at)]
        instants += [t for w in self.windows.values() for t in (w.starts_at, w.ends_at)]
        instants += [a.expires_at for a in self.acks.values()]
        scheduled = next_config_boundary(self.settings.maintenance, now, self._tz)
        if scheduled is not None:
            instants.append(scheduled)
        if self.escalator is not None:  # a shift handed over changes who is on duty
            roster = self.escalator.roster
            for team in roster.teams:
                duty = roster.on_duty(team, now)
                if duty is not None:
                    instants.append(duty.ends_at)
        return min((t for t in instants if t > now), default=None)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open and lead at once: a lone instance (SQLite, or no election)."""
        await self.open()
        await self.lead()

    async def open(self) -> None:
        """Open the stores and read what operators set; every instance does this."""
        await self.store.open()
        await self.maintenance_store.open()
        if self.escalator is not None:
            await self.escalator.open(self.clock())
        await self.refresh(self.clock())

    async def refresh(self, now: float) -> None:
        """Re-read silences, acks and maintenance windows, whichever instance wrote them."""
        async with self._operator_lock:
            silences: dict[str, Silence] = {}
            unusable: dict[str, str] = {}
            for data in await self.store.load_silences(now - self.settings.retention):
                try:
                    matchers = parse_matchers(data["matchers"])
                except ValueError as exc:
                    if data["ends_at"] > now:  # an ended one would mute nothing anyway
                        unusable[data["id"]] = str(exc)
                    continue
                silence = Silence(data["id"], matchers,
                                  data["starts_at"], data["ends_at"], data["created_by"],
                                  data["comment"], data["created_at"])
                silences[silence.id] = silence
            self._report_unusable(unusable)
            acks = {data["fingerprint"]: Ack(**data) for data in await self.store.load_acks()}
            windows = {window.id: window for window in
                       await self.maintenance_store.load(now - self.settings.retention)}
            if self.escalator is not None:
                await self.escalator.refresh()
            if (silences.keys() != self.silences.keys() or windows != self.windows
                    or any(s.ends_at != silences[i].ends_at
                           for i, s in self.silences.items())):
                self._wake.set()  # a flush may now notify (or stay quiet) differently
            self.silences, self.acks, self.windows = silences, acks, windows
        self._changed()

    def _report_unusable(self, unusable: dict[str, str]) -> None:
        """Log each stored silence that cannot be used once, when it is first found."""
        for silence_id, reason in unusable.items():
            if silence_id not in self.unusable_silences:
                log.error("stored silence cannot be used and mutes nothing; expire it and "
                          "create it again in RE2 syntax (docs/alerting.md)",
                          extra=fields(silence=silence_id, reason=reason))
        self.unusable_silences = unusable

    async def lead(self) -> None:
        """Start grouping and sending, from the notification log the last leader stored."""
        await self.load_log()
        self.outbox.start()
        if self.telegram is not None:
            self.telegram.start()
        self._task = asyncio.create_task(self._run(), name="ioc-alert-dispatcher")
        self._say_where_alerts_go()

    async def reconfigure(self, settings: DeliverySettings, now: float) -> None:
        """Apply a reload's routing, receivers, inhibit rules and maintenance windows.

        Taken between flushes, so a flush never mixes two configs. The groups are formed
        again under the new tree only when the tree changed; their first flush asks the
        notification log, so a group whose key and alerts are as before is not told again.
        The channels of removed receivers stay known to the outbox: what was queued for them
        before the reload is still delivered, and nothing new is queued for them.
        """
        async with self._lock:
            route_changed = settings.route != self.settings.route
            resend = _resend_intervals(settings)
            self.settings = settings
            if route_changed or resend != self._resend:
                self._resend = resend
                self.grouper = Grouper(settings.route, resend)
                self.grouper.ingest(self.alerts.values(), now)
                self._wake.set()
            self.outbox.integrations.update(
                {i.id: i for items in settings.integrations.values() for i in items})
        self._changed()  # maintenance or inhibition may change what is handled
        if self._task is not None:
            self._say_where_alerts_go()

    def _say_where_alerts_go(self) -> None:
        """Once, when this instance starts leading: the receivers that send nowhere.

        Their groups are still formed, recorded and shown (wall, console, alert API); only
        no message leaves. Without this line a demo looks as if it paged someone."""
        silent = sorted(r for r in receivers_used(self.settings.route)
                        if not self.settings.integrations.get(r))
        if not silent:
            return
        if silent == [NO_RECEIVER]:
            log.info("alerts are shown on the wall, the console and /api/v1/alerts but sent "
                     "to no one: no alerts.route is configured; add alerts.receivers (webhook, "
                     "e-mail, Telegram, Zalo, Alertmanager, …) and an alerts.route to send "
                     "them (docs/alerting.md)")
        else:
            log.info("alerts routed to a receiver without channels are shown but sent to no "
                     "one; give it a channel to send them (docs/alerting.md)",
                     extra=fields(receivers=",".join(silent)))

    async def load_log(self) -> None:
        """Forget this instance's groups; read what every group was last told from the store."""
        self.nflog = {(row.receiver, row.group_key): NotifyLogEntry(
            frozenset(row.firing), frozenset(row.resolved), row.sent_at, row.content,
            row.sequence) for row in await self.store.load_nflog()}
        self.grouper = Grouper(self.settings.route, self._resend)
        self.alerts = {}  # the engine's first cycle tells what fires now
        self._unrecorded.clear()
        self._unacked.clear()
        self._ack_grace.clear()
        self._changed()

    async def step_down(self) -> None:
        """Stop grouping and sending at once (leadership lost, or stopping)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.telegram is not None:
            await self.telegram.stop()
        await self.outbox.stop()
        if self.escalator is not None:
            self.escalator.forget()
        self.grouper = Grouper(self.settings.route, self._resend)
        self.nflog = {}

    def show(self, alerts: Iterable[Alert]) -> None:
        """On a follower: the firing alerts as the leader stored them, for the API and wall."""
        self.alerts = {alert.fingerprint: alert for alert in alerts}
        self._changed()

    async def stop(self) -> None:
        await self.step_down()
        if self.session is not None:
            await self.session.close()
        await self.store.close()
        await self.maintenance_store.close()

    async def _run(self) -> None:
        if self.escalator is not None:
            # Read here, not in lead(): the engine's warm-up is counted from before lead(),
            # and its first cycle may run meanwhile — a new firing then finds its stored
            # escalation anyway (Escalator.observe re-reads what it could not insert).
            try:
                await self.escalator.load()
            except StoreError as exc:
                log.warning("escalations not read yet; read again with the next alert",
                            extra=fields(error=str(exc)))
        while True:
            deadline = self.grouper.next_deadline()
            if self.escalator is not None:
                step = self.escalator.next_deadline()
                if step is not None:
                    deadline = step if deadline is None else min(deadline, step)
            wait = 60.0 if deadline is None else min(60.0, max(0.0, deadline - self.clock()))
            self._wake.clear()
            await wait_woken(self._wake, wait)
            now = self.clock()
            try:
                await self.flush(now)
                await self.escalate(now)
                if now - self._last_prune >= PRUNE_EVERY_SECONDS:
                    self._last_prune = now
                    await self.store.prune(now - self.settings.retention)
                    await self.maintenance_store.prune(now - self.settings.retention)
            except NotLeaderError:
                log.warning("alert delivery: not the alert leader any more; nothing queued")
                await asyncio.sleep(RETRY_FLUSH_SECONDS)
            except StoreError as exc:
                log.warning("alert delivery: store unavailable, retrying",
                            extra=fields(error=str(exc)))
                await asyncio.sleep(RETRY_FLUSH_SECONDS)
            except Exception:
                log.exception("alert delivery: flush failed")
                await asyncio.sleep(RETRY_FLUSH_SECONDS)

    # -- the sink ------------------------------------------------------------------------

    async def update(self, alerts: list[Alert], now: float) -> None:
        """One evaluation cycle's result: remember, record changes, group, flush."""
        events: list[HistoryEvent] = []
        current = {a.fingerprint: a for a in alerts}
        for alert in alerts:
            known = self.alerts.get(alert.fingerprint)
            if alert.state is AlertState.FIRING and (
                    known is None or known.state is not AlertState.FIRING):
                events.append(_state_event(alert, "firing", alert.fired_at or now))
            elif alert.state is AlertState.RESOLVED:
                events.append(_state_event(alert, "resolved", alert.resolved_at or now))
        ended = [fp for fp, a in self.alerts.items()
                 if fp not in current and a.state is AlertState.FIRING]
        for fp in ended:  # the engine dropped it without a resolution (rule removed)
            events.append(_state_event(self.alerts[fp], "resolved", now))
        self.alerts = {fp: a for fp, a in current.items()}
        gone = self._acks_ended(current, now)
        for fp in gone:
            self.acks.pop(fp, None)
        # Memory first: the engine hands over a resolution only once, so it must reach its
        # group even when the store is briefly unavailable; the history catches up later.
        self.grouper.ingest(alerts, now)
        self._wake.set()
        self._changed()
        self._unrecorded.extend(events)
        self._unacked.extend(gone)
        try:
            await self.store.record(self._unrecorded)
            await self.store.delete_acks(self._unacked)
        except StoreError as exc:
            log.warning("alert history not written yet, will retry",
                        extra=fields(events=len(self._unrecorded), error=str(exc)))
            del self._unrecorded[:-MAX_UNRECORDED]
            return
        self._unrecorded.clear()
        self._unacked.clear()
        if self.escalator is not None:
            try:
                await self.escalator.observe(alerts, now, fence=self.fence)
            except StoreError as exc:
                log.warning("escalations not updated yet, will retry",
                            extra=fields(error=str(exc)))

    def _acks_ended(self, current: dict[str, Alert], now: float) -> list[str]:
        """The acks whose alert is over: resolved, or gone, and not back within the rule's
        ``keep_firing_for`` of resolving. A flap of the same alert inside that span is the
        same problem the operator already took, so it keeps its ack (docs/alerting.md)."""
        grace = self._ack_grace
        for fp, alert in current.items():
            if alert.state is AlertState.FIRING:
                grace.pop(fp, None)
            elif fp in self.acks and alert.keep_firing_for > 0:
                grace[fp] = (alert.resolved_at or now) + alert.keep_firing_for
        gone = [fp for fp in self.acks
                if (fp not in current or current[fp].state is AlertState.RESOLVED)
                and grace.get(fp, now) <= now]
        for fp in [fp for fp, until in grace.items() if until <= now or fp not in self.acks]:
            del grace[fp]
        return gone

    # -- flushing ------------------------------------------------------------------------

    def muted(self, now: float) -> dict[str, dict[str, Any]]:
        """Fingerprint -> why it is muted: silences, inhibiting alert, maintenance window."""
        out: dict[str, dict[str, Any]] = {}
        alerts = list(self.alerts.values())
        for fp, source in inhibited(alerts, self.settings.inhibit_rules).items():
            out.setdefault(fp, {})["inhibited_by"] = source
        windows = self.maintenance_now(now)
        active = [s for s in self.silences.values() if s.active(now)]
        for alert in alerts:
            labels = dict(alert.labels)
            ids = silenced_by(active, labels, now)
            if ids:
                out.setdefault(alert.fingerprint, {})["silenced_by"] = ids
            dept = labels.get("department", "")
            if dept in windows:
                out.setdefault(alert.fingerprint, {})["maintenance"] = windows[dept]
        return out

    async def flush(self, now: float) -> int:
        """Notify every group that is due; return how many notifications were queued."""
        async with self._lock:
            snapshots = self.grouper.due(now)
            if not snapshots:
                return 0
            muted = set(self.muted(now))
            acked = {fp for fp, a in self.acks.items() if a.active(now)}
            rows: list[NewNotification] = []
            log_rows: list[NflogRow] = []
            decided: list[tuple[GroupSnapshot, Decision]] = []
            for snap in snapshots:
                decision = decide(snap, self.nflog.get((snap.receiver, snap.key)), now=now,
                                  muted=muted, acked=acked,
                                  resend_interval=self._resend.get(snap.receiver))
                if decision is None:
                    continue
                decided.append((snap, decision))
                entry = decision.entry
                log_rows.append(NflogRow(snap.receiver, snap.key, sorted(entry.firing),
                                         sorted(entry.resolved), entry.sent_at, entry.content,
                                         entry.sequence))
                rows.extend(self._notifications(snap, decision, now))
            try:
                await self.store.enqueue(rows, log_rows, fence=self.fence)
            except BaseException:
                for snap in snapshots:  # try these groups again shortly
                    group = self.grouper.groups.get(snap.key)
                    if group is not None:
                        group.next_flush = now + RETRY_FLUSH_SECONDS
                raise
            for snap, decision in decided:
                self.nflog[(snap.receiver, snap.key)] = decision.entry
                if not self.settings.integrations.get(snap.receiver):
                    continue  # nothing was queued: said once at lead()
                log.info("notification queued", extra=fields(
                    receiver=snap.receiver, group=snap.key, status=decision.status,
                    firing=len(decision.firing), resolved=len(decision.resolved)))
            for snap in snapshots:
                self.grouper.flushed(snap)
        if rows:
            await self.outbox.after_enqueue()
        return len(rows)

    async def escalate(self, now: float) -> int:
        """Queue the escalation steps due at ``now`` (alerts.escalation)."""
        if self.escalator is None:
            return 0
        async with self._lock:
            acked = {fp: a.by for fp, a in self.acks.items()
                     if a.active(now) and not _is_snooze(a)}
            queued = await self.escalator.tick(now, self.alerts, acked, set(self.muted(now)),
                                               fence=self.fence)
        if queued:
            await self.outbox.after_enqueue()
        return queued

    def _notifications(self, snap: GroupSnapshot, decision: Decision,
                       now: float) -> list[NewNotification]:
        if not decision.dedup_key:
            return []
        names = self.settings.department_names or {}
        alerts = [self._notified(a, names) for a in (*decision.firing, *decision.resolved)]
        out = []
        if snap.receiver.startswith(ONCALL_PREFIX) and self.escalator is not None:
            # "The on-duty person of team X": whoever is on duty when the group is flushed.
            person = self.escalator.route_person(snap.receiver, now)
            if person is None:
                return []
            base = Notification(
                receiver=snap.receiver, group_key=snap.key, status=decision.status,
                group_labels=snap.labels, alerts=tuple(alerts), created_at=now,
                dedup_key=decision.dedup_key, external_url=self.settings.external_url,
                title=self.settings.title, timezone=self.settings.timezone)
            return self.escalator.person_notifications(person, base, now)
        for integration in self.settings.integrations.get(snap.receiver, []):
            shown = alerts if integration.notifier.send_resolved else \
                [a for a in alerts if a.status == "firing"]
            if not shown:
                continue
            key = f"{integration.id}:{decision.dedup_key}"
            notification = Notification(
                receiver=snap.receiver, group_key=snap.key, status=decision.status,
                group_labels=snap.labels, alerts=tuple(shown), created_at=now, dedup_key=key,
                external_url=self.settings.external_url, title=self.settings.title,
                timezone=self.settings.timezone)
            out.append(NewNotification(key, integration.id, snap.receiver, snap.key,
                                       decision.status, notification.to_json(), now))
        return out

    @staticmethod
    def _notified(alert: Alert, names: Mapping[str, str]) -> NotifiedAlert:
        resolved = alert.state is AlertState.RESOLVED
        dept = alert.label("department")
        return NotifiedAlert(
            fingerprint=alert.fingerprint, status="resolved" if resolved else "firing",
            labels=dict(alert.labels), annotations=dict(alert.annotations),
            starts_at=alert.active_at, ends_at=alert.resolved_at if resolved else None,
            value=alert.value, department_name=names.get(dept, ""))

    # -- operators: silences and acks -----------------------------------------------------

    async def add_silence(self, matchers: Iterable[str], *, starts_at: float, ends_at: float,
                          created_by: str, comment: str, now: float) -> Silence:
        silence = new_silence(uuid.uuid4().hex, matchers, starts_at=starts_at,
                              ends_at=ends_at, created_by=created_by, comment=comment, now=now)
        async with self._operator_lock:
            await self.store.put_silence(_silence_row(silence), HistoryEvent(
                f"silence:{silence.id}", now, "silence", None, created_by,
                silence.to_dict(now)))
            self.silences[silence.id] = silence
        self._changed()
        return silence

    async def expire_silence(self, silence_id: str, *, by: str, now: float) -> Silence | None:
        async with self._operator_lock:
            silence = self.silences.get(silence_id)
            if silence is None or silence.ends_at <= now:
                return None
            ended = Silence(silence.id, silence.matchers, min(silence.starts_at, now), now,
                            silence.created_by, silence.comment, silence.created_at)
            await self.store.put_silence(_silence_row(ended), HistoryEvent(
                f"silence_expired:{silence.id}", now, "silence_expired", None, by,
                ended.to_dict(now)))
            self.silences[silence.id] = ended
        self._wake.set()  # alerts it muted may be due a notification now
        self._changed()
        return ended

    async def acknowledge(self, fingerprint: str, *, by: str, comment: str, now: float,
                          duration: float, channel: str = "api",
                          nonce: tuple[str, str] | None = None) -> Ack | None:
        """Ack a firing alert; ``channel`` says where from (api, console, telegram, email,
        zalo), ``nonce`` (nonce, person) marks an ack link used in the same transaction
        (ioc.store.oncall.LinkUsedError when it was used before)."""
        alert = self.alerts.get(fingerprint)
        if alert is None or alert.state is not AlertState.FIRING:
            return None
        ack = new_ack(fingerprint, by=by, comment=comment, now=now, duration=duration)
        before = self.acks.get(fingerprint)
        event = HistoryEvent(
            f"ack:{fingerprint}:{ms(now)}", now, "ack", fingerprint, by,
            {"comment": ack.comment, "expires_at": ack.expires_at,
             "alertname": alert.label("alertname"), "channel": channel})
        async with self._operator_lock:
            if isinstance(self.store, OncallStore):
                await self.store.put_ack(ack.to_dict(), event, nonce=nonce)
            else:
                await self.store.put_ack(ack.to_dict(), event)
            self.acks[fingerprint] = ack
        if self.oncall_metrics is not None:
            self.oncall_metrics.acks.labels(channel=channel).inc()
            first = before is None or not before.active(now) or _is_snooze(before)
            if first and not _is_snooze(ack):
                team = self.escalator.team_of(dict(alert.labels)) if self.escalator else ""
                self.oncall_metrics.time_to_ack.labels(
                    severity=alert.label("severity"), team=team).observe(
                    max(0.0, now - (alert.fired_at or alert.active_at)))
        self._wake.set()  # an escalation may stop now
        self._changed()
        return ack

    async def snooze(self, fingerprint: str, *, by: str, now: float,
                     channel: str) -> Ack | None:
        """"Tạm ẩn 1 giờ": no repeat and no escalation step for an hour."""
        if isinstance(self.store, OncallStore):
            # Held in the store (any instance may take the press); the leader's next step
            # is refused while the snooze's ack lasts and then waits for the hold.
            for row in await self.store.load_escalations():
                if row.fingerprint == fingerprint:
                    await self.store.hold_escalation(row.id, now + SNOOZE_SECONDS, now)
        return await self.acknowledge(fingerprint, by=by, comment=SNOOZE_TEXT, now=now,
                                      duration=SNOOZE_SECONDS, channel=channel)

    async def _telegram_press(self, person: Any, fingerprint: str, action: str,
                              now: float) -> str | None:
        """A button pressed in Telegram by someone on the roster."""
        by = f"{person.name} ({person.id})"
        try:
            if action == "snooze":
                done = await self.snooze(fingerprint, by=by, now=now, channel="telegram")
            else:
                done = await self.acknowledge(fingerprint, by=by, comment="", now=now,
                                              duration=24 * 3600.0, channel="telegram")
        except StoreError:
            return "Chưa ghi được (cơ sở dữ liệu tạm thời không sẵn sàng), hãy bấm lại."
        if done is None:
            return "Cảnh báo này không còn đang xảy ra."
        return None

    # -- operators: maintenance windows ---------------------------------------------------

    def maintenance_now(self, now: float) -> dict[str, str]:
        """Department code -> comment of every window open now, config and announced."""
        return maintenance_now(self.settings.maintenance, self.windows.values(), now, self._tz)

    def maintenance_view(self, now: float) -> list[dict[str, Any]]:
        """Every window: the config's (read-only) first, then announced ones, newest first."""
        names = self.settings.department_names or {}
        rows = [config_window_dict(i, w, now, self._tz)
                for i, w in enumerate(self.settings.maintenance)]
        rows += [w.to_dict(now) for w in
                 sorted(self.windows.values(), key=lambda w: w.created_at, reverse=True)]
        for row in rows:
            row["department_name"] = names.get(row["department"], "")
        return rows

    async def add_maintenance(self, *, department: str, starts_at: float, ends_at: float,
                              comment: str, created_by: str, now: float) -> OperatorWindow:
        """Announce a window (ValueError says what is wrong); stored, then applied."""
        window = new_operator_window(
            uuid.uuid4().hex, department=department, starts_at=starts_at, ends_at=ends_at,
            comment=comment, created_by=created_by, now=now,
            departments=(self.settings.department_names or {}).keys())
        async with self._operator_lock:
            await self.maintenance_store.put(window, kind="maintenance", actor=created_by,
                                             now=now)
            self.windows[window.id] = window
        self._changed()
        return window

    async def end_maintenance(self, window_id: str, *, by: str,
                              now: float) -> OperatorWindow | None:
        """End an announced window now; None when there is no such unfinished window."""
        async with self._operator_lock:
            window = self.windows.get(window_id)
            if window is None or window.ends_at <= now:
                return None
            ended = window.ended(by=by, now=now)
            await self.maintenance_store.put(ended, kind="maintenance_ended", actor=by,
                                             now=now)
            self.windows[window_id] = ended
        self._wake.set()  # alerts it muted may be due a notification now
        self._changed()
        return ended

    # -- views for the API ----------------------------------------------------------------

    def view(self, now: float) -> list[dict[str, Any]]:
        muted = self.muted(now)
        names = self.settings.department_names or {}
        out = []
        for alert in sorted(self.alerts.values(), key=_display_order):
            labels = dict(alert.labels)
            ack = self.acks.get(alert.fingerprint)
            out.append({
                "fingerprint": alert.fingerprint, "state": alert.state.value,
                "labels": labels, "annotations": dict(alert.annotations),
                "value": alert.value, "active_at": alert.active_at, "fired_at": alert.fired_at,
                "resolved_at": alert.resolved_at,
                "department_name": names.get(labels.get("department", ""), ""),
                "receivers": sorted({r.receiver for r in self.settings.route.match(labels)}),
                "muted": muted.get(alert.fingerprint, {}),
                "ack": ack.to_dict() if ack is not None and ack.active(now) else None,
            })
        return out


def _is_snooze(ack: Ack) -> bool:
    """A snooze holds an escalation; an ack ends it."""
    return ack.comment == SNOOZE_TEXT and ack.expires_at - ack.at <= SNOOZE_SECONDS


def _display_order(alert: Alert) -> tuple[int, float]:
    rank = {"critical": 0, "warning": 1, "info": 2}.get(alert.label("severity"), 3)
    return rank, -(alert.fired_at or alert.active_at)


def _state_event(alert: Alert, kind: str, at: float) -> HistoryEvent:
    return HistoryEvent(f"{kind}:{alert.fingerprint}:{ms(at)}", at, kind, alert.fingerprint,
                        "ioc", {"labels": dict(alert.labels), "value": alert.value,
                                "summary": dict(alert.annotations).get("summary", "")})


def _silence_row(silence: Silence) -> dict[str, Any]:
    return {"id": silence.id, "matchers": [str(m) for m in silence.matchers],
            "starts_at": silence.starts_at, "ends_at": silence.ends_at,
            "created_by": silence.created_by, "comment": silence.comment,
            "created_at": silence.created_at}


class DeliveryConfig(Protocol):
    """The parts of the whole config that delivery reads (``service.config.Config`` has
    them): named here so that alerts depends on the sections, not on the composition root."""

    @property
    def alerts(self) -> AlertsConfig: ...
    @property
    def departments(self) -> Sequence[DepartmentConfig]: ...
    @property
    def service(self) -> ServiceConfig: ...
    @property
    def province(self) -> ProvinceConfig: ...
    @property
    def storage(self) -> StorageConfig: ...


def delivery_settings(config: DeliveryConfig, session: HttpSession, *, external_url: str = "",
                      department_names: Mapping[str, str] | None = None) -> DeliverySettings:
    """Routing, channels, inhibition and the config's maintenance windows, built from a
    validated config: at start and again at each reload that changes them."""
    alerts = config.alerts
    return DeliverySettings(
        route=build_route(alerts.route or RouteConfig(receiver=NO_RECEIVER)),
        integrations=build_integrations(list(alerts.receivers), session),
        inhibit_rules=tuple(InhibitRule.from_config(r) for r in alerts.inhibit_rules),
        maintenance=tuple(alerts.maintenance),
        department_names=department_names if department_names is not None
        else {d.code: d.name for d in config.departments},
        external_url=external_url or alerts.external_url or f"http://{config.service.listen}/",
        title=config.service.title, timezone=config.province.timezone,
        retention=config.storage.retention)


def build_dispatcher(config: DeliveryConfig, counters: OutboxCounters,
                     clock: Callable[[], float], oncall_metrics: OncallMetrics | None = None,
                     *, external_url: str = "",
                     department_names: Mapping[str, str] | None = None) -> Dispatcher:
    """The dispatcher, its outbox and notifiers for a validated config.

    ``department_names`` is the service's one mapping of names (which a reload updates in
    place); without it the config's names are copied."""
    alerts = config.alerts
    session = HttpSession()
    settings = delivery_settings(config, session, external_url=external_url,
                                 department_names=department_names)
    store = OncallStore(config.storage.url)
    maintenance_store = MaintenanceStore(config.storage.url)
    by_id = {i.id: i for items in settings.integrations.values() for i in items}
    outbox = Outbox(store, by_id, alerts.outbox, counters, clock)
    if oncall_metrics is None:  # a dispatcher built alone (tests, tools) counts for itself
        oncall_metrics = OncallMetrics(CollectorRegistry())
    escalator = Escalator(
        alerts.oncall, store, timezone=config.province.timezone, metrics=oncall_metrics,
        session=session, title=config.service.title, external_url=settings.external_url,
        department_names=settings.department_names,
        on_integrations=outbox.integrations.update)
    return Dispatcher(settings, store, outbox, clock, session,
                      maintenance_store=maintenance_store, escalator=escalator,
                      oncall_metrics=oncall_metrics)
