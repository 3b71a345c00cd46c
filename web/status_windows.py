"""Planned maintenance as the public status page sees it: instants and public wording only.

Windows come from two places: the config (``alerts.maintenance``: fixed ranges and weekly
slots in the province's local time) and operators' announcements (``OperatorWindow``).
Both are laid out here as ``[start, end)`` in unix seconds over a span of days, for the
availability bars (planned time) and the page's list of current and upcoming work. A
window's ``comment`` is an internal remark and is never carried over; only a config
window's ``public_note`` (and ``public_note_en``) is, and everything else reads as the
page's generic wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from alerts.maintenance import MaintenanceConfig, scheduled_spans
from ioc.store.maintenance_store import OperatorWindow


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    department: str          # "*": every department
    starts_at: float
    ends_at: float
    note: str | None         # public wording, when the config gives one
    note_en: str | None = None  # the same for the English page

    def covers(self, departments: Iterable[str]) -> bool:
        return self.department == "*" or self.department in set(departments)


def _config_windows(window: MaintenanceConfig, start: float, end: float,
                    tz: ZoneInfo) -> list[PlannedWindow]:
    return [PlannedWindow(window.department, a, b, window.public_note, window.public_note_en)
            for a, b in scheduled_spans(window, start, end, tz)]


def planned_windows(config: Iterable[MaintenanceConfig], announced: Iterable[OperatorWindow],
                    start: float, end: float, tz: ZoneInfo) -> list[PlannedWindow]:
    """Every window overlapping ``[start, end)``, in start order."""
    found = [w for c in config for w in _config_windows(c, start, end, tz)]
    found += [PlannedWindow(w.department, w.starts_at, w.ends_at, None) for w in announced]
    return sorted((w for w in found if w.starts_at < end and w.ends_at > start),
                  key=lambda w: (w.starts_at, w.ends_at, w.department))
