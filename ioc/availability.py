"""Availability, defined once: time-weighted from polls, unknown and planned time apart.

The rule (docs/reports.md has worked examples):

* A poll's verdict (``ioc_target_up``) holds from the poll until the next poll, but for at
  most ``hold`` seconds (twice the target's interval: one skipped slot does not turn into
  unknown time, a restart or a stopped ioc does).
* Time no verdict covers, after the target's first poll ever, is **unknown**: ioc did not
  look, so it is neither up nor down. It is reported, never counted as up.
* Time before the target's first poll ever is **not monitored** (a target added in the
  middle of a month is judged from its first poll), and time after ``now`` does not exist yet.
* Time inside a maintenance window of the target's department is **planned**: shown, and
  left out of the ratio whatever the polls said.
* availability = up / (up + down). Departments and the province add their targets' seconds
  first and divide once, so a target polled for a day weighs a day, not a month.

Everything here is pure: periods are computed from a time zone passed in, ``now`` is an
argument, and the store side (:mod:`ioc.store.availability`) only supplies segments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

HOLD_INTERVALS = 2.0  # a verdict holds for this many poll intervals at most


@dataclass(frozen=True, slots=True)
class Segment:
    """``[start, end)`` during which the target was up (or down)."""

    start: float
    end: float
    up: bool


@dataclass(frozen=True, slots=True)
class Tally:
    """Seconds of a period by kind; they add up to the period (up to ``now``)."""

    up: float = 0.0
    down: float = 0.0
    unknown: float = 0.0
    planned: float = 0.0
    not_monitored: float = 0.0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.up + other.up, self.down + other.down, self.unknown + other.unknown,
                     self.planned + other.planned, self.not_monitored + other.not_monitored)

    @property
    def availability(self) -> float | None:
        """up / (up + down), or None when nothing was known (no ratio is better than 100 %)."""
        known = self.up + self.down
        return self.up / known if known > 0 else None

    def to_dict(self) -> dict[str, float | None]:
        return {"availability": self.availability, "up_seconds": self.up,
                "down_seconds": self.down, "unknown_seconds": self.unknown,
                "planned_seconds": self.planned, "not_monitored_seconds": self.not_monitored}


def segments_from_polls(polls: Iterable[tuple[float, bool]], hold: float) -> list[Segment]:
    """Each poll's verdict until the next poll or ``hold`` seconds, same verdicts merged."""
    out: list[Segment] = []
    previous: tuple[float, bool] | None = None

    def close(ts: float, up: bool, until: float) -> None:
        end = min(until, ts + hold)
        if out and out[-1].up == up and out[-1].end == ts:
            out[-1] = Segment(out[-1].start, end, up)
        else:
            out.append(Segment(ts, end, up))

    for ts, up in polls:
        if previous is not None:
            if ts <= previous[0]:
                raise ValueError(f"polls are not in time order at {ts}")
            close(previous[0], previous[1], ts)
        previous = (ts, up)
    if previous is not None:
        close(previous[0], previous[1], previous[0] + hold)
    return out


def merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching ``[start, end)`` intervals joined, in order."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def tally(segments: Sequence[Segment], start: float, end: float, *, now: float,
          monitored_from: float | None, planned: Sequence[tuple[float, float]] = ()
          ) -> Tally:
    """The period ``[start, end)`` of one target, classified second by second.

    ``segments`` are sorted and do not overlap (as :func:`segments_from_polls` makes them);
    ``planned`` is the target's maintenance windows, ``monitored_from`` its first poll ever
    (None: never polled, the whole period is not monitored).
    """
    end = min(end, now)
    if end <= start:
        return Tally()
    windows = merge((max(a, start), min(b, end)) for a, b in planned)
    watch_from = end if monitored_from is None else min(max(monitored_from, start), end)
    cuts = {start, end, watch_from}
    for seg in segments:
        if seg.end > start and seg.start < end:
            cuts.add(max(seg.start, start))
            cuts.add(min(seg.end, end))
    for a, b in windows:
        cuts.add(a)
        cuts.add(b)
    points = sorted(cuts)
    up = down = unknown = plan = unmonitored = 0.0
    si = wi = 0
    for a, b in pairwise(points):
        width = b - a
        if a < watch_from:
            unmonitored += width
            continue
        while wi < len(windows) and windows[wi][1] <= a:
            wi += 1
        if wi < len(windows) and windows[wi][0] <= a:
            plan += width
            continue
        while si < len(segments) and segments[si].end <= a:
            si += 1
        if si < len(segments) and segments[si].start <= a:
            if segments[si].up:
                up += width
            else:
                down += width
        else:
            unknown += width
    return Tally(up, down, unknown, plan, unmonitored)


# -- periods -----------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def is_week(text: str) -> bool:
    """Whether ``text`` has an ISO week's form (2026-W48), as ``--week`` and ``week=`` take."""
    return _WEEK.match(text) is not None


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar day, ISO week or month in the province's time zone, as unix seconds."""

    label: str
    kind: str        # "day", "week" or "month"
    start: float
    end: float
    first_day: date
    days: int

    def day_bounds(self, tz: ZoneInfo) -> list[tuple[date, float, float]]:
        """Each local day of the period with its bounds (days are not all 86,400 s long
        everywhere; in Asia/Ho_Chi_Minh they are, but nothing here assumes it)."""
        out = []
        for i in range(self.days):
            day = self.first_day + timedelta(days=i)
            out.append((day, _local(day, tz), _local(day + timedelta(days=1), tz)))
        return out


def _local(day: date, tz: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def parse_period(text: str, tz: ZoneInfo) -> Period:
    """``2026-11`` (a month), ``2026-W48`` (an ISO week) or ``2026-11-30`` (a day)."""
    try:
        if match := _MONTH.match(text):
            first = date(int(match[1]), int(match[2]), 1)
            after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            kind = "month"
        elif match := _WEEK.match(text):
            first = date.fromisocalendar(int(match[1]), int(match[2]), 1)
            after = first + timedelta(days=7)
            kind = "week"
        elif match := _DAY.match(text):
            first = date(int(match[1]), int(match[2]), int(match[3]))
            after = first + timedelta(days=1)
            kind = "day"
        else:
            raise ValueError("expected a month (2026-11), an ISO week (2026-W48) or a day "
                             "(2026-11-30)")
    except ValueError as exc:
        raise ValueError(f"period {text!r}: {exc}") from None
    return Period(text, kind, _local(first, tz), _local(after, tz), first, (after - first).days)
