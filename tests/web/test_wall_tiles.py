"""The wall's tiles tell the truth: since when and for how long a department is down, why in
plain words (a dropped connection as such), its 24 hours hour by hour; and the dossier panel's
30-day on-time rate. Pure parts, a real probe against hostile answers, a real store, and a
running app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ioc.cache import SeriesCache
from ioc.model import FAILURE_REASONS, Sample, make_labels
from ioc.store.sql import SqlStore
from tests.collectors.probe_support import (
    ProbeHarness,
    probe,  # noqa: F401 (a fixture)
)
from tests.conftest import SIM_TOKEN, demo_config, free_port, polled_app
from web.causes import cause_of
from web.i18n import LANGS, Translator, catalogue
from web.wall import (
    STRIP_HOURS,
    WallView,
    availability_24h,
    backlog_panel,
    department_tiles,
    ontime_trend,
    sparkline,
    strip_start,
)
from web.wall_feed import make_templates

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ALL = WallView("all", "", ("departments",), ())

# Every failure reason and what the room reads (Vietnamese, English).
CAUSES = {
    "timeout": ("Không phản hồi", "Not answering"),
    "dns": ("Không tìm thấy tên miền", "Domain name not found"),
    "connect_refused": ("Từ chối kết nối", "Connection refused"),
    "connect_timeout": ("Không kết nối được", "Cannot connect"),
    "tls": ("Lỗi chứng chỉ", "Certificate problem"),
    "http_status": ("Trang báo lỗi", "Error page"),
    "content": ("Nội dung trang bị thay đổi", "Page content changed"),
    "too_large": ("Trang lớn bất thường", "Page unusually large"),
    "protocol_error": ("Trả lời sai chuẩn", "Garbled answer"),
    "redirect_loop": ("Chuyển hướng vòng lặp", "Redirects in a loop"),
    "invalid_response": ("Trả lời không đọc được", "Unreadable answer"),
    "bad_payload": ("Số liệu gửi về bị sai", "Statistics sent are wrong"),
    "error": ("Lỗi chưa xác định", "Unexplained error"),
}


def words(reason: str | None, error: str | None = None, value: float | None = None,
          lang: str = "vi") -> str:
    cause = cause_of(reason, error, value)
    return Translator(lang)(cause.key, status=cause.status)


def local(*args: int) -> float:
    return datetime(*args, tzinfo=TZ).timestamp()


# -- the cause in plain words -------------------------------------------------------------------


def test_every_failure_reason_has_plain_words_in_both_languages() -> None:
    assert set(CAUSES) == set(FAILURE_REASONS)
    for reason, (vi, en) in CAUSES.items():
        assert words(reason, lang="vi") == vi, reason
        assert words(reason, lang="en") == en, reason
    for lang in LANGS:  # never the technical vocabulary
        assert "giao thức" not in words("protocol_error", "bad response: x", lang=lang)
    assert words("something-new") == "Lỗi chưa xác định"
    assert words(None, lang="en") == "Unexplained error"


def test_an_error_page_says_its_status() -> None:
    assert words("http_status", "unexpected HTTP status 503", 503.0) == \
        "Trang báo lỗi (HTTP\u00a0503)"
    assert words("http_status", "unexpected HTTP status 502", None, "en") == \
        "Error page (code\u00a0502)"
    assert words("http_status", None, float("nan")) == "Trang báo lỗi"


@pytest.mark.parametrize("error", [
    "bad response: connection closed before any answer",
    "bad response: connection closed after 12 body bytes, before the response was complete",
    "bad response: Server disconnected",
    "connection failed: [Errno 104] Connection reset by peer",
    "10.0.0.53 closed the TCP connection without answering",
    "10.0.0.53 dropped the TCP connection (Broken pipe)",
])
def test_a_dropped_connection_reads_as_one(error: str) -> None:
    assert words("protocol_error", error) == "Kết nối bị ngắt"
    assert words("protocol_error", error, lang="en") == "Connection dropped"


def test_a_garbled_answer_is_not_a_dropped_connection() -> None:
    assert words("protocol_error", "not an HTTP response: invalid constant string") == \
        "Trả lời sai chuẩn"


@pytest.mark.parametrize("engine", [{}, {"keepalive": True}], ids=["wire", "aiohttp"])
async def test_a_peer_closing_mid_answer_is_worded_as_a_dropped_connection(
        probe: ProbeHarness, engine: dict[str, object]) -> None:  # noqa: F811
    """What both HTTP engines really say when the peer closes mid-answer (the simulator's
    hostile ``short-body``) and when it closes before answering (the simulator's ``down``)."""
    from collectors.simulator import hostile

    server = await hostile.start()
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/short-body"
        outcome = await probe.runner({"type": "http", "url": url, "name": "cut",
                                      **engine}, timeout=2.0).poll()
    finally:
        server.close()
    result = outcome.result
    assert result.reason == "protocol_error", result
    assert words(result.reason, result.error) == "Kết nối bị ngắt", result.error


async def test_the_simulators_down_fault_reads_as_a_dropped_connection(tmp_path: Path) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STP"])
    async with polled_app(config) as (app, watcher):
        async with aiohttp.ClientSession() as session, session.post(
                f"http://{app.config.simulator.listen}/_sim/faults",
                headers={"Authorization": f"Bearer {SIM_TOKEN}"},
                json={"unit": "STP", "fault": "down"}) as resp:
            assert resp.status == 200
        seen = len(watcher.outcomes)
        await watcher.until(lambda o: any(not x.result.up for x in o[seen:]))
        row = app.board.targets["stp-health"]
        assert words(row.reason, row.last_error) == "Kết nối bị ngắt", row.last_error


# -- since when, for how long -------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "vi", "en"), [
    (0, "0 giây", "0 s"), (59.9, "59 giây", "59 s"), (60, "1 phút", "1 min"),
    (12 * 60 + 5, "12 phút", "12 min"), (3599, "59 phút", "59 min"),
    (3600, "1 giờ 00 phút", "1 h 00 min"), (3900, "1 giờ 05 phút", "1 h 05 min"),
    (23 * 3600 + 59 * 60 + 59, "23 giờ 59 phút", "23 h 59 min"),
    (86400, "1 ngày 0 giờ", "1 d 0 h"), (12 * 86400 + 23 * 3600, "12 ngày 23 giờ", "12 d 23 h"),
    (-5, "0 giây", "0 s"), (float("nan"), "—", "—"), (None, "—", "—"),
])
def test_duration_wording(seconds: float | None, vi: str, en: str) -> None:
    assert Translator("vi").duration(seconds) == vi
    assert Translator("en").duration(seconds) == en


