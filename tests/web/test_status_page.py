"""The public status page on a running ioc: configured names only, states from real polls,
daily bars from stored polls, caching, rate limits, languages, badges, the public note."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from ioc import clock
from ioc.config import ConfigError
from ioc.incidents import reason_code
from ioc.model import FAILURE_REASONS, Sample, make_labels
from ioc.store.incidents import Query
from service.app import IocApp
from service.config import parse_config
from tests.conftest import demo_raw, free_port, polled_app
from tests.trust.conftest import TOKENS, bearer
from web import status_cache
from web.keys import TEMPLATES
from web.openapi import openapi_document
from web.status_cache import StatusPages
from web.status_page import STATUS_PAGES

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
HOSTILE_ERROR = "<script>alert(1)</script> SECRET-ERR db=10.9.8.7 password=hunter2"
INTERNAL_NOTE = "INTERNAL-NOTE: restarted db-master-01 at 10.9.8.7"
PUBLIC_NOTE = "Cổng đang được khắc phục <b>sớm</b> & sẽ hoạt động lại"


async def hostile_server(port: int) -> web.AppRunner:
    """A target that fails with an error page full of things a citizen must never see."""
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text=HOSTILE_ERROR)
    app = web.Application()
    app.router.add_get("/{tail:.*}", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def status_raw(tmp_path: Path, hostile_port: int, refused_port: int,
               **page: Any) -> dict[str, Any]:
    raw = demo_raw(tmp_path, free_port(), codes=["STP", "CAT"])
    raw["collectors"] += [
        {"type": "http", "name": "secret-internal-db", "department": "CAT",
         "url": f"http://127.0.0.1:{hostile_port}/admin?token=abc"},
        {"type": "http", "name": "hidden-archive", "department": "STP",
         "url": f"http://127.0.0.1:{refused_port}/x", "interval": "60s", "timeout": "1s"},
    ]
    raw["auth"] = {"anonymous": [],
                   "tokens": [{"name": f"{role}-desk", "token": token, "roles": [role]}
                              for role, token in TOKENS.items()]}
    raw["status_pages"] = [{
        "slug": "cong-dan", "title": {"vi": "Trạng thái dịch vụ", "en": "Service status"},
        "groups": [{"name": {"vi": "Dịch vụ", "en": "Services"}, "services": [
            {"slug": "tu-phap", "name": {"vi": "Sở Tư pháp", "en": "Justice"},
             "targets": ["stp-health"]},
            {"slug": "cong-an", "name": {"vi": "Công an <tỉnh> & \"dân\"", "en": "Police"},
             "departments": ["CAT"]},
            {"slug": "luu-tru", "name": {"vi": "Lưu trữ", "en": "Archive"},
             "targets": ["hidden-archive"]},
        ]}],
        "refresh": "1s", **page,
    }, {
        "slug": "noi-bo", "title": "Nội bộ", "require_auth": True,
        "groups": [{"name": "Nội bộ", "services": [
            {"slug": "noi-bo-tu-phap", "name": "Tư pháp", "targets": ["stp-health"]}]}],
    }]
    return raw


@pytest.fixture
async def status_app(tmp_path: Path) -> AsyncIterator[IocApp]:
    hostile_port = free_port()
    runner = await hostile_server(hostile_port)
    config = parse_config(status_raw(tmp_path, hostile_port, free_port()), env={})
    try:
        async with polled_app(config) as (app, _):
            await fresh(app)  # the snapshot begun at start-up predates the first polls
            yield app
    finally:
        await runner.cleanup()


def validate(path: str, body: Any) -> None:
    """The answer matches the OpenAPI document's schema of the route."""
    doc = openapi_document()
    schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]
    registry = Registry().with_resource("urn:ioc", DRAFT202012.create_resource(doc))
    jsonschema.Draft202012Validator({"$ref": "urn:ioc" + schema["$ref"]},
                                    registry=registry).validate(body)


async def fresh(app: IocApp) -> None:
    """The page's snapshot rebuilt now (it is otherwise rebuilt every few seconds)."""
    assert app._web_runner is not None
    await app._web_runner.app[STATUS_PAGES].refresh()


async def get(app: IocApp, path: str, headers: dict[str, str] | None = None
              ) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, \
            session.get(app.url + path, headers=headers or {}) as resp:
        return resp.status, await resp.text(), resp.headers


