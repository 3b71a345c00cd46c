"""Scheduled reports: when each schedule is due, the config's errors, and the run record.

The fire times are APScheduler's; what is tested here is ioc's use of them: the period a
firing reports on, catch-up after downtime within the grace (the latest period only), and
one run per (schedule, period) whoever asks (docs/reports.md).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.notifiers import HttpSession, Integration
from alerts.report_delivery import report_integrations
from ioc.reports.schedule import (
    ScheduleConfig,
    due_run,
    file_name,
    next_fire,
    period_of,
)
from ioc.store.report_runs import ReportRunStore
from service.app import IocApp
from service.config import Config, ConfigError, parse_config
from service.report_schedule import ReportScheduler, _NoSource, send_by_hand

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def at(*args: int) -> float:
    return datetime(*args, tzinfo=VN).timestamp()  # type: ignore[misc]


WEEKLY = ScheduleConfig(name="tuan", cron="30 7 * * mon", period="previous_week",
                        receivers=["bao-cao"])
MONTHLY = ScheduleConfig(name="thang", cron="30 7 1 * *", period="previous_month",
                         receivers=["bao-cao"])


@pytest.mark.parametrize(("kind", "fired", "period"), [
    ("previous_month", datetime(2026, 12, 1, 7, 30), "2026-11"),
    ("previous_month", datetime(2027, 1, 1, 7, 30), "2026-12"),
    ("previous_week", datetime(2026, 11, 30, 7, 30), "2026-W48"),
    ("previous_week", datetime(2027, 1, 4, 7, 30), "2026-W53"),
    ("previous_day", datetime(2027, 1, 1, 7, 30), "2026-12-31"),
])
def test_the_period_a_firing_reports_on(kind: str, fired: datetime, period: str) -> None:
    assert period_of(kind, fired) == period


def test_due_is_the_latest_firing_within_the_grace() -> None:
    # Monday 30 November 2026, 07:30 in Hà Nội: the weekly report of week 48 is due.
    fire = at(2026, 11, 30, 7, 30)
    assert due_run(WEEKLY, VN, fire - 1).period == "2026-W47"  # type: ignore[union-attr]
    run = due_run(WEEKLY, VN, fire)
    assert run is not None and (run.period, run.fired_at) == ("2026-W48", fire)
    # Down from Sunday to Thursday: still week 48 (catch-up within the grace of 7 days) ...
    assert due_run(WEEKLY, VN, at(2026, 12, 3, 9)).period == "2026-W48"  # type: ignore[union-attr]
    # ... and after three weeks away only the latest week, never the ones in between.
    assert due_run(WEEKLY, VN, at(2026, 12, 22, 9)).period == "2026-W51"  # type: ignore[union-attr]
    short = WEEKLY.model_copy(update={"grace": 3600.0})
    assert due_run(short, VN, fire + 3599) is not None and due_run(short, VN, fire + 3601) is None
    assert next_fire(MONTHLY, VN, fire) == at(2026, 12, 1, 7, 30)


def test_file_names() -> None:
    assert file_name("2026-11", "pdf", "vi") == "bao-cao-2026-11.pdf"
    assert file_name("2026-W48", "xlsx", "en", "STP") == "report-2026-W48-STP.xlsx"


BASE: dict[str, Any] = {
    "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
    "alerts": {"receivers": [{"name": "bao-cao", "webhook": [{"url": "http://127.0.0.1:9/"}]}]},
}


@pytest.mark.parametrize(("schedule", "path", "message"), [
    ({"cron": "30 7 * * 1"}, "reports.schedules[0].cron", "day of week with names"),
    ({"cron": "30 7 * *"}, "reports.schedules[0].cron", "expected 5 fields"),
    ({"cron": "99 7 * * mon"}, "reports.schedules[0].cron", "cron '99 7 * * mon'"),
    ({"period": "last_month"}, "reports.schedules[0].period", "previous_month"),
    ({"receivers": ["nobody"]}, "reports.schedules[0].receivers[0]",
     "unknown receiver 'nobody' (add it under alerts.receivers, defined: bao-cao)"),
    ({"department": "ZZZ"}, "reports.schedules[0].department", "unknown department 'ZZZ'"),
    ({"formats": ["pdf", "doc"]}, "reports.schedules[0].formats[1]", "'pdf', 'xlsx'"),
    ({"colour": "red"}, "reports.schedules[0].colour", "unknown key"),
])
def test_bad_schedule_config_names_its_path(schedule: dict[str, Any], path: str,
                                            message: str) -> None:
    block = {"name": "thang", "cron": "30 7 1 * *", "period": "previous_month",
             "receivers": ["bao-cao"], **schedule}
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "reports": {"schedules": [block]}}, env={})
    issues = [(i.path, i.message) for i in caught.value.issues]
    assert any(p == path and message in m for p, m in issues), issues


def config_for(tmp_path: Path, **reports: Any) -> Config:
    return parse_config({**BASE, "storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/ioc.db"},
                         "reports": {"schedules": [
                             {"name": "tuan", "cron": "30 7 * * mon",
                              "period": "previous_week", "receivers": ["bao-cao"]}],
                             **reports}}, env={})


def channels(config: Config) -> dict[str, list[Integration]]:
    return report_integrations(config.alerts.receivers, {"bao-cao"}, HttpSession(),
                               _NoSource())


async def test_catch_up_sends_the_latest_missed_period_once(tmp_path: Path) -> None:
    config = config_for(tmp_path, public_url="https://ioc.haugiang.gov.vn/")
    store = ReportRunStore(config.storage.url)
    await store.open()
    woken: list[int] = []
    scheduler = ReportScheduler(lambda: config, store, channels(config), leading=lambda: True,
                                fence=lambda: None, after_enqueue=lambda: woken.append(1),
                                download_url=lambda: "unused", clock=lambda: 0.0)
    try:
        # ioc was down from before Monday 23 November to Thursday 17 December: weeks 47 to
        # 50 were all missed; only week 50 (fired Monday 14th, within the 7-day grace) goes.
        assert await scheduler.tick(at(2026, 12, 17, 9)) == [("tuan", "2026-W50")]
        assert await scheduler.tick(at(2026, 12, 17, 10)) == []
        runs = await store.runs()
        assert [(r.period, r.trigger, r.notifications) for r in runs] == [
            ("2026-W50", "catch-up", 1)]
        # On time the next Monday; a fresh scheduler (a restart) finds the row and sends none.
        assert await scheduler.tick(at(2026, 12, 21, 7, 30, 10)) == [("tuan", "2026-W51")]
        again = ReportScheduler(lambda: config, store, channels(config), leading=lambda: True,
                                fence=lambda: None, after_enqueue=lambda: None,
                                download_url=lambda: "unused", clock=lambda: 0.0)
        assert await again.tick(at(2026, 12, 21, 8)) == []
        assert [r.trigger for r in await store.runs()] == ["schedule", "catch-up"]
        assert woken == [1, 1]
    finally:
        await store.close()


async def test_sending_by_hand_is_idempotent_too(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    queued, run = await send_by_hand(config, "tuan", "2026-W48", now=at(2026, 12, 2))
    assert queued and run is not None and run.trigger == "manual"
    queued, run = await send_by_hand(config, "tuan", "2026-W48", now=at(2026, 12, 3))
    assert not queued and run is not None and run.queued_at == at(2026, 12, 2)
    with pytest.raises(ValueError, match="reports on a week"):
        await send_by_hand(config, "tuan", "2026-11", now=at(2026, 12, 3))
    with pytest.raises(ValueError, match=r"not under reports\.schedules"):
        await send_by_hand(config, "thang", "2026-11", now=at(2026, 12, 3))
    # The schedule itself, firing for the same week, finds the run sent by hand.
    store = ReportRunStore(config.storage.url)
    await store.open()
    try:
        scheduler = ReportScheduler(lambda: config, store, channels(config),
                                    leading=lambda: True, fence=lambda: None,
                                    after_enqueue=lambda: None, download_url=lambda: "",
                                    clock=lambda: 0.0)
        assert await scheduler.tick(at(2026, 11, 30, 7, 30, 5)) == []
        assert [r.trigger for r in await store.runs()] == ["manual"]
    finally:
        await store.close()


async def test_a_receiver_added_by_a_reload_gets_the_next_run(tmp_path: Path) -> None:
    """A reload may add a receiver and a schedule naming it: the run goes out through it,
    through the same app, without a restart."""
    before = parse_config({"departments": BASE["departments"], "storage": {
        "url": f"sqlite+aiosqlite:///{tmp_path}/ioc.db"}}, env={})
    app = IocApp(before)
    app.report_schedule.leading = lambda: True
    await app.report_schedule.open()
    await app.dispatcher.store.open()  # the outbox the run is queued to
    try:
        assert app.report_schedule.integrations == {}
        result = await app.reload(config_for(tmp_path))
        assert result.ok and result.delivery == ["receivers"]
        assert result.restart_required == []
        assert [i.id for i in app.report_schedule.integrations["bao-cao"]] == [
            "report:bao-cao/webhook[0]"]
        assert "report:bao-cao/webhook[0]" in app.dispatcher.outbox.integrations
        assert await app.report_schedule.tick(at(2026, 11, 30, 7, 30, 5)) == [
            ("tuan", "2026-W48")]
        (run,) = await app.report_schedule.store.runs()
        assert (run.schedule, run.period, run.notifications) == ("tuan", "2026-W48", 1)
    finally:
        await app.report_schedule.stop()
        await app.dispatcher.stop()
        await app.store.close()


async def test_a_run_waits_while_its_receivers_have_no_channels(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    store = ReportRunStore(config.storage.url)
    await store.open()
    built: list[dict[str, list[Integration]]] = [{}]
    try:
        scheduler = ReportScheduler(lambda: config, store, {}, leading=lambda: True,
                                    fence=lambda: None, after_enqueue=lambda: None,
                                    download_url=lambda: "", clock=lambda: 0.0,
                                    channels=lambda: built[0])
        assert await scheduler.tick(at(2026, 11, 30, 7, 30, 5)) == []
        assert await store.runs() == []  # not recorded: it goes once the channels exist
        built[0] = channels(config)
        scheduler.receivers_changed()
        assert await scheduler.tick(at(2026, 11, 30, 7, 30, 6)) == [("tuan", "2026-W48")]
    finally:
        await store.close()


def test_cli_send(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from service.cli import main

    path = tmp_path / "config.yaml"
    raw = {**BASE, "storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/ioc.db"},
           "reports": {"schedules": [{"name": "thang", "cron": "30 7 1 * *",
                                      "period": "previous_month", "receivers": ["bao-cao"]}]}}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert main(["report", "-c", str(path), "--send", "thang", "--period", "2026-11"]) == 0
    assert "queued" in capsys.readouterr().out
    assert main(["report", "-c", str(path), "--send", "thang", "--period", "2026-11"]) == 0
    assert "not sent again" in capsys.readouterr().out
    assert main(["report", "-c", str(path), "--send", "nope", "--period", "2026-11"]) == 1
    assert "not under reports.schedules" in capsys.readouterr().err


def test_the_short_message_of_a_department_report_in_english() -> None:
    from alerts.report_delivery import render_text

    spec = {"schedule": "stp", "period": "2026-W48", "formats": ["pdf", "csv"], "lang": "en",
            "department": "STP", "download_url": "https://ioc.example.vn/"}
    summary = {"province": "Tỉnh Hậu Giang", "systems": 4, "availability": 0.998765,
               "incidents": 3, "downtime_seconds": 3725.0}
    assert render_text(spec, summary) == (
        "Operations report week 48 of 2026 — Tỉnh Hậu Giang — STP\n"
        "Systems monitored: 4\nAvailability: 99.877 %\nIncidents: 3\n"
        "Total downtime: 1:02:05\nDownload:\n"
        "- PDF: https://ioc.example.vn/api/v1/reports?period=2026-W48&format=pdf&lang=en"
        "&department=STP\n"
        "- CSV: https://ioc.example.vn/api/v1/reports?period=2026-W48&format=csv&lang=en"
        "&department=STP\n")


async def test_chat_channels_carry_the_summary_built_at_send_time(tmp_path: Path) -> None:
    """Telegram's and Zalo's request bodies, with the figures the report source built."""
    from alerts.messages import Notification
    from alerts.notifiers.telegram import TelegramConfig
    from alerts.notifiers.zalo import ZaloConfig
    from alerts.report_delivery import ReportTelegram, ReportZalo
    from ioc.reports.files import BuiltReport, ReportRequest

    class Built:
        def __init__(self) -> None:
            self.asked: list[ReportRequest] = []

        async def get(self, request: ReportRequest) -> BuiltReport:
            self.asked.append(request)
            return BuiltReport({"province": "Tỉnh Hậu Giang", "summary": {
                "systems": 12, "availability": 0.99, "incidents": 2,
                "downtime_seconds": 60.0}}, {})

    source = Built()
    spec = {"schedule": "thang", "period": "2026-11", "formats": ["pdf"], "lang": "vi",
            "department": None, "download_url": "https://ioc.haugiang.gov.vn/"}
    n = Notification(receiver="bao-cao", group_key="report:thang:2026-11", status="report",
                     group_labels={}, alerts=(), created_at=0.0, dedup_key="k",
                     extra={"report": spec})
    session = HttpSession()
    telegram = ReportTelegram(TelegramConfig(bot_token="t", chat_id="-100"), session, source)
    filled, _ = await telegram._fill(n)
    body = telegram.request(filled)
    assert body["chat_id"] == "-100" and body["text"].startswith(
        "Báo cáo vận hành tháng 11/2026 — Tỉnh Hậu Giang\nSố hệ thống giám sát: 12\n"
        "Tỷ lệ sẵn sàng: 99,000 %\nSố sự cố: 2\nTổng thời gian gián đoạn: 0:01:00\n")
    assert "format=pdf" in body["text"]
    zalo = ReportZalo(ZaloConfig(user_ids=["u1"], access_token="a"), session, source)
    assert zalo.message(filled, "u1")["message"]["text"] == body["text"]
    assert source.asked == [ReportRequest("2026-11", ("pdf",), "vi", None)]
    assert telegram.send_limit > 300
