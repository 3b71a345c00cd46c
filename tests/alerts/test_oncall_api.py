"""The on-call API on a running ioc: who is on duty, and the roster an admin edits — stored
in the database (config.yaml only seeds it), audited, kept across a restart, and replaced
when the config's roster itself changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.app import IocApp
from service.config import Config
from tests.alerts.test_alerts_api import OPERATOR, VIEWER, Client, check
from tests.conftest import demo_config, free_port

ADMIN = "admin-token-0123456789abcd"
TOKENS = {"auth": {"tokens": [{"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]},
                              {"name": "quan-tri", "token": ADMIN, "roles": ["admin"]},
                              {"name": "wall", "token": VIEWER, "roles": ["viewer"]}],
                   "anonymous": []}}


def roster(people: list[str], start: str = "2020-01-01") -> dict[str, Any]:
    return {
        "people": [{"id": p, "name": f"Cán bộ {p.upper()}", "email": f"{p}@hg.gov.vn"}
                   for p in people],
        "teams": [{"name": "vanhanh", "lead": people[0], "rotation": {
            "start": start, "days": 1, "handoff": "07:30", "people": people}}],
        "holidays": [{"date": "2027-01-01", "name": "Tết Dương lịch"}],
    }


def config(tmp_path: Path, seed: dict[str, Any]) -> Config:
    alerts = {"alerts": {"oncall": {
        **seed, "policies": [{"name": "critical", "team": "vanhanh",
                              "steps": [{"after": "0s", "notify": ["oncall"]}]}]}}}
    return demo_config(tmp_path, free_port(), codes=["STP"], extra={**TOKENS, **alerts})


async def test_oncall_view_and_roster_edits_survive_a_restart(tmp_path: Path) -> None:
    seed = roster(["an"])
    app = IocApp(config(tmp_path, seed))
    await app.start()
    try:
        client = Client(app.url)
        assert (await client.call("GET", "/api/v1/oncall"))[0] == 401
        status, body = await client.call("GET", "/api/v1/oncall", VIEWER)
        assert status == 200
        check("/api/v1/oncall", "get", 200, body)
        (team,) = body["teams"]
        assert team["team"] == "vanhanh" and team["now"]["name"] == "Cán bộ AN"
        assert "email" not in str(body)  # addresses stay out of the read API

        path = "/api/v1/oncall/roster"
        assert (await client.call("GET", path, OPERATOR))[0] == 403
        assert (await client.call("PUT", path, OPERATOR, {"roster": seed}))[0] == 403
        status, stored = await client.call("GET", path, ADMIN)
        assert status == 200 and stored["roster"]["people"][0]["email"] == "an@hg.gov.vn"

        # Refused edits name their path and change nothing.
        bad = roster(["an", "binh"])
        bad["teams"][0]["rotation"]["people"].append("ghost")
        status, answer = await client.call("PUT", path, ADMIN, {"roster": bad})
        assert status == 400 and "unknown person 'ghost'" in answer["detail"]
        check(path, "put", 400, answer)
        status, answer = await client.call("PUT", path, ADMIN, {"roster": {
            **roster(["an"]), "teams": []}})
        assert status == 400 and "needs team 'vanhanh'" in answer["detail"]
        assert (await client.call("PUT", path, ADMIN, ["x"]))[0] == 400

        edited = roster(["binh", "cuong"])
        status, answer = await client.call("PUT", path, ADMIN, {"roster": edited})
        assert status == 200
        check(path, "put", 200, answer)
        status, body = await client.call("GET", "/api/v1/oncall", VIEWER)
        assert body["teams"][0]["now"]["person"] in ("binh", "cuong")
        status, audit = await client.call("GET", "/api/v1/audit", ADMIN)
        assert [(e["actor"], e["method"], e["status"]) for e in audit["entries"]
                if e["path"] == path][:1] == [("quan-tri", "PUT", 200)]
        status, hist = await client.call("GET", "/api/v1/alerts/history", VIEWER)
        assert [e["actor"] for e in hist["events"] if e["kind"] == "roster"] == ["quan-tri"]
    finally:
        await app.stop(grace=1.0)

    again = IocApp(config(tmp_path, seed))  # same config: the admin's edit stays
    await again.start()
    try:
        status, stored = await Client(again.url).call("GET", path, ADMIN)
        assert [p["id"] for p in stored["roster"]["people"]] == ["binh", "cuong"]
    finally:
        await again.stop(grace=1.0)

    changed = IocApp(config(tmp_path, roster(["dung"])))  # config's roster edited: it wins
    await changed.start()
    try:
        status, stored = await Client(changed.url).call("GET", path, ADMIN)
        assert [p["id"] for p in stored["roster"]["people"]] == ["dung"]
    finally:
        await changed.stop(grace=1.0)


async def test_the_console_shows_the_duty_and_lets_only_admins_edit_the_roster(
        tmp_path: Path) -> None:
    import json
    import re
    from html import unescape

    import aiohttp

    from tests.web.test_console import sign_in

    app = IocApp(config(tmp_path, roster(["an", "binh"])))
    await app.start()
    try:
        for token, admin in ((OPERATOR, False), (ADMIN, True)):
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                (await sign_in(session, app.url, token)).close()
                async with session.get(app.url + "/console") as resp:
                    page = await resp.text()
                assert 'id="oncall"' in page and "Cán bộ" in page
                assert ('id="edit-roster"' in page) is admin
                if not admin:
                    continue
                csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
                shown = re.search(r'<textarea name="roster"[^>]*>(.*?)</textarea>', page, re.S)
                assert csrf and shown
                edited = json.loads(unescape(shown.group(1)))
                edited["people"][1]["name"] = "Trần Thị <Bình>"
                async with session.put(app.url + "/api/v1/oncall/roster",
                                       json={"roster": edited},
                                       headers={"X-CSRF-Token": csrf.group(1)}) as resp:
                    assert resp.status == 200
                async with session.get(app.url + "/console") as resp:
                    page = await resp.text()
                assert "Trần Thị &lt;Bình&gt;" in page and "<Bình>" not in page
                async with session.get(app.url + "/api/v1/alerts/history") as resp:
                    kinds = [(e["kind"], e["actor"]) for e in (await resp.json())["events"]]
                assert ("roster", "quan-tri") in kinds
    finally:
        await app.stop(grace=1.0)


async def test_the_wall_shows_today_s_duty_officer(tmp_path: Path) -> None:
    import aiohttp

    from tests.web.test_stream import events, next_event
    from web.wall import duty_line

    assert duty_line([{"team": "vanhanh", "now": {"name": "Trần Thị <Bình>"}}]) == \
        "Trần Thị <Bình>"
    assert duty_line([{"team": "a", "now": {"name": "An"}}, {"team": "b", "now": None},
                      {"team": "c", "now": {"name": "Cường"}}]) == "An (a) · Cường (c)"
    assert duty_line([]) == ""
    seed = roster(["an"])
    seed["people"][0]["name"] = "Trần Thị <Bình>"
    app = IocApp(config(tmp_path, seed))
    await app.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(
                app.url + "/", headers={"Authorization": f"Bearer {VIEWER}"}) as resp:
            page = await resp.text()
        assert resp.status == 200
        assert '<span id="duty-text" translate="no">Trần Thị &lt;Bình&gt;</span>' in page

        # A connected screen hears the change when an admin edits the roster.
        headers = {"Authorization": f"Bearer {VIEWER}"}
        async with aiohttp.ClientSession() as session, session.get(
                app.url + "/api/v1/stream", headers=headers) as stream:
            received = events(stream)
            await next_event(received, "heartbeat")
            status, _ = await Client(app.url).call("PUT", "/api/v1/oncall/roster", ADMIN,
                                                   {"roster": roster(["cuong"])})
            assert status == 200
            event = await next_event(received, "duty", limit=10)
            assert event["data"] == {"text": "Cán bộ CUONG"}
    finally:
        await app.stop(grace=1.0)


async def test_a_shift_handover_is_a_change_the_wall_is_woken_for(tmp_path: Path) -> None:
    """Who is on duty changes with time alone: delivery names the next handover among the
    instants it changes by itself, so the wall's one timer fires then (no looking every
    second)."""
    from ioc import clock

    app = IocApp(config(tmp_path, roster(["an", "cuong"])))
    await app.start()
    try:
        now = clock.now()
        escalator = app.dispatcher.escalator
        assert escalator is not None
        roster_now = escalator.roster
        handovers = [duty.ends_at for team in roster_now.teams
                     if (duty := roster_now.on_duty(team, now)) is not None]
        assert handovers and all(now < t <= now + 86400 for t in handovers)
        assert app.dispatcher.next_change(now) == min(handovers)
        assert app.wall._alerts_timer.handle is not None  # armed for it
    finally:
        await app.stop(grace=1.0)
