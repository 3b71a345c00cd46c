"""On call: the duty roster (lịch trực) and escalation policies, as config and as pure logic.

A province's IOC works in shifts: each team has a duty officer for the day (a rotation through
its people, a day's override, a holiday replacement), a team lead above them and the centre's
director above everyone. This module answers, for any moment passed in, who is on duty and
who is next, and when each step of an escalation policy is due. Nothing here reads the clock
or does I/O; :mod:`alerts.escalation` runs it, :mod:`ioc.store.oncall` keeps its state.

Shifts are counted in *duty days*: duty day D starts at ``handoff`` (local time, the
province's zone) on calendar day D and ends at the next day's handoff, so with a 07:30
handoff the officer of Monday still answers at 03:00 on Tuesday. With ``handoff: "00:00"`` the
shift changes at midnight. For each team and duty day the first that applies wins: an
override for that day, the team's holiday officer on a public holiday, the rotation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    field_validator,
    model_validator,
)

from alerts.matchers import Matcher, check_matchers, matches_all, parse_matchers
from alerts.notifiers.email import EmailConfig
from alerts.routing import DurationOrZero
from ioc.config_types import Duration, ListenAddress, Name, SigningSecret, StrictModel

ONCALL_PREFIX = "oncall:"  # a route receiver "oncall:TEAM": the team's on-duty person
SNOOZE_SECONDS = 3600.0    # "Tạm ẩn 1 giờ"
LOOKAHEAD_DAYS = 62        # how far ahead "next on duty" is searched


def _hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 07:30 as the sexagesimal number 450.
        if 0 <= value < 24 * 60:
            return time(value // 60, value % 60)
    if isinstance(value, str):
        try:
            hours, minutes = value.strip().split(":")
            return time(int(hours), int(minutes))
        except ValueError:
            pass
    raise ValueError(f'expected a local time HH:MM such as "07:30", got {value!r}')


LocalTime = Annotated[time, BeforeValidator(_hhmm),
                      PlainSerializer(lambda t: t.strftime("%H:%M"), when_used="json")]


class PersonConfig(StrictModel):
    id: Name = Field(description="referred to by teams and policies")
    name: str = Field(min_length=1, max_length=200, description="shown in messages and pages")
    telegram: str | None = Field(None, pattern=r"^-?[0-9]{1,20}$",
                                 description="Telegram user id (= the private chat's id)")
    zalo: str | None = Field(None, max_length=64, description="user_id of the follower in "
                                                             "the Zalo OA")
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=254,
                              description="e-mail address")


class RotationConfig(StrictModel):
    start: Date = Field(description="first duty day of the first person")
    days: int = Field(1, ge=1, le=31, description="length of one person's turn in days "
                                                  "(7: a weekly rotation)")
    handoff: LocalTime = Field("07:30", validate_default=True,
                               description="local time the shift changes")
    people: list[str] = Field(min_length=1, description="person ids, in turn")


class OverrideConfig(StrictModel):
    date: Date = Field(description="the duty day taken over")
    person: str = Field(description="person id on duty that day instead")


class TeamConfig(StrictModel):
    name: Name = Field(description="team name, e.g. vanhanh")
    lead: str | None = Field(None, description="person id of the team lead")
    rotation: RotationConfig
    holiday_person: str | None = Field(None, description="on duty on public holidays")
    overrides: list[OverrideConfig] = Field(default_factory=list)


class HolidayConfig(StrictModel):
    date: Date
    name: str = Field("", max_length=200, description="e.g. Tết Dương lịch")


class RosterConfig(StrictModel):
    """What an admin may edit in the console; stored in the database, config.yaml seeds it."""

    people: list[PersonConfig] = Field(default_factory=list)
    teams: list[TeamConfig] = Field(default_factory=list)
    holidays: list[HolidayConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self) -> RosterConfig:
        ids = [p.id for p in self.people]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"people: duplicate id(s) {', '.join(dup)}")
        names = [t.name for t in self.teams]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"teams: duplicate name(s) {', '.join(dup)}")
        known = set(ids)
        for index, team in enumerate(self.teams):
            where = f"teams[{index}]"
            refs = [(f"{where}.lead", team.lead), (f"{where}.holiday_person",
                                                   team.holiday_person)]
            refs += [(f"{where}.rotation.people[{i}]", p)
                     for i, p in enumerate(team.rotation.people)]
            refs += [(f"{where}.overrides[{i}].person", o.person)
                     for i, o in enumerate(team.overrides)]
            for path, ref in refs:
                if ref is not None and ref not in known:
                    raise ValueError(f"{path}: unknown person {ref!r}")
        return self

    def digest(self) -> str:
        """Identifies a version of the roster (the config's seed is compared by it)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class StepConfig(StrictModel):
    after: DurationOrZero = Field(description="since the alert fired, unacknowledged")
    notify: list[str] = Field(min_length=1, description="oncall, lead, oncall:TEAM, "
                                                        "lead:TEAM or a person id")


class PolicyConfig(StrictModel):
    name: Name
    matchers: list[str] = Field(default_factory=list, description="alerts it applies to")
    team: str = Field(description="the team whose oncall and lead the steps mean")
    steps: list[StepConfig] = Field(min_length=1)
    repeat: Duration | None = Field(None, description="after the last step, notify "
                                                      "everyone again this often")

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, value: list[str]) -> list[str]:
        return check_matchers(value)

    @field_validator("steps")
    @classmethod
    def _check_order(cls, value: list[StepConfig]) -> list[StepConfig]:
        for index in range(1, len(value)):
            if value[index].after <= value[index - 1].after:
                raise ValueError(f"steps[{index}].after must be later than steps[{index - 1}]"
                                 ".after")
        return value


