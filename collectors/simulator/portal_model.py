"""A believable province's dossiers and feedback reports, as a pure function of time and a seed.

The simulated public-service portal needs numbers that look like Hậu Giang's: dossiers arrive
mostly in office hours (07:30–11:30 and 13:30–17:00, Monday to Friday, Asia/Ho_Chi_Minh),
each procedure has a deadline in working days, about 99 % are resolved on time, a few wait for
the citizen to supplement papers or pay a fee, a few are returned or withdrawn; citizens send
about 3,100 feedback reports a year through the province's app.

Late dossiers come in episodes, as they do in a real office: most of the time a unit finishes
almost everything on time (``P_LATE``), and about once a year (``EPISODES_PER_MONTH``) it falls
behind for a few working days (an officer on leave, a system outage, a wave of land cases), when
a quarter of what arrives ends late. So a unit's overdue count sits still for weeks, then rises
for some days as those deadlines pass, and falls as the late dossiers are finished — not a
random walk that an alert rule would mistake for a trend every few minutes.

Every dossier is drawn whole (channel, deadline, what happens to it and when) at its arrival,
from a random stream per unit seeded by ``(seed, unit, period)``; what the portal reports at
``now`` is then just where each dossier stands at ``now``. So the numbers are the same for the
same ``now`` and seed however often, or in whatever order, they are asked for — tests step
time forward instead of sleeping. The reporting period is the calendar month; at its start
the counters fall and unfinished dossiers reappear as carried over.

Simplifications, on purpose: public holidays are ignored, and dossiers that arrived more than
40 days before the period are not simulated (the longest deadline is 20 working days).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ioc.domain import DossierCounts, FeedbackCounts

TIMEZONE = ZoneInfo("Asia/Ho_Chi_Minh")
UTC_OFFSET = 7 * 3600        # Asia/Ho_Chi_Minh keeps UTC+7 all year (no daylight saving)
DAY = 86400.0
WEEK = 7 * DAY
MONDAY = 4 * DAY             # 1970-01-05 00:00 was a Monday
WORK_PERIODS = ((7.5 * 3600, 11.5 * 3600), (13.5 * 3600, 17 * 3600))
WORKDAY = sum(end - start for start, end in WORK_PERIODS)   # 7.5 h of working time
WARM_UP = 40 * DAY           # simulate this far before the period so carry-over is real
DUE_SOON = WORKDAY           # due within one working day

# The catalogue of the province's online public services (as published: ~1,800 procedures,
# ~1,200 of them fully online).
CATALOGUE = {"total": 1812, "full_online": 1204, "partial_online": 431}

# Dossiers a month, by unit: the police, land, transport and business registration carry
# most of a province's load; each district committee handles several hundred.
MONTHLY_DOSSIERS: dict[str, int] = {
    "VP-UBND": 40, "SNV": 60, "STP": 400, "SKHDT": 600, "STC": 60, "SCT": 200,
    "SNNPTNT": 150, "SGTVT": 800, "SXD": 200, "STNMT": 900, "STTTT": 80, "SLDTBXH": 500,
    "SVHTTDL": 60, "SKHCN": 30, "SGDDT": 150, "SYT": 300, "TTR": 10, "BDT": 10,
    "BQLKCN": 40, "CAT": 1500,
    "VITHANH": 900, "NGABAY": 700, "LONGMY-TX": 650, "CHAUTHANH": 800, "CHAUTHANHA": 850,
    "LONGMY": 600, "PHUNGHIEP": 950, "VITHUY": 700,
}
YEARLY_FEEDBACK = 3100
# Where citizens' reports go: mostly the district committees (roads, order, environment).
FEEDBACK_SHARE: dict[str, int] = {
    "VITHANH": 16, "NGABAY": 10, "LONGMY-TX": 8, "CHAUTHANH": 10, "CHAUTHANHA": 10,
    "LONGMY": 7, "PHUNGHIEP": 11, "VITHUY": 8, "STNMT": 5, "SGTVT": 4, "CAT": 3, "SXD": 2,
    "SYT": 2, "SLDTBXH": 1, "SGDDT": 1, "STTTT": 1, "SCT": 1,
}

DEADLINE_DAYS = (1, 3, 5, 7, 10, 15, 20)
DEADLINE_WEIGHTS = (10, 20, 30, 15, 12, 8, 5)
FEEDBACK_DEADLINE_DAYS = 7
P_RETURNED = 0.006
P_WITHDRAWN = 0.004
P_SUPPLEMENT = 0.04
P_PAUSED = 0.015
P_LATE = 0.002               # outside an episode
P_LATE_EPISODE = 0.25        # while a unit is behind
EPISODES_PER_MONTH = 1 / 12  # a unit falls behind about once a year
EPISODE_DAYS = (2.0, 5.0)    # for this many working days
P_FEEDBACK_LATE = 0.005
OFF_HOURS_DOSSIERS = 0.06    # online dossiers still arrive at night, far fewer
OFF_HOURS_FEEDBACK = 0.35    # citizens use the app in the evening too

ONLINE, DIRECT, POSTAL = 0, 1, 2
RESOLVED, RETURNED, WITHDRAWN = 0, 1, 2
SUPPLEMENT, PAUSED = 1, 2
NEVER = math.inf


class WeeklyProfile:
    """Office hours as a weight per moment of the week, and "effective time" along it.

    ``eff(t)`` integrates the weight from a fixed origin; ``at(e)`` inverts it. With weight 1
    in office hours and 0 outside, adding seconds of effective time is adding working time.
    """

    def __init__(self, work: float, off: float) -> None:
        segments: list[tuple[float, float, float]] = []
        for day in range(7):
            base = day * DAY
            if day >= 5:
                segments.append((base, base + DAY, off))
                continue
            cursor = base
            for start, end in WORK_PERIODS:
                segments.append((cursor, base + start, off))
                segments.append((base + start, base + end, work))
                cursor = base + end
            segments.append((cursor, base + DAY, off))
        self._segments = [s for s in segments if s[1] > s[0]]
        self._ends = [s[1] for s in self._segments]
        self._cum: list[float] = []   # effective time at each segment's end
        total = 0.0
        for start, end, weight in self._segments:
            total += (end - start) * weight
            self._cum.append(total)
        self.per_week = total

    def eff(self, t: float) -> float:
        shifted = t + UTC_OFFSET - MONDAY
        weeks, pos = divmod(shifted, WEEK)
        index = bisect.bisect_right(self._ends, pos)
        index = min(index, len(self._segments) - 1)
        start, _end, weight = self._segments[index]
        before = self._cum[index - 1] if index else 0.0
        return weeks * self.per_week + before + (pos - start) * weight

    def at(self, e: float) -> float:
        weeks, rem = divmod(e, self.per_week)
        index = bisect.bisect_right(self._cum, rem)
        while index >= len(self._segments) or self._segments[index][2] == 0:
            if index >= len(self._segments):  # rounding put us at the week's very end
                weeks, rem, index = weeks + 1, 0.0, 0
            else:
                index += 1
        start, _end, weight = self._segments[index]
        before = self._cum[index - 1] if index else 0.0
        return weeks * WEEK + start + (rem - before) / weight - UTC_OFFSET + MONDAY


WORK = WeeklyProfile(1.0, 0.0)
DOSSIER_ARRIVALS = WeeklyProfile(1.0, OFF_HOURS_DOSSIERS)
FEEDBACK_ARRIVALS = WeeklyProfile(1.0, OFF_HOURS_FEEDBACK)


def in_office_hours(t: float) -> bool:
    pos = (t + UTC_OFFSET - MONDAY) % WEEK
    day, second = divmod(pos, DAY)
    return day < 5 and any(start <= second < end for start, end in WORK_PERIODS)


def add_working(t: float, seconds: float) -> float:
    """The moment ``seconds`` of working time after ``t`` (t outside hours: from next opening)."""
    return WORK.at(WORK.eff(t) + seconds)


def period_start(now: float) -> float:
    """Start of the reporting period (the local calendar month) that contains ``now``."""
    local = datetime.fromtimestamp(now, TIMEZONE)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def period_end(now: float) -> float:
    local = datetime.fromtimestamp(now, TIMEZONE).replace(day=1, hour=0, minute=0, second=0,
                                                           microsecond=0)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return local.replace(year=year, month=month).timestamp()


def _local_day(t: float) -> int:
    return int((t + UTC_OFFSET) // DAY)


@dataclass(slots=True)
class Dossier:
    arrival: float
    channel: int
    deadline: float
    end_at: float = NEVER     # resolved, returned or withdrawn at
    end_kind: int = RESOLVED
    wait_kind: int = 0        # 0 none, SUPPLEMENT or PAUSED
    wait_start: float = NEVER
    wait_end: float = NEVER


@dataclass(slots=True)
class Report:
    arrival: float
    deadline: float
    end_at: float


def _draw_dossier(rng: random.Random, arrival: float, p_late: float = P_LATE) -> Dossier:
    if in_office_hours(arrival):
        pick = rng.random()
        channel = ONLINE if pick < 0.6 else DIRECT if pick < 0.96 else POSTAL
    else:
        channel = ONLINE
    days = rng.choices(DEADLINE_DAYS, DEADLINE_WEIGHTS)[0]
    budget = days * WORKDAY
    start_e = WORK.eff(arrival)
    fate = rng.random()
    if fate < P_RETURNED:
        return Dossier(arrival, channel, WORK.at(start_e + budget),
                       end_at=WORK.at(start_e + rng.uniform(0.05, 0.5) * WORKDAY),
                       end_kind=RETURNED)
    if fate < P_RETURNED + P_WITHDRAWN:
        return Dossier(arrival, channel, WORK.at(start_e + budget),
                       end_at=WORK.at(start_e + rng.uniform(0.1, 0.8) * budget),
                       end_kind=WITHDRAWN)
    dossier = Dossier(arrival, channel, 0.0)
    stopped = 0.0  # working time the deadline clock stood still
    wait = rng.random()
    if wait < P_SUPPLEMENT + P_PAUSED:
        dossier.wait_kind = SUPPLEMENT if wait < P_SUPPLEMENT else PAUSED
        dossier.wait_start = WORK.at(start_e + rng.uniform(0.1, 0.5) * budget)
        dossier.wait_end = WORK.at(WORK.eff(dossier.wait_start + rng.uniform(0.5, 8) * DAY))
        stopped = WORK.eff(dossier.wait_end) - WORK.eff(dossier.wait_start)
    late = rng.random() < p_late
    share = rng.uniform(1.02, 1.5) if late else rng.uniform(0.25, 1.0)
    dossier.deadline = WORK.at(start_e + budget + stopped)
    dossier.end_at = WORK.at(start_e + share * budget + stopped)
    return dossier


def _draw_report(rng: random.Random, arrival: float) -> Report:
    budget = FEEDBACK_DEADLINE_DAYS * WORKDAY
    start_e = WORK.eff(arrival)
    late = rng.random() < P_FEEDBACK_LATE
    share = rng.uniform(1.05, 1.6) if late else rng.uniform(0.1, 1.0)
    return Report(arrival, WORK.at(start_e + budget), WORK.at(start_e + share * budget))


@dataclass(slots=True)
class _Stream:
    """One unit's arrivals, generated lazily in time order and kept for the period."""

    rng: random.Random
    rate: float               # arrivals per second of effective time
    next_e: float
    items: list[Dossier] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    episodes: tuple[tuple[float, float], ...] = ()   # (start, end) when the unit is behind

    def p_late(self, arrival: float) -> float:
        for start, end in self.episodes:
            if start <= arrival < end:
                return P_LATE_EPISODE
        return P_LATE


