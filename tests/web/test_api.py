"""The JSON API, /metrics and the status page of a running ioc polling the simulator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from service.app import IocApp
from tests.conftest import SIM_TOKEN, PollWatcher, require_binary
from web.openapi import openapi_document


def validator_for(path: str, status: str = "200") -> jsonschema.Draft202012Validator:
    """A validator for one documented response, resolving refs inside the OpenAPI document."""
    doc = openapi_document()
    schema = doc["paths"][path]["get"]["responses"][status]["content"]["application/json"][
        "schema"]
    registry = Registry().with_resource("urn:ioc", DRAFT202012.create_resource(doc))
    return jsonschema.Draft202012Validator({"$ref": "urn:ioc" + schema["$ref"]},
                                           registry=registry)


async def get(app: IocApp, path: str) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session, session.get(app.url + path) as resp:
        text = await resp.text()
        body = await resp.json(content_type=None) if "json" in resp.content_type else None
        return resp.status, body, text


async def test_health_and_ready(running_app: tuple[IocApp, PollWatcher]) -> None:
    app, _ = running_app
    status, body, _ = await get(app, "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body, _ = await get(app, "/readyz")
    assert status == 200
    assert body == {"status": "ready", "checks": {"store": "ok", "scheduler": "ok"}}
    validator_for("/readyz").validate(body)


async def test_status_lists_every_target_with_its_department(running_app) -> None:
    app, _ = running_app
    status, body, _ = await get(app, "/api/v1/status")
    assert status == 200
    validator_for("/api/v1/status").validate(body)
    by_name = {t["name"]: t for t in body["targets"]}
    assert set(by_name) == {"stttt-health", "stp-health", "cat-health", "vithanh-health"}
    stttt = by_name["stttt-health"]
    assert stttt["department_name"] == "Sở Thông tin và Truyền thông"
    assert stttt["up"] is True and stttt["last_value"] == 200
    assert stttt["latency_seconds"] > 0 and stttt["last_check"] > 0
    assert body["summary"] == {"targets": 4, "up": 4, "down": 0, "unknown": 0}


async def test_injected_fault_shows_as_down_first_with_reason(running_app) -> None:
    app, watcher = running_app
    sim = f"http://{app.config.simulator.listen}"
    headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{sim}/_sim/faults",
                                json={"unit": "STP", "fault": "error", "status": 503}) as r:
            assert r.status == 200
        mark = len(watcher.outcomes)
        await watcher.until(lambda seen: any(
            o.target == "stp-health" and not o.result.up for o in seen[mark:]))
        _, body, _ = await get(app, "/api/v1/status")
        first = body["targets"][0]
        assert first["name"] == "stp-health" and first["up"] is False
        assert first["reason"] == "http_status" and "503" in first["last_error"]

        async with session.delete(f"{sim}/_sim/faults/STP") as r:
            assert r.status == 200
        mark = len(watcher.outcomes)
        await watcher.until(lambda seen: any(
            o.target == "stp-health" and o.result.up for o in seen[mark:]))
    _, body, _ = await get(app, "/api/v1/status")
    assert body["summary"]["down"] == 0


async def test_series_returns_stored_history(running_app) -> None:
    app, watcher = running_app
    await watcher.until(lambda seen: sum(o.target == "cat-health" for o in seen) >= 3)
    await app.writer.flush()
    start = time.time() - 60
    status, body, _ = await get(app, "/api/v1/series?metric=ioc_target_up&target=cat-health"
                                     f"&start={start}&step=0.1")
    assert status == 200
    validator_for("/api/v1/series").validate(body)
    assert len(body["series"]) == 1
    series = body["series"][0]
    assert series["labels"] == {"target": "cat-health", "department": "CAT", "kind": "http"}
    assert len(series["points"]) >= 3
    assert all(v == 1.0 for _, v in series["points"])


@pytest.mark.parametrize(("query", "error"), [
    ("", "missing metric"),
    ("?metric=ioc_target_up&start=yesterday", "invalid start"),
    ("?metric=ioc_target_up&start=10&end=5", "invalid range"),
    ("?metric=ioc_target_up&start=0&end=100000&step=1", "too many points"),
    ("?metric=ioc_target_up&step=0", "invalid step"),
    ("?metric=ioc_target_up&end=nan", "invalid end"),
])
async def test_series_rejects_bad_queries_with_json(running_app, query: str,
                                                    error: str) -> None:
    app, _ = running_app
    status, body, _ = await get(app, "/api/v1/series" + query)
    assert status == 400
    assert body["error"] == error and body["detail"]
    validator_for("/api/v1/series", "400").validate(body)


async def test_unknown_route_is_json_404(running_app) -> None:
    app, _ = running_app
    status, body, _ = await get(app, "/api/v1/nope")
    assert status == 404
    assert body["error"] == "Not Found"


async def test_openapi_describes_every_json_route(running_app) -> None:
    app, _ = running_app
    status, body, _ = await get(app, "/api/openapi.json")
    assert status == 200 and body["openapi"].startswith("3.1")
    web_app = app._web_runner.app  # type: ignore[union-attr]
    routes = {r.resource.canonical for r in web_app.router.routes() if r.resource is not None}
    html_or_text = {"/", "/metrics", "/wall/{view}", "/api/v1/stream", "/static",
                    "/console", "/console/login", "/console/logout", "/console/stream",
                    "/console/incidents", "/runbooks",
                    "/runbooks/{rule}", "/oncall/ack/{token}",
                    "/status/"}  # a redirect to /status
    assert routes - html_or_text == set(body["paths"])


async def test_metrics_expose_every_target_and_pass_promtool(running_app, tmp_path) -> None:
    app, _ = running_app
    status, _, text = await get(app, "/metrics")
    assert status == 200
    for target in app.runners:
        department = app.board.targets[target].department
        assert (f'ioc_target_up{{department="{department}",kind="http",target="{target}"}} 1.0'
                in text)
        assert f'ioc_collector_last_success_timestamp_seconds{{target="{target}"}}' in text
    for family in ("ioc_probe_duration_seconds", "ioc_collector_duration_seconds_bucket",
                   "ioc_scheduler_lag_seconds_bucket", "ioc_store_samples_written_total",
                   "ioc_store_write_queue_samples", 'ioc_build_info{version="'):
        assert family in text, family
    promtool = require_binary("promtool")
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), timeout=30)
    assert proc.returncode == 0 and out.strip() == b"" and err.strip() == b"", out + err


async def test_openmetrics_when_asked(running_app) -> None:
    app, _ = running_app
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with aiohttp.ClientSession() as session, \
            session.get(app.url + "/metrics", headers=headers) as resp:
        assert resp.content_type == "application/openmetrics-text"
        assert (await resp.text()).rstrip().endswith("# EOF")


async def test_status_page_is_vietnamese_and_escaped(tmp_path) -> None:
    from tests.conftest import PollWatcher, demo_config, free_port

    config = demo_config(tmp_path, free_port(), codes=["STP"])
    hostile = config.departments[0].model_copy(update={"name": "<script>alert(1)</script>"})
    config = type(config)(**{**config.__dict__, "departments": (hostile,)})
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)
        status, _, html = await get(app, "/")
    finally:
        await app.stop(grace=1.0)
    assert status == 200
    assert '<html lang="vi">' in html and "Hoạt động" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
