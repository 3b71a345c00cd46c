"""The wall page and the data behind it: tiles, panels, views, languages, escaping, headers."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from ioc.cache import SeriesCache
from ioc.model import Sample, make_labels
from service.app import IocApp
from service.config import ConfigError, parse_config
from tests.conftest import demo_config, free_port, polled_app
from web.i18n import LANGS, Translator, catalogue
from web.wall import (
    WallState,
    WallView,
    department_tiles,
    grid_shape,
    indices_panel,
    security_panel,
    views_from_config,
    wall_document,
)
from web.wall_feed import make_templates

VIETNAMESE = re.compile(r"[ăâđêôơưàáạảãầấậẩẫằắặẳẵèéẹẻẽềếệểễìíịỉĩòóọỏõồốộổỗờớợởỡùúụủũừứựửữỳýỵỷỹ]",
                        re.IGNORECASE)
SAME_IN_BOTH = {"severity_info"}  # none today; a key may be listed here if a word is shared


def row(name: str, department: str, up: bool | None, *, latency: float = 0.05,
        reason: str | None = None, stale: bool = False) -> dict[str, object]:
    return {"name": name, "department": department, "up": up, "latency_seconds": latency,
            "last_check": 100.0, "stale": stale, "reason": reason}


def status(*rows: dict[str, object]) -> dict[str, object]:
    return {"targets": list(rows), "province": {"code": "HG", "name": "Tỉnh Hậu Giang",
                                                "title": "IOC"}}


ALL = WallView("all", "", ("departments", "health", "backlog", "security", "indices"), ())


def test_tiles_put_failing_departments_first_with_their_state() -> None:
    doc = status(row("a", "A", True), row("b1", "B", False, reason="timeout"),
                 row("b2", "B", True), row("c", "C", False, reason="http_status"))
    tiles = department_tiles(doc, {"A": "Alpha", "B": "Beta", "C": "Gamma", "D": "Delta"},
                             ALL, {"a": 0.991})
    assert [(t["code"], t["state"]) for t in tiles] == [
        ("C", "down"), ("B", "degraded"), ("D", "unknown"), ("A", "up")]
    assert tiles[0]["reason"] == "http_status" and tiles[0]["failing_target"] == "c"
    assert tiles[1]["up"] == 1 and tiles[1]["total"] == 2
    assert tiles[3]["availability"] == pytest.approx(0.991) and tiles[3]["latency_ms"] == 50


def test_tiles_say_which_instances_poll_their_targets() -> None:
    doc = status({**row("a1", "A", True), "shard": 2}, {**row("a2", "A", True), "shard": 0},
                 {**row("a3", "A", True), "shard": 2}, {**row("b", "B", True), "shard": None},
                 row("c", "C", True))
    tiles = {t["code"]: t for t in department_tiles(doc, {"A": "A", "B": "B", "C": "C"},
                                                     ALL, {})}
    assert tiles["A"]["pollers"] == [0, 2]
    assert tiles["B"]["pollers"] == [] and tiles["C"]["pollers"] == []


def test_a_view_shows_only_its_departments() -> None:
    doc = status(row("a", "A", True), row("b", "B", False))
    view = WallView("a-only", "", ("departments",), ("A",))
    tiles = department_tiles(doc, {"A": "Alpha", "B": "Beta"}, view, {})
    assert [t["code"] for t in tiles] == ["A"]


def test_grid_fits_the_tiles() -> None:
    for count in (1, 4, 35, 120):
        cols, rows = grid_shape(count)
        assert cols * rows >= count and cols >= rows


def cache_with(*samples: Sample) -> SeriesCache:
    cache = SeriesCache(3600, 100)
    cache.add(samples)
    return cache


def test_panels_stay_empty_until_their_data_exists_then_light_up() -> None:
    state = WallState()
    empty = wall_document(status(), view=ALL, departments={}, cache=cache_with(),
                          state=state, stale_after=600, now=1000.0)
    assert empty["panels"] == {"backlog": None, "security": None, "indices": None}
    cache = cache_with(
        Sample("ioc_dossiers", make_labels(department="STP", status="in_progress"), 120, 990),
        Sample("ioc_dossiers", make_labels(department="SYT", status="in_progress_overdue"), 3,
               990),
        Sample("ioc_dossiers_received", make_labels(department="STP", channel="online"), 1800,
               990),
        Sample("ioc_dossier_ontime_ratio", make_labels(department=""), 0.991, 990),
        Sample("ioc_dossier_ontime_ratio", make_labels(department="STP"), 0.5, 990),
    )
    doc = wall_document(status(), view=ALL, departments={}, cache=cache, state=state,
                        stale_after=600, now=1000.0)
    backlog = doc["panels"]["backlog"]
    assert backlog["received"] == 1800 and backlog["in_progress"] == 123
    assert backlog["overdue"] == 3 and backlog["ontime"] == pytest.approx(0.991)
    assert backlog["stale"] is False
    later = wall_document(status(), view=ALL, departments={}, cache=cache, state=state,
                          stale_after=600, now=2000.0)
    assert later["panels"]["backlog"]["stale"] is True


def test_security_counts_events_by_severity_over_the_window() -> None:
    labels = {"department": "STP", "source": "siem", "category": "malware"}
    cache = cache_with(
        Sample("ioc_security_events_total", make_labels(labels, severity="high"), 5, 100),
        Sample("ioc_security_events_total", make_labels(labels, severity="high"), 9, 400),
        Sample("ioc_security_events_total", make_labels(labels, severity="low"), 2, 400),
    )
    panel = security_panel(cache, 500.0, 600)
    assert panel is not None
    assert panel["by_severity"] == [("high", 4.0), ("low", 0.0)]


def test_indices_show_rank_and_places_gained() -> None:
    cache = cache_with(
        Sample("ioc_province_index_rank", make_labels(index="PCI", year="2021"), 38, 1),
        Sample("ioc_province_index_rank", make_labels(index="PCI", year="2020"), 39, 1),
        Sample("ioc_province_index_rank", make_labels(index="PAR INDEX", year="2021"), 27, 1),
    )
    panel = indices_panel(cache, 10.0, 600)
    assert panel is not None
    assert panel["items"] == [
        {"index": "PAR INDEX", "year": 2021, "rank": 27, "change": None},
        {"index": "PCI", "year": 2021, "rank": 38, "change": 1},
    ]


def test_catalogues_are_complete_and_each_in_its_own_language() -> None:
    vi, en = catalogue("vi"), catalogue("en")
    assert set(vi) == set(en)
    for key in vi:
        assert vi[key] != en[key] or key in SAME_IN_BOTH, key
        assert not VIETNAMESE.search(en[key]), f"en[{key}] = {en[key]!r}"
        assert set(re.findall(r"\{\w+\}", vi[key])) == set(re.findall(r"\{\w+\}", en[key]))
    def words(text: str) -> set[str]:
        return set(re.findall(r"[A-Za-z]{3,}", re.sub(r"\{\w+\}", "", text)))

    english = {w for v in en.values() for w in words(v)}
    leftovers = {w for v in vi.values() for w in words(v)} & english
    assert not leftovers, leftovers


def test_vietnamese_numbers_and_dates() -> None:
    vi, en = Translator("vi"), Translator("en")
    assert vi.number(1800) == "1.800" and en.number(1800) == "1,800"
    assert vi.percent(0.991) == "99,1 %" and en.percent(0.991) == "99.1%"
    midnight = 1_764_288_000 - 7 * 3600  # 28/11/2025 00:00 in Asia/Ho_Chi_Minh (UTC+7)
    assert vi.date(midnight) == "28/11/2025" and vi.date(midnight - 1) == "27/11/2025"
    assert vi.clock(midnight + 14 * 3600 + 151) == "14:02:31"
    assert vi.age(125) == "2 phút trước"


def test_views_are_validated_against_departments() -> None:
    depts = [{"code": "STP", "name": "Sở Tư pháp"}]
    raw = {"departments": depts,
           "wall": {"views": [{"name": "lanh-dao", "departments": ["STP", "NOPE"]},
                              {"name": "lanh-dao"}]}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    text = str(err.value)
    assert "wall.views[0].departments[1]: unknown department 'NOPE'" in text
    assert "wall.views[1].name: duplicate view name 'lanh-dao'" in text
    with pytest.raises(ConfigError) as err:
        parse_config({"wall": {"views": [{"name": "x", "panels": ["clock", "weather"]}],
                               "allowed_networks": ["10.0.0.0/33"]}}, env={})
    text = str(err.value)
    assert "wall.views[0].panels[1]" in text and "wall.allowed_networks" in text
    ok = parse_config({"wall": {"views": [{"name": "x", "panels": ["clock"]}]}}, env={})
    assert [v.name for v in views_from_config(ok.wall)] == ["x"]


async def fetch(url: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, dict(resp.headers), await resp.text()


@pytest.fixture
async def wall_app(tmp_path: Path):
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"], extra={"wall": {
        "announcement": "Họp giao ban lúc 14:00",
        "views": [{"name": "tat-ca", "title": "Toàn tỉnh"},
                  {"name": "noi-chinh", "title": "Nội chính", "departments": ["CAT"],
                   "panels": ["clock", "departments"]}]}})
    hostile = config.departments[0].model_copy(update={"name": "<script>alert(1)</script>"})
    config = type(config)(**{**config.__dict__, "departments": (hostile, config.departments[1])})
    async with polled_app(config) as (app, _):
        yield app


async def test_page_is_vietnamese_escaped_and_locked_down(wall_app: IocApp) -> None:
    status_code, headers, html = await fetch(wall_app.url + "/")
    assert status_code == 200
    assert '<html lang="vi">' in html and "Hoạt động" in html and "Toàn tỉnh" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Họp giao ban lúc 14:00" in html
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["Server"] == "ioc"  # no Python or aiohttp version given away
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="/static/' in attrs and not body for attrs, body in scripts)
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    assert "style=" not in html


async def test_named_view_language_theme_and_bad_queries(wall_app: IocApp) -> None:
    code, _, html = await fetch(wall_app.url + "/wall/noi-chinh?lang=en&theme=light&rotate=30s")
    assert code == 200
    assert '<html lang="en">' in html and 'class="theme-light"' in html
    assert 'id="dept-CAT"' in html and 'id="dept-STP"' not in html
    assert "Departments and systems" in html and "Đơn vị" not in html
    assert "/wall/tat-ca?" in html  # the rotation playlist
    for query, error in (("?lang=fr", "invalid lang"), ("?theme=blue", "invalid theme"),
                         ("?rotate=1s", "invalid rotate"), ("?rotate=soon", "invalid rotate")):
        code, headers, body = await fetch(wall_app.url + "/" + query)
        assert code == 400 and error in body
        assert headers["Content-Type"].startswith("text/html")  # a page on a TV, not JSON
        assert "Địa chỉ có tham số không hợp lệ." in body
    code, headers, body = await fetch(wall_app.url + "/wall/nope?lang=en")
    assert code == 404 and headers["Content-Type"].startswith("text/html")
    assert "There is no wall screen at this address." in body and "/wall/tat-ca" in body
    assert not VIETNAMESE.search(re.sub(r"<[^>]+>", "", body))


async def test_static_files_are_served_with_the_font(wall_app: IocApp) -> None:
    code, _, css = await fetch(wall_app.url + "/static/wall.css")
    assert code == 200 and "Be Vietnam Pro" in css
    for font in re.findall(r"url\((/static/fonts/[^)]+)\)", css):
        async with aiohttp.ClientSession() as session, session.get(wall_app.url + font) as r:
            assert r.status == 200 and len(await r.read()) > 5000
    code, _, license_text = await fetch(wall_app.url + "/static/fonts/OFL.txt")
    assert code == 200 and "SIL Open Font License" in license_text


async def test_allowed_networks_keep_others_out(tmp_path: Path) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STP"],
                         extra={"wall": {"allowed_networks": ["10.0.0.0/8"]}})
    app = IocApp(config)
    await app.start()
    try:
        code, _, body = await fetch(app.url + "/")
        assert code == 403 and "wall.allowed_networks" in body
        code, _, _ = await fetch(app.url + "/api/v1/stream")
        assert code == 403
    finally:
        await app.stop(grace=1.0)


def test_every_language_is_offered() -> None:
    assert LANGS == ("vi", "en")


def test_a_failing_tile_tells_the_targets_error_when_pointed_at() -> None:
    """Every cause of a certificate failure (or the limit a hostile answer crossed) is in
    the reason's tooltip, escaped."""
    error = ("certificate error: expired (CN=a on 2026-01-01 00:00 UTC); "
             "untrusted issuer (<O=x> is not a trusted CA and was not sent)")
    failing = {**row("c", "C", False, reason="tls"), "last_error": error}
    tiles = department_tiles(status(failing), {"C": "Gamma"}, ALL, {})
    assert tiles[0]["failing_error"] == error
    macro = make_templates().get_template("wall_parts.html").module.tile  # type: ignore[attr-defined]
    html = str(macro(tiles[0], Translator("vi"), 200.0))
    assert 'title="Lý do kỹ thuật: tls · c · certificate error: expired (CN=a on 2026-01-01 ' \
           '00:00 UTC); untrusted issuer (&lt;O=x&gt; is not a trusted CA and was not sent)"' \
        in html
    assert ">Lỗi chứng chỉ</div>" in html
