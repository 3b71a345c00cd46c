"""Nothing that matters is clipped: the wall in real headless Chromium at 1920×1080 and
3840×2160, in both languages, with the province's longest department names, 35 departments
down for every kind of reason and time, and one department named with 10 KB of text.

The check runs in the page (tests/web/wall_fit.py): no element of the header, tiles or panels
may hold more than its box shows, except text cut on purpose whose tooltip carries all of it;
the 10 KB name must be such a text, and must not push the grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ioc import clock
from tests.web.test_browser import browser  # noqa: F401 (a fixture)
from tests.web.wall_fit import CLIPPED, NOT_CHECKED, keep_watching, open_wall
from tests.web.wall_scenes import HUGE_CODE, scene
from web.i18n import Translator

pytest.importorskip("playwright.async_api")

SIZES = ((1920, 1080), (3840, 2160))

DURATIONS = """() => Array.from(document.querySelectorAll('.dur[data-since]'),
                                 el => [Number(el.dataset.since), el.textContent])"""


async def test_35_departments_down_with_the_longest_names_fit(tmp_path: Path,
                                                              browser: Any) -> None:  # noqa: F811
    async with scene("down35", tmp_path) as app:
        await keep_watching(browser, app.url + "/")
        down = sum(1 for t in app.board.targets.values() if t.up is False)
        assert down == len(app.board.targets) == 35
        for width, height in SIZES:
            for lang in ("vi", "en"):
                page = await open_wall(browser, f"{app.url}/?lang={lang}", width, height)
                result = await page.evaluate(CLIPPED, NOT_CHECKED)
                assert result["bad"] == [], (width, lang, result["bad"])
                # the 10 KB name is cut on purpose, whole in its tooltip, and the grid holds
                assert f"dept-{HUGE_CODE} > h3.t-name" in result["ellipsized"]
                assert not [e for e in result["ellipsized"] if "h1" in e]  # the title fits
                sizes = await page.evaluate("""() => Array.from(
                    document.querySelectorAll('#tiles .tile'),
                    el => [el.getBoundingClientRect().width, el.getBoundingClientRect().height])""")
                assert len(sizes) == 35
                assert max(w for w, _ in sizes) - min(w for w, _ in sizes) <= 1
                assert max(h for _, h in sizes) - min(h for _, h in sizes) <= 1
                # every failing tile says since when and how long, as the server words it
                before = clock.now()
                shown = await page.evaluate(DURATIONS)
                after = clock.now()
                t = Translator(lang)
                assert len(shown) == 35
                for since, text in shown:
                    # the page's clock is the server's as of its render, corrected by each
                    # heartbeat: it may lag by the time the page took to load
                    lags = range(-3, int(after - before) + 2)
                    assert text in {t.duration(before - since + lag) for lag in lags}, \
                        (since, text)
                await page.close()


async def test_the_duration_counts_on_in_the_page_and_the_banner_leaves_the_tiles(
        tmp_path: Path, browser: Any) -> None:  # noqa: F811
    async with scene("down35", tmp_path) as app:
        await keep_watching(browser, app.url + "/")
        live = await open_wall(browser, app.url + "/", 1920, 1080)
        tiles = await live.evaluate(
            "() => document.getElementById('tiles').getBoundingClientRect().toJSON()")
        await live.close()
        # a screen whose stream is cut off from the start: nothing is pushed to it
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        await page.route("**/api/v1/stream*", lambda route: route.abort())
        await page.goto(app.url + "/")
        await page.wait_for_function("() => document.fonts.status === 'loaded'")
        # the banner says so, lies over the header, never over a tile; the tiles stay put
        await page.wait_for_selector("#offline:not([hidden])", timeout=5000)
        assert "Mất kết nối" in (await page.text_content("#offline") or "")
        banner = await page.evaluate(
            "() => document.getElementById('offline').getBoundingClientRect().toJSON()")
        assert 0 < banner["bottom"] <= tiles["top"]
        assert await page.evaluate(
            "() => document.getElementById('tiles').getBoundingClientRect().toJSON()") == tiles
        assert (await page.evaluate(CLIPPED, NOT_CHECKED))["bad"] == []
        # and a failing tile's duration still counts on, by the page's own timer
        await page.evaluate("""() => {
            const el = Array.from(document.querySelectorAll('.dur')).find(
                e => e.textContent.endsWith('giây'));
            window.watched = [el, el.textContent];
        }""")
        await page.wait_for_function(
            "() => window.watched[0].textContent !== window.watched[1]", timeout=5000)
        await page.close()


@pytest.mark.parametrize("scene_name", ["calm", "critical-acked"])
async def test_the_calm_and_acked_walls_fit(tmp_path: Path, browser: Any,  # noqa: F811
                                            scene_name: str) -> None:
    async with scene(scene_name, tmp_path) as app:
        await keep_watching(browser, app.url + "/")
        for width, height in SIZES:
            for lang in ("vi", "en"):
                page = await open_wall(browser, f"{app.url}/?lang={lang}", width, height)
                if scene_name == "critical-acked":
                    await page.wait_for_selector("#panel-alerts .alert.handled")
                result = await page.evaluate(CLIPPED, NOT_CHECKED)
                assert result["bad"] == [], (scene_name, width, lang, result["bad"])
                # the 24-hour strip and the 30-day on-time sparkline are drawn
                assert await page.evaluate(
                    "() => document.querySelectorAll('.t-strip .c-ok').length") > 24 * 30
                assert await page.evaluate(
                    "() => document.querySelector('#panel-backlog .trend polyline')"
                    ".getAttribute('points').split(' ').length") >= 29
                await page.close()
