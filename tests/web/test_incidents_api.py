"""The incident ledger and reports over HTTP, on a running ioc with tokens."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from ioc import clock
from ioc.incidents import reason_code
from ioc.model import Sample, make_labels
from service.app import IocApp
from tests.conftest import PollWatcher
from tests.trust.conftest import bearer, closed_config
from web.openapi import openapi_document

LABELS = make_labels(target="ghost", department="STP", kind="http")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[IocApp]:
    """A running ioc whose store holds three outages of "ghost", the ledger synced."""
    ioc_app = IocApp(closed_config(tmp_path))
    watcher = PollWatcher()
    ioc_app.pipeline.add_hook(watcher)
    await ioc_app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)
        t0 = clock.now() - 240  # older than the look-back: seen as this process's late write
        samples = []
        for i, up in enumerate([True, False, True, False, False, True, False]):
            samples.append(Sample("ioc_target_up", LABELS, 1.0 if up else 0.0, t0 + i * 30))
            if not up:
                samples.append(Sample("ioc_target_failure_reason", LABELS,
                                      reason_code("http_status"), t0 + i * 30))
        await ioc_app.store.append(samples)
        assert await ioc_app.incident_job.run_once() is not None  # one instance: it leads
        yield ioc_app
    finally:
        await ioc_app.stop(grace=1.0)


async def call(app: IocApp, method: str, path: str, role: str | None = None,
               **kwargs: Any) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = bearer(role) if role else {}
    async with aiohttp.ClientSession() as session, \
            session.request(method, app.url + path, headers=headers, **kwargs) as resp:
        raw = await resp.read()
        kind = resp.headers.get("Content-Type", "")
        body = (await resp.json(content_type=None)) if "json" in kind else raw
        return resp.status, body, resp.headers


def validate(path: str, method: str, status: str, body: Any) -> None:
    doc = openapi_document()
    schema = doc["paths"][path][method]["responses"][status]["content"][
        "application/json"]["schema"]
    registry = Registry().with_resource("urn:ioc", DRAFT202012.create_resource(doc))
    jsonschema.Draft202012Validator({"$ref": "urn:ioc" + schema["$ref"]},
                                    registry=registry).validate(body)


async def test_viewers_list_incidents_with_filters_and_pages(app: IocApp) -> None:
    status, body, _ = await call(app, "GET", "/api/v1/incidents?target=ghost", "viewer")
    assert status == 200, body
    validate("/api/v1/incidents", "get", "200", body)
    ghost = body["incidents"]
    assert [i["open"] for i in ghost] == [True, False, False]
    assert ghost[1]["causes"] == {"http_status": 2} and ghost[1]["duration_seconds"] == 60
    _, only_open, _ = await call(app, "GET", "/api/v1/incidents?target=ghost&open=true",
                                 "viewer")
    assert [i["id"] for i in only_open["incidents"]] == [ghost[0]["id"]]
    _, other, _ = await call(app, "GET", "/api/v1/incidents?department=SYT", "viewer")
    assert other["incidents"] == []
    seen, cursor = [], ""
    while True:
        status, page, _ = await call(
            app, "GET", f"/api/v1/incidents?target=ghost&limit=2&cursor={cursor}", "viewer")
        assert status == 200
        seen += [i["id"] for i in page["incidents"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == [i["id"] for i in ghost]


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "open=maybe", "start=5&end=1",
                                   "cursor=%%%", "start=nan", "start=1e300", "end=-1",
                                   "end=99999999999999999999",
                                   # a well-formed cursor whose time fits no 64-bit column
                                   "cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk5Ong="])
async def test_bad_queries_get_a_clear_400(app: IocApp, query: str) -> None:
    status, body, _ = await call(app, "GET", f"/api/v1/incidents?{query}", "viewer")
    assert status == 400 and body["error"]


async def test_the_list_needs_a_token(app: IocApp) -> None:
    status, _, _ = await call(app, "GET", "/api/v1/incidents")
    assert status == 401


async def test_operators_add_notes_and_the_write_is_audited(app: IocApp) -> None:
    _, body, _ = await call(app, "GET", "/api/v1/incidents?target=ghost", "viewer")
    ident = body["incidents"][0]["id"]
    path = f"/api/v1/incidents/{ident}/notes"
    assert (await call(app, "POST", path, "viewer", json={"text": "x"}))[0] == 403
    status, note, _ = await call(app, "POST", path, "operator",
                                 json={"text": "Đã báo nhà cung cấp <b>"})
    assert status == 201, note
    validate(path.replace(ident, "{id}"), "post", "201", note)
    assert note["by"] == "operator-desk"
    for bad in ({"text": ""}, {"text": 5}, {}, {"text": "x" * 3000}):
        assert (await call(app, "POST", path, "operator", json=bad))[0] == 400
    assert (await call(app, "POST", path, "operator", data=b"{"))[0] == 400
    assert (await call(app, "POST", path, "operator", data=b"x" * 2_000_000))[0] == 413
    assert (await call(app, "POST", "/api/v1/incidents/nope/notes", "operator",
                       json={"text": "x"}))[0] == 404
    _, again, _ = await call(app, "GET", "/api/v1/incidents?target=ghost", "viewer")
    assert again["incidents"][0]["notes"] == [note]
    _, audit, _ = await call(app, "GET", "/api/v1/audit", "admin")
    writes = [e for e in audit["entries"] if e["path"] == "/api/v1/incidents/{id}/notes"]
    assert {(e["actor"], e["status"]) for e in writes} >= {("operator-desk", 201),
                                                            ("viewer-desk", 403)}


async def test_reports_download_in_each_format(app: IocApp) -> None:
    period = datetime.fromtimestamp(clock.now() - 240, ZoneInfo("Asia/Ho_Chi_Minh")
                                    ).strftime("%Y-%m-%d")
    status, data, _ = await call(app, "GET", f"/api/v1/reports?period={period}", "viewer")
    assert status == 200, data
    ghost = next(t for t in data["targets"] if t["target"] == "ghost")
    assert ghost["incidents"] in (2, 3)  # 2 when the day began between the outages
    status, raw, headers = await call(
        app, "GET", f"/api/v1/reports?period={period}&format=csv&lang=en", "viewer")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert f"ioc-report-{period}.csv" in headers["Content-Disposition"]
    rows = {r["System"]: r for r in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))}
    assert float(rows["ghost"]["Availability"]) == pytest.approx(ghost["availability"],
                                                                 abs=1e-6)
    for query in ("period=2026-13", "period=2026-11&format=doc", "period=2026-11&lang=fr",
                  "period=2026-11&department=NOPE", "", "period=", "week=2026-11",
                  "week=2026-W54", "period=2026-W00", "period=2026-11&week=2026-W48",
                  "period=2099-01", "week=2099-W01", "period=2026-02-30",
                  "period=2026-11-01T00:00", "period=%00", "period=" + "9" * 5000):
        status, body, _ = await call(app, "GET", f"/api/v1/reports?{query}", "viewer")
        assert (status == 400 and body["error"] == "invalid report") or query in (
            "period=2026-11&format=doc", "period=2026-11&lang=fr"), (query, body)
        assert status == 400 and body["detail"], (query, body)
    _, body, _ = await call(app, "GET", "/api/v1/reports?period=2099-01", "viewer")
    assert body["detail"] == "period '2099-01' has not begun yet"
    week = datetime.fromtimestamp(clock.now() - 240, ZoneInfo("Asia/Ho_Chi_Minh")
                                  ).strftime("%G-W%V")
    status, by_week, _ = await call(app, "GET", f"/api/v1/reports?week={week}", "viewer")
    assert status == 200 and by_week["kind"] == "week" and by_week["period"] == week
    assert (await call(app, "GET", f"/api/v1/reports?period={period}"))[0] == 401
