"""A scheduled report end to end: a running ioc, a real SMTP server and a webhook receiver.

The schedule's time is passed to the scheduler's ``tick`` (the loop's clock is not waited
for); the outbox sends as it does for alerts. The e-mail's attachments are parsed back (the
XLSX with openpyxl, the PDF with ``pdftotext``); a restart on the same SQLite file sends
nothing again; on PostgreSQL two instances competing for the lead queue one run.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from openpyxl import load_workbook
from prometheus_client import CollectorRegistry

from alerts.notifiers import HttpSession, Integration
from alerts.report_delivery import report_integrations
from ioc.leader import LeaderElection, LeaderMetrics, LockFence, election_dsn
from ioc.model import Sample, make_labels
from ioc.store import SqlStore
from ioc.store.base import NotLeaderError
from ioc.store.report_runs import ReportRunStore
from service.app import IocApp
from service.config import Config
from service.report_schedule import ReportScheduler, _NoSource
from tests.conftest import demo_config, free_port, require_binary
from tests.helpers import Changes, Inbox
from tests.store.conftest import postgres_url  # noqa: F401  (fixture)

VN = ZoneInfo("Asia/Ho_Chi_Minh")
FIRE = datetime(2026, 12, 1, 7, 30, tzinfo=VN).timestamp()  # the monthly run of November
DAY = datetime(2026, 11, 12, tzinfo=VN).timestamp()
BEFORE = datetime(2026, 11, 20, tzinfo=VN).timestamp()


class Hook:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.changed = Changes()

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        self.changed.set()
        return web.json_response({})


@pytest.fixture
async def hook(aiohttp_server: Any) -> AsyncIterator[tuple[Hook, str]]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    yield receiver, str(server.make_url("/hook"))


class SentWatch:
    """The outbox's counters, passed through, with each sent integration awaitable."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ids: list[str] = []
        self.changed = Changes()

    def sent(self, integration: Integration, result: str) -> None:
        self.inner.sent(integration, result)
        if result == "sent":
            self.ids.append(integration.id)
            self.changed.set()

    def queue_depth(self, depth: int) -> None:
        self.inner.queue_depth(depth)


def watched_app(config: Config, now: list[float]) -> tuple[IocApp, SentWatch]:
    """An app (not started) whose report scheduler reads ``now[0]`` and whose outbox's sends
    can be awaited."""
    app = IocApp(config)
    app.report_schedule.clock = lambda: now[0]
    sent = SentWatch(app.dispatcher.outbox.counters)
    app.dispatcher.outbox.counters = sent
    return app, sent


def schedule_config(tmp_path: Path, smtp_port: int, hook_url: str) -> Config:
    extra = {
        "alerts": {
            "outbox": {"max_age": "3650d"},  # the firing is in the past of the real clock
            "external_url": "https://ioc.haugiang.gov.vn/",
            "receivers": [{"name": "lanh-dao", "email": [{
                "to": ["lanhdao@haugiang.gov.vn"], "sender": "ioc@haugiang.gov.vn",
                "smarthost": f"127.0.0.1:{smtp_port}", "tls": "none"}],
                "webhook": [{"url": hook_url}]}]},
        "reports": {"schedules": [{"name": "thang", "cron": "30 7 1 * *",
                                   "period": "previous_month", "receivers": ["lanh-dao"],
                                   "formats": ["pdf", "xlsx"]}]},
    }
    return demo_config(tmp_path, free_port(), codes=["STP"], interval="500ms", extra=extra)


async def seed_november(url: str) -> None:
    """A day of polls of the STP target on 12 November, down 10:00-10:30."""
    store = SqlStore(url)
    await store.open()
    labels = make_labels(target="stp-health", department="STP", kind="http")
    await store.append([Sample("ioc_target_up", labels,
                               0.0 if 600 <= i < 630 else 1.0, DAY + i * 60.0)
                        for i in range(1440)])
    await store.close()


