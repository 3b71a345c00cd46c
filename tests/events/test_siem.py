"""The siem collector against a local Wazuh-indexer-like server and a generic JSON list API:
paging, deduplication, and the cursor kept across a restart of ioc."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors.siem import Cursor, SiemCollector, SiemConfig, wazuh_event
from ioc.event_sink import EventSink
from ioc.store.events import EventQuery, EventStore
from service.app import IocApp
from tests.conftest import PollWatcher
from tests.events.conftest import events_config

NOW = time.time()


def wazuh_time(ts: float) -> str:
    """Wazuh writes ``2024-05-01T08:30:00.123+0000``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class FakeIndexer:
    """Answers ``POST /wazuh-alerts-*/_search`` like OpenSearch: range, sort, search_after."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.queries: list[dict[str, Any]] = []

    def add(self, n: int, at: float, *, level: int = 10, groups: tuple[str, ...] = ("web",),
            dept: str | None = "STP") -> None:
        for _ in range(n):
            number = len(self.alerts)
            self.alerts.append({
                "timestamp": wazuh_time(at), "id": f"{int(at)}.{number:06d}",
                "rule": {"id": "31151", "level": level, "description": f"Tấn công web {number}",
                         "groups": list(groups)},
                "agent": {"id": "007", "name": "dvc-stp-web01",
                          **({"labels": {"department": dept}} if dept else {})},
                "manager": {"name": "wazuh-hg"},
                "full_log": f"GET /admin.php?id={number} 403",
            })

    async def search(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(b"ioc-reader:s3cret-password").decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.match_info["index"] != "wazuh-alerts-*":
            return web.json_response({"error": "no such index"}, status=404)
        query = await request.json()
        self.queries.append(query)
        gte = query["query"]["range"]["timestamp"]["gte"]
        docs = []
        for doc in self.alerts:
            ms = round(datetime.fromisoformat(doc["timestamp"]).timestamp() * 1000)
            if ms >= gte:
                docs.append(((ms, doc["id"]), doc))
        docs.sort(key=lambda pair: pair[0])
        after = query.get("search_after")
        if after is not None:
            docs = [pair for pair in docs if pair[0] > tuple(after)]
        hits = [{"_index": "wazuh-alerts-4.x-2024.05.01", "_id": f"x{key[1]}",
                 "_source": doc, "sort": list(key)} for key, doc in docs[:query["size"]]]
        return web.json_response({"took": 1, "hits": {"total": {"value": len(docs)},
                                                      "hits": hits}})


@pytest.fixture
async def indexer(aiohttp_server: Any) -> AsyncIterator[tuple[FakeIndexer, str]]:
    fake = FakeIndexer()
    app = web.Application()
    app.router.add_post("/{index}/_search", fake.search)
    server = await aiohttp_server(app)
    yield fake, str(server.make_url("")).rstrip("/")


def siem_block(url: str, **over: Any) -> dict[str, Any]:
    return {"type": "siem", "name": "wazuh", "department": "STTTT", "url": url,
            "username": "ioc-reader", "password": "s3cret-password", "page_size": 10,
            "event_department": "agent.labels.department", **over}


def total(sink: EventSink) -> float:
    return sum(s.value for metric in sink.total.collect() for s in metric.samples
               if s.name == "ioc_security_events_total")


async def test_wazuh_pages_dedups_and_resumes(indexer: tuple[FakeIndexer, str],
                                             sink: EventSink) -> None:
    fake, url = indexer
    fake.add(12, NOW - 600)          # twelve alerts in one millisecond: more than a page
    fake.add(13, NOW - 300, level=15, groups=("authentication_failed",))
    collector = SiemCollector(SiemConfig.model_validate(siem_block(url)))
    collector.bind(sink)
    async with aiohttp.ClientSession() as session:
        result = await collector.collect(session, NOW)
        assert result.up and result.value == 25
        assert len(fake.queries) == 3 and "search_after" in fake.queries[1]
        assert (await collector.collect(session, NOW)).value == 0  # nothing new, nothing twice
        fake.add(2, NOW - 300)       # late arrivals in the cursor's own millisecond
        fake.add(1, NOW - 10, level=3)
        assert (await collector.collect(session, NOW)).value == 3
    stored = await sink.store.query(EventQuery(limit=100))
    assert len(stored) == 28 and total(sink) == 28
    assert len({s.event.id for s in stored}) == 28
    critical = [s.event for s in stored if s.event.severity == "critical"]
    assert len(critical) == 13 and {e.category for e in critical} == {"auth_failure"}
    assert {e.department for e in critical} == {"STP"}
    assert stored[0].event.severity == "info" and stored[0].event.host == "dvc-stp-web01"
    assert stored[0].event.id.startswith("wazuh-hg/")
    cursor = Cursor.loads(await sink.load_cursor("siem:wazuh") or "")
    assert abs(cursor.ts_ms - (NOW - 10) * 1000) < 2 and len(cursor.ids) == 1


async def test_first_poll_reads_only_the_lookback(indexer: tuple[FakeIndexer, str],
                                                  sink: EventSink) -> None:
    fake, url = indexer
    fake.add(3, NOW - 7200)
    fake.add(2, NOW - 60)
    collector = SiemCollector(SiemConfig.model_validate(siem_block(url, lookback="1h")))
    collector.bind(sink)
    async with aiohttp.ClientSession() as session:
        assert (await collector.collect(session, NOW)).value == 2


async def test_wrong_password_is_a_failed_poll(indexer: tuple[FakeIndexer, str],
                                               sink: EventSink) -> None:
    from ioc.collector import CollectorFailure

    _, url = indexer
    collector = SiemCollector(SiemConfig.model_validate(siem_block(url, password="wrong-one")))
    collector.bind(sink)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CollectorFailure) as failure:
            await collector.collect(session, NOW)
    assert failure.value.reason == "http_status" and "401" in str(failure.value)
    assert "wrong-one" not in str(failure.value)


async def test_cursor_survives_a_restart_of_ioc(indexer: tuple[FakeIndexer, str],
                                                tmp_path: Path) -> None:
    fake, url = indexer
    fake.add(15, NOW - 120)
    config = events_config(tmp_path, collectors=[siem_block(url, interval="200ms")])

    def stored(app: IocApp) -> float:
        return app.registry.get_sample_value("ioc_security_events_total", {
            "department": "STP", "source": "wazuh", "severity": "medium",
            "category": "other"}) or 0.0

    async def run_once(expect_new: int) -> IocApp:
        app = IocApp(config)
        watcher = PollWatcher()
        app.pipeline.add_hook(watcher)
        await app.start()
        try:
            # counted by the sink, not by one poll's value: under load a poll can time out
            # after its first page was stored, and the next poll reads the rest
            await watcher.until(lambda seen: any(o.result.up for o in seen) and stored(app)
                                >= expect_new)
            assert stored(app) == expect_new
        finally:
            await app.stop(grace=1.0)
        return app

    first = await run_once(15)
    assert first.registry.get_sample_value("ioc_security_events_total", {
        "department": "STP", "source": "wazuh", "severity": "medium",
        "category": "other"}) == 15
    fake.add(4, NOW - 60)
    seen_before = len(fake.queries)
    second = await run_once(4)
    # The restarted ioc asked from the stored cursor, not from its one-hour lookback.
    resumed = fake.queries[seen_before]["query"]["range"]["timestamp"]["gte"]
    assert abs(resumed - (NOW - 120) * 1000) < 2
    assert second.registry.get_sample_value("ioc_security_events_total", {
        "department": "STP", "source": "wazuh", "severity": "medium",
        "category": "other"}) == 4
    store = EventStore(config.storage.url)
    await store.open()
    try:
        assert len(await store.query(EventQuery(limit=100))) == 19
    finally:
        await store.close()


def test_wazuh_mapping_of_one_hit() -> None:
    hit = {"_id": "abc", "_source": {
        "timestamp": "2024-05-01T08:30:00.123+0700", "id": "1714527000.42",
        "rule": {"id": "5712", "level": 12, "groups": ["sshd", "authentication_failures"],
                 "description": "SSHD brute force trying to get access to the system."},
        "agent": {"name": "mc-hg-01", "ip": "10.10.1.5"}, "full_log": "Failed password"}}
    doc = wazuh_event(hit, "wazuh", None)
    assert doc == {
        "source": "wazuh", "id": "1714527000.42", "severity": "high",
        "category": "auth_failure",
        "title": "SSHD brute force trying to get access to the system.",
        "message": "Failed password", "host": "mc-hg-01",
        "occurred_at": "2024-05-01T08:30:00.123+0700",
        "labels": {"rule_id": "5712", "level": "12", "agent": "mc-hg-01",
                   "groups": "sshd,authentication_failures"}}


# -- the generic JSON shape --------------------------------------------------------------


class FakeListApi:
    """``GET /api/alerts?since=&limit=`` → ``{"data": {"alerts": [...]}}`` oldest first."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.calls: list[dict[str, str]] = []

    async def alerts(self, request: web.Request) -> web.Response:
        self.calls.append(dict(request.query))
        since = float(request.query["since"])
        limit = int(request.query["limit"])
        found = sorted((i for i in self.items if i["ts"] >= since), key=lambda i: i["ts"])
        return web.json_response({"data": {"alerts": found[:limit]}})


