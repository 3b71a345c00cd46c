"""The public status page in a real browser with JavaScript disabled (Debian's Chromium
driven by Playwright): services and bars render, a phone width does not scroll sideways.

Screenshots go to build/screenshots/ (or $IOC_SCREENSHOT_DIR); docs/screenshots/status-vi.png
and status-vi-phone.png are refreshed by running this test with
IOC_SCREENSHOT_DIR=docs/screenshots.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ioc import clock
from ioc.incidents import reason_code
from ioc.model import CollectResult, Sample, make_labels
from ioc.pipeline import PollOutcome
from ioc.store.incidents import Query
from service.app import IocApp
from service.config import parse_config
from tests.conftest import demo_raw, free_port, require_binary
from web.status_page import STATUS_PAGES

playwright_api = pytest.importorskip("playwright.async_api")

SCREENSHOTS = Path(os.environ.get("IOC_SCREENSHOT_DIR")
                   or Path(__file__).parent.parent.parent / "build" / "screenshots")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--blink-settings=scriptEnabled=false"]
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
STEP = 300.0  # the seeded history: a poll every 5 minutes
CODES = ["DVC", "HTTT-TTHC", "APP", "STP", "SKHDT", "SYT", "SGDDT", "STNMT"]


def config(tmp_path: Path, refused_port: int) -> Any:
    raw = demo_raw(tmp_path, free_port(), codes=CODES, interval="5m")
    raw["collection"]["timeout"] = "2s"
    for block in raw["collectors"]:
        if block["name"] == "app-health":  # the citizens' app is down now
            block["url"] = f"http://127.0.0.1:{refused_port}/"
    now = datetime.fromtimestamp(clock.now(), TZ)
    past = (now - timedelta(days=12)).replace(hour=22, minute=0, second=0, microsecond=0)
    ahead = (now + timedelta(days=3)).replace(hour=22, minute=0, second=0, microsecond=0)
    raw["alerts"] = {"maintenance": [
        {"department": "SYT", "comment": "nâng cấp máy chủ CSDL nội bộ",
         "public_note": "Nâng cấp hệ thống, Cổng thông tin Sở Y tế tạm ngừng phục vụ.",
         "ranges": [{"start": f"{ahead:%Y-%m-%d %H:%M}",
                     "end": f"{ahead + timedelta(hours=3):%Y-%m-%d %H:%M}"}]},
        {"department": "STP", "ranges": [
            {"start": f"{past:%Y-%m-%d %H:%M}",
             "end": f"{past + timedelta(hours=4):%Y-%m-%d %H:%M}"}]},
    ]}
    raw["status_pages"] = [{
        "slug": "dich-vu-cong",
        "title": {"vi": "Trạng thái dịch vụ công trực tuyến tỉnh Hậu Giang",
                  "en": "Hau Giang online public services status"},
        "description": {"vi": "Tình trạng hoạt động của các hệ thống phục vụ người dân và "
                              "doanh nghiệp.",
                        "en": "Whether the systems serving citizens and businesses work."},
        "groups": [
            {"name": {"vi": "Dịch vụ cho người dân", "en": "Services for citizens"},
             "services": [
                 {"slug": "cong-dich-vu-cong", "departments": ["DVC"],
                  "name": {"vi": "Cổng Dịch vụ công tỉnh",
                           "en": "Provincial public-service portal"}},
                 {"slug": "giai-quyet-tthc", "targets": ["httt-tthc-health"],
                  "name": {"vi": "Hệ thống giải quyết thủ tục hành chính",
                           "en": "Administrative procedures system"}},
                 {"slug": "ung-dung-hau-giang", "targets": ["app-health"],
                  "name": {"vi": "Ứng dụng Hậu Giang (phản ánh hiện trường)",
                           "en": "Hau Giang app (citizen feedback)"}}]},
            {"name": {"vi": "Cổng thông tin các sở, ngành", "en": "Departments' portals"},
             "services": [
                 {"slug": "so-tu-phap", "targets": ["stp-health"],
                  "name": {"vi": "Sở Tư pháp", "en": "Department of Justice"}},
                 {"slug": "so-ke-hoach-dau-tu", "targets": ["skhdt-health"],
                  "name": {"vi": "Sở Kế hoạch và Đầu tư",
                           "en": "Department of Planning and Investment"}},
                 {"slug": "so-y-te", "targets": ["syt-health"],
                  "name": {"vi": "Sở Y tế", "en": "Department of Health"}},
                 {"slug": "so-giao-duc-dao-tao", "targets": ["sgddt-health"],
                  "name": {"vi": "Sở Giáo dục và Đào tạo",
                           "en": "Department of Education and Training"}},
                 {"slug": "so-tai-nguyen-moi-truong", "targets": ["stnmt-health"],
                  "name": {"vi": "Sở Tài nguyên và Môi trường",
                           "en": "Department of Natural Resources and Environment"}}]},
        ],
    }]
    return parse_config(raw, env={})


def history(app: IocApp, now: float) -> list[Sample]:
    """90 days of polls every 5 min: a few outages, one system added 40 days ago, the app
    down for the last 95 minutes."""
    samples: list[Sample] = []
    outages = {"dvc-health": [(3, 120)], "skhdt-health": [(20, 20), (61, 45)],
               "sgddt-health": [(8, 10)], "stnmt-health": [(33, 240)],
               "httt-tthc-health": [(1, 15)], "stp-health": [(12, 240)]}
    start = now - 90 * 86400
    for name, state in app.board.targets.items():
        labels = make_labels(target=name, department=state.department, kind="http")
        first = now - 40 * 86400 if name == "sgddt-health" else start
        spans = [(now - days * 86400 - 36000, now - days * 86400 - 36000 + minutes * 60)
                 for days, minutes in outages.get(name, [])]
        if name == "app-health":
            spans.append((now - 95 * 60, now + 1))
        ts = first
        while ts < now - STEP / 2:
            up = not any(a <= ts < b for a, b in spans)
            samples.append(Sample("ioc_target_up", labels, 1.0 if up else 0.0, ts))
            if not up:
                samples.append(Sample("ioc_target_failure_reason", labels,
                                      reason_code("connect_refused"), ts))
            ts += STEP
    return samples


def poll(app: IocApp, name: str, up: bool, now: float) -> None:
    state = app.board.targets[name]
    labels = make_labels(target=name, department=state.department, kind="http")
    app.pipeline.publish(PollOutcome(
        target=name, kind="http", ts=now, duration=0.05,
        result=CollectResult(up=up, reason=None if up else "connect_refused"),
        samples=(Sample("ioc_target_up", labels, 1.0 if up else 0.0, now),)))


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[IocApp]:
    app = IocApp(config(tmp_path, free_port()))
    await app.start()
    try:
        now = clock.now()
        await app.store.append(history(app, now))
        for name in app.board.targets:
            poll(app, name, name != "app-health", now)
        await app.incident_job.run_once()
        items, _ = await app.incidents.list(Query(target="app-health", open_only=True), now)
        await app.incidents.set_public_note(
            items[0]["id"], actor="operator", now=now,
            text="Ứng dụng Hậu Giang đang gián đoạn do sự cố đường truyền. Chúng tôi đang "
                 "khắc phục, dự kiến hoạt động lại trước 17:00.")
        items, _ = await app.incidents.list(Query(target="httt-tthc-health"), now)
        await app.incidents.set_public_note(
            items[0]["id"], actor="operator", now=now,
            text="Hệ thống giải quyết thủ tục hành chính gián đoạn 15 phút do nâng cấp "
                 "đường truyền; hồ sơ đã nộp không bị ảnh hưởng.")
        assert app._web_runner is not None
        await app._web_runner.app[STATUS_PAGES].refresh()
        yield app
    finally:
        await app.stop(grace=1.0)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = require_binary("chromium")
    async with playwright_api.async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def test_the_page_renders_without_javascript_at_desktop_and_phone_widths(
        demo: IocApp, browser: Any) -> None:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    for width, height, name in ((1280, 900, "status-vi.png"),
                                (360, 800, "status-vi-phone.png"),
                                (1280, 900, "status-en.png")):
        lang = "en" if name.endswith("-en.png") else "vi"
        context = await browser.new_context(viewport={"width": width, "height": height},
                                            java_script_enabled=False)
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e, seen=problems: seen.append(str(e)))
        page.on("requestfailed", lambda r, seen=problems: seen.append(r.url))
        await page.goto(f"{demo.url}/status?lang={lang}", wait_until="load")
        assert await page.locator("script").count() == 0
        assert await page.locator(".service").count() == 8
        assert await page.locator(".bars").count() == 8
        bars = page.locator(".bars li")
        assert await bars.count() == 8 * 90
        visible = page.locator(".bars li:visible")
        assert await visible.count() == (8 * 30 if width < 640 else 8 * 90)
        levels = {await li.get_attribute("class")
                  for li in await page.locator(".bars li:visible").all()}
        assert any("d-major" in c for c in levels) and any("d-ok" in c for c in levels)
        if width >= 640:
            assert any("d-maintenance" in c for c in levels)
            assert any("d-none" in c for c in levels)
        first = page.locator("#service-ung-dung-hau-giang .state")
        assert await first.inner_text() == ("Disrupted" if lang == "en" else "Gián đoạn")
        for part in await page.locator("header, main, footer, .service, .notice").all():
            box = await part.bounding_box()  # nothing wider than the screen: no side scroll
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        await page.screenshot(path=str(SCREENSHOTS / name), full_page=width < 640)
        assert problems == []
        await context.close()
