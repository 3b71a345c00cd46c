"""The announcement API: roles, bad input, the live stream, the history and restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from service.app import IocApp
from tests.alerts.test_alerts_api import check
from tests.conftest import demo_config, free_port
from tests.web.test_stream import events, next_event

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"
PATH = "/api/v1/announcement"


def config(tmp_path: Path, sim_port: int) -> Any:
    return demo_config(tmp_path, sim_port, codes=["STP"], interval="5s", extra={
        "auth": {"tokens": [{"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]},
                            {"name": "tv", "token": VIEWER, "roles": ["viewer"]}]},
        "wall": {"announcement": "Chào mừng", "heartbeat": "200ms"}})


async def call(app: IocApp, method: str, token: str | None = None, body: Any = None,
               data: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.request(
            method, app.url + PATH, json=body, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_operators_set_and_clear_it_live_and_it_survives_restarts(tmp_path: Path) -> None:
    sim_port = free_port()
    app = IocApp(config(tmp_path, sim_port))
    await app.start()
    try:
        status, body = await call(app, "GET")
        assert status == 200 and body["announcement"] == {
            "text": "Chào mừng", "set_by": "config", "set_at": None}
        check(PATH, "get", 200, body)
        assert (await call(app, "POST", None, {"text": "x"}))[0] == 401
        assert (await call(app, "POST", VIEWER, {"text": "x"}))[0] == 403
        assert (await call(app, "DELETE", VIEWER))[0] == 403

        async with aiohttp.ClientSession() as session, session.get(
                f"{app.url}/api/v1/stream?since={app.wall.stream.last_id}") as stream:
            feed = events(stream)
            status, body = await call(app, "POST", OPERATOR,
                                      {"text": "  Họp giao ban\nlúc 14:00 <b>phòng 2</b> "})
            assert status == 200, body
            check(PATH, "post", 200, body)
            assert body["announcement"]["text"] == "Họp giao ban lúc 14:00 <b>phòng 2</b>"
            assert body["announcement"]["set_by"] == "ca-truc"
            event = await next_event(feed, "announcement")
            assert event["data"] == {"text": "Họp giao ban lúc 14:00 <b>phòng 2</b>"}

        async with aiohttp.ClientSession() as session, session.get(app.url + "/") as resp:
            page = await resp.text()
        assert "Họp giao ban lúc 14:00 &lt;b&gt;phòng 2&lt;/b&gt;" in page  # escaped
    finally:
        await app.stop(grace=1.0)

    app = IocApp(config(tmp_path, sim_port))  # same database: the operator's text wins
    await app.start()
    try:
        _, body = await call(app, "GET")
        assert body["announcement"]["text"] == "Họp giao ban lúc 14:00 <b>phòng 2</b>"
        status, body = await call(app, "DELETE", OPERATOR)
        assert status == 200 and body["announcement"]["text"] == ""
        check(PATH, "delete", 200, body)
    finally:
        await app.stop(grace=1.0)

    app = IocApp(config(tmp_path, sim_port))  # cleared stays cleared, config text or not
    await app.start()
    try:
        _, body = await call(app, "GET")
        assert body["announcement"]["text"] == "" and body["announcement"]["set_by"] == \
            "ca-truc"
        async with aiohttp.ClientSession() as session, session.get(
                app.url + "/api/v1/alerts/history") as resp:
            history = (await resp.json())["events"]
        assert [(e["kind"], e["actor"], e["detail"]["text"]) for e in history[:2]] == [
            ("announcement_cleared", "ca-truc", ""),
            ("announcement", "ca-truc", "Họp giao ban lúc 14:00 <b>phòng 2</b>")]
    finally:
        await app.stop(grace=1.0)


async def test_bad_text_gets_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    app = IocApp(config(tmp_path, free_port()))
    await app.start()
    try:
        for body, data, error in (
                ({"text": ""}, None, "invalid text"),
                ({"text": "   "}, None, "invalid text"),
                ({"text": "a\u202eb"}, None, "invalid text"),
                ({"text": "x" * 501}, None, "invalid text"),
                ({"text": 5}, None, "invalid text"),
                ({"words": "x"}, None, "invalid body"),
                (None, b"{not json", "invalid JSON"),
                (None, b'{"text": "' + b"x" * 5000 + b'"}', "body too large")):
            status, answer = await call(app, "POST", OPERATOR, body, data)
            assert status in (400, 413) and answer["error"] == error, (body, answer)
        _, body = await call(app, "GET")
        assert body["announcement"]["text"] == "Chào mừng"
    finally:
        await app.stop(grace=1.0)