class OncallTelegramConfig(StrictModel):
    bot_token: SecretStr = Field(description="from @BotFather; write ${ENV_VAR}")
    api_url: str = Field("https://api.telegram.org", pattern=r"^https?://",
                         description="Bot API base URL")
    poll_timeout: Duration = Field(30.0, description="long-poll wait of one getUpdates")
    min_interval: Duration = Field(1.0, description="least time between two messages to a "
                                                    "person")
    timeout: Duration = Field(10.0, description="how long one send may take")


class OncallZaloConfig(StrictModel):
    access_token: SecretStr = Field(description="OA access token; write ${ENV_VAR}")
    refresh_token: SecretStr | None = None
    app_id: str | None = None
    secret_key: SecretStr | None = None
    api_url: str = Field("https://openapi.zalo.me", pattern=r"^https?://")
    oauth_url: str = Field("https://oauth.zaloapp.com", pattern=r"^https?://")
    timeout: Duration = 10.0


class OncallEmailConfig(StrictModel):
    sender: str = Field(description="From: address")
    smarthost: ListenAddress = Field(description="SMTP relay HOST:PORT")
    tls: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    verify_tls: bool = True
    timeout: Duration = 10.0

    def for_person(self, address: str) -> EmailConfig:
        # Values validated already (durations in seconds): constructed, not re-validated.
        return EmailConfig.model_construct(**{**self.model_dump(), "to": [address],
                                              "send_resolved": True})


class OncallConfig(RosterConfig):
    """``alerts.oncall``: the roster (the database's seed), policies and channels."""

    policies: list[PolicyConfig] = Field(default_factory=list)
    telegram: OncallTelegramConfig | None = None
    email: OncallEmailConfig | None = None
    zalo: OncallZaloConfig | None = None
    link_secret: SigningSecret | None = Field(None, description="HMAC key of the ack links; "
                                                            "write ${ENV_VAR}")
    link_ttl: Duration = Field(12 * 3600.0, description="how long an ack link is valid")
    link_base_url: str | None = Field(None, pattern=r"^https?://",
                                      description="ioc's address as on-call staff reach it")

    @model_validator(mode="after")
    def _check_policies(self) -> OncallConfig:
        teams = {t.name for t in self.teams}
        people = {p.id for p in self.people}
        names = [p.name for p in self.policies]
        for index, policy in enumerate(self.policies):
            where = f"policies[{index}]"
            if policy.name in names[:index]:
                raise ValueError(f"{where}.name: duplicate policy {policy.name!r}")
            if policy.team not in teams:
                raise ValueError(f"{where}.team: unknown team {policy.team!r}")
            for s, step in enumerate(policy.steps):
                for t, target in enumerate(step.notify):
                    problem = target_problem(target, teams, people)
                    if problem:
                        raise ValueError(f"{where}.steps[{s}].notify[{t}]: {problem}")
        return self

    def roster(self) -> RosterConfig:
        return RosterConfig(people=self.people, teams=self.teams, holidays=self.holidays)


def target_problem(target: str, teams: Iterable[str], people: Iterable[str]) -> str | None:
    kind, _, team = target.partition(":")
    if kind in ("oncall", "lead") and team:
        return None if team in set(teams) else f"unknown team {team!r}"
    if target in ("oncall", "lead") or target in set(people):
        return None
    return f"unknown person {target!r} (or write oncall, lead, oncall:TEAM, lead:TEAM)"


# --------------------------------------------------------------------------------------------
# Who is on duty


@dataclass(frozen=True, slots=True)
class Duty:
    team: str
    person: str          # person id
    reason: str          # rotation, override, holiday
    starts_at: float     # unix seconds: the shift's start
    ends_at: float

    def to_dict(self, roster: Roster) -> dict[str, Any]:
        person = roster.people.get(self.person)
        return {"person": self.person, "name": person.name if person else self.person,
                "reason": self.reason, "starts_at": self.starts_at, "ends_at": self.ends_at}


