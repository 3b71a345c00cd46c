"""Planned maintenance as the public status page sees it: instants and public wording only.

Windows come from two places: the config (``alerts.maintenance``: fixed ranges and weekly
slots in the province's local time) and operators' announcements (``OperatorWindow``).
Both are laid out here as ``[start, end)`` in unix seconds over a span of days, for the
availability bars (planned time) and the page's list of current and upcoming work. A
window's ``comment`` is an internal remark and is never carried over; only a config
window's ``public_note`` is, and everything else reads as the page's generic wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from alerts.maintenance import MaintenanceConfig
from ioc.store.maintenance_store import OperatorWindow

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    department: str          # "*": every department
    starts_at: float
    ends_at: float
    note: str | None         # public wording, when the config gives one

    def covers(self, departments: Iterable[str]) -> bool:
        return self.department == "*" or self.department in set(departments)


def _at(moment: datetime, tz: ZoneInfo) -> float:
    return moment.replace(tzinfo=tz).timestamp()


def _config_windows(window: MaintenanceConfig, start: float, end: float,
                    tz: ZoneInfo) -> list[PlannedWindow]:
    out: list[PlannedWindow] = []
    for fixed in window.ranges:
        a = _at(datetime.fromisoformat(fixed.start), tz)
        b = _at(datetime.fromisoformat(fixed.end), tz)
        out.append(PlannedWindow(window.department, a, b, window.public_note))
    first: date = datetime.fromtimestamp(start, tz).date() - timedelta(days=1)
    last: date = datetime.fromtimestamp(end, tz).date()
    for weekly in window.weekly:
        opens, closes = time.fromisoformat(weekly.start), time.fromisoformat(weekly.end)
        day = first
        while day <= last:
            if _DAYS[day.weekday()] in weekly.days:
                begins, ends = datetime.combine(day, opens), datetime.combine(day, closes)
                if ends <= begins:   # a slot running past midnight
                    ends += timedelta(days=1)
                out.append(PlannedWindow(window.department, _at(begins, tz), _at(ends, tz),
                                         window.public_note))
            day += timedelta(days=1)
    return out


def planned_windows(config: Iterable[MaintenanceConfig], announced: Iterable[OperatorWindow],
                    start: float, end: float, tz: ZoneInfo) -> list[PlannedWindow]:
    """Every window overlapping ``[start, end)``, in start order."""
    found = [w for c in config for w in _config_windows(c, start, end, tz)]
    found += [PlannedWindow(w.department, w.starts_at, w.ends_at, None) for w in announced]
    return sorted((w for w in found if w.starts_at < end and w.ends_at > start),
                  key=lambda w: (w.starts_at, w.ends_at, w.department))