def test_since_is_the_provinces_time_with_the_day_when_not_today() -> None:
    t = Translator("vi")
    assert t.since(local(2026, 12, 6, 9, 18), local(2026, 12, 6, 9, 30)) == "09:18"
    # around midnight in Asia/Ho_Chi_Minh (17:00 UTC): yesterday gets its date
    assert t.since(local(2026, 12, 5, 23, 50), local(2026, 12, 6, 0, 10)) == "23:50 05/12"
    assert t.since(local(2026, 12, 6, 0, 0), local(2026, 12, 6, 0, 10)) == "00:00"
    assert t.since(local(2026, 12, 5, 23, 59, 59), local(2026, 12, 6, 0, 0)) == "23:59 05/12"
    assert t.since(local(2025, 12, 31, 23, 0), local(2026, 1, 1, 1, 0)) == "23:00 31/12/2025"
    # the same instant is another day in UTC: the province's zone decides
    assert Translator("vi", "UTC").since(local(2026, 12, 6, 6, 0),
                                         local(2026, 12, 6, 7, 30)) == "23:00 05/12"
    assert t.since(None, 0) == "—"


def rows(*specs: tuple[str, bool, float | None, str | None, str | None]) -> list[dict[str, object]]:
    return [{"name": name, "department": "D", "up": up, "latency_seconds": 0.01,
             "last_check": 1000.0, "stale": False, "reason": reason, "last_error": error,
             "last_value": None, "failing_since": since}
            for name, up, since, reason, error in specs]


