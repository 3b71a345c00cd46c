"""The incident ledger's rule: which stored polls make one outage, as a pure function.

An *incident* is one outage of one target: it starts at the first failed poll after a good
one (or the target's first poll, if that failed) and ends at the first good poll after it.
The raw verdict (``ioc_target_up``) decides, not the debounced state or the alert: an
operator reporting upward wants when the system stopped answering, not when ioc was sure.
An incident still failing has no end.

Because incidents are a function of the stored polls alone, the ledger is the same after a
restart, whichever instance derives it, and whatever shard polled the target: the store is
the one truth. Causes are the failure reasons of the incident's failed polls with their
counts (stored beside each failed poll as ``ioc_target_failure_reason``, see
:func:`reason_from_code`).

An incident is *planned* when it starts inside a maintenance window of its department (or
of every department): it is still listed and counted as planned, and its time is excluded
from availability (:mod:`ioc.availability`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ioc.model import FAILURE_REASONS


def reason_code(reason: str | None) -> float:
    """The stored value of ``ioc_target_failure_reason`` for a failure reason."""
    try:
        return float(FAILURE_REASONS.index(reason or "error"))
    except ValueError:
        return float(FAILURE_REASONS.index("error"))


def reason_from_code(value: float | None) -> str:
    """Back from the stored value; anything unknown (a newer ioc's reason) is ``error``."""
    if value is None:
        return "error"
    index = int(value)
    if index != value or not 0 <= index < len(FAILURE_REASONS):
        return "error"
    return FAILURE_REASONS[index]


@dataclass(frozen=True, slots=True)
class Poll:
    """One stored poll of one target: when, its verdict, and why it failed."""

    ts: float
    up: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A maintenance window: ``department`` ``"*"`` covers every department."""

    department: str
    starts_at: float
    ends_at: float

    def covers(self, department: str, ts: float) -> bool:
        return (self.department in ("*", department)) and self.starts_at <= ts < self.ends_at


@dataclass(slots=True)
class Incident:
    target: str
    department: str
    started_at: float
    ended_at: float | None = None       # the first good poll after; None while still failing
    last_failed_at: float = 0.0
    failed_polls: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    planned: bool = False

    @property
    def id(self) -> str:
        return incident_id(self.target, self.started_at)

    def duration(self, now: float) -> float:
        """Seconds down: to the end, or to ``now`` while open."""
        return (self.ended_at if self.ended_at is not None else now) - self.started_at


def incident_id(target: str, started_at: float) -> str:
    """A stable id: the same incident derived twice (a re-run, another leader) keeps its notes.

    Milliseconds, like every stored timestamp, so a float round trip cannot change it.
    """
    key = f"{target}\x00{round(started_at * 1000)}".encode()
    return hashlib.sha256(key).hexdigest()[:20]


def derive(target: str, department: str, polls: Iterable[Poll],
           windows: Sequence[Window] = ()) -> list[Incident]:
    """Every incident in ``polls`` (oldest first), the last one open if the polls end failing.

    The first poll decides whether the sequence starts inside an outage: callers that derive
    a slice of history start the slice at the beginning of the incident still open before it
    (or at a good poll), so that an incident is never cut in two.
    """
    found: list[Incident] = []
    current: Incident | None = None
    last_ts: float | None = None
    for poll in polls:
        if last_ts is not None and poll.ts <= last_ts:
            raise ValueError(f"polls of {target} are not in time order at {poll.ts}")
        last_ts = poll.ts
        if poll.up:
            if current is not None:
                current.ended_at = poll.ts
                current = None
            continue
        if current is None:
            current = Incident(target, department, poll.ts,
                               planned=any(w.covers(department, poll.ts) for w in windows))
            found.append(current)
        current.failed_polls += 1
        current.last_failed_at = poll.ts
        current.causes[poll.reason or "error"] += 1
    return found


def summary(incidents: Sequence[Incident], now: float) -> dict[str, float | int | None]:
    """Counts the report and the API give: unplanned incidents, downtime, MTTR, longest.

    Mean time to recovery is over the *closed* unplanned incidents only: an open one has no
    recovery yet, and counting it with ``now`` would make the figure change by the minute.
    """
    unplanned = [i for i in incidents if not i.planned]
    closed = [i.duration(now) for i in unplanned if i.ended_at is not None]
    durations = [i.duration(now) for i in unplanned]
    return {
        "incidents": len(unplanned),
        "planned": len(incidents) - len(unplanned),
        "open": sum(1 for i in unplanned if i.ended_at is None),
        "downtime_seconds": sum(durations),
        "mttr_seconds": sum(closed) / len(closed) if closed else None,
        "longest_seconds": max(durations) if durations else None,
    }
