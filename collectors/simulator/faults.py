"""Fault injection for the simulator: the JSON contract, its validation and the live state.

Faults exist so the demo and the tests can make a department's site misbehave on demand and
watch ioc notice. The request body is untrusted input (it arrives over HTTP), so parsing is
strict: unknown keys are rejected rather than ignored, because a typo such as ``"dealy"``
silently falling back to a default would make a demo or a test lie.

Contract (``POST /_sim/faults``)::

    {"unit": "STTTT", "fault": "down"}                      # connection dropped, no response
    {"unit": "STTTT", "fault": "slow", "delay": 10}         # seconds added before answering
    {"unit": "STTTT", "fault": "error", "status": 503}      # any 400-599 status, short body
    {"unit": "STTTT", "fault": "flapping", "period": 1}     # N requests up, N down (503), ...
    {"unit": "STTTT", "fault": "content"}                   # gambling spam page, degraded health

Every fault also accepts ``"until": seconds`` to clear itself after that long (``null`` or
absent: until cleared). A unit has at
most one fault; setting another replaces it.

Flapping is request-counted, not time-based, so tests are deterministic: the n-th request
(0-based) to the unit while the fault is active fails when ``(n // period) % 2 == 1``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["down", "slow", "error", "flapping", "content"]
FAULT_KINDS: tuple[FaultKind, ...] = ("down", "slow", "error", "flapping", "content")

DEFAULT_DELAY = 10.0
DEFAULT_STATUS = 503
DEFAULT_PERIOD = 1
MAX_DELAY = 3600.0
MAX_PERIOD = 10_000
MAX_UNTIL = 7 * 24 * 3600.0

# Options each fault kind accepts besides "unit" and "fault".
_ALLOWED: dict[FaultKind, frozenset[str]] = {
    "down": frozenset({"until"}),
    "slow": frozenset({"delay", "until"}),
    "error": frozenset({"status", "until"}),
    "flapping": frozenset({"period", "until"}),
    "content": frozenset({"until"}),
}


class FaultSpecError(ValueError):
    """A fault request that cannot be honoured; ``error``/``detail`` go back as JSON (400)."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A validated fault request, with defaults filled in."""

    unit: str
    kind: FaultKind
    delay: float = DEFAULT_DELAY
    status: int = DEFAULT_STATUS
    period: int = DEFAULT_PERIOD
    until: float | None = None

    def options(self) -> dict[str, Any]:
        """Only the options that mean something for this kind, as they would be POSTed."""
        relevant: dict[str, Any] = {}
        if self.kind == "slow":
            relevant["delay"] = self.delay
        elif self.kind == "error":
            relevant["status"] = self.status
        elif self.kind == "flapping":
            relevant["period"] = self.period
        return relevant


@dataclass(frozen=True, slots=True)
class Effect:
    """What the request handler must do for one request; the handler interprets it."""

    disconnect: bool = False
    delay: float = 0.0
    status: int | None = None
    spam: bool = False


PASS = Effect()


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    # bool is an int subclass; "delay": true is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultSpecError("invalid option", f"'{key}' must be a number of seconds")
    if not low < value <= high:
        raise FaultSpecError("invalid option", f"'{key}' must be > {low:g} and <= {high:g}")
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultSpecError("invalid option", f"'{key}' must be an integer")
    if not low <= value <= high:
        raise FaultSpecError("invalid option", f"'{key}' must be between {low} and {high}")
    return value


def parse_fault(body: object, known_units: Collection[str]) -> FaultSpec:
    """Validate a decoded JSON body into a :class:`FaultSpec` or raise :class:`FaultSpecError`."""
    if not isinstance(body, dict):
        raise FaultSpecError("invalid fault", "body must be a JSON object")
    unit = body.get("unit")
    if not isinstance(unit, str) or not unit:
        raise FaultSpecError("invalid fault", "'unit' is required and must be a unit code string")
    if unit not in known_units:
        shown = unit if len(unit) <= 40 else unit[:40] + "…"
        raise FaultSpecError("unknown unit", f"no unit with code {shown!r}; see GET /_sim/units")
    kind = body.get("fault")
    if kind not in FAULT_KINDS:
        raise FaultSpecError("unknown fault", f"'fault' must be one of {', '.join(FAULT_KINDS)}")
    allowed = _ALLOWED[kind]
    extra = sorted(str(key) for key in body if key not in ("unit", "fault") and key not in allowed)
    if extra:
        names = ", ".join(sorted(allowed)) or "none"
        raise FaultSpecError(
            "invalid option", f"{', '.join(extra)} not valid for fault {kind!r} (allowed: {names})"
        )
    until = None if body.get("until") is None else _number(body, "until", 0.0, 0.0, MAX_UNTIL)
    return FaultSpec(
        unit=unit,
        kind=kind,
        delay=_number(body, "delay", DEFAULT_DELAY, 0.0, MAX_DELAY),
        status=_integer(body, "status", DEFAULT_STATUS, 400, 599),
        period=_integer(body, "period", DEFAULT_PERIOD, 1, MAX_PERIOD),
        until=until,
    )


@dataclass(slots=True)
class ActiveFault:
    """A fault in force on one unit, with the bookkeeping flapping and expiry need."""

    spec: FaultSpec
    expires_at: float | None  # monotonic seconds, None = until cleared
    requests: int = 0

    def describe(self, now: float) -> dict[str, Any]:
        """JSON form: the fields as they would be POSTed, plus read-only ``expires_in``."""
        expires_in = None if self.expires_at is None else max(0.0, self.expires_at - now)
        return {
            "unit": self.spec.unit,
            "fault": self.spec.kind,
            **self.spec.options(),
            "until": self.spec.until,
            "expires_in": expires_in,
        }


@dataclass(slots=True)
class FaultBoard:
    """The faults currently in force, keyed by unit code. One board per app.

    Methods take ``now`` (monotonic seconds) so expiry is testable without sleeping.
    """

    _faults: dict[str, ActiveFault] = field(default_factory=dict)

    def set(self, spec: FaultSpec, now: float) -> tuple[ActiveFault, bool]:
        """Put ``spec`` in force; returns the fault and whether it replaced another."""
        expires_at = None if spec.until is None else now + spec.until
        replaced = spec.unit in self._faults
        active = ActiveFault(spec=spec, expires_at=expires_at)
        self._faults[spec.unit] = active
        return active, replaced

    def clear(self, unit: str) -> int:
        """Remove the unit's fault; returns how many were removed (0 or 1)."""
        return 1 if self._faults.pop(unit, None) is not None else 0

    def clear_all(self) -> int:
        count = len(self._faults)
        self._faults.clear()
        return count

    def _expire(self, now: float) -> None:
        for unit in [u for u, f in self._faults.items() if f.expires_at is not None
                     and f.expires_at <= now]:
            del self._faults[unit]

    def active(self, now: float) -> list[ActiveFault]:
        self._expire(now)
        return [self._faults[unit] for unit in sorted(self._faults)]

    def effect(self, unit: str, now: float) -> Effect:
        """Decide what one request to ``unit`` experiences (advances flapping's counter)."""
        self._expire(now)
        active = self._faults.get(unit)
        if active is None:
            return PASS
        spec = active.spec
        if spec.kind == "down":
            return Effect(disconnect=True)
        if spec.kind == "slow":
            return Effect(delay=spec.delay)
        if spec.kind == "error":
            return Effect(status=spec.status)
        if spec.kind == "content":
            return Effect(spam=True)
        index = active.requests
        active.requests += 1
        return Effect(status=503) if (index // spec.period) % 2 == 1 else PASS
