"""POST and GET /api/v1/events on a running ioc: auth, validation, limits, idempotency."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp
import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from ioc.store.events import EventQuery
from service.app import IocApp
from tests.events.conftest import INGEST_TOKEN, VIEWER_TOKEN
from web.openapi import openapi_document

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def event(i: int, **over: Any) -> dict[str, Any]:
    base = {"source": "stp-portal", "id": f"evt-{i}", "severity": "high",
            "category": "auth_failure", "title": f"Đăng nhập sai lần {i}",
            "department": "STP", "host": "dvc.stp.haugiang.gov.vn",
            "occurred_at": time.time() - 60 + i / 1000, "labels": {"user": f"u{i}"}}
    base.update(over)
    return base


async def request(app: IocApp, method: str, path: str, *, headers: dict[str, str] | None = None,
                  body: Any = None, data: bytes | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as session, session.request(
            method, app.url + path, headers=headers,
            data=data if data is not None else (json.dumps(body) if body is not None else None),
    ) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None), resp.headers


def validate(doc: Any, path: str, method: str, status: str) -> None:
    spec = openapi_document()
    schema = spec["paths"][path][method]["responses"][status]["content"]["application/json"][
        "schema"]
    registry = Registry().with_resource("urn:ioc", DRAFT202012.create_resource(spec))
    jsonschema.Draft202012Validator({"$ref": "urn:ioc" + schema["$ref"]},
                                    registry=registry).validate(doc)


def counter(app: IocApp, **labels: str) -> float:
    value = app.registry.get_sample_value("ioc_security_events_total", labels)
    return value or 0.0


async def test_push_stores_once_and_counts_once(events_app: IocApp) -> None:
    app = events_app
    batch = [event(i) for i in range(50)]
    status, body, _ = await request(app, "POST", "/api/v1/events", headers=AUTH, body=batch)
    assert (status, body) == (202, {"accepted": 50})
    validate(body, "/api/v1/events", "post", "202")
    # The sender did not see the answer and retries the same batch, twice.
    for _ in range(2):
        status, _, _ = await request(app, "POST", "/api/v1/events", headers=AUTH, body=batch)
        assert status == 202
    await app.events.flush()
    labels = {"department": "STP", "source": "stp-portal", "severity": "high",
              "category": "auth_failure"}
    assert counter(app, **labels) == 50
    assert app.registry.get_sample_value("ioc_security_events_duplicates_total") == 100
    newest = app.registry.get_sample_value("ioc_security_events_last_timestamp_seconds",
                                           {"source": "stp-portal"})
    assert newest == pytest.approx(batch[-1]["occurred_at"], abs=0.002)

    status, body, _ = await request(app, "GET", "/api/v1/events?limit=1000")
    assert status == 200
    validate(body, "/api/v1/events", "get", "200")
    assert body["count"] == 50
    assert [e["id"] for e in body["events"]] == [f"evt-{i}" for i in reversed(range(50))]
    first = body["events"][-1]
    assert first["title"] == "Đăng nhập sai lần 0" and first["labels"] == {"user": "u0"}
    assert first["department"] == "STP" and first["category"] == "auth_failure"


async def test_single_object_and_defaults(events_app: IocApp) -> None:
    app = events_app
    one = {"source": "stp-portal", "id": 42, "severity": "CRITICAL", "title": "Mã độc"}
    status, body, _ = await request(app, "POST", "/api/v1/events", headers=AUTH, body=one)
    assert (status, body) == (202, {"accepted": 1})
    await app.events.flush()
    _, body, _ = await request(app, "GET", "/api/v1/events")
    (stored,) = body["events"]
    assert stored["id"] == "42" and stored["severity"] == "critical"
    assert stored["category"] == "other" and stored["department"] is None
    assert abs(stored["occurred_at"] - time.time()) < 60


async def test_filters_and_newest_first(events_app: IocApp) -> None:
    app = events_app
    now = time.time()
    batch = [
        event(1, severity="low", occurred_at=now - 300),
        event(2, severity="critical", occurred_at=now - 200, department="STTTT"),
        event(3, severity="high", occurred_at=now - 100),
        event(4, severity="critical", occurred_at=now - 50, source="wazuh"),
    ]
    await request(app, "POST", "/api/v1/events", headers=AUTH, body=batch)
    await app.events.flush()

    async def ids(query: str) -> list[str]:
        status, body, _ = await request(app, "GET", "/api/v1/events" + query)
        assert status == 200, body
        return [e["id"] for e in body["events"]]

    assert await ids("") == ["evt-4", "evt-3", "evt-2", "evt-1"]
    assert await ids("?severity=critical") == ["evt-4", "evt-2"]
    assert await ids("?severity=high,critical&department=STP") == ["evt-4", "evt-3"]
    assert await ids(f"?since={now - 150}") == ["evt-4", "evt-3"]
    assert await ids("?limit=1") == ["evt-4"]
    assert await ids("?source=wazuh") == ["evt-4"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 250))
    assert await ids(f"?since={iso}&category=auth_failure") == ["evt-4", "evt-3", "evt-2"]


@pytest.mark.parametrize(("query", "error"), [
    ("?severity=urgent", "invalid severity"),
    ("?limit=0", "invalid limit"),
    ("?limit=many", "invalid limit"),
    ("?since=yesterday", "invalid since"),
    ("?category=spam", "invalid category"),
])
async def test_bad_queries(events_app: IocApp, query: str, error: str) -> None:
    status, body, _ = await request(events_app, "GET", "/api/v1/events" + query)
    assert status == 400 and body["error"] == error and body["detail"]


async def test_auth(events_app: IocApp) -> None:
    app = events_app
    batch = [event(1)]
    status, body, _ = await request(app, "POST", "/api/v1/events", body=batch)
    assert status == 401 and "ingest" in body["detail"]
    status, body, _ = await request(app, "POST", "/api/v1/events", body=batch,
                                    headers={"Authorization": "Bearer not-a-known-token"})
    assert status == 401 and body["detail"] == "unknown token"
    status, body, _ = await request(app, "POST", "/api/v1/events", body=batch,
                                    headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert status == 403 and "lacks the ingest role" in body["detail"]
    # A 10 MB body without a token is refused for the token, before it is read.
    status, _, _ = await request(app, "POST", "/api/v1/events", data=b"[" + b" " * 10_000_000)
    assert status == 401
    await app.events.flush()
    assert (await app.events.store.query(_all()))[:1] == []


def _all() -> Any:
    from ioc.store.events import EventQuery

    return EventQuery(limit=1000)


@pytest.mark.parametrize(("body", "problems"), [
    ([event(1), event(2, severity="urgent")],
     [(1, "severity", "'info', 'low', 'medium', 'high' or 'critical' expected, got 'urgent'")]),
    ([event(1, occurred_at=time.time() + 86400)], [(0, "occurred_at", "in the future")]),
    ([event(1, occurred_at=1_700_000_000_000)], [(0, "occurred_at", "not milliseconds")]),
    ([event(1, occurred_at="2024-05-01T08:30:00")], [(0, "occurred_at", "time zone")]),
    ([event(1, severity=3, title="")],
     [(0, "severity", "got 3"), (0, "title", "at least 1 character")]),
    ([event(1, department="NOPE")], [(0, "department", "unknown department 'NOPE'")]),
    ([{"source": "x", "id": "1", "title": "t", "severty": "high"}],
     [(0, "severity", "required field is missing"), (0, "severty", "unknown field")]),
    ([event(1, labels={"a": 1})], [(0, "labels.a", "valid string")]),
    ([event(1), "just text"], [(1, "", "expected a JSON object")]),
])
async def test_bad_events_are_refused_whole_with_every_problem(
        events_app: IocApp, body: Any, problems: list[tuple[int, str, str]]) -> None:
    app = events_app
    status, answer, _ = await request(app, "POST", "/api/v1/events", headers=AUTH, body=body)
    assert status == 400, answer
    validate(answer, "/api/v1/events", "post", "400")
    assert answer["error"] == "invalid events"
    got = [(d["index"], d["field"], d["message"]) for d in answer["detail"]]
    assert len(got) == len(problems), got
    for (index, field, message), (g_index, g_field, g_message) in zip(problems, got,
                                                                       strict=True):
        assert (g_index, g_field) == (index, field) and message in g_message, got
    await app.events.flush()
    assert await app.events.store.query(_all()) == []  # the good event of the batch too


@pytest.mark.parametrize(("data", "error", "detail"), [
    (b'[{"source": "x",', "malformed JSON", "line 1 column 17"),
    (b"\xff\xfe", "malformed JSON", "UTF-8"),
    (b'{"source": NaN}', "malformed JSON", "NaN"),
    (b"[]", "invalid events", None),
    (b'"text"', "invalid events", None),
    (json.dumps([event(i) for i in range(1001)]).encode(), "invalid events", None),
])
async def test_malformed_bodies(events_app: IocApp, data: bytes, error: str,
                                detail: str | None) -> None:
    status, answer, _ = await request(events_app, "POST", "/api/v1/events", headers=AUTH,
                                      data=data)
    assert status == 400 and answer["error"] == error, answer
    if detail is not None:
        assert detail in answer["detail"]


async def test_body_limit(events_app: IocApp) -> None:
    app = events_app
    big = json.dumps([event(i, message="x" * 2000) for i in range(600)]).encode()
    assert len(big) > 1 << 20
    status, answer, _ = await request(app, "POST", "/api/v1/events", headers=AUTH, data=big)
    assert status == 413 and answer["error"] == "body too large"

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(11):
            yield b" " * 1_000_000

    async with aiohttp.ClientSession() as session, session.post(
            app.url + "/api/v1/events", headers=AUTH, data=chunks()) as resp:
        assert resp.status == 413
    await app.events.flush()
    assert await app.events.store.query(_all()) == []


async def test_full_queue_answers_503_and_keeps_nothing_partial(
        events_app: IocApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.web")
    app = events_app
    app.events._queue_limit = 10  # a tiny queue for this test only
    for _ in range(3):
        status, answer, headers = await request(app, "POST", "/api/v1/events", headers=AUTH,
                                                body=[event(i) for i in range(11)])
        assert status == 503 and answer["error"] == "ingest queue full"
        assert headers["Retry-After"] == "1"
    await app.events.flush()
    assert await app.events.store.query(_all()) == []
    assert app.registry.get_sample_value("ioc_http_requests_rejected_total",
                                         {"reason": "ingest_busy"}) == 3
    status, _, _ = await request(app, "POST", "/api/v1/events", headers=AUTH,
                                 body=[event(i) for i in range(5)])
    assert status == 202  # fits: the refusals are over
    lines = [r.getMessage() for r in caplog.records if "event push intake" in r.getMessage()]
    assert lines == ["event push intake is full: refusing (counted in metrics)",
                     "event push intake no longer refusing"]


async def test_ingest_gate_parses_one_push_at_a_time_and_refuses_a_full_line() -> None:
    import asyncio

    from web.events_api import IngestGate

    gate = IngestGate(waiting_bytes=1000)
    order: list[str] = []
    release = asyncio.Event()

    async def push(name: str, size: int) -> bool:
        async with gate.turn(size) as admitted:
            if admitted:
                order.append(name)
                if name == "first":
                    await release.wait()
            return admitted

    first = asyncio.create_task(push("first", 600))
    await asyncio.sleep(0)
    second = asyncio.create_task(push("second", 300))
    await asyncio.sleep(0)
    assert gate.full(200) and not gate.full(100)
    assert await push("third", 200) is False         # refused at once, never parsed
    release.set()
    assert await first and await second
    assert order == ["first", "second"]
    assert not gate.full(10_000)                     # an empty line takes any size


async def test_durable_push_answers_once_committed(events_app: IocApp) -> None:
    """No flush: the 200 itself means the events can be read back from the database."""
    store = events_app.events.store
    for path, headers, first in (("/api/v1/events?durable=1", AUTH, 0),
                                 ("/api/v1/events?durable=true", AUTH, 10),
                                 ("/api/v1/events", {**AUTH, "Prefer": "durable"}, 20),
                                 ("/api/v1/events", {**AUTH, "Prefer": "respond-async, "
                                                              "durable"}, 30)):
        batch = [event(first + i, source="durable") for i in range(10)]
        status, body, answer = await request(events_app, "POST", path, headers=headers,
                                             body=batch)
        assert status == 200 and body == {"accepted": 10, "stored": True}, body
        assert answer["Preference-Applied"] == "durable"
        stored = await store.query(EventQuery(sources=("durable",), limit=100))
        assert {e.event.id for e in stored} >= {e["id"] for e in batch}
    status, body, _ = await request(events_app, "POST", "/api/v1/events?durable=0",
                                    headers=AUTH, body=event(99))
    assert status == 202 and body == {"accepted": 1}
    status, body, _ = await request(events_app, "POST", "/api/v1/events?durable=maybe",
                                    headers=AUTH, body=event(98))
    assert status == 400 and body["error"] == "invalid durable"


async def test_concurrent_durable_pushes_share_commits(events_app: IocApp) -> None:
    """Fifty senders at once: every one answered 200, every event stored once."""
    import asyncio

    async def push(n: int) -> int:
        batch = [event(1000 + n * 5 + i, source="group") for i in range(5)]
        status, _, _ = await request(events_app, "POST", "/api/v1/events?durable=1",
                                     headers=AUTH, body=batch)
        return status

    statuses = await asyncio.gather(*(push(n) for n in range(50)))
    assert statuses == [200] * 50
    stored = await events_app.events.store.query(EventQuery(sources=("group",), limit=1000))
    assert len(stored) == 250
    assert events_app.registry.get_sample_value(
        "ioc_security_events_total", {"department": "STP", "source": "group",
                                      "severity": "high", "category": "auth_failure"}) == 250
