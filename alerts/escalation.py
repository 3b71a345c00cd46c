"""On call at run time: the roster from the store, escalations driven step by step.

The :class:`Escalator` belongs to the dispatcher. Every instance keeps the roster (seeded from
config.yaml, edited by admins, re-read every evaluation interval) because the API, the ack
page and the Telegram presses need it; only the alert leader starts and advances escalations:

* an alert that starts firing and matches a policy gets an escalation row (its id is the
  fingerprint and the firing time, so a restart's first cycle finds the same row);
* at each tick the steps that came due (:meth:`alerts.oncall.Policy.due`, time passed in) are
  resolved to people *now* (whoever is on duty at the step's time) and queued through the
  durable outbox in the same fenced transaction that counts them sent
  (:meth:`ioc.store.oncall.OncallStore.advance`) — so after a restart or a takeover no step
  is queued twice and none is skipped;
* the escalation ends when the alert resolves or is acknowledged through any channel; a
  snooze ("Tạm ẩn 1 giờ") holds it until the snooze ends.

A muted alert (silence, maintenance window, inhibition) holds its steps until it is unmuted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from alerts.messages import Notification, NotifiedAlert, human_duration
from alerts.model import SEVERITIES, Alert, AlertState
from alerts.notifiers import Integration
from alerts.oncall import (
    ONCALL_PREFIX,
    OncallConfig,
    Policy,
    Roster,
    RosterConfig,
    match_policy,
)
from alerts.oncall_links import LinkSigner
from alerts.oncall_notifiers import AckLinks, roster_integrations, zalo_account
from ioc.logs import fields
from ioc.store.alert_delivery import HistoryEvent, NewNotification, ms
from ioc.store.base import Fence
from ioc.store.oncall import ACTIVE, EscalationRow, OncallStore, StepWrite, StoredRoster

log = logging.getLogger("ioc.alerts.oncall")

_ACK_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0,
                14400.0, 43200.0)
CHANNELS = ("telegram", "email", "zalo", "console", "api")


class OncallMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.time_to_ack = Histogram(
            "ioc_oncall_time_to_ack_seconds",
            "Time from an alert firing to its acknowledgement, by severity and team.",
            ["severity", "team"], buckets=_ACK_BUCKETS, registry=registry)
        self.escalations = Counter(
            "ioc_oncall_escalation_steps_total",
            "Escalation steps queued, by policy (a repeat counts as a step).",
            ["policy"], registry=registry)
        self.acks = Counter("ioc_oncall_acks_total",
                            "Acknowledgements by channel (telegram, email, zalo, console, api).",
                            ["channel"], registry=registry)
        for channel in CHANNELS:
            self.acks.labels(channel=channel)

    def prepare(self, teams: Iterable[str], policies: Iterable[str]) -> None:
        """Create the series the roster and policies will use, at zero: a dashboard then
        shows "none yet" instead of "no such metric" until the first ack or step."""
        for severity in SEVERITIES:
            for team in ("", *teams):
                self.time_to_ack.labels(severity=severity, team=team)
        for policy in policies:
            self.escalations.labels(policy=policy)


class Escalator:
    def __init__(self, config: OncallConfig, store: OncallStore, *, timezone: str,
                 metrics: OncallMetrics, session: Callable[[], Any], title: str,
                 external_url: str, department_names: Mapping[str, str] | None = None,
                 on_integrations: Callable[[Mapping[str, Integration]], None] | None = None
                 ) -> None:
        self.config = config
        self.store = store
        self.timezone = timezone
        self.metrics = metrics
        self.session = session
        self.title = title
        self.external_url = external_url
        self.department_names = dict(department_names or {})
        self.on_integrations = on_integrations
        self.policies = [Policy.from_config(p) for p in config.policies]
        self.signer = (LinkSigner(config.link_secret.get_secret_value())
                       if config.link_secret is not None else None)
        self.links = (AckLinks(self.signer, config.link_base_url or external_url,
                               config.link_ttl) if self.signer is not None else None)
        self.roster = Roster(config.roster(), timezone)
        self.zalo = zalo_account(config, session)
        self.integrations: dict[str, list[Integration]] = {}
        self.rows: dict[str, EscalationRow] = {}
        # Escalations whose due step could not go out at the last tick (alert muted or not
        # evaluated yet, an ack not yet read): left out of next_deadline so the delivery
        # loop does not spin on them; the next evaluation cycle wakes it and they are tried
        # again.
        self._blocked: set[str] = set()
        self._set_roster(self.roster)

    # -- the roster ------------------------------------------------------------------------

    def _set_roster(self, roster: Roster) -> None:
        self.roster = roster
        self.metrics.prepare(roster.teams, (p.name for p in self.policies))
        self.integrations = roster_integrations(roster, self.config, self.links, self.session,
                                                self.zalo)
        if self.on_integrations is not None:
            self.on_integrations({i.id: i for items in self.integrations.values()
                                  for i in items})

    async def open(self, now: float) -> None:
        """Seed the stored roster from config (unless it came from this config) and read it."""
        seed = self.config.roster()
        stored = await self.store.load_roster()
        if stored is None or stored.seed != seed.digest():  # a write only when it changed
            if await self.store.seed_roster(seed.model_dump(mode="json"), seed.digest(), now):
                log.info("on-call roster taken from the config", extra=fields(
                    people=len(seed.people), teams=len(seed.teams)))
            stored = await self.store.load_roster()
        self._take(stored)

    def _take(self, stored: StoredRoster | None) -> None:
        if stored is None:
            return
        try:
            config = RosterConfig.model_validate(stored.document)
        except ValueError as exc:
            log.error("stored on-call roster is invalid; keeping the previous one",
                      extra=fields(error=str(exc)))
            return
        if config != self.roster.config:
            self._set_roster(Roster(config, self.timezone))

    async def refresh(self) -> None:
        """Re-read the roster an admin may have changed through any instance."""
        self._take(await self.store.load_roster())

    async def replace_roster(self, config: RosterConfig, *, by: str, now: float) -> None:
        """An admin's edit: checked against the policies, stored with a history event."""
        problems = self.roster_problems(config)
        if problems:
            raise ValueError("; ".join(problems))
        await self.store.put_roster(config.model_dump(mode="json"), by=by, now=now,
                                    event=HistoryEvent(f"roster:{ms(now)}:{by}", now,
                                                       "roster", None, by,
                                                       {"digest": config.digest()}))
        self._set_roster(Roster(config, self.timezone))

    def roster_problems(self, config: RosterConfig) -> list[str]:
        """What the policies refer to that an edited roster lacks."""
        from alerts.oncall import target_problem

        teams = [t.name for t in config.teams]
        people = [p.id for p in config.people]
        out = []
        for policy in self.config.policies:
            if policy.team not in teams:
                out.append(f"policy {policy.name!r} needs team {policy.team!r}")
            for step in policy.steps:
                for target in step.notify:
                    problem = target_problem(target, teams, people)
                    if problem:
                        out.append(f"policy {policy.name!r}: {problem}")
        return out

    # -- who, for routes and metrics -------------------------------------------------------

    def route_person(self, receiver: str, now: float) -> str | None:
        """The person a route receiver ``oncall:TEAM`` means at ``now``."""
        team = receiver.removeprefix(ONCALL_PREFIX)
        duty = self.roster.on_duty(team, now)
        return duty.person if duty is not None else None

    def team_of(self, labels: Mapping[str, str]) -> str:
        policy = match_policy(self.policies, labels)
        return policy.team if policy is not None else ""

    def may_ack(self, person: str) -> bool:
        return person in self.roster.people

    # -- escalations (leader) -----------------------------------------------------------

    async def load(self) -> None:
        self.rows = {row.id: row for row in await self.store.load_escalations()}

    def forget(self) -> None:
        self.rows = {}
        self._blocked.clear()

    async def observe(self, alerts: list[Alert], now: float, *,
                      fence: Fence | None = None) -> None:
        """Start escalations for alerts newly firing; end those of resolved alerts."""
        new: list[EscalationRow] = []
        known = {row.id for row in self.rows.values()}
        for alert in alerts:
            if alert.state is not AlertState.FIRING:
                continue
            policy = match_policy(self.policies, dict(alert.labels))
            if policy is None:
                continue
            started = alert.fired_at or alert.active_at
            esc_id = f"{alert.fingerprint}:{ms(started)}"
            if esc_id in known:
                continue
            new.append(EscalationRow(esc_id, alert.fingerprint, policy.name, policy.team,
                                     alert.label("severity"), started, 0, ACTIVE))
        if new:
            await self.store.start_escalations(new, now, fence=fence)
            # Stored rows win over ours: another leader's row for the same firing has the
            # steps it queued.
            await self.load()
        firing = {a.fingerprint for a in alerts if a.state is AlertState.FIRING}
        for row in list(self.rows.values()):
            if row.fingerprint not in firing:
                await self.store.end_escalation(row.id, state="resolved", by="ioc", now=now,
                                                fence=fence)
                self.rows.pop(row.id, None)

    def next_deadline(self) -> float | None:
        times = []
        policies = {p.name: p for p in self.policies}
        for row in self.rows.values():
            if row.id in self._blocked:
                continue
            policy = policies.get(row.policy)
            at = policy.step_at(row.started_at, row.sent) if policy else None
            if at is not None:
                times.append(max(at, row.held_until or at))
        return min(times, default=None)

    async def tick(self, now: float, alerts: Mapping[str, Alert], acked: Mapping[str, str],
                   muted: set[str], *, fence: Fence | None = None) -> int:
        """Queue every step due at ``now``; return how many steps were queued.

        ``acked``: fingerprint -> who, for the alerts with an active ack (not a snooze).
        """
        policies = {p.name: p for p in self.policies}
        writes: list[StepWrite] = []
        self._blocked.clear()
        for row in sorted(self.rows.values(), key=lambda r: r.started_at):
            policy = policies.get(row.policy)
            if row.fingerprint in acked or policy is None:
                await self.store.end_escalation(
                    row.id, state="acked" if policy else "ended",
                    by=acked.get(row.fingerprint, "ioc"), now=now, fence=fence)
                self.rows.pop(row.id, None)
                continue
            alert = alerts.get(row.fingerprint)
            if alert is None or row.fingerprint in muted:
                self._blocked.add(row.id)
                continue
            if row.held_until is not None and now < row.held_until:
                continue
            steps = policy.due(row.started_at, row.sent, now)
            if not steps:
                continue
            notifications, events = self._step_notifications(row, policy, steps, alert, now)
            writes.append(StepWrite(row, steps[-1] + 1, notifications, events))
        if not writes:
            return 0
        advanced = set(await self.store.advance(writes, now=now, fence=fence))
        queued = 0
        for write in writes:
            row = write.row
            if row.id not in advanced:
                self._blocked.add(row.id)  # acked meanwhile, or another leader moved it on
                continue
            sent_now = write.sent - row.sent
            self.rows[row.id] = EscalationRow(
                row.id, row.fingerprint, row.policy, row.team, row.severity,
                row.started_at, write.sent, row.state, row.held_until, row.ended_by)
            queued += len(write.events)
            self.metrics.escalations.labels(policy=row.policy).inc(len(write.events))
            log.info("escalation step queued", extra=fields(
                policy=row.policy, alert=row.fingerprint, step=write.sent,
                notifications=len(write.notifications), skipped_repeats=sent_now - len(
                    write.events)))
        if len(advanced) < len(writes):
            await self.load()  # the stored rows say where those escalations are
        return queued

    def _step_notifications(self, row: EscalationRow, policy: Policy, steps: list[int],
                            alert: Alert, now: float
                            ) -> tuple[list[NewNotification], list[HistoryEvent]]:
        notifications: list[NewNotification] = []
        events: list[HistoryEvent] = []
        dept = alert.label("department")
        notified = NotifiedAlert(
            fingerprint=alert.fingerprint, status="firing", labels=dict(alert.labels),
            annotations=dict(alert.annotations), starts_at=alert.active_at,
            value=alert.value, department_name=self.department_names.get(dept, ""))
        paged: set[str] = set()  # several steps due at once page each person once
        for step in steps:
            people: list[str] = []
            for target in policy.targets(step):
                person = self.roster.resolve(target, policy.team, now)
                if person is not None and person not in people and person not in paged:
                    people.append(person)
            paged.update(people)
            waited = human_duration(now - row.started_at)
            title = (f"{self.title} — leo thang bậc {step + 1}" if step else self.title)
            if step:
                title += f": chưa ai xác nhận sau {waited}"
            group_key = f"escalation:{row.id}"
            base = Notification(
                receiver="", group_key=group_key, status="firing", group_labels={},
                alerts=(notified,), created_at=now, dedup_key="",
                external_url=self.external_url, title=title, timezone=self.timezone,
                extra={"escalation": row.id, "step": step + 1}).to_json()
            for person in people:
                for integration in self.integrations.get(person, []):
                    key = f"esc:{row.id}:{step}:{integration.id}"
                    payload = {**base, "receiver": integration.receiver, "dedup_key": key,
                               "extra": {**base["extra"], "person": person}}
                    notifications.append(NewNotification(key, integration.id,
                                                         integration.receiver, group_key,
                                                         "firing", payload, now))
            events.append(HistoryEvent(f"escalation:{row.id}:{step}", now, "escalation",
                                       row.fingerprint, "ioc",
                                       {"policy": policy.name, "step": step + 1,
                                        "people": people}))
        return notifications, events

    def person_notifications(self, person: str, base: Notification,
                             now: float) -> list[NewNotification]:
        """A route's notification to ``oncall:TEAM``, addressed to the person on duty."""
        out = []
        for integration in self.integrations.get(person, []):
            key = f"{integration.id}:{base.dedup_key}"
            n = Notification(**{**base.to_json(), "alerts": base.alerts, "dedup_key": key,
                                "extra": {"person": person}})
            out.append(NewNotification(key, integration.id, base.receiver, base.group_key,
                                       base.status, n.to_json(), now))
        return out
