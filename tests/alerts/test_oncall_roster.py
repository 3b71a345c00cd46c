"""The duty roster and escalation steps: pure functions of a config and a time passed in."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from alerts.oncall import OncallConfig, Policy, PolicyConfig, Roster, match_policy

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def at(text: str) -> float:
    """Local Hậu Giang time "2027-01-01 07:29" as unix seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=TZ).timestamp()


PEOPLE = [
    {"id": "an", "name": "Nguyễn Văn An", "telegram": "1001", "email": "an@hg.gov.vn"},
    {"id": "binh", "name": "Trần Thị Bình", "telegram": "1002"},
    {"id": "cuong", "name": "Lê Văn Cường", "zalo": "z-3"},
    {"id": "dung", "name": "Phạm Dũng (trưởng nhóm)", "telegram": "1004"},
    {"id": "giamdoc", "name": "Giám đốc Trung tâm", "email": "gd@hg.gov.vn"},
]


def oncall(**team: object) -> OncallConfig:
    base = {"name": "vanhanh", "lead": "dung",
            "rotation": {"start": "2026-12-28", "days": 1, "handoff": "07:30",
                         "people": ["an", "binh", "cuong"]}}
    return OncallConfig.model_validate({
        "people": PEOPLE, "teams": [{**base, **team}],
        "holidays": [{"date": "2027-01-01", "name": "Tết Dương lịch"}]})


def test_daily_rotation_changes_at_the_handoff_not_at_midnight() -> None:
    roster = Roster(oncall(), "Asia/Ho_Chi_Minh")
    # 2026-12-28 is an's day, 29 binh's, 30 cuong's, 31 an's again.
    assert roster.on_duty("vanhanh", at("2026-12-28 07:30")).person == "an"
    assert roster.on_duty("vanhanh", at("2026-12-29 00:30")).person == "an"  # still an's shift
    assert roster.on_duty("vanhanh", at("2026-12-29 07:29")).person == "an"
    duty = roster.on_duty("vanhanh", at("2026-12-29 07:30"))
    assert duty is not None and duty.person == "binh"
    assert duty.starts_at == at("2026-12-29 07:30") and duty.ends_at == at("2026-12-30 07:30")
    assert roster.on_duty("vanhanh", at("2026-12-31 12:00")).person == "an"
    # Before the rotation's start the turn counts backwards the same way.
    assert roster.on_duty("vanhanh", at("2026-12-27 12:00")).person == "cuong"


def test_a_midnight_handoff_changes_the_shift_at_midnight() -> None:
    roster = Roster(oncall(rotation={"start": "2026-12-28", "handoff": "00:00",
                                     "people": ["an", "binh"]}), "Asia/Ho_Chi_Minh")
    assert roster.on_duty("vanhanh", at("2026-12-28 23:59")).person == "an"
    assert roster.on_duty("vanhanh", at("2026-12-29 00:00")).person == "binh"
    nxt = roster.next_duty("vanhanh", at("2026-12-28 23:59"))
    assert nxt is not None and nxt.person == "binh" and nxt.starts_at == at("2026-12-29 00:00")


def test_holiday_and_override_take_over_the_rotation() -> None:
    roster = Roster(oncall(holiday_person="dung",
                           overrides=[{"date": "2027-01-02", "person": "cuong"},
                                      {"date": "2027-01-02", "person": "binh"}]),
                    "Asia/Ho_Chi_Minh")
    # 2027-01-01 would be binh's turn; it is a holiday: the holiday officer is on duty,
    # from the handoff on the holiday to the next day's handoff.
    assert roster.on_duty("vanhanh", at("2027-01-01 07:29")).person == "an"
    duty = roster.on_duty("vanhanh", at("2027-01-01 08:00"))
    assert duty is not None and (duty.person, duty.reason) == ("dung", "holiday")
    assert roster.on_duty("vanhanh", at("2027-01-02 03:00")).person == "dung"
    # The latest override of a day wins.
    duty = roster.on_duty("vanhanh", at("2027-01-02 09:00"))
    assert duty is not None and (duty.person, duty.reason) == ("binh", "override")
    view = roster.view(at("2027-01-01 08:00"))
    assert view[0]["holiday"] == "Tết Dương lịch"
    assert view[0]["now"]["name"] == "Phạm Dũng (trưởng nhóm)"
    assert view[0]["next"]["person"] == "binh"
    assert view[0]["lead"] == {"person": "dung", "name": "Phạm Dũng (trưởng nhóm)"}


def test_the_roster_survives_its_json_form() -> None:
    config = oncall(holiday_person="dung", overrides=[{"date": "2027-01-02", "person": "an"}])
    roster = config.roster()
    document = roster.model_dump(mode="json")
    assert document["teams"][0]["rotation"]["handoff"] == "07:30"
    again = type(roster).model_validate(document)
    assert again == roster and again.digest() == roster.digest()


def test_weekly_rotation() -> None:
    roster = Roster(oncall(rotation={"start": "2026-12-28", "days": 7, "handoff": "08:00",
                                     "people": ["an", "binh"]}), "Asia/Ho_Chi_Minh")
    assert roster.on_duty("vanhanh", at("2027-01-03 12:00")).person == "an"
    assert roster.on_duty("vanhanh", at("2027-01-04 07:59")).person == "an"
    assert roster.on_duty("vanhanh", at("2027-01-04 08:00")).person == "binh"
    nxt = roster.next_duty("vanhanh", at("2026-12-30 12:00"))
    assert nxt is not None and nxt.starts_at == at("2027-01-04 08:00")