async def test_generic_json_list_by_jmespath(aiohttp_server: Any, sink: EventSink) -> None:
    api = FakeListApi()
    for n in range(7):
        api.items.append({"ts": round(NOW - 100 + n, 3), "uid": 1000 + n, "prio": "P1" if n < 3
                          else "P3", "kind": "malware", "summary": {"vi": f"Mã độc {n}"},
                          "asset": {"fqdn": "mail.haugiang.gov.vn"}, "unit": "STTTT"})
    api.items.append({"ts": NOW - 50, "uid": None, "prio": "P1", "summary": {"vi": "x"}})
    app = web.Application()
    app.router.add_get("/api/alerts", api.alerts)
    server = await aiohttp_server(app)
    config = SiemConfig.model_validate({
        "type": "siem", "name": "soc-list", "department": "STTTT", "shape": "json",
        "url": str(server.make_url("/api/alerts")), "page_size": 3,
        "items": "data.alerts", "event_department": "unit",
        "fields": {"id": "uid", "occurred_at": "ts", "severity": "prio", "category": "kind",
                   "title": "summary.vi", "message": None, "host": "asset.fqdn"},
        "severity_map": {"P1": "critical", "P3": "medium"},
    })
    collector = SiemCollector(config)
    collector.bind(sink)
    async with aiohttp.ClientSession() as session:
        assert (await collector.collect(session, NOW)).value == 7  # the item without id: skipped
        assert (await collector.collect(session, NOW)).value == 0
    stored = await sink.store.query(EventQuery(limit=100))
    assert [s.event.id for s in stored] == [str(1006 - n) for n in range(7)]
    assert stored[-1].event.severity == "critical" and stored[0].event.severity == "medium"
    assert stored[0].event.title == "Mã độc 6" and stored[0].event.department == "STTTT"
    assert stored[0].event.host == "mail.haugiang.gov.vn"
    assert api.calls[0]["limit"] == "3"


