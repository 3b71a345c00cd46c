"""The alerting API on a running ioc: alerts, acks, silences, deliveries, history, auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from service.app import IocApp
from tests.alerts.test_delivery_e2e import Hook, alerts_section, fault
from tests.conftest import demo_config, free_port
from web.openapi import openapi_document

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"


def check(path: str, method: str, status: int, body: Any) -> None:
    """The response matches what web/openapi.py promises."""
    doc = openapi_document()
    schema = doc["paths"][path][method]["responses"][str(status)]["content"][
        "application/json"]["schema"]
    registry = Registry().with_resource("urn:ioc", DRAFT202012.create_resource(doc))
    jsonschema.Draft202012Validator({"$ref": "urn:ioc" + schema["$ref"]},
                                    registry=registry).validate(body)


class Client:
    def __init__(self, base: str) -> None:
        self.base = base

    async def call(self, method: str, path: str, token: str | None = None,
                   body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session, session.request(
                method, self.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def firing(tmp_path: Path, aiohttp_server) -> AsyncIterator[tuple[IocApp, Client, Hook]]:
    from aiohttp import web

    consumer = Hook()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", consumer.handle)
    server = await aiohttp_server(hook_app)
    sim_port = free_port()
    extra = {**alerts_section([{"name": "oncall",
                                "webhook": [{"url": str(server.make_url("/hook"))}]}]),
             "auth": {"tokens": [{"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]},
                                 {"name": "wall", "token": VIEWER, "roles": ["viewer"]}]}}
    app = IocApp(demo_config(tmp_path, sim_port, codes=["STP", "CAT"], extra=extra))
    await app.start()
    try:
        await fault(f"http://127.0.0.1:{sim_port}", "STP", "down")
        await consumer.until(lambda h: "firing" in h.statuses(), limit=15)
        yield app, Client(app.url), consumer
    finally:
        await app.stop(grace=1.0)


async def test_alerts_ack_silence_history(firing) -> None:
    _, client, _ = firing
    status, body = await client.call("GET", "/api/v1/alerts?state=firing&department=STP")
    assert status == 200
    check("/api/v1/alerts", "get", 200, body)
    (alert,) = body["alerts"]
    assert alert["labels"]["target"] == "stp-health" and alert["receivers"] == ["oncall"]
    assert alert["department_name"] == "Sở Tư pháp" and alert["muted"] == {}
    status, body = await client.call("GET", "/api/v1/alerts?department=CAT")
    assert body["alerts"] == []

    fp = alert["fingerprint"]
    path = f"/api/v1/alerts/{fp}/ack"
    assert (await client.call("POST", path, body={}))[0] == 401
    assert (await client.call("POST", path, VIEWER, {}))[0] == 403
    status, body = await client.call("POST", path, OPERATOR,
                                     {"comment": "đang xử lý", "duration": "2h"})
    assert status == 200, body
    check("/api/v1/alerts/{fingerprint}/ack", "post", 200, body)
    assert body["ack"]["by"] == "ca-truc"
    assert (await client.call("POST", "/api/v1/alerts/nope/ack", OPERATOR, {}))[0] == 404

    status, body = await client.call("POST", "/api/v1/silences", OPERATOR, {
        "matchers": ['department="STP"'], "duration": "1h", "comment": "nâng cấp"})
    assert status == 201, body
    check("/api/v1/silences", "post", 201, body)
    silence_id = body["silence"]["id"]
    _, body = await client.call("GET", "/api/v1/alerts")
    assert body["alerts"][0]["muted"] == {"silenced_by": [silence_id]}
    assert body["alerts"][0]["ack"]["comment"] == "đang xử lý"
    status, body = await client.call("GET", "/api/v1/silences?state=active")
    check("/api/v1/silences", "get", 200, body)
    assert [s["id"] for s in body["silences"]] == [silence_id]
    status, body = await client.call("DELETE", f"/api/v1/silences/{silence_id}", OPERATOR)
    assert status == 200 and body["silence"]["state"] == "expired"
    check("/api/v1/silences/{id}", "delete", 200, body)
    assert (await client.call("DELETE", f"/api/v1/silences/{silence_id}", OPERATOR))[0] == 404

    status, body = await client.call("GET", "/api/v1/alerts/history")
    check("/api/v1/alerts/history", "get", 200, body)
    kinds = [(e["kind"], e["actor"]) for e in body["events"]]
    assert kinds[:4] == [("silence_expired", "ca-truc"), ("silence", "ca-truc"),
                         ("ack", "ca-truc"), ("firing", "ioc")]
    status, body = await client.call("GET", "/api/v1/notifications")
    check("/api/v1/notifications", "get", 200, body)
    assert body["notifications"][0]["state"] == "sent"
    assert body["notifications"][0]["alerts"] == [fp]


BAD_REQUESTS = [
    ("POST", "/api/v1/silences", {"matchers": "department=STP", "duration": "1h",
                                  "comment": "x"}, "invalid matchers"),
    ("POST", "/api/v1/silences", {"matchers": ['department="STP"'], "comment": "x"},
     "missing end"),
    ("POST", "/api/v1/silences", {"matchers": ['team=~".*"'], "duration": "1h",
                                  "comment": "x"}, "invalid silence"),
    ("POST", "/api/v1/silences", {"matchers": ['department="STP"'], "duration": "soon",
                                  "comment": "x"}, "invalid duration"),
    ("POST", "/api/v1/silences", [1], "invalid body"),
    ("POST", "/api/v1/silences", {"matchers": ["x" * 20000]}, "body too large"),
    ("GET", "/api/v1/notifications?limit=0", None, "invalid limit"),
    ("GET", "/api/v1/notifications?state=lost", None, "invalid state"),
    ("GET", "/api/v1/alerts?muted=maybe", None, "invalid muted"),
    ("GET", "/api/v1/alerts/history?start=9&end=1", None, "invalid range"),
]


async def test_bad_requests_get_clear_json_errors(firing) -> None:
    _, client, _ = firing
    for method, path, body, error in BAD_REQUESTS:
        status, answer = await client.call(method, path, OPERATOR, body)
        assert status in (400, 413) and answer["error"] == error, (path, body, answer)
