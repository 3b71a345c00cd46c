"""Maintenance windows per department: planned work mutes notifications, visibly.

A department's IT team announces work ahead (fixed ranges) or has a standing slot (a weekly
schedule, e.g. Saturday 22:00–02:00). Times are wall-clock times in the province's time zone
(Asia/Ho_Chi_Minh by default), the way the team writes them in its notice. Alerts of the
department keep being evaluated and shown — marked as in maintenance — but page nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from ioc.config_types import StrictModel

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
    ranges: list[RangeConfig] = Field(default_factory=list)
    weekly: list[WeeklyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_any(self) -> MaintenanceConfig:
        if not self.ranges and not self.weekly:
            raise ValueError("give at least one of ranges or weekly")
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


def departments_in_maintenance(windows: Iterable[MaintenanceConfig], now: float,
                               tz: ZoneInfo) -> dict[str, str]:
    """Department code -> the window's comment, for every window open at ``now``."""
    out: dict[str, str] = {}
    for window in windows:
        if window.department not in out and in_window(window, now, tz):
            out[window.department] = window.comment or "bảo trì theo lịch"
    return out