def yesterday_bounds(now: float) -> tuple[float, float, str]:
    day = datetime.fromtimestamp(now, TZ).date() - timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp()
    return start, start + 86400, day.isoformat()


async def seed_archive_day(app: IocApp) -> tuple[str, str]:
    """Polls of hidden-archive every 60 s over yesterday, 5 of them failed (10:00-10:05)."""
    start, _, iso = yesterday_bounds(clock.now())
    labels = make_labels(target="hidden-archive", department="STP", kind="http")
    samples = []
    for i in range(1440):
        up = not 600 <= i < 605
        samples.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, start + i * 60))
        if not up:
            samples.append(Sample("ioc_target_failure_reason", labels,
                                  reason_code("connect_refused"), start + i * 60))
    await app.store.append(samples)
    assert await app.incident_job.run_once() is not None
    items, _ = await app.incidents.list(Query(target="hidden-archive"), clock.now())
    closed = [i for i in items if i["ended_at"] is not None]
    assert closed, items
    return iso, closed[-1]["id"]


async def test_the_page_shows_configured_names_and_states_and_nothing_internal(
        status_app: IocApp) -> None:
    app = status_app
    iso, incident = await seed_archive_day(app)
    # an internal note and a public note on yesterday's outage
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{app.url}/api/v1/incidents/{incident}/notes",
                                json={"text": INTERNAL_NOTE}, headers=bearer("operator")) as r:
            assert r.status == 201
        async with session.put(f"{app.url}/api/v1/incidents/{incident}/public-note",
                               json={"text": PUBLIC_NOTE}, headers=bearer("operator")) as r:
            assert r.status == 200, await r.text()
    await fresh(app)
    status, data, _ = await get(app, "/status.json")
    assert status == 200
    doc = json.loads(data)
    validate("/status.json", doc)
    services = {s["slug"]: s for g in doc["groups"] for s in g["services"]}
    assert services["tu-phap"]["state"] == "operational"
    assert services["cong-an"]["state"] == "partial"   # one of the department's two fails
    assert doc["overall"]["state"] in ("partial", "major")
    # yesterday's bar, by hand: 1,440 polls of 60 s, 5 failed -> 86,100 / 86,400 up
    day = next(d for d in services["luu-tru"]["days"] if d["date"] == iso)
    assert day["availability"] == pytest.approx(86100 / 86400)
    assert day["level"] == "minor"
    before = next(d for d in services["luu-tru"]["days"]
                  if d["date"] == (datetime.fromisoformat(iso) - timedelta(days=1)).date()
                  .isoformat())
    assert before["level"] == "none" and before["availability"] is None
    public = [i for i in doc["incidents"] if i["service"] == "luu-tru" and not i["open"]]
    assert public and public[0]["notes"] == [PUBLIC_NOTE]
    assert public[0]["duration_seconds"] == 300

    _, html, _ = await get(app, "/status")
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "Hoạt động bình thường" in html and "Gián đoạn một phần" in html
    assert "Công an &lt;tỉnh&gt; &amp; &#34;dân&#34;" in html
    assert "Cổng đang được khắc phục &lt;b&gt;sớm&lt;/b&gt; &amp; sẽ hoạt động lại" in html
    assert f"{datetime.fromisoformat(iso):%d/%m/%Y}: 99,65 %" in html
    _, badge, _ = await get(app, "/status/badge/cong-an.svg")
    _, english, _ = await get(app, "/status?lang=en")
    _, english_json, _ = await get(app, "/status/cong-dan.json?lang=en")
    validate("/status/{slug}.json", json.loads(english_json))
    forbidden = ["secret-internal-db", "hidden-archive", "stp-health", "cat-health",
                 "SECRET-ERR", "hunter2", "10.9.8.7", "127.0.0.1", "INTERNAL-NOTE",
                 "token=abc", "/admin", "operator-desk", "500",
                 *(r for r in FAILURE_REASONS if "_" in r)]
    for body in (data, html, badge, english, english_json):
        for word in forbidden:
            assert word not in body, word
    assert "Partial disruption" in english and 'lang="en"' in english