def test_bad_jmespath_is_a_config_error() -> None:
    from service.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"departments": [{"code": "STTTT", "name": "Sở TTTT"}], "collectors": [
            {"type": "siem", "name": "x", "department": "STTTT", "url": "http://h/",
             "shape": "json", "items": "data.[", "fields": {"id": "a..b"}}]}, env={})
    paths = {issue.path for issue in err.value.issues}
    assert paths == {"collectors[0].items", "collectors[0].fields.id"}


async def test_siem_times_outside_the_window_are_clamped_and_move_the_cursor_to_now(
        indexer: tuple[FakeIndexer, str], sink: EventSink) -> None:
    """An alert dated 2200 is kept at the receive time; it does not hide later alerts."""
    fake, url = indexer
    fake.add(1, NOW + 175 * 365 * 86400)     # an agent's clock in 2200
    fake.add(1, NOW - 60)
    collector = SiemCollector(SiemConfig.model_validate(siem_block(url)))
    collector.bind(sink)
    async with aiohttp.ClientSession() as session:
        assert (await collector.collect(session, NOW)).value == 2
        fake.add(1, NOW + 30)                # a later, ordinary alert is not "already seen"
        assert (await collector.collect(session, NOW + 60)).value == 1
    stored = {s.event.id: s.event for s in await sink.store.query(EventQuery(limit=10))}
    clamped = [e for e in stored.values() if "sent_at" in dict(e.labels)]
    assert len(stored) == 3 and len(clamped) == 1
    assert clamped[0].occurred_at == pytest.approx(NOW, abs=0.001)  # stored in ms
    assert dict(clamped[0].labels)["sent_at"][:2] == "22"
    counted = [s.value for metric in sink.out_of_window.collect() for s in metric.samples
               if s.name.endswith("_total") and s.labels == {"ingest": "siem", "side": "future"}]
    assert counted == [2.0]  # read again at each poll (still ahead of the cursor), stored once
