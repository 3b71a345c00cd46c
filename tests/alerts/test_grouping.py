"""Aggregation groups and their timers, stepped with a fake clock."""

from __future__ import annotations

from alerts.grouping import Grouper, GroupSnapshot, NotifyLogEntry, decide
from alerts.model import AlertState
from alerts.routing import RouteConfig, build_route
from tests.alerts.delivery_helpers import alert, resolved

ROUTE = build_route(RouteConfig.model_validate({
    "receiver": "oncall", "group_by": ["department"], "group_wait": "30s",
    "group_interval": "5m", "repeat_interval": "4h"}))

T0 = 1_000_000.0


class Delivery:
    """Grouper + decide + notification log, as the dispatcher drives them."""

    def __init__(self, resend: float | None = None) -> None:
        self.grouper = Grouper(ROUTE, {"oncall": resend} if resend else None)
        self.log: dict[str, NotifyLogEntry] = {}
        self.sent: list[tuple[float, str, list[str], list[str]]] = []
        self.resend = resend

    def step(self, now: float, alerts: list, *, muted: frozenset[str] = frozenset(),
             acked: frozenset[str] = frozenset()) -> None:
        self.grouper.ingest(alerts, now)
        self.tick(now, muted=muted, acked=acked)

    def tick(self, now: float, *, muted: frozenset[str] = frozenset(),
             acked: frozenset[str] = frozenset()) -> None:
        for snap in self.grouper.due(now):
            decision = decide(snap, self.log.get(snap.key), now=now, muted=set(muted),
                              acked=set(acked), resend_interval=self.resend)
            if decision is not None:
                self.log[snap.key] = decision.entry
                self.sent.append((now, decision.status,
                                  sorted(a.label("target") for a in decision.firing),
                                  sorted(a.label("target") for a in decision.resolved)))
            self.grouper.flushed(snap)


def test_group_wait_gathers_a_burst_into_one_notification() -> None:
    d = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    b = alert(department="STP", target="stp-2", at=T0 + 5)
    c = alert(department="CAT", target="cat-1", at=T0 + 5)
    d.step(T0, [a])
    d.step(T0 + 5, [a, b, c])
    d.step(T0 + 29, [a, b, c])
    assert d.sent == []
    d.step(T0 + 30, [a, b, c])
    assert d.sent == [(T0 + 30, "firing", ["stp-1", "stp-2"], [])]
    d.step(T0 + 35, [a, b, c])  # CAT's group started at +5: its wait ends at +35
    assert d.sent[-1] == (T0 + 35, "firing", ["cat-1"], [])


def test_changes_wait_for_group_interval_and_resolution_is_sent() -> None:
    d = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    b = alert(department="STP", target="stp-2", at=T0 + 60)
    d.step(T0, [a])
    d.step(T0 + 30, [a])
    d.step(T0 + 60, [a, b])
    assert len(d.sent) == 1, "a new alert waits for the group interval"
    d.step(T0 + 330, [a, b])
    assert d.sent[-1] == (T0 + 330, "firing", ["stp-1", "stp-2"], [])
    d.step(T0 + 400, [resolved(a, T0 + 400), b])
    d.step(T0 + 630, [b])
    assert d.sent[-1] == (T0 + 630, "firing", ["stp-2"], ["stp-1"])
    d.step(T0 + 700, [resolved(b, T0 + 700)])
    d.tick(T0 + 930)
    assert d.sent[-1] == (T0 + 930, "resolved", [], ["stp-2"])
    assert d.grouper.groups == {}, "an empty group is dropped after its last flush"


def test_unchanged_group_repeats_after_repeat_interval_only() -> None:
    d = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    d.step(T0, [a])
    d.tick(T0 + 30)
    for minute in range(1, 240):
        d.step(T0 + 30 + minute * 60, [a])
    assert len(d.sent) == 1
    d.step(T0 + 30 + 4 * 3600, [a])
    assert len(d.sent) == 2 and d.sent[-1][1] == "firing"


def test_ack_stops_repeats_but_not_news() -> None:
    d = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    acked = frozenset({a.fingerprint})
    d.step(T0, [a])
    d.tick(T0 + 30)
    d.step(T0 + 5 * 3600, [a], acked=acked)
    assert len(d.sent) == 1, "acked: no repeat"
    b = alert(department="STP", target="stp-2", at=T0 + 5 * 3600)
    d.step(T0 + 5 * 3600 + 300, [a, b], acked=acked)
    assert d.sent[-1][2] == ["stp-1", "stp-2"], "a new alert in the group is news"
    d.step(T0 + 6 * 3600, [resolved(a, T0 + 6 * 3600), resolved(b, T0 + 6 * 3600)],
           acked=acked)
    d.tick(T0 + 6 * 3600 + 300)
    assert d.sent[-1][1] == "resolved"


