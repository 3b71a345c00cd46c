"""The wall's alerts panel in a real browser (Debian's headless Chromium, Playwright): a new
critical alert flashes its tile and its line and plays a tone, a flood of criticals fits the
panel in 24 px text without clipping, and the English wall has no Vietnamese left."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alerts.model import Alert, AlertState
from alerts.rules import compile_rules, default_rules_text, parse_rule_text
from ioc import clock
from ioc.model import make_labels
from tests.conftest import demo_config, free_port, polled_app, require_binary
from tests.web.test_browser import (  # noqa: F401 (browser is a fixture)
    ARGS,
    OVERFLOWS,
    SCREENSHOTS,
    VIETNAMESE,
    browser,
    open_page,
    playwright_api,
)
from tests.web.wall_scenes import demo_panels

# Text of the alert lines that is cut (a clamped summary whose words do not all show).
CLIPPED = """() => Array.from(document.querySelectorAll('#panel-alerts .alert:not([hidden])'))
  .filter(li => li.offsetParent !== null)
  .flatMap(li => Array.from(li.querySelectorAll('.a-what')))
  .filter(el => el.scrollHeight > el.clientHeight + 1).map(el => el.textContent)"""
FONT = """() => Array.from(document.querySelectorAll(
  '#panel-alerts .alert:not([hidden]) .a-what, #panel-alerts .alert:not([hidden]) .a-head,'
  + ' #panel-alerts .more:not([hidden])'))
  .map(el => parseFloat(getComputedStyle(el).fontSize))"""


def critical(code: str, now: float, *, rule: str = "TargetDown", fired: float | None = None,
             name: str = "") -> Alert:
    target = f"{code.lower()}-health"
    return Alert(labels=make_labels({"alertname": rule, "department": code,
                                     "severity": "critical", "target": target}),
                 annotations=(("summary", f"{target} ({name or code}) không truy cập được"),
                              ("summary_en", f"{target} ({name or code}) is unreachable"),
                              ("title", "Mất kết nối"), ("title_en", "Unreachable")),
                 state=AlertState.FIRING, value=0.0, active_at=now - 300,
                 fired_at=now - 180 if fired is None else fired, last_eval=now)


def warning(code: str, now: float, index: int) -> Alert:
    target = f"{code.lower()}-health"
    return Alert(labels=make_labels({"alertname": "TargetSlow", "department": code,
                                     "severity": "warning", "target": target,
                                     "n": str(index)}),
                 annotations=(("summary", f"{target} phản hồi chậm"),
                              ("summary_en", f"{target} responds slowly"),
                              ("title", "Phản hồi chậm"), ("title_en", "Slow response")),
                 state=AlertState.FIRING, value=4.0, active_at=now - 900,
                 fired_at=now - 600, last_eval=now)


async def test_a_new_critical_flashes_its_tile_and_line_and_sounds(tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT", "SYT"],
                         extra={"wall": {"heartbeat": "500ms", "sound": True}})
    async with polled_app(config) as (app, _), playwright_api.async_playwright() as pw:
        # A kiosk lets the page play sound without a click (docs/wall.md's command line).
        instance = await pw.chromium.launch(
            executable_path=chromium,
            args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
        try:
            page, problems = await open_page(instance, app.url + "/", 1920, 1080)
            await page.wait_for_function("() => document.querySelector('#live')")
            assert await page.evaluate("() => document.body.dataset.tones") is None
            now = clock.now()
            await app.dispatcher.update([critical("CAT", now, fired=now)], now)
            await page.wait_for_selector("#dept-CAT.flash", timeout=5000)
            await page.wait_for_selector("#panel-alerts .alert.a-critical.flash", timeout=5000)
            await page.wait_for_function("() => document.body.dataset.tones === '1'",
                                         timeout=5000)
            assert await page.is_hidden("#sound-hint")
            assert not await page.evaluate(
                "() => document.querySelector('#dept-STP').classList.contains('flash')")
            animation = await page.evaluate(
                "() => getComputedStyle(document.querySelector('#dept-CAT')).animationName")
            assert animation == "ioc-flash"
            # An old critical (fired minutes ago) neither flashes nor sounds again.
            await app.dispatcher.update([critical("CAT", now, fired=now),
                                         critical("STP", now)], now)
            await page.wait_for_selector("#panel-alerts [data-department='STP']", timeout=5000)
            assert await page.evaluate("() => document.body.dataset.tones") == "1"
            assert not await page.evaluate(
                "() => document.querySelector('#dept-STP').classList.contains('flash')")
            # Without motion the tile is ringed, not blinking.
            await page.emulate_media(reduced_motion="reduce")
            assert await page.evaluate(
                "() => getComputedStyle(document.querySelector('#dept-CAT')).animationName") \
                == "none"
            assert problems == []
        finally:
            await instance.close()


# Headless Chromium lets every page play sound, whatever --autoplay-policy says; a desktop
# browser keeps an AudioContext suspended until the person touches the page. This stands in
# for that policy (the page's own code runs unchanged).
GESTURE_POLICY = """
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    get state() { return this.allowed ? super.state : 'suspended'; }
    resume() { this.allowed = true; return super.resume(); }
  };