def test_a_failing_tile_says_since_the_earliest_failing_target_and_why() -> None:
    doc = {"targets": rows(("a", True, None, None, None),
                           ("b", False, 900.0, "timeout", "poll timed out"),
                           ("c", False, 600.0, "protocol_error",
                            "bad response: connection closed before any answer"),
                           ("d", False, None, "dns", "name did not resolve"))}
    tile = department_tiles(doc, {"D": "Sở Tư pháp"}, ALL, {})[0]
    assert tile["state"] == "degraded" and tile["since"] == 600.0
    assert (tile["failing_target"], tile["cause"]) == ("c", "cause_dropped")
    macro = make_templates().get_template("wall_parts.html").module.tile  # type: ignore[attr-defined]
    html = str(macro(tile, Translator("vi", "UTC"), 600.0 + 3900))
    assert re.search(r'<span>Từ 00:10 ·</span> <span><span class="again">Suy giảm </span>'
                     r'<span class="dur" data-since="600.0">1 giờ 05 phút</span>', html), html
    assert ">Kết nối bị ngắt</div>" in html
    assert 'title="Lý do kỹ thuật: protocol_error · c · bad response: connection closed' in html
    english = str(macro(tile, Translator("en", "UTC"), 600.0 + 3900))
    assert "Since 00:10 ·" in english and ">Degraded </span>" in english
    assert ">1 h 05 min</span>" in english and ">Connection dropped</div>" in english


def test_an_up_tile_has_no_since_and_its_name_in_full_in_the_tooltip() -> None:
    name = "Sở Nông nghiệp và Phát triển nông thôn " * 300
    doc = {"targets": rows(("a", True, None, None, None))}
    tile = department_tiles(doc, {"D": name}, ALL, {"a": 1.0})[0]
    assert tile["since"] is None and tile["cause"] is None
    html = str(make_templates().get_template("wall_parts.html").module.tile(  # type: ignore[attr-defined]
        tile, Translator("vi"), 1000.0))
    assert "t-since" not in html and f'title="{name}"' in html


async def test_a_running_wall_says_since_when_and_how_long(tmp_path: Path) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"])
    async with polled_app(config) as (app, watcher):
        async with aiohttp.ClientSession() as session, session.post(
                f"http://{app.config.simulator.listen}/_sim/faults",
                headers={"Authorization": f"Bearer {SIM_TOKEN}"},
                json={"unit": "CAT", "fault": "error", "status": 503}) as resp:
            assert resp.status == 200
        target = app.board.targets["cat-health"]
        await watcher.until(lambda _: target.up is False)
        since = target.failing_since
        assert since is not None
        async with aiohttp.ClientSession() as session:
            async with session.get(app.url + "/") as resp:
                html = await resp.text()
            async with session.get(app.url + "/?lang=en") as resp:
                english = await resp.text()
        tile = re.search(r'<article[^>]*id="dept-CAT".*?</article>', html, re.S)
        assert tile is not None
        hhmm = datetime.fromtimestamp(since, TZ).strftime("%H:%M")
        assert f"Từ {hhmm} ·" in tile.group(0)
        assert f'data-since="{since}"' in tile.group(0)
        assert re.search(r'class="dur" data-since="[^"]+">\d+ giây<', tile.group(0))
        assert ">Trang báo lỗi (HTTP\u00a0503)</div>" in tile.group(0)
        assert f"Since {hhmm} ·" in english and "Error page (code\u00a0503)" in english
        # the page's script words the ticking duration the same way
        assert all(k in html for k in ("dur_seconds", "dur_minutes", "dur_hours", "dur_days"))


# -- 24 hours hour by hour; 30 days of the on-time rate (a real store) -------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_strip_is_24_hourly_cells_per_department_in_one_query(store: SqlStore) -> None:
    now = local(2026, 12, 6, 14, 20)
    first = strip_start(now)
    assert first == local(2026, 12, 5, 15, 0) and (now - first) // 3600 == STRIP_HOURS - 1
    samples = []
    for target, department in (("a1", "A"), ("a2", "A"), ("b", "B")):
        labels = make_labels(target=target, department=department, kind="http")
        for minute in range(0, 24 * 60, 10):
            ts = first + minute * 60
            if ts > now:
                break
            hour = minute // 60
            if department == "B" and hour < 20:
                continue  # B watched only for the last 4 hours: grey before
            up = not (target == "a1" and hour == 3)  # a1 down for an hour
            samples.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, ts))
    await store.append(samples)
    queries: list[tuple[str, float]] = []
    real = store.query_range

    async def counted(metric, matchers, start, end, step):  # type: ignore[no-untyped-def]
        queries.append((metric, step))
        return await real(metric, matchers, start, end, step)

    store.query_range = counted  # type: ignore[method-assign]
    hourly = await availability_24h(store, now)
    assert queries == [("ioc_target_up", 3600)]
    a, b = hourly.departments["A"], hourly.departments["B"]
    assert len(a) == len(b) == STRIP_HOURS
    assert a[3] == 0.5 and all(v == 1.0 for i, v in enumerate(a) if i != 3)
    assert b[:20] == [None] * 20 and b[20:] == [1.0] * 4
    assert hourly.targets["a1"] == pytest.approx(23 / 24) and hourly.targets["b"] == 1.0
    tiles = department_tiles({"targets": rows(("a1", True, None, None, None))},
                             {"D": "D"}, ALL, hourly.targets, {"D": a})
    html = str(make_templates().get_template("wall_parts.html").module.tile(  # type: ignore[attr-defined]
        tiles[0], Translator("vi"), now))
    cells = re.findall(r'<i class="(c-\w+)"></i>', html)
    assert cells == ["c-ok"] * 3 + ["c-bad"] + ["c-ok"] * 20
    assert 'role="img" aria-label="Sẵn sàng từng giờ trong 24 giờ qua: 95,8 %"' in html
    empty = department_tiles({"targets": []}, {"E": "E"}, ALL, {}, {})[0]
    assert empty["strip"] == [None] * STRIP_HOURS


