"""The simulated public-service portal: office hours, a believable province, determinism,
period boundaries, and backlog faults through the real HTTP API and the real collector."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from collectors.backlog import BacklogCollector, BacklogConfig
from collectors.feedback import FeedbackCollector, FeedbackConfig
from collectors.simulator import create_simulator_app, units
from collectors.simulator.portal import parse_portal_fault
from collectors.simulator.portal_model import (
    MONTHLY_DOSSIERS,
    TIMEZONE,
    PortalClock,
    PortalModel,
    add_working,
    in_office_hours,
    overdue_dossiers,
    spike_dossiers,
)
from ioc.domain import DossierCounts, FeedbackCounts, dossier_ontime_ratio
from service.config import load_config

TOKEN = "portal-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CODES = [u.code for u in units()]


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=TIMEZONE).timestamp()


WEDNESDAY = at(2025, 6, 18, 10, 0)   # a working morning in the middle of the month


@pytest.fixture(scope="module")
def model() -> PortalModel:
    return PortalModel(CODES, seed=7)


def province(counts: dict[str, DossierCounts]) -> DossierCounts:
    total = DossierCounts()
    for c in counts.values():
        total = total + c
    return total


# --- office hours ------------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "working"), [
    ((2025, 6, 18, 7, 29), False), ((2025, 6, 18, 7, 30), True), ((2025, 6, 18, 11, 29), True),
    ((2025, 6, 18, 12, 0), False), ((2025, 6, 18, 13, 30), True), ((2025, 6, 18, 16, 59), True),
    ((2025, 6, 18, 17, 0), False), ((2025, 6, 21, 9, 0), False), ((2025, 6, 22, 9, 0), False),
])
def test_office_hours(when: tuple[int, ...], working: bool) -> None:
    assert in_office_hours(at(*when)) is working


def test_working_time_skips_lunch_nights_and_weekends() -> None:
    assert add_working(at(2025, 6, 18, 11, 0), 3600) == at(2025, 6, 18, 14, 0)
    assert add_working(at(2025, 6, 20, 16, 30), 3600) == at(2025, 6, 23, 8, 0)
    assert add_working(at(2025, 6, 21, 10, 0), 60) == at(2025, 6, 23, 7, 31)


# --- a believable province ------------------------------------------------------------------------

def test_every_department_and_district_has_dossiers(model: PortalModel) -> None:
    counts = model.dossiers(WEDNESDAY)
    expected = {u.code for u in units() if u.kind in ("department", "district")}
    assert set(counts) == expected
    assert all(c.received + c.carried_over > 0 for c in counts.values())


def test_rates_and_volumes_look_like_the_province(model: PortalModel) -> None:
    total = province(model.dossiers(WEDNESDAY))
    ratio = dossier_ontime_ratio(total)
    assert ratio is not None and 0.97 <= ratio < 1.0      # ~99 %, with some late ones
    assert total.resolved_late > 0
    assert 4000 < total.received < 12000                  # 17.4 days of ~12,500 a month
    assert total.received_online > total.received_direct > total.received_postal > 0
    assert total.waiting_supplement > 0 and total.paused > 0 and total.carried_over > 0
    feedback = FeedbackCounts()
    for reports in model.feedback(at(2025, 6, 30, 23, 59)).values():
        feedback = feedback + reports
    assert 180 < feedback.received < 350                  # ~3,100 a year


def test_every_dossier_is_somewhere(model: PortalModel) -> None:
    for code, c in model.dossiers(WEDNESDAY).items():
        assert c.received + c.carried_over == (
            c.resolved + c.in_progress + c.waiting_supplement + c.paused + c.returned
            + c.withdrawn), code
        assert c.due_soon is not None and c.due_soon <= c.in_progress_ontime


def test_dossiers_arrive_mostly_in_office_hours(model: PortalModel) -> None:
    def received(t: float) -> int:
        return province(model.dossiers(t)).received

    day = received(at(2025, 6, 18, 10, 0)) - received(at(2025, 6, 18, 8, 0))
    night = received(at(2025, 6, 18, 4, 0)) - received(at(2025, 6, 18, 2, 0))
    assert day > 5 * night >= 0
    assert day > 50


def test_same_seed_same_numbers_different_seed_different() -> None:
    later = WEDNESDAY + 3600
    one, two = PortalModel(CODES, seed=7), PortalModel(CODES, seed=7)
    assert one.dossiers(later) == two.dossiers(later)
    assert one.dossiers(WEDNESDAY) == two.dossiers(WEDNESDAY)  # asking out of order is fine
    assert PortalModel(["STP"], seed=8).dossiers(later)["STP"] != one.dossiers(later)["STP"]


def test_a_new_month_is_a_new_period(model: PortalModel) -> None:
    end_of_june = province(model.dossiers(at(2025, 6, 30, 16, 0)))
    start_of_july = province(model.dossiers(at(2025, 7, 1, 8, 0)))
    assert start_of_july.received < end_of_june.received / 20
    assert start_of_july.carried_over > 1000
    assert start_of_july.resolved < end_of_june.resolved / 10


def test_faults_add_a_spike_or_overdue_dossiers(model: PortalModel) -> None:
    base = model.dossiers(WEDNESDAY)["STTTT"]
    spiked = model.dossiers(WEDNESDAY, {"STTTT": spike_dossiers(WEDNESDAY - 60, 300)})["STTTT"]
    assert spiked.received_direct == base.received_direct + 300
    assert spiked.in_progress_ontime == base.in_progress_ontime + 300
    surged = model.dossiers(WEDNESDAY, {"STTTT": overdue_dossiers(WEDNESDAY - 60, 40)})["STTTT"]
    assert surged.in_progress_overdue == base.in_progress_overdue + 40
    assert dossier_ontime_ratio(surged) < dossier_ontime_ratio(base) - 0.2  # type: ignore


def test_portal_fault_validation() -> None:
    known = {"STTTT"}
    fault = parse_portal_fault({"unit": "STTTT", "fault": "overdue_surge", "until": 60},
                               known, 100.0)
    assert (fault.count, fault.expires_at) == (40, 160.0)
    for body, error in [({"unit": "XX", "fault": "backlog_spike"}, "unknown unit"),
                        ({"unit": "STTTT", "fault": "meltdown"}, "unknown fault"),
                        ({"unit": "STTTT", "fault": "backlog_spike", "count": 0},
                         "invalid option"),
                        ({"unit": "STTTT", "fault": "backlog_spike", "cuont": 5},
                         "invalid fault")]:
        with pytest.raises(ValueError, match=error):
            parse_portal_fault(body, known, 100.0)


# --- over HTTP, with the real collectors ----------------------------------------------------------

@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient[Any, Any]:
    return await aiohttp_client(create_simulator_app(token=TOKEN, latency_scale=0, seed=1))


async def poll_backlog(client: TestClient[Any, Any]) -> dict[tuple[str, str], float]:
    cfg = BacklogConfig.model_validate({
        "type": "backlog", "name": "dvc-backlog", "department": "HTTT-TTHC",
        "url": str(client.make_url("/_portal/v1/dossiers"))})
    async with aiohttp.ClientSession() as session:
        result = await BacklogCollector(cfg).collect(session, 0.0)
    out = {}
    for s in result.samples:
        labels = dict(s.labels)
        out[(s.metric + ":" + labels.get("status", labels.get("channel", "")),
             labels["department"])] = s.value
    return out


async def test_collectors_read_the_simulated_portal(client: TestClient[Any, Any]) -> None:
    got = await poll_backlog(client)
    for unit in units():
        if unit.kind != "shared":
            assert ("ioc_dossier_ontime_ratio:", unit.code) in got, unit.code
    assert ("ioc_online_procedures:", "") in got
    cfg = FeedbackConfig.model_validate({
        "type": "feedback", "name": "app-feedback", "department": "APP",
        "url": str(client.make_url("/_portal/v1/feedback"))})
    async with aiohttp.ClientSession() as session:
        result = await FeedbackCollector(cfg).collect(session, 0.0)
    assert any(s.metric == "ioc_feedback_reports" for s in result.samples)


async def test_fault_api_spike_and_clear(client: TestClient[Any, Any]) -> None:
    key = ("ioc_dossiers:in_progress_ontime", "SYT")
    before = (await poll_backlog(client))[key]
    resp = await client.post("/_sim/portal/faults", json={"unit": "SYT",
                                                          "fault": "backlog_spike"})
    assert resp.status == 401
    resp = await client.post("/_sim/portal/faults", headers=AUTH,
                             json={"unit": "SYT", "fault": "backlog_spike", "count": 500})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["count"] == 500
    listed = await (await client.get("/_sim/portal/faults")).json()
    assert [f["unit"] for f in listed] == ["SYT"]
    during = (await poll_backlog(client))[key]
    assert during >= before + 490   # the province keeps working meanwhile
    resp = await client.delete("/_sim/portal/faults/SYT", headers=AUTH)
    assert await resp.json() == {"cleared": 1}
    after = (await poll_backlog(client))[key]
    assert after < before + 100
    bad = await client.post("/_sim/portal/faults", headers=AUTH, data=b"{nope")
    assert bad.status == 400 and (await bad.json())["error"] == "invalid JSON"


async def test_fault_api_is_disabled_without_a_token(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_simulator_app(latency_scale=0))
    resp = await client.post("/_sim/portal/faults", json={"unit": "SYT",
                                                          "fault": "overdue_surge"})
    assert resp.status == 403


# -- a faster portal for the demo ------------------------------------------------------------


def test_portal_clock_runs_the_model_n_times_faster() -> None:
    start = at(2025, 6, 13, 16, 0)  # a Friday afternoon
    clock = PortalClock(start, 3600)
    fast, real = PortalModel(CODES, seed=5), PortalModel(CODES, seed=5)
    for seconds in (0, 1, 30, 61.5, 120, 400):
        assert clock.at(start + seconds) == start + 3600 * seconds
        assert fast.dossiers(clock.at(start + seconds)) == real.dossiers(start + 3600 * seconds)
    assert PortalClock(start).at(start + 42) == start + 42
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            PortalClock(start, bad)


def test_min_monthly_lifts_only_the_small_offices() -> None:
    end = at(2025, 6, 30, 23, 0)
    plain = PortalModel(["TTR", "CAT"], seed=2).dossiers(end)
    lifted = PortalModel(["TTR", "CAT"], seed=2, min_monthly=100).dossiers(end)
    assert plain["TTR"].received < 30 and 60 < lifted["TTR"].received < 150
    assert lifted["CAT"] == plain["CAT"]  # already above the floor: the same stream


def test_demo_config_moves_every_department_within_two_minutes() -> None:
    """From the model, not by waiting: on a grid of portal times a month long (every hour of
    every weekday), each unit's received count grows within any 120 real seconds."""
    sim = load_config(Path(__file__).parents[2] / "config.yaml", env={}).simulator
    window = 120 * sim.portal_time_scale            # portal seconds in two real minutes
    step = window / 6
    model = PortalModel(CODES, seed=0, min_monthly=sim.portal_min_monthly)  # the demo's seed
    start, end = at(2025, 6, 1, 0, 0), at(2025, 7, 1, 0, 0)
    # (A window that crosses the month's end sees the counts fall: a new period.)
    grid = [start + i * step for i in range(int((end - start) // step))]
    received = [{c: n.received for c, n in model.dossiers(t).items()} for t in grid]
    assert set(received[0]) == set(MONTHLY_DOSSIERS)
    # received only grows within a period, so a count that grows from grid point i+1 to
    # i+6 grows within any window of 5 steps starting between points i and i+1.
    for i in range(len(grid) - 6):
        for code in received[i]:
            assert received[i + 6][code] > received[i + 1][code], \
                (code, datetime.fromtimestamp(grid[i], TIMEZONE).isoformat())


def test_options_reach_the_portal_from_config_and_cli() -> None:
    from collectors.simulator.portal import PORTAL
    from service.cli import _parser

    app = create_simulator_app(portal_time_scale=60, portal_min_monthly=25)
    assert app[PORTAL].time.scale == 60 and app[PORTAL].model.min_monthly == 25
    args = _parser().parse_args(["simulate", "--portal-time-scale", "3600",
                                 "--portal-min-monthly", "100"])
    assert (args.portal_time_scale, args.portal_min_monthly) == (3600, 100)
    with pytest.raises(ValueError):
        create_simulator_app(portal_time_scale=0)


# --- late dossiers come in episodes -----------------------------------------------------------

def test_episodes_are_a_function_of_seed_unit_and_month() -> None:
    from collectors.simulator.portal_model import WORKDAY, episodes

    year = episodes(3, "CAT", at(2025, 1, 1, 0, 0), at(2026, 1, 1, 0, 0))
    again = episodes(3, "CAT", at(2025, 1, 1, 0, 0), at(2026, 1, 1, 0, 0))
    halves = (episodes(3, "CAT", at(2025, 1, 1, 0, 0), at(2025, 7, 1, 0, 0))
              + episodes(3, "CAT", at(2025, 7, 1, 0, 0), at(2026, 1, 1, 0, 0)))
    assert year == again == tuple(dict.fromkeys(halves))   # a month's episode is its own
    for start, end in year:   # 2 to 5 working days from an office-hours moment
        assert in_office_hours(start) and 2 * WORKDAY <= end - start
    everyone = [e for code in MONTHLY_DOSSIERS
                for e in episodes(0, code, at(2025, 1, 1, 0, 0), at(2027, 1, 1, 0, 0))]
    assert 28 <= len(everyone) <= 28 * 2 * 12 // 4   # about once a year per unit


def test_overdue_counts_rise_only_in_and_after_an_episode() -> None:
    from collectors.simulator.portal_model import WORKDAY, episodes

    model = PortalModel(["CAT"], seed=11)
    start, end = at(2025, 1, 6, 10, 0), at(2025, 12, 29, 10, 0)
    found = episodes(11, "CAT", start - 40 * 86400, end)
    assert found, "seed 11 gives CAT at least one episode in 2025"
    rises = []
    now, before = start, model.dossiers(start)["CAT"].in_progress_overdue
    while now < end:
        now += 86400.0
        overdue = model.dossiers(now)["CAT"].in_progress_overdue
        if overdue - before >= 5:
            rises.append(now)
        before = overdue
    assert rises, "an episode makes the overdue count climb"
    # every climb of 5 or more in a day is an episode's dossiers passing their deadlines
    for when in rises:
        assert any(begin <= when <= add_working(stop, 30 * WORKDAY) for begin, stop in found), \
            (when, found)
