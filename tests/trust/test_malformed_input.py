"""Hostile input at every edge ioc owns: a 400 (or the edge's own refusal), never a 500.

Each table row is sent to a real ioc over a raw socket (aiohttp's client refuses to send
bytes that are not UTF-8 in a header); afterwards the service still answers, each refusal
is counted by kind in ``ioc_http_requests_rejected_total``, the log holds one line per
episode, and a valid event sent after all of it is stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ioc import clock
from ioc.store.events import EventQuery
from service.app import IocApp
from tests.trust.conftest import METRICS_TOKEN, TOKENS, closed_config

OPERATOR = TOKENS["operator"].encode()
INGEST = TOKENS["ingest"].encode()
DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000


def request(method: str, path: str, headers: dict[str, bytes] | None = None,
            body: bytes = b"", content_type: bytes = b"application/json") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1",
             b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + value)
    if body or method in ("POST", "PUT"):
        lines += [b"Content-Type: " + content_type, b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def send(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def bearer(token: bytes) -> dict[str, bytes]:
    return {"Authorization": b"Bearer " + token}


# (name, request, allowed statuses, counted reason or None)
CASES: list[tuple[str, bytes, set[int], str | None]] = [
    ("bearer not UTF-8", request("GET", "/api/v1/alerts", bearer(b"\xff\xfe\xfd")),
     {400}, "bad_header"),
    ("bearer half a UTF-8 char", request("GET", "/api/v1/status", bearer(b"tok\xc3")),
     {400}, "bad_header"),
    ("bearer latin-1", request("POST", "/api/v1/events", bearer(b"caf\xe9"), b"{}"),
     {400}, "bad_header"),
    ("metrics basic not UTF-8", request("GET", "/metrics",
                                        {"Authorization": b"Basic \xff\xfe=="}),
     {400}, "bad_header"),
    ("metrics bearer not UTF-8", request("GET", "/metrics", bearer(b"\x80abc")),
     {400}, "bad_header"),
    ("metrics basic not base64", request("GET", "/metrics",
                                         {"Authorization": b"Basic !!!"}), {401}, None),
    ("metrics basic no colon", request("GET", "/metrics",
                                       {"Authorization": b"Basic YWJj"}), {401}, None),
    ("cookie not UTF-8", request("GET", "/console", {"Cookie": b"ioc_session=\xff\xfe"}),
     {400}, "bad_header"),
    ("other header not UTF-8", request("GET", "/healthz", {"X-Forwarded-For": b"\xfe"}),
     {400}, "bad_header"),
    ("bearer valid UTF-8 but unknown", request("GET", "/api/v1/alerts",
                                               bearer("tổng".encode())), {401}, None),
    ("console form not UTF-8", request(
        "POST", "/console/login", body=b"token=\xff\xfe\xfd",
        content_type=b"application/x-www-form-urlencoded"), {400}, "bad_form"),
    ("console form unknown charset", request(
        "POST", "/console/login", body=b"token=abc",
        content_type=b"application/x-www-form-urlencoded; charset=x-nope"),
     {400}, "bad_form"),
    ("console form percent-escaped garbage", request(
        "POST", "/console/login", body=b"token=%FF%FE",
        content_type=b"application/x-www-form-urlencoded"), {401}, None),
    ("console form multipart garbage", request(
        "POST", "/console/login", body=b"--x\r\n\xff\xff",
        content_type=b"multipart/form-data; boundary=x"), {400}, "bad_form"),
    ("events deep array", request("POST", "/api/v1/events", bearer(INGEST), DEEP),
     {400}, "too_deep"),
    ("events deep object", request("POST", "/api/v1/events", bearer(INGEST), DEEP_OBJECT),
     {400}, "too_deep"),
    ("events deep labels", request("POST", "/api/v1/events", bearer(INGEST), json.dumps(
        {"source": "x", "id": "1", "severity": "high", "title": "t",
         "labels": {"a": 1}}).encode().replace(b"1}", b"[" * 100 + b"]" * 100 + b"}")),
     {400}, "too_deep"),
    ("events NaN", request("POST", "/api/v1/events", bearer(INGEST),
                           b'{"source":"x","id":"1","severity":"high","title":"t",'
                           b'"occurred_at":NaN}'), {400}, "bad_json"),
    ("events not UTF-8", request("POST", "/api/v1/events", bearer(INGEST), b'{"a":"\xff"}'),
     {400}, "bad_json"),
    ("events a number", request("POST", "/api/v1/events", bearer(INGEST), b"42"), {400}, None),
    ("events huge int time", request("POST", "/api/v1/events", bearer(INGEST),
                                     b'{"source":"x","id":"1","severity":"high","title":"t",'
                                     b'"occurred_at":' + b"9" * 400 + b"}"), {400}, None),
    ("events wrong types", request("POST", "/api/v1/events", bearer(INGEST),
                                   b'{"source":1,"id":[],"severity":{},"title":null}'),
     {400}, None),
    ("silence deep", request("POST", "/api/v1/silences", bearer(OPERATOR), DEEP),
     {400}, "too_deep"),
    ("silence a list", request("POST", "/api/v1/silences", bearer(OPERATOR), b"[]"),
     {400}, None),
    ("silence matchers a number", request("POST", "/api/v1/silences", bearer(OPERATOR),
                                          b'{"matchers":5,"comment":"c"}'), {400}, None),
    ("silence matcher a dict", request("POST", "/api/v1/silences", bearer(OPERATOR),
                                       b'{"matchers":[{"a":1}],"comment":"c"}'), {400}, None),
    ("silence huge end", request("POST", "/api/v1/silences", bearer(OPERATOR),
                                 b'{"matchers":["a=\\"b\\""],"comment":"c","ends_at":'
                                 + b"9" * 400 + b"}"), {400}, None),
    ("silence comment a list", request("POST", "/api/v1/silences", bearer(OPERATOR),
                                       b'{"matchers":["a=\\"b\\""],"comment":["c"]}'),
     {400}, None),
    ("silence bad regex", request("POST", "/api/v1/silences", bearer(OPERATOR),
                                  b'{"matchers":["a=~\\"(?=b)\\""],"comment":"c"}'),
     {400}, None),
    ("silence not JSON", request("POST", "/api/v1/silences", bearer(OPERATOR), b"{"),
     {400}, "bad_json"),
    ("ack deep", request("POST", "/api/v1/alerts/abc/ack", bearer(OPERATOR), DEEP),
     {400}, "too_deep"),
    ("maintenance deep", request("POST", "/api/v1/maintenance", bearer(OPERATOR), DEEP),
     {400}, "too_deep"),
    ("maintenance wrong types", request("POST", "/api/v1/maintenance", bearer(OPERATOR),
                                        b'{"department":[1],"end":{},"comment":5}'),
     {400}, None),
    ("announcement deep", request("POST", "/api/v1/announcement", bearer(OPERATOR),
                                  b"[" * 1500 + b"]" * 1500), {400}, "too_deep"),
    ("announcement text a list", request("POST", "/api/v1/announcement", bearer(OPERATOR),
                                         b'{"text":["a"]}'), {400}, None),
    ("announcement NaN", request("POST", "/api/v1/announcement", bearer(OPERATOR),
                                 b'{"text":NaN}'), {400}, "bad_json"),
    ("ack comment a list", request("POST", "/api/v1/alerts/abc/ack", bearer(OPERATOR),
                                   b'{"comment":["x"],"duration":{}}'), {400, 404}, None),
    ("maintenance start NaN", request("POST", "/api/v1/maintenance", bearer(OPERATOR),
                                      b'{"department":"STP","start":"nan","end":1e400,'
                                      b'"comment":"c"}'), {400}, None),
    ("metrics basic UTF-8 but not ASCII", request("GET", "/metrics",
                                                  {"Authorization": "Basic tổng".encode()}),
     {401}, None),
    ("metrics basic of bytes not UTF-8", request("GET", "/metrics",
                                                 {"Authorization": b"Basic //79"}), {401}, None),
    ("bearer only spaces", request("GET", "/api/v1/alerts", bearer(b"   ")), {401}, None),
    ("bearer huge", request("GET", "/api/v1/alerts", bearer(b"x" * 8000)), {401}, None),
    ("header too long", request("GET", "/healthz", {"X-Long": b"y" * 9000}), {400},
     "bad_http"),
    ("request line garbage", b"GET /\x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n", {400}, "bad_http"),
    ("header without colon", request("GET", "/healthz", {"Bad Header": b"x"}), {400},
     "bad_http"),
    ("query limit text", request("GET", "/api/v1/events?limit=abc", bearer(OPERATOR)),
     {400}, None),
    ("query limit huge", request("GET", "/api/v1/events?limit=" + "9" * 400,
                                 bearer(OPERATOR)), {400}, None),
    ("query since NaN", request("GET", "/api/v1/events?since=nan", bearer(OPERATOR)),
     {400}, None),
    ("query since huge", request("GET", "/api/v1/events?since=1e400", bearer(OPERATOR)),
     {400}, None),
    ("query severity garbage", request("GET", "/api/v1/events?severity=%ff%fe",
                                       bearer(OPERATOR)), {400}, None),
    ("query lang garbage", request("GET", "/?lang=%ff%fe"), {400, 401}, None),
    ("query token garbage", request("GET", "/?token=%ff%fe"), {401, 200}, None),
    ("path garbage", request("DELETE", "/api/v1/silences/%ff%fe", bearer(OPERATOR)),
     {404}, None),
    ("series garbage", request("GET", "/api/v1/series?metric=%ff&start=nan",
                               bearer(OPERATOR)), {400}, None),
]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[IocApp]:
    app = IocApp(closed_config(tmp_path))
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


def rejected(app: IocApp, reason: str) -> float:
    return app.registry.get_sample_value("ioc_http_requests_rejected_total",
                                         {"reason": reason}) or 0.0


async def test_hostile_http_input_is_refused_counted_and_logged_once(
        app: IocApp, caplog: pytest.LogCaptureFixture) -> None:
    port = app.bound_port
    assert port is not None
    caplog.set_level(logging.WARNING, "ioc.web")
    expected: dict[str, int] = {}
    before = {reason: rejected(app, reason)
              for reason in ("bad_header", "bad_form", "bad_json", "too_deep", "bad_http")}
    for name, raw, statuses, reason in CASES:
        status, body = await send(port, raw)
        assert status in statuses, (name, status, body[:300])
        if status == 400 and reason != "bad_http":  # the HTTP parser answers in plain text
            assert json.loads(body)["error"], name  # a JSON error, no traceback
        if reason is not None:
            expected[reason] = expected.get(reason, 0) + 1
    for reason, count in expected.items():
        assert rejected(app, reason) - before[reason] == count, reason
    episodes = [r for r in caplog.records if "malformed requests refused" in r.message]
    assert len(episodes) == 1  # one line for the whole run of refusals
    parser = [r for r in caplog.records if "malformed HTTP refused" in r.message]
    assert len(parser) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Still serving, and a valid push after all of it is stored.
    headers = {"Authorization": f"Bearer {TOKENS['ingest']}"}
    valid = {"source": "waf", "id": "after-the-storm", "severity": "high", "title": "ok",
             "occurred_at": clock.now()}
    async with aiohttp.ClientSession() as session:
        async with session.post(app.url + "/api/v1/events", json=valid,
                                headers=headers) as resp:
            assert resp.status == 202
        async with session.get(app.url + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(app.url + "/metrics",
                               headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as resp:
            assert resp.status == 200
    await app.events.flush()
    stored = await app.events.store.query(EventQuery(sources=("waf",), limit=5))
    assert [s.event.id for s in stored] == ["after-the-storm"]


def test_json_depth_counts_only_structure() -> None:
    from web.bodies import MAX_JSON_DEPTH, json_depth

    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[[[[[", "b": "\\"[[["}') == 1   # brackets inside strings
    assert json_depth(b'"\\\\" [[1]]') == 2                          # an escaped backslash
    assert json_depth(b"]]]]" + b"[" * 10) == 6                      # the decoder refuses it
    assert json_depth(b"[" * 10_000) == MAX_JSON_DEPTH + 1          # stops counting early
    assert json_depth(b"") == 0