async def test_the_dossier_panel_draws_30_days_of_the_on_time_rate(store: SqlStore) -> None:
    now = local(2026, 12, 6, 14, 20)
    province, stp = make_labels(department=""), make_labels(department="STP")
    samples = [Sample("ioc_dossier_ontime_ratio", province, 0.9 + day / 1000, now - day * 86400)
               for day in range(0, 40)]
    samples += [Sample("ioc_dossier_ontime_ratio", stp, 0.5, now - day * 86400)
                for day in range(0, 40)]
    await store.append(samples)
    trend = await ontime_trend(store, now)
    assert 29 <= len(trend) <= 31
    assert trend[-1][1] == pytest.approx(0.9) and trend[0][1] > trend[-1][1]  # province, not STP
    line = sparkline(trend, min_span=0.05)
    assert len(line.split()) == len(trend)
    # a rate moving less than the minimum span does not fill the height
    flat = sparkline([(0, 0.99), (1, 0.991)], min_span=0.05)
    ys = [float(p.split(",")[1]) for p in flat.split()]
    assert max(ys) - min(ys) < 1.0


def test_received_says_its_month_in_the_provinces_zone() -> None:
    t = Translator("vi")
    assert t.month(local(2026, 12, 1, 0, 0)) == "12/2026"
    assert t.month(local(2026, 11, 30, 23, 59)) == "11/2026"
    assert t("received_period", month=t.month(local(2026, 12, 6))) == "Tiếp nhận tháng 12/2026"
    assert catalogue("en")["received_period"] == "Received in {month}"


def test_the_portals_period_names_the_month_received_counts() -> None:
    from collectors.backlog import period_start

    start = period_start({"period": {"start": "2026-11-01T00:00:00+07:00",
                                     "end": "2026-12-01T00:00:00+07:00"}})
    assert start == local(2026, 11, 1, 0, 0)
    for payload in ({}, {"period": "tháng 11"}, {"period": {"start": "2026-11-01T00:00:00"}},
                    {"period": {"start": "hôm qua"}}, {"period": {"start": 5}}, []):
        assert period_start(payload) is None, payload
    # on the morning of 1 December the portal may still report November's figures
    now = local(2026, 12, 1, 0, 30)
    cache = SeriesCache(3600, 100)
    cache.add([Sample("ioc_dossiers_received", make_labels(department="STP", channel="online"),
                      1800, now),
               Sample("ioc_dossiers_period_start_timestamp_seconds",
                      make_labels(department=""), start, now)])
    panel = backlog_panel(cache, [], now, 600)
    assert panel is not None and panel["period"] == start
    macro = make_templates().get_template("wall_parts.html").module.side_panel  # type: ignore[attr-defined]
    assert "Tiếp nhận tháng 11/2026" in str(macro("backlog", panel, Translator("vi"), now))
    without = backlog_panel(cache_without_period(now), [], now, 600)
    assert "Received in 12/2026" in str(macro("backlog", without, Translator("en"), now))


def cache_without_period(now: float) -> SeriesCache:
    cache = SeriesCache(3600, 100)
    cache.add([Sample("ioc_dossiers_received", make_labels(department="STP", channel="online"),
                      1800, now)])
    return cache
