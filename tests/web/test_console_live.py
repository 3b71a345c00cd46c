"""The console on a running ioc: its live stream (alerts, acks, silences, pending targets,
the announcement, maintenance, history and who is on duty),
bulk ack and silence, the silence preview, typed dd/mm/yyyy times and the incidents page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ioc import clock
from ioc.incidents import reason_code
from ioc.model import Sample, make_labels
from service.app import IocApp
from tests.alerts.test_delivery_e2e import RULE, fault
from tests.conftest import PollWatcher, demo_config, free_port, polled_app
from tests.helpers import Changes
from tests.web.test_console import OPERATOR, TOKENS, VIEWER, sign_in
from tests.web.test_stream import events, next_event

LIVE = 2.0  # seconds within which a change must reach an open console (a timeout)
RULES = [{**RULE, "matchers": ['department="STP"']},
         {**RULE, "name": "SytDown", "matchers": ['department="SYT"'], "severity": "warning"}]


def rows(data: dict[str, Any], lang: str = "vi") -> str:
    """The HTML of the rows a table's delta event carries (web.console_rows)."""
    return "".join(data["html"][lang].values())


@dataclass
class Console:
    app: IocApp
    watcher: PollWatcher
    session: aiohttp.ClientSession
    csrf: str
    changes: Changes

    @property
    def sim(self) -> str:
        return f"http://{self.app.config.simulator.listen}"

    def post(self, path: str, data: Any, **headers: str) -> Any:
        return self.session.post(self.app.url + path, json=data,
                                 headers={"X-CSRF-Token": self.csrf, **headers})

    def firing(self) -> dict[str, dict[str, Any]]:
        return {a["labels"]["department"]: a for a in self.app.dispatcher.view(clock.now())
                if a["state"] == "firing"}

    async def until(self, condition: Callable[[], bool], limit: float = 15.0) -> None:
        await self.changes.until(condition, limit)


async def open_console(app: IocApp, session: aiohttp.ClientSession) -> str:
    async with await sign_in(session, app.url, OPERATOR) as resp:
        assert resp.status == 303
    async with session.get(app.url + "/console") as resp:
        page = await resp.text()
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    extra = {"alerts": {"evaluation_interval": "200ms", "default_rules": False,
                        "rules": RULES},
             "auth": {"tokens": TOKENS}, "wall": {"heartbeat": "200ms"}}
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT", "SYT"], extra=extra)
    async with polled_app(config) as (app, watcher):
        changes = Changes()
        app.dispatcher.subscribe(changes.set)
        app.pipeline.add_hook(lambda _outcome: changes.set())
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            csrf = await open_console(app, session)
            yield Console(app, watcher, session, csrf, changes)


# -- the stream -------------------------------------------------------------------------------


async def test_the_console_stream_needs_a_console_session(console: Console) -> None:
    url = console.app.url + "/console/stream"
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(url) as resp:
            assert resp.status == 401
        for token in (VIEWER, OPERATOR):  # a token is not a session: nothing streams
            async with anonymous.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 401
        async with anonymous.get(console.app.url + "/api/v1/stream") as resp:
            assert resp.status == 200  # the wall's own stream is unchanged
    async with console.session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        await next_event(events(resp), "heartbeat")


