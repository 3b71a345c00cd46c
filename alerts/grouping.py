"""Aggregation groups and their timers, and the decision whether a flush notifies anyone.

Alertmanager's model, with time passed in: an alert joins the group of each route it matches
(the group is the route plus the values of its ``group_by`` labels). A new group waits
``group_wait`` before its first flush so that an outage that trips twenty alerts in a few
seconds becomes one message; afterwards it flushes every ``group_interval``. A flush notifies
only when something changed since the last notification (an alert started firing, or one that
people were told about resolved) or when ``repeat_interval`` has passed — unless every firing
alert of the group is acknowledged, which stops the repeats.

The notification log (``NotifyLogEntry``) remembers what each group last told its receiver;
the dispatcher persists it in the same transaction as the outbox rows, so a restarted ioc
neither re-pages nor forgets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from alerts.model import Alert, AlertState
from alerts.routing import Route


def group_key(route: Route, labels: Mapping[str, str]) -> str:
    """Alertmanager's spelling: ``{route path}:{label="value",…}``."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{route.key}:{{{inner}}}"


@dataclass
class AggregationGroup:
    key: str
    route: Route
    labels: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)
    next_flush: float = 0.0
    flushed: bool = False


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """What one group holds at flush time."""

    key: str
    route: Route
    labels: dict[str, str]
    alerts: tuple[Alert, ...]

    @property
    def receiver(self) -> str:
        return self.route.receiver


class Grouper:
    """Holds every aggregation group and says which are due to flush.

    ``interval_cap`` lets a receiver demand flushes more often than its route's
    ``group_interval`` (the Alertmanager forwarder re-sends active alerts every minute).
    """

    def __init__(self, root: Route, interval_cap: Mapping[str, float] | None = None) -> None:
        self.root = root
        self.groups: dict[str, AggregationGroup] = {}
        self._cap = dict(interval_cap or {})

    def ingest(self, alerts: Iterable[Alert], now: float) -> None:
        """Take one evaluation cycle's alerts: every firing one plus those resolved now.

        A grouped firing alert missing from the cycle is taken as resolved: the engine stopped
        reporting it (its rule was removed), and on-call staff should hear that it ended.
        """
        seen: set[str] = set()
        for alert in alerts:
            seen.add(alert.fingerprint)
            labels = dict(alert.labels)
            for route in self.root.match(labels):
                glabels = route.group_labels(labels)
                key = group_key(route, glabels)
                group = self.groups.get(key)
                if group is None:
                    # A resolution may arrive for a group not held in memory (after a restart,
                    # or when its rule was removed): the flush tells it to whoever the
                    # notification log says heard the alert fire, and nobody else.
                    group = self.groups[key] = AggregationGroup(
                        key, route, glabels, next_flush=now + route.group_wait)
                group.alerts[alert.fingerprint] = alert
        for group in self.groups.values():
            for fp, alert in list(group.alerts.items()):
                if fp not in seen and alert.state is AlertState.FIRING:
                    group.alerts[fp] = _resolved(alert, now)

    def due(self, now: float) -> list[GroupSnapshot]:
        """Groups whose timer has expired; their next flush is scheduled."""
        out = []
        for group in self.groups.values():
            if group.next_flush <= now:
                interval = min(group.route.group_interval,
                               self._cap.get(group.route.receiver, float("inf")))
                group.next_flush = now + interval
                group.flushed = True
                out.append(GroupSnapshot(group.key, group.route, dict(group.labels),
                                         tuple(group.alerts.values())))
        return out

    def flushed(self, snapshot: GroupSnapshot) -> None:
        """Forget the resolved alerts a flush has dealt with; drop groups left empty."""
        group = self.groups.get(snapshot.key)
        if group is None:
            return
        for alert in snapshot.alerts:
            # Only a resolution the flush saw: one that arrived while the flush was being
            # stored is still to be told at the next flush.
            if alert.state is not AlertState.RESOLVED:
                continue
            current = group.alerts.get(alert.fingerprint)
            if current is not None and current.state is AlertState.RESOLVED:
                del group.alerts[alert.fingerprint]
        if not group.alerts:
            del self.groups[snapshot.key]

    def next_deadline(self) -> float | None:
        return min((g.next_flush for g in self.groups.values()), default=None)


def _resolved(alert: Alert, now: float) -> Alert:
    return Alert(labels=alert.labels, annotations=alert.annotations,
                 state=AlertState.RESOLVED, value=alert.value, active_at=alert.active_at,
                 fired_at=alert.fired_at, resolved_at=now, last_eval=now,
                 fingerprint=alert.fingerprint)


@dataclass(frozen=True, slots=True)
class NotifyLogEntry:
    """What a group last told its receiver."""

    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: float
    content: str       # hash of (firing, resolved): the dedup key's stable part
    sequence: int      # how many notifications this content has had (repeats count up)


@dataclass(frozen=True, slots=True)
class Decision:
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    entry: NotifyLogEntry
    dedup_key: str

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"


def content_hash(receiver: str, key: str, firing: Iterable[str],
                 resolved: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in (receiver, key, ",".join(sorted(firing)), ",".join(sorted(resolved))):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


def decide(snapshot: GroupSnapshot, entry: NotifyLogEntry | None, *, now: float,
           muted: set[str], acked: set[str], send_resolved: bool = True,
           resend_interval: float | None = None) -> Decision | None:
    """Whether this flush notifies, and with what; None when it stays quiet.

    ``muted`` are fingerprints silenced, inhibited or in a maintenance window: they are left
    out as if absent. Resolved alerts are only told to people who were told they fired.
    ``resend_interval`` (the Alertmanager forwarder) re-sends regardless of acks.
    """
    firing = [a for a in snapshot.alerts
              if a.state is AlertState.FIRING and a.fingerprint not in muted]
    told = entry.firing if entry is not None else frozenset()
    resolved = [a for a in snapshot.alerts
                if a.state is AlertState.RESOLVED and a.fingerprint in told]
    firing_fps = frozenset(a.fingerprint for a in firing)
    resolved_fps = frozenset(a.fingerprint for a in resolved)
    repeat = snapshot.route.repeat_interval
    if resend_interval is not None:
        repeat = min(repeat, resend_interval)
    if entry is None:
        notify = bool(firing)
    elif not firing_fps <= entry.firing:
        notify = True
    elif not firing:
        notify = bool(entry.firing)
    elif send_resolved and not resolved_fps <= entry.resolved:
        notify = True
    else:
        unacked = resend_interval is not None or bool(firing_fps - acked)
        notify = unacked and entry.sent_at <= now - repeat
    if not notify:
        return None
    if not firing and not send_resolved:
        # Clear the log so a later firing notifies again, but tell nobody.
        cleared = NotifyLogEntry(frozenset(), frozenset(), now, "", 0)
        return Decision((), (), cleared, "")
    content = content_hash(snapshot.receiver, snapshot.key, firing_fps, resolved_fps)
    sequence = entry.sequence + 1 if entry is not None and entry.content == content else 1
    new_entry = NotifyLogEntry(firing_fps, resolved_fps, now, content, sequence)
    shown_resolved = tuple(resolved) if send_resolved else ()
    return Decision(tuple(firing), shown_resolved, new_entry, f"{content}-{sequence}")
