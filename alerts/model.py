"""The alert as it passes from the rule engine to delivery.

The engine (rules, evaluation, the pending → firing → resolved state machine) produces
``Alert`` values; delivery (routing, grouping, inhibition, silences, outbox, notifiers) consumes
them, the way Prometheus hands alerts to Alertmanager. Neither side reaches into the other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ioc.model import Labels


class AlertState(StrEnum):
    PENDING = "pending"    # condition true, `for` not yet elapsed; never notified
    FIRING = "firing"
    RESOLVED = "resolved"  # was firing, condition false (after keep_firing_for)


SEVERITIES = ("info", "warning", "critical")


def fingerprint(labels: Labels) -> str:
    """Stable identity of an alert: a hash of its sorted labels (incl. ``alertname``)."""
    digest = hashlib.sha256()
    for name, value in labels:
        digest.update(name.encode())
        digest.update(b"\xff")
        digest.update(value.encode())
        digest.update(b"\xff")
    return digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    labels: Labels                    # rule labels + series labels + alertname + severity
    annotations: tuple[tuple[str, str], ...]  # rendered summary, description, runbook_url
    state: AlertState
    value: float | None               # the value that made the condition true (last eval)
    active_at: float                  # when the condition first became true (pending start)
    fired_at: float | None = None     # when it turned firing
    resolved_at: float | None = None  # when it resolved
    last_eval: float = 0.0
    fingerprint: str = field(default="")
    keep_firing_for: float = 0.0      # the rule's; an ack outlives a resolution this long

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))

    def label(self, name: str, default: str = "") -> str:
        return dict(self.labels).get(name, default)


class AlertSink(Protocol):
    """Where the engine sends the result of every evaluation cycle (delivery implements it).

    ``alerts`` holds every alert that is firing, plus those that resolved in this cycle
    (state RESOLVED, sent once). Pending alerts are not passed on.
    """

    async def update(self, alerts: list[Alert], now: float) -> None: ...
