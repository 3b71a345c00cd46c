"""A config that sends alerts nowhere says so once, with how to add a receiver, instead of
logging "notification queued receiver=ioc-none" for every group."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerts.dispatcher import build_dispatcher
from ioc.metrics import DeliveryMetrics
from tests.alerts.delivery_helpers import alert
from tests.conftest import demo_config, free_port

T0 = 1_796_000_000.0


async def notices(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                  alerts: dict[str, Any] | None) -> list[str]:
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"],
                         extra={"alerts": alerts} if alerts else None)
    dispatcher = build_dispatcher(config, DeliveryMetrics(CollectorRegistry()), lambda: T0)
    caplog.set_level(logging.INFO, logger="ioc.alerts")
    await dispatcher.start()
    try:
        for i, dept in enumerate(("STP", "CAT")):
            down = alert(department=dept, target=f"{dept.lower()}-health", at=T0 + i)
            await dispatcher.update([down], T0 + i)
            await dispatcher.flush(T0 + 3600 + i)
    finally:
        await dispatcher.stop()
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
            and r.name.startswith("ioc.alerts")]


async def test_no_route_says_once_where_alerts_go(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    lines = await notices(tmp_path, caplog, None)
    told = [line for line in lines if "sent to no one" in line]
    assert len(told) == 1 and "alerts.receivers" in told[0] and "alerts.route" in told[0]
    assert not any("notification queued" in line for line in lines), lines


async def test_a_receiver_without_channels_is_named(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    lines = await notices(tmp_path, caplog, {"route": {"receiver": "desk"},
                                             "receivers": [{"name": "desk"}]})
    told = [line for line in lines if "sent to no one" in line]
    assert len(told) == 1 and "give it a channel" in told[0]
    assert not any("notification queued" in line for line in lines), lines