class Roster:
    """A validated roster with the lookups the runtime needs."""

    def __init__(self, config: RosterConfig, timezone: str) -> None:
        self.config = config
        self.tz = ZoneInfo(timezone)
        self.people = {p.id: p for p in config.people}
        self.teams = {t.name: t for t in config.teams}
        self.holidays = {h.date: h.name for h in config.holidays}
        self._telegram = {p.telegram: p for p in config.people if p.telegram}

    def by_telegram(self, user_id: int | str) -> PersonConfig | None:
        return self._telegram.get(str(user_id))

    def duty_day(self, team: TeamConfig, now: float) -> Date:
        local = datetime.fromtimestamp(now, self.tz)
        day = local.date()
        return day - timedelta(days=1) if local.time() < team.rotation.handoff else day

    def shift_start(self, team: TeamConfig, day: Date) -> float:
        return datetime.combine(day, team.rotation.handoff, self.tz).timestamp()

    def person_on(self, team: TeamConfig, day: Date) -> tuple[str, str]:
        """(person id, reason) for a team's duty day."""
        for override in reversed(team.overrides):  # the latest entry for a day wins
            if override.date == day:
                return override.person, "override"
        if day in self.holidays and team.holiday_person:
            return team.holiday_person, "holiday"
        rotation = team.rotation
        turn = (day - rotation.start).days // rotation.days
        return rotation.people[turn % len(rotation.people)], "rotation"

    def on_duty(self, team_name: str, now: float) -> Duty | None:
        team = self.teams.get(team_name)
        if team is None:
            return None
        day = self.duty_day(team, now)
        person, reason = self.person_on(team, day)
        return Duty(team.name, person, reason, self.shift_start(team, day),
                    self.shift_start(team, day + timedelta(days=1)))

    def next_duty(self, team_name: str, now: float) -> Duty | None:
        """The next shift whose person differs from now's (None within the look-ahead)."""
        team = self.teams.get(team_name)
        current = self.on_duty(team_name, now)
        if team is None or current is None:
            return None
        day = self.duty_day(team, now)
        for ahead in range(1, LOOKAHEAD_DAYS + 1):
            person, reason = self.person_on(team, day + timedelta(days=ahead))
            if person != current.person:
                start = day + timedelta(days=ahead)
                return Duty(team.name, person, reason, self.shift_start(team, start),
                            self.shift_start(team, start + timedelta(days=1)))
        return None

    def resolve(self, target: str, team: str, now: float) -> str | None:
        """A policy or route target → person id, at ``now`` (None: nobody, e.g. no lead)."""
        kind, _, named = target.partition(":")
        if kind in ("oncall", "lead"):
            team_name = named or team
            if kind == "lead":
                found = self.teams.get(team_name)
                return found.lead if found is not None else None
            duty = self.on_duty(team_name, now)
            return duty.person if duty is not None else None
        return target if target in self.people else None

    def view(self, now: float) -> list[dict[str, Any]]:
        """``GET /api/v1/oncall``: for every team who is on duty now and who is next."""
        out = []
        for name, team in self.teams.items():
            duty = self.on_duty(name, now)
            nxt = self.next_duty(name, now)
            lead = self.people.get(team.lead) if team.lead else None
            day = self.duty_day(team, now)
            out.append({
                "team": name,
                "now": duty.to_dict(self) if duty else None,
                "next": nxt.to_dict(self) if nxt else None,
                "lead": {"person": lead.id, "name": lead.name} if lead else None,
                "holiday": self.holidays.get(day),
            })
        return out


# --------------------------------------------------------------------------------------------
# Escalation steps


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    matchers: tuple[Matcher, ...]
    team: str
    steps: tuple[tuple[float, tuple[str, ...]], ...]   # (after, targets)
    repeat: float | None

    @classmethod
    def from_config(cls, config: PolicyConfig) -> Policy:
        return cls(config.name, parse_matchers(config.matchers), config.team,
                   tuple((s.after, tuple(s.notify)) for s in config.steps), config.repeat)

    def step_at(self, started: float, index: int) -> float | None:
        """When step ``index`` (0-based; past the last step: the repeats) is due."""
        if index < len(self.steps):
            return started + self.steps[index][0]
        if self.repeat is None:
            return None
        return started + self.steps[-1][0] + (index - len(self.steps) + 1) * self.repeat

    def targets(self, index: int) -> tuple[str, ...]:
        """Who a step notifies; a repeat notifies everyone of every step again."""
        if index < len(self.steps):
            return self.steps[index][1]
        seen: dict[str, None] = {}
        for _, targets in self.steps:
            seen.update(dict.fromkeys(targets))
        return tuple(seen)

    def due(self, started: float, sent: int, now: float) -> list[int]:
        """The steps due at ``now`` that were not sent yet (``sent`` of them were).

        Every configured step that came due is returned, none skipped (after a restart
        several may be due at once); overdue repeats collapse to the latest one, since
        repeating the same page three times at once tells nobody anything new.
        """
        out: list[int] = []
        index = sent
        while True:
            at = self.step_at(started, index)
            if at is None or at > now:
                break
            if index >= len(self.steps) and out and out[-1] >= len(self.steps):
                out[-1] = index
            else:
                out.append(index)
            index += 1
        return out


def match_policy(policies: Sequence[Policy], labels: Mapping[str, str]) -> Policy | None:
    """The first policy whose matchers the alert's labels satisfy."""
    for policy in policies:
        if matches_all(policy.matchers, labels):
            return policy
    return None
