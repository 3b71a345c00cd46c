"""The operator console's sessions and CSRF, the wall's viewer cookie, and the wall's alerts
panel fed by alert delivery."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.app import IocApp
from tests.alerts.test_delivery_e2e import RULE, fault
from tests.conftest import demo_config, free_port
from tests.web.test_stream import events, next_event
from web.auth import Authenticator, Principal
from web.sessions import SESSION_SECONDS, SessionStore, WallCookies
from web.wall import alerts_panel

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"
TOKENS = [{"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]},
          {"name": "tv-phong-hop", "token": VIEWER, "roles": ["viewer"]}]


# -- pure parts --------------------------------------------------------------------------------


def test_sessions_expire_and_csrf_tokens_belong_to_their_session() -> None:
    store = SessionStore(b"k" * 32)
    who = Principal("ca-truc", frozenset({"operator", "viewer"}))
    sid = store.create(who, now=100.0)
    other = store.create(who, now=100.0)
    assert store.get(sid, 101.0) is not None and store.get("nope", 101.0) is None
    assert store.csrf_ok(sid, store.csrf(sid))
    assert not store.csrf_ok(sid, store.csrf(other)) and not store.csrf_ok(sid, None)
    assert store.get(sid, 100.0 + SESSION_SECONDS) is None  # a shift later: signed out
    store.end(other)
    assert store.get(other, 101.0) is None


def test_wall_cookies_prove_a_viewer_token_and_grant_only_viewing() -> None:
    auth = Authenticator([("tv", "secret-a", ["viewer"]), ("boss", "secret-b", ["admin"]),
                          ("push", "secret-c", ["ingest"])])
    cookies = WallCookies(auth)
    boss = cookies.issue(auth.identify("Bearer secret-b"))
    tv = cookies.issue(auth.identify("Bearer secret-a"))
    assert cookies.principal(boss) == Principal("boss", frozenset({"viewer"}))
    assert cookies.principal(tv) is not None
    assert cookies.principal("tv." + "0" * 64) is None
    assert cookies.principal("push.x") is None and cookies.principal(None) is None
    auth.replace([("tv", "secret-new", ["viewer"]), ("boss", "secret-b", ["operator"])],
                 ["viewer"])  # tv's token replaced, boss kept with a role that still views
    assert cookies.principal(tv) is None
    assert cookies.principal(boss) is not None
    auth.replace([("tv", "secret-new", ["ingest"])], ["viewer"])  # boss removed, tv not a viewer
    assert cookies.principal(boss) is None
    with pytest.raises(KeyError):  # a token without the viewer role gets no cookie
        cookies.issue(auth.identify("Bearer secret-new"))


def test_sessions_end_when_their_token_is_removed_or_changed() -> None:
    auth = Authenticator([("a", "secret-a-0123456789", ["operator"]),
                          ("b", "secret-b-0123456789", ["operator"])])
    store = SessionStore(b"k" * 32, current=auth.current)
    sa = store.create(auth.identify("Bearer secret-a-0123456789"), now=0.0)
    sb = store.create(auth.identify("Bearer secret-b-0123456789"), now=0.0)
    auth.replace([("a", "secret-a-0123456789", ["operator"]),
                  ("b", "secret-b-0123456789", ["viewer"])], ["viewer"])  # b's roles changed
    assert store.get(sa, 1.0) is not None
    assert store.get(sb, 1.0) is None
    auth.replace([("a", "secret-a-changed-0123", ["operator"])], ["viewer"])  # a's value
    assert store.get(sa, 2.0) is None
    auth.replace([("a", "secret-a-0123456789", ["operator"])], ["viewer"])  # and back again
    assert store.get(sa, 3.0) is None  # an ended session stays ended


def alert(fp: str, severity: str, since: float, *, ack: str | None = None,
          silenced: bool = False, state: str = "firing") -> dict[str, Any]:
    return {"fingerprint": fp, "state": state,
            "labels": {"alertname": "TargetDown", "severity": severity, "department": "STP",
                       "target": f"{fp}-health"},
            "annotations": {"summary": f"{fp} không truy cập được"}, "value": 0.0,
            "active_at": since, "fired_at": since, "resolved_at": None,
            "department_name": "Sở Tư pháp", "receivers": [],
            "muted": {"silenced_by": ["s1"]} if silenced else {},
            "ack": {"by": ack} if ack else None}


def test_alerts_panel_lists_by_severity_then_unhandled_first_and_hides_when_none() -> None:
    assert alerts_panel([], None, 1000.0, 600) is None
    assert alerts_panel([alert("r", "critical", 1, state="resolved")], 5.0, 10.0, 600) is None
    rows = [alert("acked", "critical", 500, ack="ca-truc"), alert("warn", "warning", 600),
            alert("crit", "critical", 400), alert("quiet", "critical", 700, silenced=True),
            alert("info", "info", 800), alert("crit2", "critical", 900)]
    panel = alerts_panel(rows, 990.0, 1000.0, 600)
    assert panel is not None
    assert [(i["fingerprint"], i["acked_by"], i["silenced"])
            for i in panel["lists"]["full"]] == [
        ("crit2", None, False), ("crit", None, False), ("quiet", None, True),
        ("acked", "ca-truc", False), ("warn", None, False), ("info", None, False)]
    assert panel["firing"] == 6
    assert panel["by_severity"] == [("critical", 4), ("warning", 1), ("info", 1)]
    assert panel["stale"] is False
    assert alerts_panel(rows, 100.0, 1000.0, 600)["stale"] is True  # type: ignore[index]


# -- on a running ioc with a firing alert ------------------------------------------------------


@pytest.fixture
async def firing(tmp_path: Path) -> AsyncIterator[tuple[IocApp, str]]:
    sim_port = free_port()
    hostile = {**RULE, "annotations": {"summary": "<script>alert(1)</script> {{ labels.target }}"}}
    extra = {"alerts": {"evaluation_interval": "200ms", "default_rules": False,
                        "rules": [hostile]},
             "auth": {"tokens": TOKENS},
             "wall": {"heartbeat": "200ms"}}
    app = IocApp(demo_config(tmp_path, sim_port, codes=["STP", "CAT"], extra=extra))
    await app.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"{app.url}/api/v1/stream?since={app.wall.stream.last_id}") as stream:
            await fault(f"http://127.0.0.1:{sim_port}", "STP", "down")
            event = await next_event(events(stream), "panel", lambda d: d["panel"] == "alerts"
                                     and "alert-list" in d["html"]["vi"], limit=15)
        html = event["data"]["html"]["vi"]
        assert 'id="panel-alerts"' in html and " hidden" not in html.split(">")[0]
        assert "&lt;script&gt;" in html and "<script>" not in html
        assert "Nghiêm trọng" in html and "Sở Tư pháp" in html
        assert "Critical" in event["data"]["html"]["en"]
        yield app, str(app.dispatcher.view(0)[0]["fingerprint"])
    finally:
        await app.stop(grace=1.0)


async def sign_in(session: aiohttp.ClientSession, base: str, token: str,
                  origin: str | None = None) -> aiohttp.ClientResponse:
    headers = {"Origin": origin} if origin else {}
    return await session.post(base + "/console/login", data={"token": token},
                              headers=headers, allow_redirects=False)


async def test_console_signs_in_operators_only_and_guards_writes_with_csrf(firing) -> None:
    app, fp = firing
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(app.url + "/console") as resp:
            assert resp.status == 200 and 'name="token"' in await resp.text()
        for token, status in (("wrong", 401), (VIEWER, 403), ("", 401)):
            async with await sign_in(session, app.url, token) as resp:
                assert resp.status == status
        async with await sign_in(session, app.url, OPERATOR, origin="http://evil.example") \
                as resp:
            assert resp.status == 403
        async with await sign_in(session, app.url, OPERATOR, origin=app.url) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/console")
            cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        async with session.get(app.url + "/console") as resp:
            page = await resp.text()
        assert "ca-truc" in page and f'data-fingerprint="{fp}"' in page
        assert "&lt;script&gt;" in page and "<script>alert" not in page
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
        assert match is not None
        csrf = match.group(1)

        ack = f"{app.url}/api/v1/alerts/{fp}/ack"
        async with session.post(ack, json={"comment": "x"}) as resp:
            assert resp.status == 403 and (await resp.json())["error"] == "CSRF check failed"
        async with session.post(ack, json={"comment": "x"},
                                headers={"X-CSRF-Token": "0" * 64}) as resp:
            assert resp.status == 403
        async with session.post(ack, json={"comment": "đang xử lý"},
                                headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 200 and (await resp.json())["ack"]["by"] == "ca-truc"
        async with session.get(app.url + "/api/v1/alerts/history") as resp:
            kinds = [(e["kind"], e["actor"]) for e in (await resp.json())["events"]]
        assert ("ack", "ca-truc") in kinds

        async with session.post(app.url + "/console/logout", data={"csrf": "bad"},
                                allow_redirects=False) as resp:
            assert resp.status == 403
        async with session.post(app.url + "/console/logout", data={"csrf": csrf},
                                allow_redirects=False) as resp:
            assert resp.status == 303
        async with session.post(ack, json={}, headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 401  # the session is gone


async def test_the_wall_needs_a_viewer_token_when_anonymous_may_not_view(tmp_path: Path) -> None:
    extra = {"auth": {"tokens": TOKENS, "anonymous": []}}
    app = IocApp(demo_config(tmp_path, free_port(), codes=["STP"], interval="5s", extra=extra))
    await app.start()
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            for path in ("/", "/api/v1/stream"):
                async with session.get(app.url + path) as resp:
                    assert resp.status == 401, path
            async with session.get(app.url + "/?token=wrong") as resp:
                assert resp.status == 401
            async with session.get(f"{app.url}/?lang=en&token={OPERATOR}",
                                   allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/?lang=en"
                assert "HttpOnly" in resp.headers["Set-Cookie"]
            async with session.get(app.url + "/?lang=en") as resp:
                assert resp.status == 200 and 'id="tiles"' in await resp.text()
            async with session.get(app.url + "/api/v1/stream") as resp:
                assert resp.status == 200
            async with session.get(app.url + "/api/v1/announcement") as resp:
                assert resp.status == 200
            # the cookie of an operator's token still only lets the screen look
            async with session.delete(app.url + "/api/v1/announcement") as resp:
                assert resp.status == 401
    finally:
        await app.stop(grace=1.0)
