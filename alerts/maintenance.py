"""Maintenance windows per department: planned work mutes notifications, visibly.

A department's IT team announces work ahead (fixed ranges) or has a standing slot (a weekly
schedule, e.g. Saturday 22:00–02:00). Times are wall-clock times in the province's time zone
(Asia/Ho_Chi_Minh by default), the way the team writes them in its notice. Alerts of the
department keep being evaluated and shown — marked as in maintenance — but page nobody.

Operators also announce fixed ranges from the console or ``POST /api/v1/maintenance``
(``OperatorWindow``, kept in the store); weekly schedules stay in the config. Both kinds are
merged by ``maintenance_now``, which is what the dispatcher and the console consult.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from ioc.config_types import StrictModel
from ioc.store.maintenance_store import OperatorWindow

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_local(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected a local date and time such as 2026-12-05 22:00, "
                         f"got {value!r}") from None


def _parse_clock(value: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected a time of day such as 22:00, got {value!r}") from None


class RangeConfig(StrictModel):
    start: str = Field(description="local date and time, e.g. 2026-12-05 22:00")
    end: str = Field(description="local date and time, after start")

    @model_validator(mode="after")
    def _check(self) -> RangeConfig:
        if _parse_local(self.end) <= _parse_local(self.start):
            raise ValueError("end must be after start")
        return self


class WeeklyConfig(StrictModel):
    days: list[Day] = Field(min_length=1, description="mon … sun")
    start: str = Field(description="time of day, e.g. 22:00")
    end: str = Field(description="time of day; before start means the next day")

    @field_validator("start", "end")
    @classmethod
    def _check_clock(cls, value: str) -> str:
        _parse_clock(value)
        return value


class MaintenanceConfig(StrictModel):
    department: str = Field(description="department code whose alerts are muted")
    comment: str | None = Field(None, description="shown next to muted alerts")
    public_note: str | None = Field(None, min_length=1, max_length=500,
                                    description="the public status page's wording for it")
    public_note_en: str | None = Field(None, min_length=1, max_length=500,
                                       description="the same for the English page")
    ranges: list[RangeConfig] = Field(default_factory=list)
    weekly: list[WeeklyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_any(self) -> MaintenanceConfig:
        if not self.ranges and not self.weekly:
            raise ValueError("give at least one of ranges or weekly")
        if self.public_note_en and not self.public_note:
            raise ValueError("public_note_en: give public_note too (the page is Vietnamese "
                             "first)")
        return self


def in_window(window: MaintenanceConfig, now: float, tz: ZoneInfo) -> bool:
    local = datetime.fromtimestamp(now, tz)
    naive = local.replace(tzinfo=None)
    for fixed in window.ranges:
        if _parse_local(fixed.start) <= naive < _parse_local(fixed.end):
            return True
    for weekly in window.weekly:
        start, end = _parse_clock(weekly.start), _parse_clock(weekly.end)
        for back in (0, 1):  # a slot that began yesterday may run past midnight
            day = naive.date() - timedelta(days=back)
            if _DAYS[day.weekday()] not in weekly.days:
                continue
            begins = datetime.combine(day, start)
            ends = datetime.combine(day, end)
            if ends <= begins:
                ends += timedelta(days=1)
            if begins <= naive < ends:
                return True
    return False


def _boundaries(window: MaintenanceConfig, around: datetime) -> list[datetime]:
    """Local (naive) instants at which ``window`` opens or closes, from the day before
    ``around`` to a week after it (a weekly slot repeats within that)."""
    out: list[datetime] = []
    for fixed in window.ranges:
        out += [_parse_local(fixed.start), _parse_local(fixed.end)]
    for weekly in window.weekly:
        start, end = _parse_clock(weekly.start), _parse_clock(weekly.end)
        for offset in range(-1, 8):
            day = around.date() + timedelta(days=offset)
            if _DAYS[day.weekday()] not in weekly.days:
                continue
            begins, ends = datetime.combine(day, start), datetime.combine(day, end)
            if ends <= begins:
                ends += timedelta(days=1)
            out += [begins, ends]
    return out


def scheduled_spans(window: MaintenanceConfig, start: float, end: float,
                    tz: ZoneInfo) -> list[tuple[float, float]]:
    """The ``[opens, closes)`` instants (unix seconds) of a scheduled window that overlap
    ``[start, end)``: its fixed ranges and each weekly slot, laid out day by day in the
    province's time. The incident ledger, the reports and the public status page all read
    planned time from here, so a schedule marks the same minutes planned in each."""
    out: list[tuple[float, float]] = []
    for fixed in window.ranges:
        out.append((_parse_local(fixed.start).replace(tzinfo=tz).timestamp(),
                     _parse_local(fixed.end).replace(tzinfo=tz).timestamp()))
    first = datetime.fromtimestamp(start, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end, tz).date()
    for weekly in window.weekly:
        opens, closes = _parse_clock(weekly.start), _parse_clock(weekly.end)
        day = first
        while day <= last:
            if _DAYS[day.weekday()] in weekly.days:
                begins, ends = datetime.combine(day, opens), datetime.combine(day, closes)
                if ends <= begins:  # a slot running past midnight
                    ends += timedelta(days=1)
                out.append((begins.replace(tzinfo=tz).timestamp(),
                            ends.replace(tzinfo=tz).timestamp()))
            day += timedelta(days=1)
    return sorted((a, b) for a, b in out if a < end and b > start)


def next_config_boundary(windows: Iterable[MaintenanceConfig], now: float,
                         tz: ZoneInfo) -> float | None:
    """The first instant after ``now`` at which a scheduled window opens or closes (unix
    seconds), for those that show the muting as it changes; None when none is ahead."""
    naive = datetime.fromtimestamp(now, tz).replace(tzinfo=None)
    ahead = [moment for window in windows for moment in _boundaries(window, naive)
             if moment > naive]
    if not ahead:
        return None
    return min(moment.replace(tzinfo=tz).timestamp() for moment in ahead)


def departments_in_maintenance(windows: Iterable[MaintenanceConfig], now: float,
                               tz: ZoneInfo) -> dict[str, str]:
    """Department code -> the window's comment, for every window open at ``now``."""
    out: dict[str, str] = {}
    for window in windows:
        if window.department not in out and in_window(window, now, tz):
            out[window.department] = window.comment or "bảo trì theo lịch"
    return out