async def test_alerts_acks_silences_and_pending_targets_reach_an_open_console(
        console: Console) -> None:
    app = console.app
    since = app.console.stream.last_id
    async with console.session.get(f"{app.url}/console/stream?since={since}") as resp:
        stream = events(resp)
        await next_event(stream, "heartbeat")

        # A target failing without a rule for it: pending, with since when it fails.
        await fault(console.sim, "CAT", "down")
        await console.until(lambda: app.board.targets["cat-health"].raw_up is False)
        pending = await next_event(stream, "pending",
                                   lambda d: "cat-health" in rows(d), limit=LIVE)
        failing_since = app.board.targets["cat-health"].failing_since
        assert failing_since is not None
        local = datetime.fromtimestamp(failing_since, ZoneInfo("Asia/Ho_Chi_Minh"))
        shown = re.sub(r"<[^>]+>", "", rows(pending["data"]))
        assert local.strftime("%H:%M:%S %d/%m/%Y") in shown
        # why, in the wall's plain words (the simulator's "down" drops the connection)
        assert "Kết nối bị ngắt" in shown and "protocol_error" not in shown
        assert pending["data"]["count"] == 1 and pending["data"]["order"] == ["cat-health"]

        # A new alert.
        await fault(console.sim, "STP", "down")
        await console.until(lambda: "STP" in console.firing())
        fp = console.firing()["STP"]["fingerprint"]
        fired = await next_event(stream, "alerts",
                                 lambda d: f'data-fingerprint="{fp}"' in rows(d),
                                 limit=LIVE)
        assert 'data-severity="critical"' in rows(fired["data"])
        assert "Chưa xử lý" in rows(fired["data"])

        # An ack (made elsewhere: with a token, as a phone or another desk would).
        async with aiohttp.ClientSession() as other, other.post(
                f"{app.url}/api/v1/alerts/{fp}/ack", json={"comment": "đang xử lý"},
                headers={"Authorization": f"Bearer {OPERATOR}"}) as ack:
            assert ack.status == 200
        acked = await next_event(stream, "alerts",
                                 lambda d: "mark acked" in rows(d), limit=LIVE)
        assert "ca-truc" in rows(acked["data"])

        # A silence: the list and the alert's mark.
        async with console.post("/api/v1/silences", {
                "matchers": ['department="STP"'], "duration": "1h",
                "comment": "nâng cấp máy chủ"}) as made:
            assert made.status == 201, await made.text()
        # (one change publishes the alerts, then the silences)
        muted = await next_event(stream, "alerts", lambda d: "Đã tạm ẩn" in rows(d),
                                 limit=LIVE)
        assert muted["data"]["count"] == 1
        silences = await next_event(stream, "silences",
                                    lambda d: "nâng cấp máy chủ" in d["html"]["vi"],
                                    limit=LIVE)
        assert silences["data"]["count"] == 1
        assert 'department="STP"' in silences["data"]["html"]["vi"].replace("&#34;", '"')
        assert "&lt;" not in silences["data"]["html"]["vi"]  # the times are text, not markup

        # The alert resolves: it leaves the list.
        await fault(console.sim, "STP", None)
        await console.until(lambda: "STP" not in console.firing())
        await next_event(stream, "alerts", lambda d: d["count"] == 0, limit=LIVE)


async def test_announcement_maintenance_and_history_reach_an_open_console(
        console: Console) -> None:
    """The cards that used to reload the page: an announcement set and cleared elsewhere, a
    maintenance window announced and ended, and the history of each, arrive on the stream."""
    app = console.app
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    since = app.console.stream.last_id
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    async with console.session.get(f"{app.url}/console/stream?since={since}") as resp, \
            aiohttp.ClientSession() as other:
        stream = events(resp)
        await next_event(stream, "heartbeat")

        async with other.post(f"{app.url}/api/v1/announcement", headers=operator,
                              json={"text": "Họp giao ban lúc <14:00> & báo cáo"}) as made:
            assert made.status == 200
        shown = await next_event(stream, "announcement",
                                 lambda d: "Họp giao ban" in d["html"]["vi"], limit=LIVE)
        html = shown["data"]["html"]
        assert "Họp giao ban lúc &lt;14:00&gt; &amp; báo cáo" in html["vi"]
        assert "ca-truc" in html["vi"] and 'data-method="DELETE"' in html["vi"]
        assert "Họp giao ban" in html["en"]  # the text as written, the words in English
        history = await next_event(stream, "history",
                                   lambda d: "Họp giao ban" in d["html"]["vi"], limit=LIVE)
        assert "ca-truc" in history["data"]["html"]["vi"]

        start = datetime.fromtimestamp(clock.now() - 60, tz).replace(second=0, microsecond=0)
        end = start + timedelta(hours=2)
        async with other.post(f"{app.url}/api/v1/maintenance", headers=operator, json={
                "department": "SYT", "start": start.strftime("%d/%m/%Y %H:%M"),
                "end": end.strftime("%d/%m/%Y %H:%M"), "comment": "chuyển máy chủ"}) as made:
            assert made.status == 201, await made.text()
            window = (await made.json())["window"]
        card = await next_event(stream, "maintenance",
                                lambda d: "chuyển máy chủ" in d["html"]["vi"], limit=LIVE)
        assert f'data-id="{window["id"]}"' in card["data"]["html"]["vi"]
        assert end.strftime("%H:%M") in card["data"]["html"]["vi"]

        async with other.delete(f"{app.url}/api/v1/maintenance/{window['id']}",
                                headers=operator) as ended:
            assert ended.status == 200, await ended.text()
        await next_event(stream, "maintenance",
                         lambda d: f'data-id="{window["id"]}"' not in d["html"]["vi"],
                         limit=LIVE)

        async with other.delete(f"{app.url}/api/v1/announcement", headers=operator) as gone:
            assert gone.status == 200
        cleared = await next_event(stream, "announcement", lambda d: d["count"] == 0,
                                   limit=LIVE)
        assert "Họp giao ban" not in cleared["data"]["html"]["vi"]