def test_muted_alerts_are_not_sent_and_their_resolution_neither() -> None:
    d = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    muted = frozenset({a.fingerprint})
    d.step(T0, [a], muted=muted)
    d.tick(T0 + 30, muted=muted)
    assert d.sent == []
    d.step(T0 + 60, [resolved(a, T0 + 60)], muted=muted)
    d.tick(T0 + 330, muted=muted)
    assert d.sent == [], "nobody was told it fired, so nobody hears it resolved"


def test_silence_ending_lets_the_alert_through() -> None:
    d = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    d.step(T0, [a], muted=frozenset({a.fingerprint}))
    d.tick(T0 + 30, muted=frozenset({a.fingerprint}))
    d.tick(T0 + 330)
    assert d.sent == [(T0 + 330, "firing", ["stp-1"], [])]


def test_restart_with_the_log_does_not_page_again() -> None:
    first = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    first.step(T0, [a])
    first.tick(T0 + 30)
    again = Delivery()
    again.log = dict(first.log)  # what the store gives back after a restart
    again.step(T0 + 100, [a])
    again.tick(T0 + 130)
    assert again.sent == []


def test_resend_interval_repeats_regardless_of_acks() -> None:
    d = Delivery(resend=60.0)
    a = alert(department="STP", target="stp-1", at=T0)
    d.step(T0, [a], acked=frozenset({a.fingerprint}))
    d.tick(T0 + 30)
    d.tick(T0 + 90, acked=frozenset({a.fingerprint}))
    assert [s[0] for s in d.sent] == [T0 + 30, T0 + 90]


def test_dedup_key_is_stable_for_the_same_content_and_counts_repeats() -> None:
    snap = GroupSnapshot("k", ROUTE, {}, (alert(target="x"),))
    one = decide(snap, None, now=T0, muted=set(), acked=set())
    two = decide(snap, None, now=T0 + 99, muted=set(), acked=set())
    assert one is not None and two is not None and one.dedup_key == two.dedup_key
    repeat = decide(snap, one.entry, now=T0 + 5 * 3600, muted=set(), acked=set())
    assert repeat is not None and repeat.dedup_key != one.dedup_key
    assert repeat.dedup_key.endswith("-2")


def test_alert_missing_from_a_cycle_counts_as_resolved() -> None:
    grouper = Grouper(ROUTE)
    a = alert(department="STP", target="stp-1", at=T0)
    grouper.ingest([a], T0)
    grouper.ingest([], T0 + 15)
    (group,) = grouper.groups.values()
    assert group.alerts[a.fingerprint].state is AlertState.RESOLVED
    assert group.alerts[a.fingerprint].resolved_at == T0 + 15


def test_resolution_for_a_group_not_in_memory_reaches_those_told() -> None:
    first = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    first.step(T0, [a])
    first.tick(T0 + 30)
    again = Delivery()  # restarted: the group is gone from memory, the log is not
    again.log = dict(first.log)
    again.step(T0 + 100, [resolved(a, T0 + 100)])
    again.tick(T0 + 130)
    assert again.sent == [(T0 + 130, "resolved", [], ["stp-1"])]
    stranger = Delivery()  # nobody was told it fired: nobody hears it resolved
    stranger.step(T0 + 100, [resolved(a, T0 + 100)])
    stranger.tick(T0 + 130)
    assert stranger.sent == [] and stranger.grouper.groups == {}


def test_resolution_arriving_during_a_flush_is_not_lost() -> None:
    d = Delivery()
    a = alert(department="STP", target="stp-1", at=T0)
    d.step(T0, [a])
    (snap,) = d.grouper.due(T0 + 30)  # the flush takes its snapshot, then awaits the store…
    decision = decide(snap, None, now=T0 + 30, muted=set(), acked=set())
    assert decision is not None
    d.log[snap.key] = decision.entry
    d.grouper.ingest([resolved(a, T0 + 31)], T0 + 31)  # …while the engine reports recovery
    d.grouper.flushed(snap)
    d.tick(T0 + 330)
    assert d.sent == [(T0 + 330, "resolved", [], ["stp-1"])]
