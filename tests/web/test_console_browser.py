"""The operator console in a real browser: sign in, ack and silence an alert through the UI,
set the announcement, announce and end a maintenance window, and see each reach the wall
(Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ioc import clock
from service.app import IocApp
from tests.alerts.test_delivery_e2e import RULE, fault
from tests.conftest import demo_config, free_port
from tests.web.test_browser import (  # noqa: F401 (browser is a fixture)
    OVERFLOWS,
    SCREENSHOTS,
    browser,
    open_page,
)
from tests.web.test_console import OPERATOR, TOKENS


async def test_ack_and_silence_round_trip_through_the_console(tmp_path: Path,
                                                             browser: Any) -> None:  # noqa: F811
    sim_port = free_port()
    extra = {"alerts": {"evaluation_interval": "200ms", "default_rules": False,
                        "rules": [RULE]},
             "auth": {"tokens": TOKENS}, "wall": {"heartbeat": "500ms"}}
    app = IocApp(demo_config(tmp_path, sim_port, codes=["STP", "CAT", "SYT"], extra=extra))
    await app.start()
    try:
        wall, wall_problems = await open_page(browser, app.url + "/", 1920, 1080)
        await fault(f"http://127.0.0.1:{sim_port}", "STP", "down")
        await wall.wait_for_selector("#panel-alerts:not([hidden]) .alert.a-critical",
                                     timeout=15000)
        assert "Sở Tư pháp" in (await wall.text_content("#panel-alerts") or "")

        console, problems = await open_page(browser, app.url + "/console", 1600, 1000)
        await console.fill("#token", OPERATOR)
        await console.click("form[action^='/console/login'] button")
        await console.wait_for_selector("#alerts tr.alert")
        assert "ca-truc" in (await console.text_content(".who") or "")

        await console.fill("#alerts form.ack input[name=comment]", "đang xử lý")
        await console.click("#alerts form.ack button")
        await console.wait_for_selector("#alerts .mark.acked")
        assert "đã xác nhận" in (await console.text_content("#status") or "").lower()
        await wall.wait_for_selector("#panel-alerts .alert.handled", timeout=5000)
        assert "ca-truc" in (await wall.text_content("#panel-alerts .a-marks") or "")

        await console.select_option("#alerts form.silence select", "2h")
        await console.fill("#alerts form.silence input[name=comment]", "nâng cấp máy chủ")
        await console.click("#alerts form.silence button")
        await console.wait_for_selector("#silences .silence-row")
        assert "department=\"STP\"" in (await console.text_content("#silences") or "")
        assert "Đã tạm ẩn" in (await console.text_content("#alerts") or "")
        await wall.wait_for_function(
            "() => document.querySelector('#panel-alerts .a-marks').textContent"
            ".includes('Đã tạm ẩn')", timeout=5000)
        assert await wall.evaluate(OVERFLOWS) == []

        await console.fill("#set-announcement input[name=text]", "Họp giao ban lúc 14:00")
        await console.click("#set-announcement button")
        await console.wait_for_selector("#announcement .current")
        await wall.wait_for_selector("#announcement:not([hidden])", timeout=5000)
        assert await wall.text_content("#announcement-text") == "Họp giao ban lúc 14:00"
        if os.environ.get("IOC_SCREENSHOT_DIR") or SCREENSHOTS.exists():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await console.screenshot(path=str(SCREENSHOTS / "console-1600x1000-vi.png"),
                                     full_page=True)
            await wall.screenshot(path=str(SCREENSHOTS / "wall-alerts-1920x1080-vi.png"))

        await console.click("#silences .silence-row form button")  # end the silence
        await console.wait_for_selector("#silences .silence-row", state="detached")

        # Announce maintenance for the department: the wall marks its alert, then end it.
        until = datetime.fromtimestamp(clock.now() + 7200, ZoneInfo("Asia/Ho_Chi_Minh"))
        await console.select_option("#new-maintenance select[name=department]", "STP")
        await console.fill("#new-maintenance input[name=end]", until.strftime("%d/%m/%Y %H:%M"))
        await console.fill("#new-maintenance input[name=comment]", "chuyển máy chủ")
        await console.click("#new-maintenance button")
        await console.wait_for_selector("#maintenance .maintenance-row")
        assert "chuyển máy chủ" in (await console.text_content("#maintenance") or "")
        await wall.wait_for_function(
            "() => document.querySelector('#panel-alerts .a-marks').textContent"
            ".includes('bảo trì')", timeout=5000)
        await console.click("#maintenance .maintenance-row form button")  # end it now
        await console.wait_for_selector("#maintenance .maintenance-row", state="detached")

        # The history card is live too: every action above arrives without a reload.
        words = ["Xác nhận cảnh báo", "Tạm ẩn cảnh báo", "Kết thúc tạm ẩn",
                 "Đăng thông báo", "Thông báo bảo trì", "Kết thúc bảo trì"]
        try:
            await console.wait_for_function(
                "words => words.every(w => document.querySelector('#history')"
                ".textContent.includes(w))", arg=words, timeout=5000)
        except Exception:
            history = await console.text_content("#history") or ""
            raise AssertionError([w for w in words if w not in history]) from None
        assert problems == [] and wall_problems == []
    finally:
        await app.stop(grace=1.0)


# Text nodes holding a bidi control must sit in an isolating element (<bdi> or an element
# styled unicode-bidi: isolate), and an <option> label (which cannot isolate) holds none.
UNISOLATED = """() => {
  const bad = [];
  const controls = /[\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c]/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!controls.test(node.data)) continue;
    const el = node.parentElement;
    if (el.closest('option, select')) { bad.push('option'); continue; }
    if (getComputedStyle(el).unicodeBidi !== 'isolate') bad.push(el.tagName + '.' + el.className);
  }
  return bad;
}"""
WIDTH = "() => document.documentElement.scrollWidth"


async def test_hostile_names_are_isolated_and_long_ones_wrap(tmp_path: Path,
                                                              browser: Any) -> None:  # noqa: F811
    sim_port = free_port()
    rlo = "Sở Tư pháp \u202egnp.exe\u202c \u2067x\u2069"
    long = "Công an " + "x" * 10_000  # one 10 KB word: nothing to break at
    extra = {"alerts": {"evaluation_interval": "200ms", "default_rules": False,
                        "rules": [RULE]},
             "auth": {"tokens": TOKENS}, "wall": {"heartbeat": "500ms"}}
    config = demo_config(tmp_path, sim_port, codes=["STP", "CAT", "SYT"], extra=extra)
    names = {"STP": rlo, "CAT": long}
    config = type(config)(**{**config.__dict__, "departments": tuple(
        d.model_copy(update={"name": names.get(d.code, d.name)}) for d in config.departments)})
    app = IocApp(config)
    await app.start()
    try:
        wall, wall_problems = await open_page(browser, app.url + "/", 1920, 1080)
        for unit in ("STP", "CAT"):
            await fault(f"http://127.0.0.1:{sim_port}", unit, "down")
        # The wall is live; the console is rendered when opened: open it once both fired.
        await wall.wait_for_function(
            "() => document.querySelectorAll('#panel-alerts .alert-list:not([hidden])"
            " .alert.a-critical:not([hidden])').length === 2",
            timeout=15000)
        assert await wall.evaluate(UNISOLATED) == []
        assert await wall.evaluate(OVERFLOWS) == []
        assert await wall.evaluate(WIDTH) <= 1920

        console, problems = await open_page(browser, app.url + "/console", 1600, 1000)
        await console.fill("#token", OPERATOR)
        await console.click("form[action^='/console/login'] button")
        await console.wait_for_selector("#alerts tr.alert")
        assert await console.evaluate("() => document.querySelectorAll('#alerts tr.alert')"
                                      ".length") == 2
        await console.click("#raw-matchers summary")  # the experts' raw matchers
        await console.fill("#silence-matchers", f'department="{rlo}"')
        assert await console.evaluate(WIDTH) <= 1600  # was 120,000 px with the long name
        assert await console.evaluate(UNISOLATED) == []
        heights = await console.evaluate(
            "() => [...document.querySelectorAll('#alerts .clamp, #alerts td b')]"
            ".map(e => e.getBoundingClientRect().height)")
        assert heights and max(heights) < 200  # four lines at most, not 250
        assert problems == [] and wall_problems == []
    finally:
        await app.stop(grace=1.0)