async def test_etag_and_last_modified_give_304(status_app: IocApp) -> None:
    status, _, headers = await get(status_app, "/status")
    assert status == 200
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert headers["Cache-Control"] == "public, max-age=30"
    status, body, again = await get(status_app, "/status", {"If-None-Match": etag})
    assert status == 304 and body == "" and again["ETag"] == etag
    status, _, _ = await get(status_app, "/status", {"If-Modified-Since": modified})
    assert status == 304
    status, _, _ = await get(status_app, "/status", {"If-None-Match": '"other"'})
    assert status == 200
    status, _, headers = await get(status_app, "/status.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    status, _, _ = await get(status_app, "/status.json", {"If-None-Match": headers["ETag"]})
    assert status == 304


async def test_over_the_rate_limit_a_readable_429_with_retry_after(tmp_path: Path) -> None:
    raw = status_raw(tmp_path, free_port(), free_port(),
                     rate_limit={"burst": 3, "requests": 1, "per": "60s"})
    async with polled_app(parse_config(raw, env={})) as (app, _):
        await fresh(app)
        statuses = [(await get(app, "/status/cong-dan"))[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, html, headers = await get(app, "/status/cong-dan")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert "Quá nhiều yêu cầu" in html and "<html" in html
        status, _, headers = await get(app, "/status/cong-dan.json")
        assert status == 429 and "Retry-After" in headers
        # another client behind no trusted proxy cannot claim another address
        status, _, _ = await get(app, "/status", {"X-Forwarded-For": "203.0.113.9"})
        assert status == 429
        assert app.registry.get_sample_value("ioc_http_requests_rejected_total",
                                             {"reason": "status_rate_limited"}) == 3


async def test_the_limit_is_per_client_behind_a_trusted_proxy(tmp_path: Path) -> None:
    raw = status_raw(tmp_path, free_port(), free_port(),
                     rate_limit={"burst": 2, "requests": 1, "per": "60s"})
    raw["service"]["trusted_proxies"] = ["127.0.0.1/32"]
    async with polled_app(parse_config(raw, env={})) as (app, _):
        await fresh(app)
        one, other = {"X-Forwarded-For": "203.0.113.9"}, {"X-Forwarded-For": "198.51.100.7"}
        assert [(await get(app, "/status", one))[0] for _ in range(3)] == [200, 200, 429]
        assert (await get(app, "/status", other))[0] == 200  # its own bucket


async def test_gzip_has_its_own_etag_and_both_revalidate(status_app: IocApp) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(status_app.url + "/status",
                               headers={"Accept-Encoding": "gzip"}) as resp:
            zipped = resp.headers["ETag"]
            assert resp.headers["Content-Encoding"] == "gzip"
            assert resp.headers["Vary"] == "Accept-Encoding"
        async with session.get(status_app.url + "/status",
                               headers={"Accept-Encoding": "identity"}) as resp:
            plain = resp.headers["ETag"]
            assert "Content-Encoding" not in resp.headers
    assert zipped != plain
    for tag in (zipped, plain):
        status, _, _ = await get(status_app, "/status", {"If-None-Match": tag})
        assert status == 304


async def test_a_reload_changes_the_pages(status_app: IocApp, tmp_path: Path) -> None:
    raw = status_raw(tmp_path, free_port(), free_port())
    raw["collectors"] = [c for c in raw["collectors"]
                         if c["name"] in status_app.runners]  # the same targets
    page = raw["status_pages"][0]
    page["title"] = {"vi": "Tiêu đề mới", "en": "New title"}
    page["groups"][0]["services"] = page["groups"][0]["services"][:1]
    result = await status_app.reload(parse_config(raw, env={}))
    assert result.ok, result.errors
    await fresh(status_app)
    _, html, _ = await get(status_app, "/status")
    assert "Tiêu đề mới" in html and "Công an" not in html
    assert (await get(status_app, "/status/badge/cong-an.svg"))[0] == 404


async def test_snapshots_are_served_stale_briefly_and_never_after_a_quiet_spell(
        status_app: IocApp) -> None:
    ticks = [100.0]
    assert status_app._web_runner is not None
    context = dataclasses.replace(status_app.web, monotonic=lambda: ticks[0])
    pages = StatusPages(context, status_app._web_runner.app[TEMPLATES])
    first = await pages.snapshot()            # none yet: built while the caller waits
    ticks[0] += 0.5                            # within refresh (1 s): the same snapshot
    assert await pages.snapshot() is first
    ticks[0] += 1.0                            # stale: served while the next is built
    assert await pages.snapshot() is first
    assert pages._refreshing is not None
    await pages._refreshing
    second = await pages.snapshot()
    assert second is not first
    ticks[0] += 10.0                           # a quiet spell: the request waits
    third = await pages.snapshot()
    assert third is not second and third.now >= second.now
    await pages.close()


async def test_unknown_pages_and_badges_are_404(status_app: IocApp) -> None:
    status, html, headers = await get(status_app, "/status/khong-co")
    assert status == 404 and "Không tìm thấy" in html and "text/html" in headers["Content-Type"]
    status, svg, headers = await get(status_app, "/status/badge/khong-co.svg")
    assert status == 404 and headers["Content-Type"].startswith("image/svg+xml")
    ET.fromstring(svg)
    status, _, _ = await get(status_app, "/status/khong-co.json")
    assert status == 404


async def test_a_trailing_slash_leads_to_the_page(status_app: IocApp) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            status_app.url + "/status/?lang=en", allow_redirects=False) as resp:
        assert resp.status == 301 and resp.headers["Location"] == "/status?lang=en"
    status, html, _ = await get(status_app, "/status/")
    assert status == 200 and "<html" in html


async def test_a_private_page_needs_a_viewer(status_app: IocApp) -> None:
    status, html, headers = await get(status_app, "/status/noi-bo")
    # a person at a browser reads where to sign in; the JSON twin answers as the API does
    assert status == 401 and headers["Content-Type"].startswith("text/html")
    assert "đăng nhập tại /console" in html and headers["WWW-Authenticate"] == "Bearer"
    status, html, headers = await get(status_app, "/status/noi-bo?lang=en",
                                      {"Authorization": "Bearer not-a-token"})
    assert status == 401 and "sign in at /console" in html
    status, _, headers = await get(status_app, "/status/noi-bo.json")
    assert status == 401 and headers["Content-Type"].startswith("application/json")
    status, _, headers = await get(status_app, "/status/noi-bo", bearer("viewer"))
    assert status == 200 and headers["Cache-Control"].startswith("private")
    assert (await get(status_app, "/status/badge/noi-bo-tu-phap.svg"))[0] == 401
    # the public page needs nothing although the API has no anonymous role
    assert (await get(status_app, "/status"))[0] == 200
    assert (await get(status_app, "/api/v1/status"))[0] == 401


async def test_badges_are_well_formed_escaped_and_cacheable(status_app: IocApp) -> None:
    status, svg, headers = await get(status_app, "/status/badge/cong-an.svg")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ['Công an <tỉnh> & "dân"', "Gián đoạn một phần"]
    assert "ETag" in headers and "public" in headers["Cache-Control"]
    status, _, _ = await get(status_app, "/status/badge/cong-an.svg",
                             {"If-None-Match": headers["ETag"]})
    assert status == 304
    _, english, _ = await get(status_app, "/status/badge/tu-phap.svg?lang=en")
    assert [t.text for t in ET.fromstring(english).iter(
        "{http://www.w3.org/2000/svg}text")] == ["Justice", "Operational"]


async def test_public_note_needs_an_operator_and_is_bounded(status_app: IocApp) -> None:
    app = status_app
    _, incident = await seed_archive_day(app)
    path = f"{app.url}/api/v1/incidents/{incident}/public-note"
    async with aiohttp.ClientSession() as session:
        async with session.put(path, json={"text": "x"}) as r:
            assert r.status == 401
        async with session.put(path, json={"text": "x"}, headers=bearer("viewer")) as r:
            assert r.status == 403
        async with session.put(path, json={"text": "x" * 1001},
                               headers=bearer("operator")) as r:
            assert r.status == 400
        async with session.put(path, data=b'{"text": "' + b"x" * 300_000 + b'"}',
                               headers=bearer("operator")) as r:
            assert r.status == 413
        async with session.post(path, json={"text": "Đã khắc phục"},
                                headers=bearer("operator")) as r:
            assert r.status == 200
            assert (await r.json())["public_note"] == "Đã khắc phục"
        async with session.put(f"{app.url}/api/v1/incidents/nope/public-note",
                               json={"text": "x"}, headers=bearer("operator")) as r:
            assert r.status == 404
        async with session.get(f"{app.url}/api/v1/audit", headers=bearer("admin")) as r:
            audit = await r.json()
    paths = [e["path"] for e in audit["entries"]]
    assert "/api/v1/incidents/{id}/public-note" in paths


async def test_the_english_page_shows_the_english_public_note(status_app: IocApp) -> None:
    app = status_app
    _, incident = await seed_archive_day(app)
    path = f"{app.url}/api/v1/incidents/{incident}/public-note"
    async with aiohttp.ClientSession() as session:
        for bad in ({"text": "x", "text_en": 5}, {"text": "x", "text_en": "y" * 1001},
                    {"text_en": "Fixed"}):
            async with session.put(path, json=bad, headers=bearer("operator")) as r:
                assert r.status == 400, bad
                assert (await r.json())["detail"]
        async with session.put(path, json={"text": "Đã khắc phục <b>xong</b>",
                                           "text_en": "Fixed <b>now</b>"},
                               headers=bearer("operator")) as r:
            assert r.status == 200
            note = await r.json()
    assert note["public_note_en"] == "Fixed <b>now</b>"
    await fresh(app)
    _, vi_doc, _ = await get(app, "/status.json")
    _, en_doc, _ = await get(app, "/status.json?lang=en")
    _, en_html, _ = await get(app, "/status?lang=en")

    def notes(doc: str) -> list[str]:
        return [n for i in json.loads(doc)["incidents"] if i["service"] == "luu-tru"
                for n in i["notes"]]

    assert notes(vi_doc) == ["Đã khắc phục <b>xong</b>"]
    assert notes(en_doc) == ["Fixed <b>now</b>"]
    assert "Fixed &lt;b&gt;now&lt;/b&gt;" in en_html and "Đã khắc phục" not in en_html
    # A new note without English: the English page falls back to the Vietnamese one.
    async with aiohttp.ClientSession() as session, session.put(
            path, json={"text": "Đã khắc phục"}, headers=bearer("operator")) as r:
        assert (await r.json())["public_note_en"] is None
    await fresh(app)
    _, en_doc, _ = await get(app, "/status.json?lang=en")
    assert notes(en_doc) == ["Đã khắc phục"]
    # Emptying the Vietnamese text withdraws the note, its English wording too.
    async with aiohttp.ClientSession() as session, session.put(
            path, json={"text": "", "text_en": "Fixed"}, headers=bearer("operator")) as r:
        assert (await r.json())["public_note_en"] is None


async def test_no_snapshot_yet_answers_a_readable_503_and_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot that cannot be built (a fault in laying out the windows, injected) with none
    built before: each form answers 503 with Retry-After, in its own kind, the page a readable
    page; once building works again the page is back. A later failing rebuild keeps serving
    the last snapshot."""
    real = status_cache.planned_windows

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(status_cache, "planned_windows", broken)
    config = parse_config(status_raw(tmp_path, free_port(), free_port()), env={})
    app = IocApp(config)
    await app.start()
    try:
        for path, kind in (("/status", "text/html"), ("/status.json", "application/json"),
                           ("/status/badge/tu-phap.svg", "text/plain"),
                           ("/status?lang=en", "text/html")):
            status, body, headers = await get(app, path)
            assert status == 503, path
            assert headers["Content-Type"].startswith(kind), (path, headers["Content-Type"])
            assert headers["Retry-After"] == "5" and headers["Cache-Control"] == "no-store"
            assert "injected" not in body and "Traceback" not in body
        _, html, _ = await get(app, "/status")
        assert 'lang="vi"' in html and "<h1" in html
        monkeypatch.setattr(status_cache, "planned_windows", real)
        await fresh(app)
        assert (await get(app, "/status"))[0] == 200
        monkeypatch.setattr(status_cache, "planned_windows", broken)
        await fresh(app)  # fails, logged; the last snapshot stays
        status, body, _ = await get(app, "/status.json")
        assert status == 200 and json.loads(body)["groups"]
    finally:
        await app.stop(grace=1.0)


@pytest.mark.parametrize(("page", "path", "message"), [
    ({"slug": "Bad Slug"}, "status_pages[0].slug", "pattern"),
    ({"slug": "badge"}, "status_pages[0].slug", "reserved"),
    ({"groups": [{"name": "G", "services": [{"slug": "a", "name": "A"}]}]},
     "status_pages[0].groups[0].services[0]", "targets or departments"),
    ({"groups": [{"name": "G", "services": [{"slug": "a", "name": "A",
                                             "targets": ["nope"]}]}]},
     "status_pages[0].groups[0].services[0].targets[0]", "unknown target 'nope'"),
    ({"groups": [{"name": "G", "services": [{"slug": "a", "name": "A",
                                             "departments": ["XYZ"]}]}]},
     "status_pages[0].groups[0].services[0].departments[0]", "unknown department 'XYZ'"),
    ({"groups": [{"name": "G", "services": [
        {"slug": "a", "name": "A", "targets": ["stp-health"]},
        {"slug": "a", "name": "B", "targets": ["stp-health"]}]}]},
     "status_pages[0].groups[0].services[1].slug", "duplicate service slug 'a'"),
    ({"title": {"en": "Only English"}}, "status_pages[0].title.vi", "required"),
    ({"rate_limit": {"burst": 0}}, "status_pages[0].rate_limit.burst", "greater than"),
    ({"colour": "red"}, "status_pages[0].colour", "unknown key"),
])
def test_config_mistakes_name_their_place(tmp_path: Path, page: dict[str, Any], path: str,
                                          message: str) -> None:
    raw = demo_raw(tmp_path, free_port(), codes=["STP"])
    base = {"slug": "main", "title": "T", "groups": [{"name": "G", "services": [
        {"slug": "s", "name": "S", "targets": ["stp-health"]}]}]}
    raw["status_pages"] = [{**base, **page}]
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    found = [(i.path, i.message) for i in err.value.issues]
    assert any(p == path and message.lower() in m.lower() for p, m in found), found


def test_duplicate_page_slugs_are_refused(tmp_path: Path) -> None:
    raw = demo_raw(tmp_path, free_port(), codes=["STP"])
    page = {"slug": "main", "title": "T", "groups": [{"name": "G", "services": [
        {"slug": "s", "name": "S", "targets": ["stp-health"]}]}]}
    raw["status_pages"] = [page, {**page, "groups": [{"name": "G", "services": [
        {"slug": "t", "name": "T", "targets": ["stp-health"]}]}]}]
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    assert [i.path for i in err.value.issues] == ["status_pages[1].slug"]


def test_the_demo_config_has_a_status_page() -> None:
    from service.config import load_config
    config = load_config(Path(__file__).parent.parent.parent / "config.yaml", env={})
    assert config.status_pages and config.status_pages[0].services()


# -- contrast -----------------------------------------------------------------------------

CSS = Path(__file__).parent.parent.parent / "web" / "static" / "status.css"


def luminance(hex_colour: str) -> float:
    value = hex_colour.lstrip("#")
    channels = [int(value[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def palette() -> dict[str, str]:
    root = re.search(r":root\s*\{(.*?)\}", CSS.read_text(), re.S)
    assert root is not None
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", root.group(1)))


def test_every_text_colour_meets_aa_on_every_background() -> None:
    colours = palette()
    texts = {k: v for k, v in colours.items() if k.startswith("fg-")}
    backgrounds = {k: v for k, v in colours.items() if k.startswith("bg")}
    assert len(texts) >= 6 and len(backgrounds) >= 6
    low = [(t, b, round(contrast(tv, bv), 2)) for t, tv in texts.items()
           for b, bv in backgrounds.items() if contrast(tv, bv) < 4.5]
    assert low == []


def test_bar_colours_stand_out_from_the_background() -> None:
    colours = palette()
    bars = {k: v for k, v in colours.items() if k.startswith("bar-")}
    assert set(bars) == {"bar-ok", "bar-minor", "bar-major", "bar-maint", "bar-none"}
    for name, value in bars.items():
        assert contrast(value, colours["bg"]) >= 3.0, name


def test_no_colour_outside_the_checked_palette() -> None:
    rules = re.sub(r":root\s*\{.*?\}", "", CSS.read_text(), count=1, flags=re.S)
    assert re.findall(r"#[0-9a-fA-F]{3,8}\b", rules) == []


def test_badge_text_is_readable_on_its_colours() -> None:
    from web.status_badge import COLOURS, LABEL_COLOUR
    for colour in (*COLOURS.values(), LABEL_COLOUR):
        assert contrast("#ffffff", colour) >= 4.5, colour