def _seed(seed: int, kind: str, code: str, start: float) -> int:
    digest = hashlib.sha256(f"{seed}:{kind}:{code}:{start:.0f}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def episodes(seed: int, code: str, since: float, until: float) -> tuple[tuple[float, float], ...]:
    """The stretches between ``since`` and ``until`` when ``code`` falls behind.

    Drawn per calendar month from ``(seed, code, month)`` alone, so a month's episodes are the
    same whichever period asks for them (the warm-up of one period is the end of the last).
    """
    found: list[tuple[float, float]] = []
    month = period_start(since)
    while month < until:
        end = period_end(month)
        rng = random.Random(_seed(seed, "episodes", code, month))
        if rng.random() < EPISODES_PER_MONTH:
            begin = WORK.at(WORK.eff(month + rng.uniform(0.0, end - month)))
            length = rng.uniform(*EPISODE_DAYS) * WORKDAY
            stop = WORK.at(WORK.eff(begin) + length)
            if stop > since and begin < until:
                found.append((begin, stop))
        month = end
    return tuple(found)


@dataclass(frozen=True, slots=True)
class PortalClock:
    """The simulated portal's time: ``scale`` times faster than real time from ``origin``.

    At scale 1 the portal keeps real time, so its numbers move at the province's pace: a small
    office receives a dossier every few days and nothing arrives at night. A demo runs it
    faster (``simulator.portal_time_scale``) so that nights and weekends pass in seconds.
    """

    origin: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError("portal time scale must be a finite number > 0")

    def at(self, real: float) -> float:
        return self.origin + (real - self.origin) * self.scale


class PortalModel:
    """The portal's statistics at any ``now``; caches the arrivals of the current period.

    ``min_monthly`` raises every unit's dossiers a month to at least that many (0: the
    published proportions, where the smallest offices receive ten a month).
    """

    def __init__(self, units: Iterable[str], *, seed: int = 0, min_monthly: int = 0) -> None:
        if min_monthly < 0:
            raise ValueError("min_monthly must be >= 0")
        self.units = [u for u in units if u in MONTHLY_DOSSIERS]
        self.seed = seed
        self.min_monthly = min_monthly
        self._period: float | None = None
        self._dossiers: dict[str, _Stream] = {}
        self._feedback: dict[str, _Stream] = {}

    def _reset(self, start: float) -> None:
        self._period = start
        origin = start - WARM_UP
        month = 30.44 / 7
        self._dossiers, self._feedback = {}, {}
        feedback_total = sum(FEEDBACK_SHARE.get(u, 0) for u in self.units) or 1
        for code in self.units:
            monthly = max(MONTHLY_DOSSIERS[code], self.min_monthly)
            rate = monthly / (DOSSIER_ARRIVALS.per_week * month)
            rng = random.Random(_seed(self.seed, "dossiers", code, start))
            self._dossiers[code] = _Stream(
                rng, rate, DOSSIER_ARRIVALS.eff(origin),
                episodes=episodes(self.seed, code, origin, period_end(start)))
            share = FEEDBACK_SHARE.get(code, 0) / feedback_total
            yearly = YEARLY_FEEDBACK * share
            frate = yearly / (FEEDBACK_ARRIVALS.per_week * 365.25 / 7)
            frng = random.Random(_seed(self.seed, "feedback", code, start))
            self._feedback[code] = _Stream(frng, frate, FEEDBACK_ARRIVALS.eff(origin))

    def _advance(self, now: float) -> float:
        start = period_start(now)
        if self._period != start:
            self._reset(start)
        for stream in self._dossiers.values():
            while stream.rate > 0 and DOSSIER_ARRIVALS.at(stream.next_e) <= now:
                arrival = DOSSIER_ARRIVALS.at(stream.next_e)
                dossier = _draw_dossier(stream.rng, arrival, stream.p_late(arrival))
                if dossier.end_at >= start:   # finished before the period: counts nowhere
                    stream.items.append(dossier)
                stream.next_e += stream.rng.expovariate(stream.rate)
        for stream in self._feedback.values():
            while stream.rate > 0 and FEEDBACK_ARRIVALS.at(stream.next_e) <= now:
                report = _draw_report(stream.rng, FEEDBACK_ARRIVALS.at(stream.next_e))
                if report.end_at >= start:
                    stream.reports.append(report)
                stream.next_e += stream.rng.expovariate(stream.rate)
        return start

    def dossiers(self, now: float, extra: Mapping[str, list[Dossier]] | None = None
                 ) -> dict[str, DossierCounts]:
        """Every unit's dossier counters for the period containing ``now``."""
        start = self._advance(now)
        result = {}
        for code, stream in self._dossiers.items():
            items = stream.items
            if extra and code in extra:
                items = [*items, *extra[code]]
            result[code] = count_dossiers(items, start, now)
        return result

    def feedback(self, now: float) -> dict[str, FeedbackCounts]:
        start = self._advance(now)
        return {code: count_reports(stream.reports, start, now)
                for code, stream in self._feedback.items() if stream.rate > 0}


def count_dossiers(items: Iterable[Dossier], start: float, now: float) -> DossierCounts:
    """Where each dossier stands at ``now``, counted for the period beginning at ``start``."""
    c = dict.fromkeys(("received_online", "received_direct", "received_postal",
                       "carried_over", "resolved_early", "resolved_ontime", "resolved_late",
                       "in_progress_ontime", "in_progress_overdue", "waiting_supplement",
                       "paused", "returned", "withdrawn", "due_soon"), 0)
    channels = ("received_online", "received_direct", "received_postal")
    for d in items:
        if d.arrival > now or d.end_at < start:
            continue
        if d.arrival >= start:
            c[channels[d.channel]] += 1
        else:
            c["carried_over"] += 1
        if d.end_at <= now:
            if d.end_kind == RETURNED:
                c["returned"] += 1
            elif d.end_kind == WITHDRAWN:
                c["withdrawn"] += 1
            elif d.end_at > d.deadline:
                c["resolved_late"] += 1
            elif _local_day(d.end_at) < _local_day(d.deadline):
                c["resolved_early"] += 1
            else:
                c["resolved_ontime"] += 1
        elif d.wait_start <= now < d.wait_end:
            c["waiting_supplement" if d.wait_kind == SUPPLEMENT else "paused"] += 1
        elif now > d.deadline:
            c["in_progress_overdue"] += 1
        else:
            c["in_progress_ontime"] += 1
            if WORK.eff(d.deadline) - WORK.eff(now) <= DUE_SOON:
                c["due_soon"] += 1
    return DossierCounts(**c)


def count_reports(items: Iterable[Report], start: float, now: float) -> FeedbackCounts:
    received = in_progress = overdue = ontime = late = 0
    for r in items:
        if r.arrival > now or r.end_at < start:
            continue
        if r.arrival >= start:
            received += 1
        if r.end_at <= now:
            if r.end_at > r.deadline:
                late += 1
            else:
                ontime += 1
        elif now > r.deadline:
            overdue += 1
        else:
            in_progress += 1
    return FeedbackCounts(received=received, in_progress=in_progress, overdue=overdue,
                          resolved_ontime=ontime, resolved_late=late)


def spike_dossiers(since: float, count: int) -> list[Dossier]:
    """A backlog spike: ``count`` dossiers received at once, none of them moving."""
    deadline = add_working(since, 10 * WORKDAY)
    return [Dossier(since, DIRECT, deadline) for _ in range(count)]


def overdue_dossiers(since: float, count: int) -> list[Dossier]:
    """An overdue surge: ``count`` dossiers in progress whose deadline has passed."""
    return [Dossier(since - 12 * DAY, DIRECT, since - 3600.0) for _ in range(count)]
