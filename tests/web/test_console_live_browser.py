"""The live console in Chromium at a laptop's 1366×768: alerts arrive without a reload, filters
go into the address, several alerts are acked at once, the silence builder previews what it
will match, the incidents page lists and takes notes, and nothing overflows with the longest
names a province has.

With ``IOC_SCREENSHOT_DIR=docs/screenshots`` (or a ``build/screenshots`` directory) the run
saves the console's screenshots at 1366×768 (docs/console.md)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ioc import clock
from ioc.incidents import reason_code
from ioc.model import Sample, make_labels
from ioc.status import TargetState
from ioc.store.incidents import Query as IncidentQuery
from tests.alerts.test_delivery_e2e import RULE, fault
from tests.conftest import demo_config, free_port, polled_app
from tests.web.test_browser import (  # noqa: F401 (browser is a fixture)
    SCREENSHOTS,
    VIETNAMESE,
    VISIBLE_TEXT,
    browser,
    open_page,
)
from tests.web.test_console import OPERATOR, TOKENS

WIDTH, HEIGHT = 1366, 768
LONG_DEPARTMENT = "Ban Quản lý các khu công nghiệp tỉnh Hậu Giang"
LONG_TARGET = "cong-thong-tin-dien-tu-" + "ban-quan-ly-cac-khu-cong-nghiep-tinh-hau-giang-" * 4
LONG_TARGET = LONG_TARGET[:200]

# Nothing wider than the window, and no element whose content is wider than its box unless
# it is cut with an ellipsis (text-overflow or a line clamp) and says the whole in its title.
OVERFLOWS = """() => {
  const bad = [];
  const root = document.documentElement;
  if (root.scrollWidth > innerWidth) bad.push('page ' + root.scrollWidth + ' > ' + innerWidth);
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('[hidden], svg, option, script')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || el.clientWidth === 0) continue;
    if (el.scrollWidth <= el.clientWidth + 1) continue;
    const cut = style.textOverflow === 'ellipsis' || style.webkitLineClamp !== 'none';
    const titled = el.title || (el.closest('[title]') || {}).title;
    if (cut && titled) continue;
    bad.push(el.tagName + '#' + el.id + '.' + el.className + ' ' + el.scrollWidth + '>' +
             el.clientWidth);
  }
  return bad;
}"""


def shoot(name: str) -> Path | None:
    if not (os.environ.get("IOC_SCREENSHOT_DIR") or SCREENSHOTS.exists()):
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name


def config(tmp_path: Path) -> Any:
    extra = {"alerts": {"evaluation_interval": "200ms", "default_rules": False,
                        "rules": [{**RULE, "matchers": ['department=~"STP|BQLKCN"']},
                                  {**RULE, "name": "SytDown", "severity": "warning",
                                   "matchers": ['department="SYT"']}]},
             "auth": {"tokens": TOKENS}, "wall": {"heartbeat": "500ms"}}
    cfg = demo_config(tmp_path, free_port(), codes=["STP", "CAT", "SYT", "BQLKCN"],
                      extra=extra)
    names = {"BQLKCN": LONG_DEPARTMENT}
    return type(cfg)(**{**cfg.__dict__, "departments": tuple(
        d.model_copy(update={"name": names.get(d.code, d.name)}) for d in cfg.departments)})


async def sign_in(page: Any) -> None:
    await page.fill("#token", OPERATOR)
    await page.click("form[action^='/console/login'] button")
    await page.wait_for_selector("#alerts-count")


async def test_the_console_updates_live_filters_and_acts_on_several_alerts(
        tmp_path: Path, browser: Any) -> None:  # noqa: F811
    async with polled_app(config(tmp_path)) as (app, _):
        sim = f"http://{app.config.simulator.listen}"
        page, problems = await open_page(browser, app.url + "/console", WIDTH, HEIGHT)
        await sign_in(page)
        await page.wait_for_selector("#live-state:not([hidden])")
        await page.evaluate("() => { window.notReloaded = true; }")

        # Alerts and a pending target arrive on the open page.
        for unit in ("STP", "SYT", "BQLKCN"):
            await fault(sim, unit, "down")
        await page.wait_for_function(
            "() => document.querySelectorAll('#alerts-body tr.alert').length === 3",
            timeout=15000)
        await fault(sim, "CAT", "down")
        await page.wait_for_selector("#pending-body tr[data-target='cat-health']",
                                     timeout=15000)
        assert await page.evaluate("() => window.notReloaded") is True

        # Filter by severity: the address keeps it; the hidden row cannot be selected.
        await page.select_option("#f-severity", "critical")
        assert "severity=critical" in page.url
        assert await page.evaluate(
            "() => document.querySelectorAll('#alerts-body tr.alert:not([hidden])').length"
        ) == 2
        await page.check("#pick-all")
        assert await page.text_content("#bulk-count") == "Đã chọn 2"
        path = shoot("console-alerts-1366x768-vi.png")
        if path:
            await page.screenshot(path=str(path))
        # Half-typed words in a row hidden by the filter are kept when the rows are swapped.
        await page.select_option("#f-severity", "warning")
        warning = "#alerts-body tr[data-severity=warning] form.ack input[name=comment]"
        await page.fill(warning, "đang gọi Sở Y tế")
        await page.select_option("#f-severity", "critical")
        await page.check("#pick-all")
        await page.fill("#bulk input[name=comment]", "đang xử lý")
        await page.click("#bulk-ack")
        await page.wait_for_function(
            "() => document.querySelectorAll('#alerts-body .mark.acked').length === 2",
            timeout=5000)
        assert await page.input_value(warning) == "đang gọi Sở Y tế"
        # the answer's summary can come after the stream has shown the acks
        await page.wait_for_function(
            "() => (document.getElementById('status').textContent || '').includes('2/2')",
            timeout=5000)
        assert await page.evaluate("() => window.notReloaded") is True
        # the warning was hidden by the filter, so it was not acked
        await page.select_option("#f-severity", "")
        assert "severity" not in page.url
        assert await page.evaluate(
            "() => document.querySelector('#alerts-body tr[data-severity=warning] .mark.acked')"
        ) is None
        # Silence the warning until a typed time (the bar's "until" choice, not a preset).
        assert await page.is_hidden("#bulk-end")
        await page.check("#alerts-body tr[data-severity=warning] input.pick")
        await page.select_option("#bulk-duration", "")
        until = datetime.fromtimestamp(clock.now() + 3 * 3600, ZoneInfo("Asia/Ho_Chi_Minh"))
        await page.fill("#bulk-end", until.strftime("%d/%m/%Y %H:%M"))
        await page.fill("#bulk input[name=comment]", "chờ Sở Y tế")
        assert await page.evaluate(OVERFLOWS) == []  # the bar with its end field, at 1366 px
        await page.click("#bulk-silence")
        await page.wait_for_function(
            "() => document.querySelector('#alerts-body tr[data-severity=warning] .marks')"
            ".textContent.includes('Đã tạm ẩn')", timeout=5000)
        (silence,) = [s for s in app.dispatcher.silences.values() if s.comment == "chờ Sở Y tế"]
        assert silence.ends_at == until.replace(second=0, microsecond=0).timestamp()
        # the bar is reset once the answer says it succeeded (it can come after the stream)
        await page.wait_for_selector("#bulk-end", state="hidden", timeout=5000)
        assert await page.evaluate(
            "() => document.querySelectorAll('#alerts-body input.pick:checked').length") == 0
        assert await page.evaluate(OVERFLOWS) == []

        # A bookmark of the filtered view opens filtered.
        bookmark, more = await open_page(browser, app.url + "/console?rule=SytDown",
                                         WIDTH, HEIGHT)
        await sign_in(bookmark)  # and the sign-in leads back to the filtered view
        assert "rule=SytDown" in bookmark.url
        await bookmark.wait_for_selector("#alerts-body tr.alert:not([hidden])")
        assert await bookmark.evaluate(
            "() => [...document.querySelectorAll('#alerts-body tr.alert:not([hidden])')]"
            ".map(r => r.dataset.rule)") == ["SytDown"]

        # The silence builder previews what it will match, then makes it.
        await page.select_option("#b-department", "SYT")
        await page.wait_for_selector("#preview-list .preview-row")
        assert "1" in (await page.text_content("#preview-head") or "")
        assert await page.evaluate(
            "() => document.querySelectorAll('#preview-list .preview-row').length") == 1
        await page.select_option("#b-duration", "")  # until a typed time
        await page.fill("#b-end", "05/12/2026 24:00")
        await page.fill("#new-silence input[name=comment]", "đổi đường truyền")
        await page.click("#new-silence button[type=submit]")
        await page.wait_for_selector("#status.bad")
        said = await page.text_content("#status") or ""
        assert "00:00" in said and "invalid" not in said  # said in Vietnamese only
        path = shoot("console-silence-builder-1366x768-vi.png")
        if path:
            await page.screenshot(path=str(path), full_page=True)
        await page.select_option("#b-duration", "2h")
        await page.fill("#new-silence input[name=comment]", "đổi đường truyền")
        await page.click("#new-silence button[type=submit]")
        await page.wait_for_selector("#silence-list .silence-row", timeout=5000)
        await page.wait_for_selector("#alerts-body tr[data-severity=warning] .marks .mark")
        assert await page.evaluate(OVERFLOWS) == []
        assert await page.evaluate("() => window.notReloaded") is True
        # Signed out (elsewhere, or by a reload that removed the token): the page says the
        # live updates stopped instead of going quietly stale.
        csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
        await page.request.post(app.url + "/console/logout", form={"csrf": csrf or ""},
                                max_redirects=0)
        app.console.stream.close_all()
        await page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('Tải lại trang')",
            timeout=10000)
        assert await page.is_hidden("#live-state")
        # the refused requests are the 24:00 the test typed on purpose and the stream's
        # reconnection after signing out
        problems = [p for p in problems if "status of 401" not in p]

        assert [p for p in problems if "status of 400" not in p] == [] and more == []


async def test_the_longest_names_fit_at_1366_and_the_incidents_page_works(
        tmp_path: Path, browser: Any) -> None:  # noqa: F811
    async with polled_app(config(tmp_path)) as (app, _):
        sim = f"http://{app.config.simulator.listen}"
        # A target row with a 200-character name (another shard's, read from the store,
        # is not held to the config's 128): it fails, so it is listed as pending.
        app.board.targets[LONG_TARGET] = TargetState(
            LONG_TARGET, "BQLKCN", "http", 30.0, up=False, raw_up=False,
            failing_since=clock.now() - 90, consecutive_failures=3, reason="timeout")
        await fault(sim, "BQLKCN", "down")
        labels = make_labels(target=LONG_TARGET, department="BQLKCN", kind="http")
        t0 = clock.now() - 900
        await app.store.append(
            [Sample("ioc_target_up", labels, float(i in (0, 3)), t0 + i * 60) for i in range(6)]
            + [Sample("ioc_target_failure_reason", labels, reason_code("timeout"), t0 + i * 60)
               for i in (1, 2, 4, 5)])
        await app.incident_job.run_once()

        page, problems = await open_page(browser, app.url + "/console", WIDTH, HEIGHT)
        await sign_in(page)
        await page.wait_for_selector("#alerts-body tr.alert[data-department=BQLKCN]",
                                     timeout=15000)
        await page.wait_for_selector("#pending-body tr.pending-row")
        await page.select_option("#new-maintenance select[name=department]", "BQLKCN")
        await page.select_option("#b-department", "BQLKCN")
        assert await page.evaluate(OVERFLOWS) == []

        await page.goto(app.url + "/console/incidents?department=BQLKCN")
        await page.wait_for_selector("#incidents li.incident")
        assert await page.evaluate(OVERFLOWS) == []
        await page.fill("#incidents li.incident form.note input[name=text]",
                        "đã báo đơn vị kiểm tra đường truyền")
        await page.click("#incidents li.incident form.note button")
        await page.wait_for_selector("#incidents .notes li")
        assert "ca-truc" in (await page.text_content("#incidents .notes") or "")
        # the public note citizens read on /status: set from the page, then withdrawn
        await page.fill("#incidents li.incident form.public-note input[name=text]",
                        "Cổng dịch vụ công gián đoạn, đã khôi phục")
        await page.fill("#incidents li.incident form.public-note input[name=text_en]",
                        "The portal was interrupted and is back")
        await page.click("#incidents li.incident form.public-note button")
        await page.wait_for_selector("#incidents dl.facts dd:has-text('is back')")
        rows, _ = await app.incidents.list(IncidentQuery(department="BQLKCN"), clock.now())
        # the first incident listed (newest first) has it, no other
        assert [(r.get("public_note"), r.get("public_note_en")) for r in rows] == [
            ("Cổng dịch vụ công gián đoạn, đã khôi phục",
             "The portal was interrupted and is back")] + [(None, None)] * (len(rows) - 1)
        path = shoot("console-incidents-1366x768-vi.png")
        if path:
            await page.screenshot(path=str(path))
        assert await page.evaluate(OVERFLOWS) == []

        await page.fill("#incidents li.incident form.public-note input[name=text]", "")
        # The form reloads the page once the API has answered: wait for that page, or the
        # reload would overtake the next step.
        async with page.expect_navigation():
            await page.click("#incidents li.incident form.public-note button")
        await page.wait_for_selector(
            "#incidents li.incident:first-child form.public-note input[name=text][value='']")
        rows, _ = await app.incidents.list(IncidentQuery(department="BQLKCN"), clock.now())
        assert {(r.get("public_note"), r.get("public_note_en")) for r in rows} == {
            (None, None)}

        await page.fill("#incident-filters input[name=start]", "31/02/2027 10:00")
        await page.click("#incident-filters button")
        await page.wait_for_selector(".input-error")
        assert "Không có ngày" in (await page.text_content(".input-error") or "")

        # In English, the console's own words are English (names stay as they are).
        for path in ("/console?lang=en", "/console/incidents?lang=en"):
            await page.goto(app.url + path)
            text = await page.evaluate(VISIBLE_TEXT)
            assert not VIETNAMESE.findall(text), (path, VIETNAMESE.findall(text))
        assert problems == []


async def test_saving_the_roster_updates_the_duty_card_without_a_reload(
        tmp_path: Path, browser: Any) -> None:  # noqa: F811
    admin = "admin-token-0123456789abc"
    people = [{"id": p, "name": f"Cán bộ {p.upper()}", "email": f"{p}@hg.gov.vn"}
              for p in ("an", "binh")]
    seed = {"people": people, "teams": [{"name": "vanhanh", "rotation": {
        "start": "2020-01-01", "people": ["an"]}}]}
    extra = {"auth": {"tokens": [*TOKENS, {"name": "quan-tri", "token": admin,
                                            "roles": ["admin"]}]},
             "wall": {"heartbeat": "500ms"},
             "alerts": {"oncall": {**seed, "policies": [
                 {"name": "critical", "team": "vanhanh",
                  "steps": [{"after": "0s", "notify": ["oncall"]}]}]}}}
    async with polled_app(demo_config(tmp_path, free_port(), codes=["STP"], extra=extra)) \
            as (app, _):
        page, problems = await open_page(browser, app.url + "/console", WIDTH, HEIGHT)
        await page.fill("#token", admin)
        await page.click("form[action^='/console/login'] button")
        await page.wait_for_selector("#oncall-state b:has-text('Cán bộ AN')")
        await page.wait_for_selector("#live-state:not([hidden])")  # the stream is open
        await page.evaluate("() => { window.samePage = true; }")
        roster = json.loads(await page.input_value("#edit-roster textarea"))
        assert roster["teams"][0]["rotation"]["people"] == ["an"]
        roster["teams"][0]["rotation"]["people"] = ["binh"]
        edited = json.dumps(roster, ensure_ascii=False, indent=2)
        await page.fill("#edit-roster textarea", edited)
        await page.click("#edit-roster button")
        await page.wait_for_selector("#oncall-state b:has-text('Cán bộ BINH')", timeout=5000)
        assert await page.evaluate("() => window.samePage") is True  # not reloaded
        assert await page.input_value("#edit-roster textarea") == edited  # kept as saved
        path = shoot("console-oncall-1366x768-vi.png")
        if path:
            await page.locator("#oncall").screenshot(path=str(path))
        assert await page.evaluate(OVERFLOWS) == []
        assert problems == []
