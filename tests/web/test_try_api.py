"""`POST /api/v1/try/{name}`: admins poll one target now and read its trace; others cannot.

A running ioc polling the bundled simulator, closed to anonymous requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from service.app import IocApp
from tests.conftest import PollWatcher
from tests.trust.conftest import TOKENS, bearer, closed_config
from web.openapi import openapi_document
from web.try_api import SLOTS, TRY_SLOTS


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[IocApp]:
    ioc_app = IocApp(closed_config(tmp_path))
    watcher = PollWatcher()
    ioc_app.pipeline.add_hook(watcher)
    await ioc_app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)
        yield ioc_app
    finally:
        await ioc_app.stop(grace=1.0)


async def post(app: IocApp, path: str, headers: dict[str, str] | None = None,
               **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, \
            session.post(app.url + path, headers=headers or {}, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


def validate(body: Any) -> None:
    doc = openapi_document()
    schema = doc["paths"]["/api/v1/try/{name}"]["post"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    registry = Registry().with_resource("urn:ioc", DRAFT202012.create_resource(doc))
    jsonschema.Draft202012Validator({"$ref": "urn:ioc" + schema["$ref"]},
                                    registry=registry).validate(body)


async def test_admin_gets_the_trace_in_both_languages(app: IocApp) -> None:
    status, body = await post(app, "/api/v1/try/stp-health", bearer("admin"))
    assert status == 200, body
    validate(body)
    assert body["up"] is True and body["trace"]["target"] == "stp-health"
    assert body["trace"]["exchanges"][0]["status"] == 200
    assert body["text"].startswith("Mục tiêu stp-health (http)")
    status, body = await post(app, "/api/v1/try/stp-health?lang=en", bearer("admin"))
    assert status == 200 and "Result: UP" in body["text"]
    assert TOKENS["admin"] not in str(body)


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), (bearer("viewer"), 403), (bearer("operator"), 403), (bearer("ingest"), 403),
    ({"Authorization": "Bearer not-a-token-at-all"}, 401),
])
async def test_only_admins_may_try(app: IocApp, headers: dict[str, str], status: int) -> None:
    got, body = await post(app, "/api/v1/try/stp-health", headers)
    assert got == status and "trace" not in body


async def test_bad_requests_are_refused_with_a_reason(app: IocApp) -> None:
    status, body = await post(app, "/api/v1/try/nope", bearer("admin"))
    assert (status, body["error"]) == (404, "unknown target")
    assert "targets: stp-health" in body["detail"]
    status, body = await post(app, "/api/v1/try/stp-health?lang=fr", bearer("admin"))
    assert status == 400 and "lang" in body["detail"]
    status, body = await post(app, "/api/v1/try/stp-health", bearer("admin"), json={"x": 1})
    assert (status, body["error"]) == (400, "invalid body")


async def test_tries_beyond_the_slots_get_429(app: IocApp) -> None:
    slots = app._web_runner.app[SLOTS]  # type: ignore[union-attr]
    for _ in range(TRY_SLOTS):
        await slots.acquire()
    try:
        status, body = await post(app, "/api/v1/try/stp-health", bearer("admin"))
        assert (status, body["error"]) == (429, "busy")
    finally:
        for _ in range(TRY_SLOTS):
            slots.release()
    status, _ = await post(app, "/api/v1/try/stp-health", bearer("admin"))
    assert status == 200


async def test_tries_are_audited(app: IocApp) -> None:
    await post(app, "/api/v1/try/stp-health", bearer("admin"))
    await post(app, "/api/v1/try/stp-health", bearer("viewer"))
    async with aiohttp.ClientSession() as session, \
            session.get(app.url + "/api/v1/audit", headers=bearer("admin")) as resp:
        entries = (await resp.json())["entries"]
    tried = [(e["actor"], e["path"], e["target"], e["status"]) for e in reversed(entries)
             if e["path"] == "/api/v1/try/{name}"]
    assert tried == [("admin-desk", "/api/v1/try/{name}", "name=stp-health", 200),
                     ("viewer-desk", "/api/v1/try/{name}", "name=stp-health", 403)]


async def test_a_try_reaches_no_pipeline_board_or_metric(tmp_path: Path) -> None:
    # polled at start, then hourly: the next scheduled poll is not due while the test runs,
    # so anything new the pipeline, the board or the failure counter saw would be the try's
    raw = closed_config(tmp_path)
    config = dataclasses.replace(raw, collection=raw.collection.model_copy(
        update={"interval": 3600.0}), collectors=tuple(
            c.model_copy(update={"interval": 3600.0, "url": c.url + "-broken"})  # type: ignore[attr-defined]
            for c in raw.collectors))
    ioc_app = IocApp(config)
    watcher = PollWatcher()
    ioc_app.pipeline.add_hook(watcher)
    await ioc_app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)  # the poll at start
        state = ioc_app.board.targets["stp-health"]
        before = (len(watcher.outcomes), state.last_check, ioc_app.registry.get_sample_value(
            "ioc_probe_failures_total",
            {"target": "stp-health", "department": "STP", "reason": "http_status"}))
        assert before[1:] != (None, None)
        status, body = await post(ioc_app, "/api/v1/try/stp-health", bearer("admin"))
        assert status == 200 and body["up"] is False
        assert body["trace"]["reason"] == "http_status"
        after = (len(watcher.outcomes), state.last_check, ioc_app.registry.get_sample_value(
            "ioc_probe_failures_total",
            {"target": "stp-health", "department": "STP", "reason": "http_status"}))
        assert after == before
    finally:
        await ioc_app.stop(grace=1.0)