@pytest.mark.parametrize(("change", "message"), [
    ({"lead": "nobody"}, "teams[0].lead: unknown person 'nobody'"),
    ({"rotation": {"start": "2027-01-01", "people": ["an", "x"]}},
     "teams[0].rotation.people[1]: unknown person 'x'"),
    ({"overrides": [{"date": "2027-01-02", "person": "y"}]},
     "teams[0].overrides[0].person: unknown person 'y'"),
    ({"rotation": {"start": "2027-01-01", "handoff": "25:00", "people": ["an"]}},
     "expected a local time HH:MM"),
    ({"rotation": {"start": "2027-01-01", "people": []}}, "at least 1 item"),
])
def test_bad_rosters_are_refused_with_the_path(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        oncall(**change)
    assert message in str(info.value)


def test_policy_refers_to_known_teams_and_people() -> None:
    good = oncall().roster().model_dump(mode="json")
    bad = {**good, "policies": [{"name": "p", "team": "vanhanh",
                                 "steps": [{"after": "0s", "notify": ["oncall", "ghost"]}]}]}
    with pytest.raises(ValidationError, match=r"policies\[0\]\.steps\[0\]\.notify\[1\]: "
                                              "unknown person 'ghost'"):
        OncallConfig.model_validate(bad)
    bad["policies"][0]["steps"] = [{"after": "10m", "notify": ["oncall"]},
                                   {"after": "5m", "notify": ["lead"]}]
    with pytest.raises(ValidationError, match=r"steps\[1\]\.after must be later"):
        OncallConfig.model_validate(bad)


POLICY = Policy.from_config(PolicyConfig.model_validate({
    "name": "critical", "team": "vanhanh", "matchers": ['severity="critical"'],
    "steps": [{"after": "0s", "notify": ["oncall"]},
              {"after": "10m", "notify": ["lead"]},
              {"after": "20m", "notify": ["giamdoc"]}],
    "repeat": "30m"}))


def test_steps_fall_due_in_order_and_none_is_skipped() -> None:
    t0 = 1000.0
    assert POLICY.due(t0, 0, t0) == [0]
    assert POLICY.due(t0, 1, t0 + 599) == []
    assert POLICY.due(t0, 1, t0 + 600) == [1]
    # Down for 25 minutes after step 1: both missed steps are due, the lead's first.
    assert POLICY.due(t0, 1, t0 + 1500) == [1, 2]
    # Repeats every 30 minutes after the last step, to everyone; overdue repeats collapse.
    assert POLICY.step_at(t0, 3) == t0 + 1200 + 1800
    assert POLICY.due(t0, 3, t0 + 2999) == []
    assert POLICY.due(t0, 3, t0 + 3000) == [3]
    assert POLICY.due(t0, 3, t0 + 1200 + 3 * 1800 + 1) == [5]
    assert POLICY.due(t0, 0, t0 + 3000) == [0, 1, 2, 3]
    assert POLICY.targets(4) == ("oncall", "lead", "giamdoc")


def test_without_repeat_the_policy_ends_after_its_last_step() -> None:
    policy = Policy(POLICY.name, POLICY.matchers, POLICY.team, POLICY.steps, None)
    assert policy.due(0.0, 3, 1e9) == []
    assert policy.step_at(0.0, 3) is None


def test_resolve_targets_at_the_step_time_and_match_policies() -> None:
    roster = Roster(oncall(), "Asia/Ho_Chi_Minh")
    assert roster.resolve("oncall", "vanhanh", at("2026-12-29 06:00")) == "an"
    assert roster.resolve("oncall", "vanhanh", at("2026-12-29 08:00")) == "binh"
    assert roster.resolve("lead:vanhanh", "other", at("2026-12-29 08:00")) == "dung"
    assert roster.resolve("giamdoc", "vanhanh", 0.0) == "giamdoc"
    assert roster.resolve("gone", "vanhanh", 0.0) is None
    assert roster.by_telegram(1004) is not None and roster.by_telegram("9") is None
    assert match_policy([POLICY], {"severity": "critical"}) is POLICY
    assert match_policy([POLICY], {"severity": "warning"}) is None


def test_the_province_example_in_the_docs_is_valid_and_does_what_it_says() -> None:
    from pathlib import Path

    import yaml

    from service.config import parse_config

    text = (Path(__file__).parents[2] / "docs" / "alerting.md").read_text(encoding="utf-8")
    block = text.split("### A complete example for a province")[1]
    raw = yaml.safe_load(block.split("```yaml")[1].split("```")[0])
    raw["alerts"]["default_rules"] = False
    secrets = {name: "s" * 32 for name in re.findall(r"\$\{(\w+)\}", block)}
    config = parse_config(raw, env=secrets)
    roster = Roster(config.alerts.oncall.roster(), "Asia/Ho_Chi_Minh")
    assert roster.on_duty("vanhanh", at("2027-01-06 02:10")).person == "binh"  # Tuesday's
    assert roster.on_duty("vanhanh", at("2027-02-05 09:00")).reason == "holiday"
    assert roster.on_duty("vanhanh", at("2027-02-02 12:00")).person == "cuong"
    (policy,) = [Policy.from_config(p) for p in config.alerts.oncall.policies]
    assert [policy.step_at(0.0, i) for i in range(4)] == [0.0, 600.0, 1200.0, 3000.0]