async def test_the_console_page_renders_filters_pending_and_the_builder(
        console: Console) -> None:
    await fault(console.sim, "STP", "down")
    await console.until(lambda: "STP" in console.firing())
    async with console.session.get(console.app.url + "/console?severity=critical&rule="
                                   "TargetDown") as resp:
        page = await resp.text()
    assert resp.status == 200
    assert '<option value="critical" selected>' in page
    assert '<option value="TargetDown" translate="no" selected>' in page
    assert 'id="new-silence"' in page and 'id="b-target"' in page and "stp-health" in page
    assert 'type="datetime-local"' not in page
    assert 'placeholder="dd/mm/yyyy HH:MM"' in page
    assert 'data-since="' in page and 'id="pick-all"' in page


# -- bulk ack and silence ---------------------------------------------------------------------


async def test_bulk_ack_and_silence_report_each_alert_and_check_who_asks(
        console: Console) -> None:
    app = console.app
    await fault(console.sim, "STP", "down")
    await fault(console.sim, "SYT", "down")
    await console.until(lambda: {"STP", "SYT"} <= set(console.firing()))
    fps = [console.firing()[d]["fingerprint"] for d in ("STP", "SYT")]
    body = {"action": "ack", "fingerprints": [*fps, "no-such-alert"], "comment": "đã nhận"}
    url = app.url + "/api/v1/alerts/bulk"

    async with aiohttp.ClientSession() as other:
        async with other.post(url, json=body) as resp:
            assert resp.status == 401  # anonymous
        async with other.post(url, json=body,
                              headers={"Authorization": f"Bearer {VIEWER}"}) as resp:
            assert resp.status == 403  # a viewer may not act
    async with console.session.post(url, json=body) as resp:
        assert resp.status == 403  # the session without the page's CSRF token
    async with console.post("/api/v1/alerts/bulk", body, **{"Sec-Fetch-Site": "cross-site"}) \
            as resp:
        assert resp.status == 403  # from another site's page
    async with console.post("/api/v1/alerts/bulk", body, Origin="http://evil.example") as resp:
        assert resp.status == 403
    assert all(app.dispatcher.view(clock.now())[i]["ack"] is None for i in range(2))

    async with console.post("/api/v1/alerts/bulk", body) as resp:
        assert resp.status == 200
        result = await resp.json()
    assert (result["ok"], result["failed"]) == (2, 1)
    by_fp = {r["fingerprint"]: r for r in result["results"]}
    assert by_fp["no-such-alert"]["status"] == 404 and not by_fp["no-such-alert"]["ok"]
    assert all(by_fp[fp]["ack"]["by"] == "ca-truc" for fp in fps)
    async with console.session.get(app.url + "/api/v1/alerts/history") as resp:
        acks = [e for e in (await resp.json())["events"] if e["kind"] == "ack"]
    assert len(acks) == 2 and {e["actor"] for e in acks} == {"ca-truc"}

    silence = {"action": "silence", "fingerprints": [*fps, fps[0], "gone"],
               "comment": "bảo trì", "duration": "2h"}
    async with console.post("/api/v1/alerts/bulk", silence) as resp:
        result = await resp.json()
    assert (result["ok"], result["failed"]) == (2, 1)  # a repeated fingerprint counts once
    assert len(app.dispatcher.silences) == 2
    assert all(a["muted"].get("silenced_by") for a in console.firing().values())

    for bad, error in (({"action": "ack", "fingerprints": []}, "invalid fingerprints"),
                       ({"action": "delete", "fingerprints": fps}, "invalid action"),
                       ({"action": "silence", "fingerprints": fps}, "invalid comment"),
                       ({"action": "silence", "fingerprints": fps, "comment": "x",
                         "end": "31/02/2027 10:00"}, "invalid end"),
                       ({"action": "ack", "fingerprints": ["x"] * 501}, "too many alerts")):
        async with console.post("/api/v1/alerts/bulk", bad) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == error, bad
    async with console.session.post(url + "?lang=vi", json={
            "action": "silence", "fingerprints": fps, "comment": "x", "end": "24:00 05/12/2026"},
            headers={"X-CSRF-Token": console.csrf}) as resp:
        assert "không đúng dạng dd/mm/yyyy HH:MM" in (await resp.json())["detail"]
    async with console.session.post(url, data=b"{" + b" " * 20000 + b"}", headers={
            "X-CSRF-Token": console.csrf, "Content-Type": "application/json"}) as resp:
        assert resp.status == 413


