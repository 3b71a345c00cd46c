"""What is known about each target right now, and the one function that reports it.

``build_status`` feeds both ``GET /api/v1/status`` and (later) the wall page, so testing the
API tests what the operators see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TargetState:
    name: str
    department: str
    kind: str
    interval: float
    up: bool | None = None           # None until the first poll finishes
    last_check: float | None = None  # unix seconds when the last poll finished
    last_success: float | None = None
    latency: float | None = None     # seconds the last poll took
    last_value: float | None = None
    reason: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0


class StatusBoard:
    """Target states keyed by target name, updated by the pipeline."""

    def __init__(self) -> None:
        self.targets: dict[str, TargetState] = {}

    def register(self, state: TargetState) -> None:
        self.targets.setdefault(state.name, state)

    def remove(self, name: str) -> None:
        self.targets.pop(name, None)

    def record(self, name: str, *, up: bool, ts: float, latency: float,
               value: float | None, reason: str | None, error: str | None) -> TargetState:
        state = self.targets[name]
        state.up = up
        state.last_check = ts
        state.latency = latency
        state.last_value = value
        if up:
            state.last_success = ts
            state.reason = None
            state.last_error = None
            state.consecutive_failures = 0
        else:
            state.reason = reason
            state.last_error = error
            state.consecutive_failures += 1
        return state


def build_status(board: StatusBoard, department_names: dict[str, str], *, now: float,
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
            "last_value": state.last_value,
            "latency_seconds": state.latency,
            "last_check": state.last_check,
            "last_success": state.last_success,
            "stale": state.last_check is None or now - state.last_check > 3 * state.interval,
            "reason": state.reason,
            "last_error": state.last_error,
        })
    order = {False: 0, None: 1, True: 2}
    rows.sort(key=lambda r: (order[r["up"]], str(r["department"]), str(r["name"])))  # type: ignore[index]
    up = sum(1 for r in rows if r["up"] is True)
    down = sum(1 for r in rows if r["up"] is False)
    return {
        "generated_at": now,
        "province": province,
        "summary": {"targets": len(rows), "up": up, "down": down,
                    "unknown": len(rows) - up - down},
        "targets": rows,
    }