"""


async def test_sound_waits_for_a_click_and_says_so(tmp_path: Path,
                                                   browser: Any) -> None:  # noqa: F811
    config = demo_config(tmp_path, free_port(), codes=["STP", "CAT"],
                         extra={"wall": {"heartbeat": "500ms", "sound": True}})
    async with polled_app(config) as (app, _):
        context = await browser.new_context(viewport={"width": 1920, "height": 1080})
        await context.add_init_script(GESTURE_POLICY)
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(app.url + "/?lang=en")
        await page.wait_for_selector("#sound-hint:not([hidden])")
        assert "click the screen once" in (await page.text_content("#sound-hint") or "")
        now = clock.now()
        await app.dispatcher.update([critical("CAT", now, fired=now)], now)
        await page.wait_for_selector("#dept-CAT.flash", timeout=5000)  # flashes all the same
        await page.wait_for_function("() => document.body.dataset.tonesBlocked === '1'")
        assert await page.evaluate("() => document.body.dataset.tones") is None
        await page.mouse.click(400, 400)
        await page.wait_for_selector("#sound-hint", state="hidden")
        assert problems == []
        await context.close()


async def test_a_flood_of_criticals_fits_in_large_text(tmp_path: Path,
                                                       browser: Any) -> None:  # noqa: F811
    config = demo_config(tmp_path, free_port(), extra={"wall": {"heartbeat": "500ms"}})
    async with polled_app(config) as (app, _):
        names = {d.code: d.name for d in app.config.departments}
        codes = list(names)[:35]
        now = clock.now()
        alerts = [critical(code, now, name=names[code]) for code in codes]
        alerts[0] = critical(codes[0], now, rule="CertificateExpiringSoon", name=names[codes[0]])
        alerts += [warning(code, now, i) for i, code in enumerate(codes[:6])]
        fingerprint = alerts[1].fingerprint
        await app.dispatcher.update(alerts, now)
        await app.dispatcher.acknowledge(fingerprint, by="Nguyễn Văn A", comment="đang xử lý",
                                         now=now, duration=3600)
        for (width, height), lang in (((1920, 1080), "vi"), ((3840, 2160), "en"),
                                      ((1920, 1080), "en")):
            page, problems = await open_page(browser, f"{app.url}/?lang={lang}", width, height)
            await page.wait_for_function(
                "() => document.querySelector('#panel-alerts .alert-fit').dataset.plan")
            sizes = await page.evaluate(FONT)
            assert sizes and min(sizes) >= 24 * height / 1080 - 0.5, sizes
            assert await page.evaluate(OVERFLOWS) == [], (width, lang)
            assert await page.evaluate(CLIPPED) == [], (width, lang)
            text = await page.inner_text("#panel-alerts")
            # Every critical is on screen or counted: one line says how many systems are down.
            assert re.search(r"(Mất kết nối — 34 hệ thống|Unreachable — 34 systems)", text), text
            assert "34" in text
            if lang == "en":
                names_gone = text
                for name in names.values():
                    names_gone = names_gone.replace(name, "")
                assert not VIETNAMESE.findall(names_gone.replace("Nguyễn Văn A", "")), names_gone
            if width == 1920 and lang == "vi":
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SCREENSHOTS / "wall-alerts-flood-1920x1080-vi.png"))
            assert problems == []
            await page.close()


def rule_alert(rules: dict[str, Any], name: str, severity: str, labels: dict[str, str],
               value: float, now: float) -> Alert:
    """An alert as the default rule ``name`` renders it (its annotations in both languages)."""
    rule = rules[(name, severity)]
    full = make_labels({**labels, "alertname": name, "severity": severity})
    return Alert(labels=full, annotations=rule.render(full, value), state=AlertState.FIRING,
                 value=value, active_at=now - 900, fired_at=now - 780, last_eval=now)


async def test_the_english_wall_has_no_vietnamese_left(tmp_path: Path,
                                                      browser: Any) -> None:  # noqa: F811
    """The whole screen in English with the demo config, every panel lit and default rules
    firing: only names of places, systems and people stay as configured."""
    config = demo_config(tmp_path, free_port(), extra={"wall": {"heartbeat": "500ms"}})
    async with polled_app(config) as (app, _):
        names = {d.code: d.name for d in app.config.departments}
        parsed, _ = parse_rule_text(default_rules_text(), "default_rules.yaml")
        rules = {(r.name, r.config.severity): r
                 for r in compile_rules(parsed, department_names=names)}
        now = clock.now()
        demo_panels(app, now)
        alerts = [rule_alert(rules, "TargetDown", "critical",
                             {"target": f"{c.lower()}-health", "department": c, "kind": "http"},
                             0.0, now) for c in list(names)[:3]]
        alerts += [rule_alert(rules, "CertificateExpiringSoon", "warning",
                              {"target": "dvc-portal", "department": "DVC"}, 9 * 86400, now),
                   rule_alert(rules, "DossierOnTimeRateLow", "warning", {"department": ""},
                              0.93, now)]
        await app.dispatcher.update(alerts, now)
        await app.dispatcher.acknowledge(alerts[0].fingerprint, by="Trần Thị Bình",
                                         comment="", now=now, duration=3600)
        page, problems = await open_page(browser, f"{app.url}/?lang=en", 1920, 1080)
        await page.wait_for_function(
            "() => document.querySelector('#panel-alerts .alert-fit').dataset.plan")
        assert await page.evaluate(OVERFLOWS) == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "wall-alerts-1920x1080-en.png"))
        text = await page.evaluate("""() => {
          const clone = document.body.cloneNode(true);
          clone.querySelectorAll('[hidden], script').forEach(e => e.remove());
          return clone.innerText;
        }""")
        assert "Unreachable" in text or "is unreachable" in text
        assert "Acknowledged: Trần Thị Bình" in text
        proper = [*names.values(), app.config.province.name, app.config.service.title,
                  "Trần Thị Bình"]
        for name in sorted(proper, key=len, reverse=True):
            text = text.replace(name, "")
        assert not VIETNAMESE.findall(text), text
        assert problems == []
