"""The wall in a real browser (Debian's headless Chromium driven by Playwright).

Screenshots of both sizes and both languages are written as test artefacts to
build/screenshots/ (or $IOC_SCREENSHOT_DIR), so an ordinary test run leaves the work tree
clean. The copies linked from README and docs/wall.md live in docs/screenshots/ and are taken
by bench/screenshots.py (every scene of tests/web/wall_scenes.py, checked for clipped text).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.app import IocApp
from tests.conftest import SIM_TOKEN, PollWatcher, demo_config, free_port, require_binary
from tests.web.wall_scenes import demo_panels
from web.i18n import catalogue

playwright_api = pytest.importorskip("playwright.async_api")

SCREENSHOTS = Path(os.environ.get("IOC_SCREENSHOT_DIR")
                   or Path(__file__).parent.parent.parent / "build" / "screenshots")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIETNAMESE = re.compile(r"[ăâđêôơưàáạảãầấậẩẫằắặẳẵèéẹẻẽềếệểễìíịỉĩòóọỏõồốộổỗờớợởỡùúụủũừứựửữỳýỵỷỹ]",
                        re.IGNORECASE)

# Text the screen shows in its own words (names of places and systems are marked
# translate="no" and left out).
VISIBLE_TEXT = """() => {
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('[translate="no"], [hidden], script').forEach(e => e.remove());
  return clone.innerText;
}"""

# Every element inside a tile or panel must lie within it; the page must not scroll.
OVERFLOWS = """() => {
  const bad = [];
  const boxes = document.querySelectorAll('.tile, .panel:not([hidden])');
  for (const box of boxes) {
    const outer = box.getBoundingClientRect();
    for (const el of box.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      // An inline piece of text (a <bdi>) in a line cut with an ellipsis is clipped by that
      // line's box, which is itself checked: only what shows beyond its box counts.
      const line = el.parentElement && getComputedStyle(el.parentElement);
      if (line && getComputedStyle(el).display === 'inline' &&
          line.textOverflow === 'ellipsis' && line.overflowX === 'hidden') continue;
      if (r.left < outer.left - 1 || r.right > outer.right + 1 ||
          r.top < outer.top - 1 || r.bottom > outer.bottom + 1) {
        bad.push((box.id || box.className) + ' > ' + el.tagName + '.' + el.className);
      }
    }
  }
  const doc = document.documentElement;
  if (doc.scrollHeight > innerHeight + 1 || doc.scrollWidth > innerWidth + 1) bad.push('page');
  return bad;
}"""


async def start(tmp_path: Path, port: int, codes: list[str] | None,
                hostile: bool = False, interval: str = "300ms") -> IocApp:
    config = demo_config(tmp_path, free_port(), codes=codes,
                         interval=interval,
                         extra={"service": {"listen": f"127.0.0.1:{port}"},
                                "wall": {"offline_after": "3s", "heartbeat": "500ms",
                                         "announcement": "Họp giao ban lúc 14:00"}})
    if hostile:
        first = config.departments[0].model_copy(update={"name": "<img src=x onerror=alert(1)>"})
        config = type(config)(**{**config.__dict__,
                                 "departments": (first, *config.departments[1:])})
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    await watcher.until(lambda seen: {o.target for o in seen} >= set(app.runners))
    return app


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = require_binary("chromium")
    async with playwright_api.async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def open_page(browser: Any, url: str, width: int, height: int) -> tuple[Any, list[str]]:
    page = await browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(url)
    await page.wait_for_function("() => document.fonts.status === 'loaded'")
    return page, problems


async def test_screens_at_both_sizes_in_both_languages(tmp_path: Path, browser: Any) -> None:
    app = await start(tmp_path, 0, None, interval="1s")
    try:
        async with aiohttp.ClientSession() as session:
            await session.post(f"http://{app.config.simulator.listen}/_sim/faults",
                               headers={"Authorization": f"Bearer {SIM_TOKEN}"},
                               json={"unit": "SYT", "fault": "error", "status": 502})
        from ioc import clock

        demo_panels(app, clock.now())
        english_words = {w for v in catalogue("en").values()
                         for w in re.findall(r"[A-Za-z]{4,}", re.sub(r"\{\w+\}", "", v))}
        os.makedirs(SCREENSHOTS, exist_ok=True)
        for width, height in ((1920, 1080), (3840, 2160)):
            for lang in ("vi", "en"):
                page, problems = await open_page(browser, f"{app.url}/?lang={lang}", width,
                                                 height)
                await page.wait_for_function(
                    "() => document.querySelector('#dept-SYT').dataset.state === 'down'")
                assert await page.evaluate(OVERFLOWS) == [], (width, lang)
                text = await page.evaluate(VISIBLE_TEXT)
                if lang == "en":
                    assert not VIETNAMESE.findall(text), VIETNAMESE.findall(text)
                else:
                    found = set(re.findall(r"[A-Za-z]{4,}", text)) & english_words
                    assert not found, found
                await page.screenshot(path=str(SCREENSHOTS / f"wall-{width}x{height}-{lang}.png"))
                assert problems == []
                await page.close()
    finally:
        await app.stop(grace=1.0)


async def test_fault_goes_live_and_stale_banner_tells_the_truth(tmp_path: Path,
                                                                browser: Any) -> None:
    port = free_port()
    app = await start(tmp_path, port, ["STP", "CAT", "VITHANH"], hostile=True)
    try:
        page, problems = await open_page(browser, app.url + "/", 1920, 1080)
        # hostile names are text, never markup
        first = app.config.departments[0].code
        name = await page.text_content(f"#dept-{first} .t-name")
        assert name == "<img src=x onerror=alert(1)>"
        assert await page.evaluate("() => document.querySelectorAll('.tile img').length") == 0
        await page.evaluate("() => { window.sameDocument = true; }")
        async with aiohttp.ClientSession() as session:
            await session.post(f"http://{app.config.simulator.listen}/_sim/faults",
                               headers={"Authorization": f"Bearer {SIM_TOKEN}"},
                               json={"unit": "CAT", "fault": "down"})
        await page.wait_for_function(
            "() => document.querySelector('#dept-CAT').dataset.state === 'down'", timeout=2000)
        assert await page.evaluate("() => window.sameDocument") is True  # no reload
        assert await page.evaluate("() => document.querySelector('#tiles').firstElementChild.id") \
            == "dept-CAT"  # failing first
        assert "Gián đoạn" in (await page.text_content("#dept-CAT") or "")

        await app.stop(grace=1.0)  # ioc goes away: the screen must say so
        await page.wait_for_selector("#offline:not([hidden])", timeout=8000)
        banner = await page.text_content("#offline")
        assert banner and re.search(r"Mất kết nối — dữ liệu cập nhật lúc \d\d:\d\d:\d\d", banner)

        app = await start(tmp_path, port, ["STP", "CAT", "VITHANH"], hostile=True)
        await page.wait_for_selector("#offline", state="hidden", timeout=15000)
        assert [p for p in problems if "ERR_CONNECTION_REFUSED" not in p
                and "Failed to load resource" not in p] == []
    finally:
        await app.stop(grace=1.0)
