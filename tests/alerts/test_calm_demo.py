"""The demo's own rules over its simulator's timeline (service.demo_timeline): calm
without faults, and an injected outage or overdue surge still fires as the rules promise."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from collectors.simulator.faults import FaultSpec
from collectors.simulator.portal import PortalFault
from service.config import Config, load_config, parse_config
from service.demo_timeline import Injected, run_demo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parents[2]
MONDAY_MORNING = datetime(2026, 12, 7, 9, 0, tzinfo=TZ).timestamp()


@pytest.fixture(scope="module")
def demo() -> Config:
    return load_config(ROOT / "config.yaml", env={})


@pytest.mark.parametrize(("start", "seed"), [
    (MONDAY_MORNING, 0),
    (datetime(2026, 12, 31, 23, 50, tzinfo=TZ).timestamp(), 1),  # across a month's end
])
def test_fifteen_quiet_minutes_are_calm(demo: Config, start: float, seed: int) -> None:
    run = run_demo(demo, start=start, seconds=900, seed=seed)
    assert run.max_active <= 2, run.fired
    assert run.flaps == 0, run.fired


def test_an_outage_fires_target_down_after_its_two_minutes(demo: Config) -> None:
    run = run_demo(demo, start=MONDAY_MORNING, seconds=300,
                   faults=[Injected(60.0, FaultSpec("STP", "down"))])
    # `for: 2m` counted from the first failed poll; evaluated every evaluation_interval
    assert run.first_fired[("TargetDown", "STP")] - 60.0 <= 120.0 + demo.alerts.evaluation_interval
    assert {k for k in run.first_fired if k[0] == "TargetDown"} == {("TargetDown", "STP")}


def test_an_overdue_surge_fires_within_five_minutes_and_stays_one_alert(demo: Config) -> None:
    since = MONDAY_MORNING + 60.0 * demo.simulator.portal_time_scale  # portal time at 60 s
    fault = PortalFault("STP", "overdue_surge", 40, since, None)
    run = run_demo(demo, start=MONDAY_MORNING, seconds=900, faults=[Injected(60.0, fault)])
    took = run.first_fired[("OverdueDossiersRising", "STP")] - 60.0
    assert 300.0 <= took <= 300.0 + 2 * demo.alerts.evaluation_interval
    assert run.flaps == 0


def demo_raw() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8")))


def test_polls_and_evaluations_keep_their_own_intervals() -> None:
    raw = demo_raw()
    raw["collection"]["interval"] = "7s"
    raw["alerts"] = {"evaluation_interval": "10s"}
    config = parse_config(raw, env={}, source=str(ROOT / "config.yaml"))
    run = run_demo(config, start=MONDAY_MORNING, seconds=300,
                   faults=[Injected(61.0, FaultSpec("STP", "down"))])
    # first failed poll at 63 s (7 s grid), pending from the evaluation at 70 s, firing at 190 s
    assert run.first_fired[("TargetDown", "STP")] == 190.0


def test_a_collector_it_cannot_model_is_refused() -> None:
    raw = demo_raw()
    raw["collectors"].append({"type": "tcp", "name": "stp-smtp", "department": "STP",
                              "host": "127.0.0.1", "port": 25})
    config = parse_config(raw, env={}, source=str(ROOT / "config.yaml"))
    with pytest.raises(ValueError, match="stp-smtp"):
        run_demo(config, start=MONDAY_MORNING, seconds=60)
