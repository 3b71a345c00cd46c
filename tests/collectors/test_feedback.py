"""The feedback collector: ioc's own contract, a foreign app's shape, bad payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors.feedback import NATIVE_MAPPING, FeedbackCollector, FeedbackConfig, parse_feedback
from collectors.mapping import CompiledMapping
from ioc.collector import CollectorFailure
from ioc.model import make_labels

DATA = Path(__file__).parent.parent / "data" / "backlog"
NOW = 1_750_215_600.0
APP_MAPPING: dict[str, Any] = {
    "units": "items",
    "code": "unit.id",
    "fields": {"received": "stats.new", "in_progress_total": "stats.processing",
               "overdue": "stats.processingOverdue", "resolved": "stats.done",
               "resolved_late": "stats.doneLate"},
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def values(samples: Any) -> dict[tuple[str, str, str], float]:
    out = {}
    for s in samples:
        labels = dict(s.labels)
        out[(s.metric, labels["department"], labels.get("status", ""))] = s.value
    return out


async def collect(aiohttp_server: Any, payload: Any, **extra: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(payload)

    app = web.Application()
    app.router.add_get("/feedback", handler)
    server = await aiohttp_server(app)
    cfg = FeedbackConfig.model_validate({
        "type": "feedback", "name": "app-feedback", "department": "APP",
        "url": str(server.make_url("/feedback")), **extra})
    async with aiohttp.ClientSession() as session:
        return await FeedbackCollector(cfg).collect(session, NOW)


def test_native_contract() -> None:
    got = values(parse_feedback(load("native_feedback.json"),
                                CompiledMapping(NATIVE_MAPPING, {}),
                                make_labels(target="app-feedback"), NOW))
    assert got[("ioc_feedback_reports", "VITHANH", "received")] == 45
    assert got[("ioc_feedback_reports", "VITHANH", "overdue")] == 1
    assert got[("ioc_feedback_ontime_ratio", "VITHANH", "")] == pytest.approx(51 / 53)
    assert got[("ioc_feedback_resolved_ontime_ratio", "VITHANH", "")] == pytest.approx(47 / 48)
    assert got[("ioc_feedback_ontime_ratio", "STNMT", "")] == 1.0
    assert got[("ioc_feedback_ontime_ratio", "", "")] == pytest.approx(64 / 66)
    assert ("ioc_feedback_ontime_ratio", "BDT", "") not in got   # nothing handled: absent
    assert got[("ioc_feedback_reports", "BDT", "received")] == 0


async def test_native_and_foreign_shapes_agree(aiohttp_server: Any) -> None:
    native = values((await collect(aiohttp_server, load("native_feedback.json"))).samples)
    foreign = values((await collect(aiohttp_server, load("feedback_app.json"),
                                    mapping=APP_MAPPING)).samples)
    assert {k: v for k, v in native.items() if k[1] in ("VITHANH", "STNMT")} == \
        {k: v for k, v in foreign.items() if k[1] in ("VITHANH", "STNMT")}


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["items"][0]["stats"].update(doneLate=60),
     "units[0] (VITHANH).resolved_ontime: resolved_late (60) is more than resolved (48)"),
    (lambda p: p["items"][1]["stats"].pop("new"),
     "units[1] (STNMT).received ('stats.new') is missing"),
    (lambda p: p["items"][1]["stats"].update(processing=True),
     "units[1] (STNMT).in_progress_total ('stats.processing') is True, expected a count"),
])
async def test_bad_payloads(aiohttp_server: Any, change: Any, message: str) -> None:
    payload = load("feedback_app.json")
    change(payload)
    with pytest.raises(CollectorFailure) as info:
        await collect(aiohttp_server, payload, mapping=APP_MAPPING)
    assert info.value.reason == "bad_payload"
    assert message in str(info.value)
