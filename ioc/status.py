"""What is known about each target right now, and the one function that reports it.

``build_status`` feeds both ``GET /api/v1/status`` and (later) the wall page, so testing the
API tests what the operators see.

A target has two verdicts: ``raw_up``, the result of its last poll, and ``up``, the debounced
state (``FlapFilter``): with ``failure_threshold: 3`` one lost packet does not make a target
"down" and page anyone, but every failed poll is still counted and visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TargetState:
    name: str
    department: str
    kind: str
    interval: float
    up: bool | None = None           # debounced state; None until the first poll finishes
    raw_up: bool | None = None       # verdict of the last poll alone
    degraded: bool = False           # up, but over a soft limit such as max_latency
    last_check: float | None = None  # unix seconds when the last poll finished
    last_success: float | None = None
    latency: float | None = None     # seconds the last poll took
    last_value: float | None = None
    reason: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    # unix seconds of the first failed poll of the current run of failed polls (None while the
    # last poll succeeded): the outage's start as an incident counts it, not when the
    # debounced state or an alert followed, so the wall and console say "down since" truthfully.
    failing_since: float | None = None
    # With collection.shard i/N: the index of the instance that polls the target (with auto:
    # its member slot, None while unknown), and whether that is another one (its state is
    # then read from the shared store, service.shared_board; with auto it changes with owners).
    shard: int | None = None
    remote: bool = False


class FlapFilter:
    """Debounces poll verdicts: down after N failures in a row, up after M successes.

    The first poll decides at once (there is no earlier state to keep), so a target that is
    down at start-up shows as down after its first poll rather than after N.
    """

    __slots__ = ("failure_threshold", "failures", "recovery_threshold", "state", "successes")

    def __init__(self, failure_threshold: int = 1, recovery_threshold: int = 1) -> None:
        if failure_threshold < 1 or recovery_threshold < 1:
            raise ValueError("thresholds must be at least 1")
        self.failure_threshold = failure_threshold
        self.recovery_threshold = recovery_threshold
        self.state: bool | None = None
        self.failures = 0
        self.successes = 0

    def update(self, up: bool) -> bool:
        """Feed one verdict; returns the debounced state after it."""
        if up:
            self.successes += 1
            self.failures = 0
            if self.state is None or (not self.state
                                      and self.successes >= self.recovery_threshold):
                self.state = True
        else:
            self.failures += 1
            self.successes = 0
            if self.state is None or (self.state
                                      and self.failures >= self.failure_threshold):
                self.state = False
        return self.state


class StatusBoard:
    """Target states keyed by target name, updated by the pipeline."""

    def __init__(self) -> None:
        self.targets: dict[str, TargetState] = {}

    def register(self, state: TargetState) -> None:
        self.targets.setdefault(state.name, state)

    def remove(self, name: str) -> None:
        self.targets.pop(name, None)

    def record(self, name: str, *, up: bool, ts: float, latency: float | None,
               value: float | None, reason: str | None, error: str | None,
               state_up: bool | None = None, degraded: bool = False) -> TargetState:
        """Record one poll; ``up`` is its verdict, ``state_up`` the debounced state."""
        state = self.targets[name]
        state.raw_up = up
        state.up = up if state_up is None else state_up
        state.degraded = up and degraded
        state.last_check = ts
        state.latency = latency
        state.last_value = value
        if up:
            state.last_success = ts
            state.reason = None
            state.last_error = error if degraded else None
            state.consecutive_failures = 0
            state.consecutive_successes += 1
            state.failing_since = None
        else:
            if state.consecutive_failures == 0 or state.failing_since is None:
                state.failing_since = ts
            state.reason = reason
            state.last_error = error
            state.consecutive_failures += 1
            state.consecutive_successes = 0
        return state


def build_status(board: StatusBoard, department_names: Mapping[str, str], *, now: float,
                 province: dict[str, str]) -> dict[str, Any]:
    """The status document: every target, failing ones first, plus counts."""
    rows = []
    for state in board.targets.values():
        rows.append({
            "name": state.name,
            "department": state.department,
            "department_name": department_names.get(state.department, state.department),
            "kind": state.kind,
            "up": state.up,
            "raw_up": state.raw_up,
            "degraded": state.degraded,
            "consecutive_failures": state.consecutive_failures,
            "consecutive_successes": state.consecutive_successes,
            "last_value": state.last_value,
            "latency_seconds": state.latency,
            "last_check": state.last_check,
            "last_success": state.last_success,
            "failing_since": state.failing_since,
            "stale": state.last_check is None or now - state.last_check > 3 * state.interval,
            "reason": state.reason,
            "last_error": state.last_error,
            "shard": state.shard,
            "remote": state.remote,
        })
    order: dict[object, int] = {False: 0, None: 1, True: 2}
    rows.sort(key=lambda r: (order[r["up"]], str(r["department"]), str(r["name"])))
    up = sum(1 for r in rows if r["up"] is True)
    down = sum(1 for r in rows if r["up"] is False)
    return {
        "generated_at": now,
        "province": province,
        "summary": {"targets": len(rows), "up": up, "down": down,
                    "unknown": len(rows) - up - down},
        "targets": rows,
    }