async def test_the_preview_lists_the_alerts_a_silence_would_match(console: Console) -> None:
    await fault(console.sim, "STP", "down")
    await fault(console.sim, "SYT", "down")
    await console.until(lambda: {"STP", "SYT"} <= set(console.firing()))

    async def preview(matchers: Any, token: str | None = None) -> tuple[int, Any]:
        if token is None:
            async with console.post("/api/v1/silences/preview", {"matchers": matchers}) as r:
                return r.status, await r.json()
        async with aiohttp.ClientSession() as other, other.post(
                console.app.url + "/api/v1/silences/preview", json={"matchers": matchers},
                headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()

    status, body = await preview(['department="STP"'])
    assert status == 200 and body["count"] == 1
    assert body["alerts"][0]["labels"]["target"] == "stp-health"
    assert body["alerts"][0]["department_name"] == "Sở Tư pháp"
    status, body = await preview(['alertname=~"TargetDown|SytDown"'], token=VIEWER)
    assert status == 200 and body["count"] == 2
    status, body = await preview(['department="CAT"'])
    assert status == 200 and body == {"matchers": ['department="CAT"'], "count": 0,
                                      "alerts": []}
    for bad in (['department=~"("'], ['department!="nothing"'], [], "x", ["nope"]):
        status, body = await preview(bad)
        assert status == 400 and body["error"] == "invalid matchers", bad
    async with aiohttp.ClientSession() as anonymous, anonymous.post(
            console.app.url + "/api/v1/silences/preview",
            json={"matchers": ['department="STP"']}) as resp:
        assert resp.status == 200  # a read: anonymous holds the viewer role by default
    assert not console.app.dispatcher.silences  # nothing was created


# -- typed times on the API -------------------------------------------------------------------


async def test_maintenance_and_silences_take_typed_local_times(console: Console) -> None:
    app = console.app
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    start = datetime.fromtimestamp(clock.now() + 3600, tz).replace(second=0, microsecond=0)
    end = datetime.fromtimestamp(clock.now() + 7200, tz).replace(second=0, microsecond=0)
    async with console.post("/api/v1/maintenance", {
            "department": "STP", "start": start.strftime("%d/%m/%Y %H:%M"),
            "end": end.strftime("%d/%m/%Y %H:%M"), "comment": "chuyển máy chủ"}) as resp:
        assert resp.status == 201, await resp.text()
        window = (await resp.json())["window"]
    assert (window["starts_at"], window["ends_at"]) == (start.timestamp(), end.timestamp())

    async with console.post("/api/v1/silences", {
            "matchers": ['department="STP"'], "end": end.strftime("%d/%m/%Y %H:%M"),
            "comment": "x"}) as resp:
        assert resp.status == 201
        assert (await resp.json())["silence"]["ends_at"] == end.timestamp()

    for lang, words in (("vi", "Không có ngày «30/02/2027 10:00»"),
                        ("en", "There is no such day as “30/02/2027 10:00”")):
        async with console.session.post(f"{app.url}/api/v1/maintenance?lang={lang}", json={
                "department": "STP", "end": "30/02/2027 10:00", "comment": "x"},
                headers={"X-CSRF-Token": console.csrf}) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["error"] == "invalid end" and words in body["detail"]
    async with console.post("/api/v1/silences", {
            "matchers": ['department="STP"'], "end": "05/12/2026 24:00",
            "comment": "x"}) as resp:
        assert resp.status == 400 and "hours run 00 to 23" in (await resp.json())["detail"]


# -- the incidents page -----------------------------------------------------------------------


async def test_the_incidents_page_lists_filters_pages_and_takes_notes(console: Console) -> None:
    app = console.app
    labels = make_labels(target="ghost", department="STP", kind="http")
    t0 = clock.now() - 600
    samples = []
    for i, up in enumerate([True, False, True, False, False, True, False]):
        samples.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, t0 + i * 30))
        if not up:
            samples.append(Sample("ioc_target_failure_reason", labels,
                                  reason_code("http_status"), t0 + i * 30))
    await app.store.append(samples)
    await app.incident_job.run_once()

    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(app.url + "/console/incidents") as resp:
            page = await resp.text()
        assert 'name="token"' in page and 'class="incident' not in page  # the sign-in form
        assert 'name="back" value="/console/incidents"' in page
        for back, lands in (("/console/incidents", "/console/incidents?lang=vi"),
                            ("/console/incidents?open=1&lang=en&target=ghost",
                             "/console/incidents?open=1&target=ghost&lang=vi"),
                            ("/console?rule=SytDown", "/console?rule=SytDown&lang=vi"),
                            ("https://evil.example/", "/console?lang=vi"),
                            ("//evil.example/console", "/console?lang=vi"),
                            ("/api/v1/alerts", "/console?lang=vi")):
            async with anonymous.post(app.url + "/console/login", data={
                    "token": OPERATOR, "back": back}, allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == lands
    async with console.session.get(app.url + "/console/incidents?target=ghost") as resp:
        page = await resp.text()
    assert resp.status == 200
    ids = re.findall(r'<li class="incident[^"]*" data-id="([^"]+)"', page)
    assert len(ids) == 3 and "Chưa kết thúc" in page and "http_status (2)" in page
    assert "1 phút 00 giây" in page  # the closed two-poll outage lasted 60 s
    assert 'action="/api/v1/reports"' in page and 'name="period"' in page

    async with console.session.get(app.url + "/console/incidents?target=ghost&open=1"
                                   "&lang=en") as resp:
        page = await resp.text()
    assert len(re.findall(r'class="incident open"', page)) == 1 and "Open" in page

    async with console.session.get(app.url + "/console/incidents?start=31/02/2026%2010:00"
                                   "&end=abc") as resp:
        page = await resp.text()
    assert resp.status == 200 and page.count('class="error input-error"') == 2

    async with console.session.get(app.url + "/console/incidents?target=ghost") as resp:
        page = await resp.text()
    assert "rel=\"next\"" not in page  # three fit on one page

    async with console.post(f"/api/v1/incidents/{ids[0]}/notes", {"text": "đã gọi sở"}) as r:
        assert r.status == 201
    async with console.session.get(app.url + "/console/incidents?target=ghost") as resp:
        page = await resp.text()
    assert "đã gọi sở" in page and "ca-truc" in page


async def test_the_incidents_page_pages_on(console: Console, monkeypatch) -> None:
    from web import console_incidents

    monkeypatch.setattr(console_incidents, "PAGE_SIZE", 1)
    app = console.app
    labels = make_labels(target="ghost", department="STP", kind="http")
    t0 = clock.now() - 600
    await app.store.append([Sample("ioc_target_up", labels, float(i % 2), t0 + i * 30)
                            for i in range(6)])
    await app.incident_job.run_once()
    seen: list[str] = []
    url = app.url + "/console/incidents?target=ghost"
    for _ in range(5):
        async with console.session.get(url) as resp:
            page = await resp.text()
        seen += re.findall(r'<li class="incident[^"]*" data-id="([^"]+)"', page)
        found = re.search(r'href="([^"]+)" rel="next"', page)
        if found is None:
            break
        url = app.url + found.group(1).replace("&amp;", "&")
    assert len(seen) == 3 and len(set(seen)) == 3


async def test_rules_that_have_not_fired_are_offered_in_the_lists(console: Console) -> None:
    """The filter and the silence builder name every rule in force, fired or not."""
    async with console.session.get(console.app.url + "/console") as resp:
        page = await resp.text()
    for rule in RULES:
        assert f'<option value="{rule["name"]}"' in page, rule["name"]


async def test_the_duty_card_follows_a_roster_edit_without_a_reload(tmp_path: Path) -> None:
    """Who is on duty is live too: a roster edited elsewhere (here with an admin token)
    reaches an open console's on-call card, in both languages, escaped."""
    admin = "admin-token-0123456789abc"
    people = [{"id": p, "name": f"Cán bộ {p.upper()}", "email": f"{p}@hg.gov.vn"}
              for p in ("an", "binh")]

    def roster(first: str) -> dict[str, Any]:
        return {"people": people, "teams": [{"name": "vanhanh", "rotation": {
            "start": "2020-01-01", "people": [first]}}]}

    extra = {"auth": {"tokens": [*TOKENS, {"name": "quan-tri", "token": admin,
                                            "roles": ["admin"]}]},
             "wall": {"heartbeat": "200ms"},
             "alerts": {"oncall": {**roster("an"), "policies": [
                 {"name": "critical", "team": "vanhanh",
                  "steps": [{"after": "0s", "notify": ["oncall"]}]}]}}}
    config = demo_config(tmp_path, free_port(), codes=["STP"], extra=extra)
    async with polled_app(config) as (app, _), \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with await sign_in(session, app.url, admin) as resp:  # admins edit the roster
            assert resp.status == 303
        async with session.get(app.url + "/console") as resp:
            page = await resp.text()
        assert 'id="oncall-state"' in page and "Cán bộ AN" in page
        assert re.search(r'id="edit-roster"[^>]* data-live', page)  # saved without a reload
        since = app.console.stream.last_id
        async with session.get(f"{app.url}/console/stream?since={since}") as stream:
            feed = events(stream)
            await next_event(feed, "heartbeat")
            edited = roster("binh")
            edited["people"] = [*people, {"id": "x", "name": "<b>Kẻ lạ</b>"}]
            edited["teams"][0]["lead"] = "x"
            async with aiohttp.ClientSession() as other, other.put(
                    app.url + "/api/v1/oncall/roster", json={"roster": edited},
                    headers={"Authorization": f"Bearer {admin}"}) as resp:
                assert resp.status == 200, await resp.text()
            card = await next_event(feed, "oncall",
                                    lambda d: "Cán bộ BINH" in d["html"]["vi"], limit=LIVE)
            assert card["data"]["count"] == 1
            assert "Cán bộ AN" not in card["data"]["html"]["vi"]
            assert "Cán bộ BINH" in card["data"]["html"]["en"]
            assert "&lt;b&gt;Kẻ lạ&lt;/b&gt;" in card["data"]["html"]["vi"]
            assert "<b>Kẻ lạ" not in card["data"]["html"]["vi"]