# -- windows operators announce through the API (``POST /api/v1/maintenance``) ----------------

MAX_WINDOW_SECONDS = 30 * 86400.0  # longer work is a standing schedule: put it in the config


def parse_instant(value: object, tz: ZoneInfo) -> float:
    """Unix seconds from a number or an ISO 8601 text; without an offset, the province's time.

    The console's date-time inputs send local times without an offset ("2026-12-05T22:00"),
    which is also how a department writes its notice.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected unix seconds or an ISO 8601 time, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"expected unix seconds or an ISO 8601 time such as "
                                 f"2026-12-05T22:00+07:00, got {value!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=tz)
            number = parsed.timestamp()
    else:
        raise ValueError(f"expected unix seconds or an ISO 8601 time, got {value!r}")
    if not math.isfinite(number) or not 0 <= number <= 1e11:
        raise ValueError(f"expected a time between 1970 and year 5000, got {value!r}")
    return number


def new_operator_window(window_id: str, *, department: str, starts_at: float, ends_at: float,
                        comment: str, created_by: str, now: float,
                        departments: Collection[str],
                        max_seconds: float = MAX_WINDOW_SECONDS) -> OperatorWindow:
    """Validate an announced window; every refusal says what to change."""
    if department not in departments:
        known = ", ".join(sorted(departments)) or "none configured"
        raise ValueError(f"unknown department {department!r}; known: {known}")
    if ends_at <= starts_at:
        raise ValueError("end must be after start")
    if ends_at <= now:
        raise ValueError("the window has already ended")
    if ends_at - starts_at > max_seconds:
        raise ValueError(f"a window may last at most {max_seconds / 86400:g} days; "
                         f"longer work belongs in alerts.maintenance of the config")
    comment = comment.strip()
    if not comment:
        raise ValueError("say what the work is (comment)")
    return OperatorWindow(window_id, department, starts_at, ends_at, comment, created_by, now)


def maintenance_now(config: Iterable[MaintenanceConfig], announced: Iterable[OperatorWindow],
                    now: float, tz: ZoneInfo) -> dict[str, str]:
    """Department code -> comment for every window open at ``now``, config ones first."""
    out = departments_in_maintenance(config, now, tz)
    for window in sorted(announced, key=lambda w: w.created_at):
        if window.department not in out and window.active(now):
            out[window.department] = window.comment
    return out


def config_window_dict(index: int, window: MaintenanceConfig, now: float,
                       tz: ZoneInfo) -> dict[str, Any]:
    """How ``GET /api/v1/maintenance`` shows a config window: read-only, as written."""
    return {"source": "config", "id": f"config-{index}", "department": window.department,
            "comment": window.comment or "", "read_only": True,
            "state": "active" if in_window(window, now, tz) else "scheduled",
            "ranges": [r.model_dump() for r in window.ranges],
            "weekly": [w.model_dump() for w in window.weekly]}