async def test_the_schedule_mails_the_files_once_even_after_a_restart(
        tmp_path: Path, smtp: tuple[Inbox, int], hook: tuple[Hook, str]) -> None:
    pdftotext = require_binary("pdftotext", "poppler-utils")
    inbox, smtp_port = smtp
    receiver, hook_url = hook
    config = schedule_config(tmp_path, smtp_port, hook_url)
    await seed_november(config.storage.url)
    now = [BEFORE]  # the scheduler's clock: nothing is due on 20 November
    app, sent = watched_app(config, now)
    await app.start()
    try:
        assert await app.report_schedule.tick(BEFORE) == []
        now[0] = FIRE + 5  # the firing: the scheduler's own loop queues the run
        app.report_schedule.wake()
        # Both sends marked in the outbox (not only received), so the restart resends none.
        await sent.changed.until(lambda: len(sent.ids) == 2, limit=120)
        assert len(inbox.messages) == 1 and len(receiver.posts) == 1
        assert await app.report_schedule.tick(FIRE + 65) == []
    finally:
        await app.stop(grace=1.0)

    _, mail = inbox.messages[0]
    assert mail["Subject"] == "Báo cáo vận hành tháng 11/2026 — Tỉnh Hậu Giang"
    assert "Tỷ lệ sẵn sàng" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    files = {part.get_filename(): part for part in mail.iter_attachments()}
    assert sorted(files) == ["bao-cao-2026-11.pdf", "bao-cao-2026-11.xlsx"]
    assert files["bao-cao-2026-11.pdf"].get_content_type() == "application/pdf"
    assert files["bao-cao-2026-11.xlsx"].get_content_type() == \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = load_workbook(io.BytesIO(files["bao-cao-2026-11.xlsx"].get_content()))
    assert book.worksheets[0]["B1"].value == "2026-11"
    departments = book.worksheets[1]
    assert departments["A2"].value == "Sở Tư pháp"
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(files["bao-cao-2026-11.pdf"].get_content())
    text = (await asyncio.to_thread(subprocess.run, [pdftotext, "-layout", str(pdf), "-"],
                                    check=True, capture_output=True, text=True)).stdout
    assert "Sở Tư pháp" in text and "2026-11" in text

    post, = receiver.posts
    assert post["kind"] == "report" and post["period"] == "2026-11"
    assert post["summary"]["incidents"] >= 0 and post["summary"]["systems"] == 1
    assert post["links"]["pdf"] == ("https://ioc.haugiang.gov.vn/api/v1/reports?"
                                    "period=2026-11&format=pdf&lang=vi")
    assert "Tỷ lệ sẵn sàng" in post["text"]

    # A new app on the same file: the run is recorded, nothing is queued again — neither at
    # the firing nor as a catch-up days later.
    again = IocApp(config)
    again.report_schedule.clock = lambda: FIRE + 3 * 86400
    await again.start()
    try:
        assert await again.report_schedule.tick(FIRE + 5) == []
        assert await again.report_schedule.tick(FIRE + 3 * 86400) == []
        runs = await again.report_schedule.store.runs()
        assert [(r.schedule, r.period, r.notifications) for r in runs] == [
            ("thang", "2026-11", 2)]
        pending = await again.report_schedule.store.pending_count()
        assert pending == 0
    finally:
        await again.stop(grace=1.0)
    assert len(inbox.messages) == 1 and len(receiver.posts) == 1


@pytest.mark.postgres
async def test_two_leader_candidates_on_postgresql_queue_one_run(
        tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    config = schedule_config(tmp_path, 9, "http://127.0.0.1:9/hook")
    config = replace(config, storage=config.storage.model_copy(update={"url": postgres_url}))
    channels = report_integrations(config.alerts.receivers, {"lanh-dao"}, HttpSession(),
                                   _NoSource())
    fences: dict[str, LockFence | None] = {"a": None, "b": None}

    def election(name: str) -> LeaderElection:
        async def acquired(fence: LockFence) -> None:
            fences[name] = fence

        async def released(lost: bool) -> None:
            fences[name] = None

        return LeaderElection(election_dsn(postgres_url), cadence=0.2,
                              metrics=LeaderMetrics(CollectorRegistry()),
                              on_acquire=acquired, on_release=released, name=f"test {name}")

    elections = {name: election(name) for name in fences}
    stores = {name: ReportRunStore(postgres_url) for name in fences}
    for name in fences:
        await stores[name].open()
        await elections[name].start()
    try:
        leader = next(n for n in fences if fences[n] is not None)
        follower = next(n for n in fences if n != leader)

        def scheduler(name: str, leading: bool) -> ReportScheduler:
            # The follower believes it leads (a deposed leader that has not noticed yet):
            # it writes with the fence it had, which the database refuses.
            stale = LockFence(0)
            return ReportScheduler(
                lambda: config, stores[name], channels, leading=lambda: leading,
                fence=lambda: fences[name] or stale, after_enqueue=lambda: None,
                download_url=lambda: "", clock=lambda: 0.0)

        first, second = scheduler(leader, True), scheduler(follower, True)
        results = await asyncio.gather(first.tick(FIRE + 5), second.tick(FIRE + 5),
                                       return_exceptions=True)
        assert results[0] == [("thang", "2026-11")]
        assert isinstance(results[1], NotLeaderError)
        # Without fences (two CLI sends at once) the key alone keeps it to one run.
        loose = [ReportScheduler(lambda: config, stores[n], channels, leading=lambda: True,
                                 fence=lambda: None, after_enqueue=lambda: None,
                                 download_url=lambda: "", clock=lambda: 0.0) for n in fences]
        later = FIRE + 31 * 86400  # 1 January: December's run
        both = await asyncio.gather(*(s.tick(later) for s in loose))
        assert sorted(both, key=len) == [[], [("thang", "2026-12")]]
        runs = await stores[leader].runs()
        assert sorted(r.period for r in runs) == ["2026-11", "2026-12"]
        assert await stores[leader].pending_count() == 4  # 2 runs x (e-mail + webhook)
    finally:
        for name in fences:
            await elections[name].stop()
            await stores[name].close()
