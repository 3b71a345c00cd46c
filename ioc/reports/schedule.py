"""Scheduled reports: the ``reports:`` section and when each schedule is due (pure; ``now``
passed in).

A schedule names a cron expression in the province's time zone and the period each firing
reports on (``previous_week``: the ISO week before the firing's week, and so on). Fire times
come from APScheduler 3's ``CronTrigger`` — its calendar arithmetic (month lengths, time
zones, day-of-week lists) is what a hand-written cron would get wrong. Only the triggers are
used, not APScheduler's scheduler: the alert leader's own task (``service.report_schedule``)
asks :func:`due_run` what is due, so leadership, the fence and the store decide who sends,
and a restart simply asks again.

:func:`due_run` answers with the *latest* firing at or before ``now`` if it is at most
``grace`` old: a service that was down at 07:30 on Monday sends that week's report when it
starts (catch-up), and one that was down for a month sends the latest period only, not every
period it missed. Whether that run was already sent is the store's answer (one row per
schedule and period, ``ioc.store.report_runs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator

from ioc.config_types import Duration, Name, SigningSecret, StrictModel

PeriodKind = Literal["previous_day", "previous_week", "previous_month"]
ReportFormat = Literal["pdf", "xlsx", "csv", "html"]
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMBER = re.compile(r"\d")
# Upper bound of fire times walked back over ``grace`` (a cron firing every minute with a
# grace of a month would otherwise walk 43,200 times per check).
MAX_WALK = 5_000


def trigger_for(cron: str, tz: ZoneInfo) -> CronTrigger:
    """The trigger of a five-field cron expression (minute hour day month day-of-week).

    Day-of-week must be written with names (``mon``, ``mon-fri``, ``sat,sun``): APScheduler 3
    counts days from Monday = 0 where cron counts from Sunday = 0, so ``1`` would silently
    mean Tuesday. Raises ValueError with what is wrong.
    """
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"cron {cron!r}: expected 5 fields (minute hour day month "
                         f"day-of-week), got {len(fields)}")
    if _NUMBER.search(fields[4]):
        raise ValueError(f"cron {cron!r}: write the day of week with names (mon, tue, wed, "
                         "thu, fri, sat, sun; mon-fri), not numbers: cron and APScheduler "
                         "number the days differently")
    try:
        return CronTrigger.from_crontab(cron, timezone=tz)
    except ValueError as exc:
        raise ValueError(f"cron {cron!r}: {exc}") from None


def _default_formats() -> list[ReportFormat]:
    return ["pdf", "xlsx"]


class ScheduleConfig(StrictModel):
    """One scheduled report: when, which period, to whom, in which formats."""

    name: Name = Field(description="the schedule's name (``ioc report --send NAME``)")
    cron: str = Field(description="minute hour day month day-of-week, in province.timezone; "
                                  "day-of-week by name: \"30 7 * * mon\"")
    period: PeriodKind = Field(description="previous_day, previous_week (ISO) or "
                                           "previous_month of the firing")
    receivers: list[Name] = Field(min_length=1, description="alerts.receivers to send to")
    formats: list[ReportFormat] = Field(default_factory=_default_formats, min_length=1,
                                        description="files attached to e-mails")
    lang: Literal["vi", "en"] = Field("vi", description="language of the report")
    department: str | None = Field(None, description="one department's report (its code)")
    grace: Duration = Field(7 * 86400.0, description="a firing missed while ioc was down is "
                                                     "still sent within this time")

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        trigger_for(value, ZoneInfo("UTC"))
        return value

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a format is listed twice")
        return value


class ReportsConfig(StrictModel):
    schedules: list[ScheduleConfig] = Field(default_factory=list,
                                            description="reports sent on a calendar")
    public_url: str | None = Field(
        None, pattern=r"^https?://",
        description="base of the download links in messages; default: alerts.external_url")
    link_secret: SigningSecret | None = Field(
        None, description="signs the download links in messages so they open without a "
                          "token; write ${IOC_REPORT_LINK_SECRET}; at least 16 characters")
    link_ttl: Duration = Field(30 * 86400.0, ge=3600.0, le=366 * 86400.0,
                               description="how long a signed download link works")

    @field_validator("schedules")
    @classmethod
    def _unique(cls, value: list[ScheduleConfig]) -> list[ScheduleConfig]:
        names = [s.name for s in value]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"schedules[{index}]: duplicate schedule name {name!r}")
        return value


def period_of(kind: str, fired: datetime) -> str:
    """The period a firing at local time ``fired`` reports on, as ``ioc report --period``
    writes it: ``2026-11-30``, ``2026-W48`` or ``2026-11``."""
    day = fired.date()
    if kind == "previous_day":
        return (day - timedelta(days=1)).isoformat()
    if kind == "previous_week":
        year, week, _ = (day - timedelta(days=7)).isocalendar()
        return f"{year}-W{week:02d}"
    if kind == "previous_month":
        last = date(day.year, day.month, 1) - timedelta(days=1)
        return f"{last.year}-{last.month:02d}"
    raise ValueError(f"period kind {kind!r}: expected previous_day, previous_week or "
                     "previous_month")


@dataclass(frozen=True, slots=True)
class Run:
    """One firing of one schedule: what to send (the pair is sent at most once ever)."""

    schedule: str
    period: str
    fired_at: float


def fire_times(trigger: CronTrigger, start: float, end: float, tz: ZoneInfo) -> list[float]:
    """The trigger's fire times in ``[start, end]`` (at most MAX_WALK of them, the latest)."""
    out: list[float] = []
    moment = datetime.fromtimestamp(start, tz)
    previous = None
    while True:
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None or fire.timestamp() > end:
            return out[-MAX_WALK:]
        out.append(fire.timestamp())
        if len(out) > 2 * MAX_WALK:
            del out[:MAX_WALK]
        previous = fire
        moment = fire + timedelta(seconds=1)


def due_run(schedule: ScheduleConfig, tz: ZoneInfo, now: float) -> Run | None:
    """The latest firing at or before ``now`` that is at most ``grace`` old, or None."""
    trigger = trigger_for(schedule.cron, tz)
    times = fire_times(trigger, now - schedule.grace, now, tz)
    if not times:
        return None
    fired = times[-1]
    return Run(schedule.name, period_of(schedule.period, datetime.fromtimestamp(fired, tz)),
               fired)


def next_fire(schedule: ScheduleConfig, tz: ZoneInfo, now: float) -> float | None:
    """The first firing after ``now``."""
    trigger = trigger_for(schedule.cron, tz)
    fire = trigger.get_next_fire_time(None, datetime.fromtimestamp(now, tz)
                                      + timedelta(seconds=1))
    return None if fire is None else fire.timestamp()


def file_name(period: str, fmt: str, lang: str, department: str | None = None) -> str:
    """``bao-cao-2026-11.pdf`` (``report-2026-11.pdf`` in English; ``-STP`` for a
    department's): the name of an attached report."""
    stem = "bao-cao" if lang == "vi" else "report"
    return f"{stem}-{period}{'-' + department if department else ''}.{fmt}"
