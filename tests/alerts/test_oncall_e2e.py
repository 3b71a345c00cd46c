"""On call end to end, with time passed in: fire → on-duty paged → no ack → the lead paged at
the step's time → acknowledged from the message → escalation stops and the history says who.

Real parts throughout: the dispatcher and engine on SQLite and PostgreSQL, the durable outbox
sending to a local fake of the Telegram Bot API (tests/alerts/oncall_fakes.py) and to a real
SMTP server (aiosmtpd), and the ack page served by aiohttp and followed by a real HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jinja2
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from alerts.dispatcher import Dispatcher, build_dispatcher
from alerts.engine import AlertEngine
from alerts.escalation import OncallMetrics
from alerts.oncall_links import AckLink, LinkSigner
from alerts.rules import RuleConfig, compile_rules
from ioc.cache import SeriesCache
from ioc.metrics import DeliveryMetrics
from ioc.model import Sample, make_labels
from ioc.store.alert_state import AlertStateStore
from service.config import Config, parse_config
from tests.alerts.oncall_fakes import TOKEN, FakeBotApi
from tests.conftest import free_port
from tests.helpers import Inbox
from web import oncall_api
from web.app import _format_clock
from web.auth import Authenticator
from web.bodies import BODY_LIMITS, BodyLimits
from web.keys import AUTH, CONTEXT, WALL

T0 = 1_800_000_000.0  # 2027-01-15 15:00 in Hậu Giang: binh's duty day (see below)
SECRET = "a-long-secret-for-signing-ack-links"
LABELS = make_labels(target="stp-dvc", department="STP", kind="http")
DOWN = {"name": "TargetDown", "metric": "ioc_target_up", "op": "==", "threshold": 0,
        "severity": "critical", "annotations": {"summary": "Cổng dịch vụ công <STP> ngừng"}}
AN, BINH, DUNG = 1001, 1002, 1004


def config(url: str, bot_url: str, smtp_port: int, web_url: str) -> Config:
    raw: dict[str, Any] = {
        "storage": {"url": url},
        "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
        "alerts": {
            "default_rules": False, "rules": [DOWN],
            "route": {"receiver": "wall", "group_wait": "0s"},
            "receivers": [{"name": "wall"}],
            "oncall": {
                "people": [
                    {"id": "an", "name": "Nguyễn Văn An", "telegram": str(AN)},
                    {"id": "binh", "name": "Trần Thị Bình", "telegram": str(BINH),
                     "email": "binh@haugiang.gov.vn"},
                    {"id": "dung", "name": "Phạm Văn Dũng", "telegram": str(DUNG)},
                    {"id": "giamdoc", "name": "Giám đốc <Trung tâm>",
                     "email": "giamdoc@haugiang.gov.vn"},
                ],
                "teams": [{"name": "vanhanh", "lead": "dung", "rotation": {
                    "start": "2027-01-14", "handoff": "07:30", "people": ["an", "binh"]}}],
                "policies": [{"name": "critical", "team": "vanhanh",
                              "matchers": ['severity="critical"'], "repeat": "30m",
                              "steps": [{"after": "0s", "notify": ["oncall"]},
                                        {"after": "10m", "notify": ["lead"]},
                                        {"after": "20m", "notify": ["giamdoc"]}]}],
                "telegram": {"bot_token": "${BOT_TOKEN}", "api_url": bot_url,
                             "min_interval": "1ms", "poll_timeout": "1s"},
                "email": {"sender": "ioc@haugiang.gov.vn", "tls": "none",
                          "smarthost": f"127.0.0.1:{smtp_port}"},
                "link_secret": "${LINK_SECRET}", "link_ttl": "1h", "link_base_url": web_url,
            },
        },
    }
    return parse_config(raw, env={"BOT_TOKEN": TOKEN, "LINK_SECRET": SECRET})


class Instance:
    """One ioc's engine and delivery on the shared store, driven with time passed in."""

    def __init__(self, cfg: Config, now: list[float]) -> None:
        self.now = now
        self.cache = SeriesCache(3600, 100)
        self.metrics = OncallMetrics(CollectorRegistry())
        self.dispatcher: Dispatcher = build_dispatcher(
            cfg, DeliveryMetrics(CollectorRegistry()), lambda: now[0], self.metrics)
        self.engine = AlertEngine(
            compile_rules([(RuleConfig.model_validate(DOWN), "test")]), [self.cache],
            self.dispatcher, interval=15, registry=CollectorRegistry(),
            store=AlertStateStore(cfg.storage.url), keep_resolved_for=700)

    async def lead(self) -> None:
        await self.dispatcher.open()
        await self.dispatcher.load_log()
        assert self.dispatcher.escalator is not None
        await self.dispatcher.escalator.load()
        await self.engine.load(self.now[0])

    async def at(self, t: float, up: float | None = 0) -> None:
        """Time is ``t``: one evaluation, flush, escalation, and the outbox sends."""
        self.now[0] = t
        if up is not None:
            self.cache.add([Sample("ioc_target_up", LABELS, up, t - 1)])
        await self.engine.run_cycle(t)
        await self.dispatcher.flush(t)
        await self.dispatcher.escalate(t)
        while await self.dispatcher.outbox.run_once():
            pass

    async def close(self) -> None:
        """Gone without a goodbye: nothing more is written (as after kill -9)."""
        await self.engine.stop(persist=False)
        await self.dispatcher.stop()


@pytest.fixture
async def bot() -> AsyncIterator[tuple[FakeBotApi, str]]:
    fake = FakeBotApi()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def history(inst: Instance) -> list[dict[str, Any]]:
    events = await inst.dispatcher.store.history(start=T0 - 1, end=T0 + 86400, limit=100)
    return list(reversed(events))


async def test_telegram_cycle_escalates_then_the_button_stops_it(
        store_url: str, bot: tuple[FakeBotApi, str], smtp: tuple[Inbox, int]) -> None:
    fake, bot_url = bot
    inbox, smtp_port = smtp
    now = [T0]
    inst = Instance(config(store_url, bot_url, smtp_port, "http://ioc.example/"), now)
    await inst.lead()
    try:
        await inst.at(T0)  # fires: step 1 pages whoever is on duty now (binh)
        (first,) = fake.sent
        assert first["chat"]["id"] == BINH and "NGHIÊM TRỌNG" in first["text"]
        buttons = first["reply_markup"]["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["Xác nhận", "Tạm ẩn 1 giờ"]
        fp = buttons[0]["callback_data"].removeprefix("ack:")
        assert len(inbox.messages) == 1 and inbox.messages[0][0] == ["binh@haugiang.gov.vn"]

        await inst.at(T0 + 599)  # nobody acked, but the lead's step is not due yet
        assert len(fake.sent) == 1
        await inst.at(T0 + 600)  # 10 minutes: the team lead too
        assert [m["chat"]["id"] for m in fake.sent] == [BINH, DUNG]
        assert "leo thang bậc 2" in fake.sent[1]["text"]

        # Someone not on the roster presses the button: refused, nothing acked.
        poller = inst.dispatcher.telegram
        assert poller is not None
        fake.press(fake.sent[1], 777, f"ack:{fp}")
        await poller.poll_once()
        assert fake.answers[-1]["show_alert"] is True
        assert "không có trong lịch trực" in fake.answers[-1]["text"]
        assert inst.dispatcher.acks == {}

        now[0] = T0 + 700
        fake.press(fake.sent[1], DUNG, f"ack:{fp}")  # the lead acknowledges from Telegram
        await poller.poll_once()
        assert fake.answers[-1] == {"callback_query_id": "cq-1001",
                                    "text": "Đã ghi nhận: Xác nhận."}
        edit = fake.edits[-1]
        assert (edit["chat_id"], edit["message_id"]) == (DUNG, fake.sent[1]["message_id"])
        assert "✅ Đã xác nhận: Phạm Văn Dũng lúc" in edit["text"]
        assert "reply_markup" not in fake.sent[1]  # buttons gone

        await inst.at(T0 + 1200)  # the director's step time: the escalation has stopped
        await inst.at(T0 + 3000)
        assert [m["chat"]["id"] for m in fake.sent] == [BINH, DUNG]
        assert len(inbox.messages) == 1
        events = await history(inst)
        (ack,) = [e for e in events if e["kind"] == "ack"]
        assert ack["actor"] == "Phạm Văn Dũng (dung)" and ack["detail"]["channel"] == "telegram"
        assert [e["detail"]["step"] for e in events if e["kind"] == "escalation"] == [1, 2]
        assert inst.metrics.acks.labels(channel="telegram")._value.get() == 1
        samples = {s.name: s.value for s in inst.metrics.time_to_ack.collect()[0].samples
                   if s.labels.get("le") in (None, "600.0", "900.0")}
        assert samples["ioc_oncall_time_to_ack_seconds_sum"] == 700
        assert inst.metrics.escalations.labels(policy="critical")._value.get() == 2
    finally:
        await inst.close()


async def test_snooze_holds_the_escalation_for_an_hour(
        store_url: str, bot: tuple[FakeBotApi, str], smtp: tuple[Inbox, int]) -> None:
    fake, bot_url = bot
    now = [T0]
    inst = Instance(config(store_url, bot_url, smtp[1], "http://ioc.example/"), now)
    await inst.lead()
    try:
        await inst.at(T0)
        fp = fake.sent[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"][4:]
        now[0] = T0 + 60
        fake.press(fake.sent[0], BINH, f"snooze:{fp}")
        assert inst.dispatcher.telegram is not None
        await inst.dispatcher.telegram.poll_once()
        assert "⏸ Tạm ẩn 1 giờ: Trần Thị Bình" in fake.edits[-1]["text"]
        assert fake.sent[0]["reply_markup"]["inline_keyboard"][0][0]["text"] == "Xác nhận"
        await inst.at(T0 + 600)
        await inst.at(T0 + 1200)
        assert len(fake.sent) == 1  # held: neither the lead nor the director yet
        await inst.at(T0 + 60 + 3600)  # the snooze ends: every missed step, none skipped —
        # the lead's, the director's and the first repeat (T0 + 50 min), each person once
        chats = [m["chat"]["id"] for m in fake.sent]  # one channel per person: same-tick
        assert chats[0] == BINH and sorted(chats[1:]) == sorted([DUNG, BINH])  # in any order
        # Each person's e-mail is a channel of its own, delivered in its own order: the two
        # mails due at the same tick (the director's step, binh's repeat) may arrive either way;
        # the steps' order is asserted from the history below.
        mailed = [to for to, _ in smtp[0].messages]
        assert mailed[0] == ["binh@haugiang.gov.vn"]
        assert sorted(mailed[1:]) == [["binh@haugiang.gov.vn"], ["giamdoc@haugiang.gov.vn"]]
        steps = [e["detail"] for e in await history(inst) if e["kind"] == "escalation"]
        assert [(s["step"], s["people"]) for s in steps] == [
            (1, ["binh"]), (2, ["dung"]), (3, ["giamdoc"]), (4, ["binh"])]
        assert inst.metrics.acks.labels(channel="telegram")._value.get() == 1
        counts = [s.value for s in inst.metrics.time_to_ack.collect()[0].samples
                  if s.name.endswith("_count")]
        assert counts and not any(counts)  # a snooze is no ack
    finally:
        await inst.close()


async def test_a_silenced_alert_holds_its_steps_without_spinning(
        store_url: str, bot: tuple[FakeBotApi, str], smtp: tuple[Inbox, int]) -> None:
    fake, bot_url = bot
    now = [T0]
    inst = Instance(config(store_url, bot_url, smtp[1], "http://ioc.example/"), now)
    await inst.lead()
    escalator = inst.dispatcher.escalator
    assert escalator is not None
    try:
        await inst.at(T0)
        assert escalator.next_deadline() == T0 + 600
        silence = await inst.dispatcher.add_silence(
            ['alertname="TargetDown"'], starts_at=T0 + 10, ends_at=T0 + 1000,
            created_by="ca-truc", comment="đang chuyển máy chủ", now=T0 + 10)
        await inst.at(T0 + 900)
        assert len(fake.sent) == 1  # muted: the lead's step waits
        # …and is not offered as a deadline, or the delivery loop would wake at once forever
        assert escalator.next_deadline() is None
        await inst.dispatcher.expire_silence(silence.id, by="ca-truc", now=T0 + 950)
        await inst.at(T0 + 960)
        assert [m["chat"]["id"] for m in fake.sent] == [BINH, DUNG]
        assert escalator.next_deadline() == T0 + 1200
    finally:
        await inst.close()


async def test_a_restart_neither_repeats_nor_skips_a_step(
        store_url: str, bot: tuple[FakeBotApi, str], smtp: tuple[Inbox, int]) -> None:
    fake, bot_url = bot
    now = [T0]
    cfg = config(store_url, bot_url, smtp[1], "http://ioc.example/")
    first = Instance(cfg, now)
    await first.lead()
    await first.at(T0)
    await first.at(T0 + 300)
    assert [m["chat"]["id"] for m in fake.sent] == [BINH]
    await first.close()  # dies; down for 25 minutes

    second = Instance(cfg, now)
    now[0] = T0 + 1500
    await second.lead()
    await second.at(T0 + 1500)  # the lead's and the director's steps, once each
    await second.at(T0 + 1515)
    assert [m["chat"]["id"] for m in fake.sent] == [BINH, DUNG]
    assert len(smtp[0].messages) == 2  # binh's first page and the director's
    assert smtp[0].messages[1][0] == ["giamdoc@haugiang.gov.vn"]
    await second.close()

    third = Instance(cfg, now)  # and once more: the store says every step was queued
    await third.lead()
    await third.at(T0 + 1530)
    assert len(fake.sent) == 2 and len(smtp[0].messages) == 2
    await third.at(T0 + 1200 + 1800)  # the first repeat: everyone again
    chats = [m["chat"]["id"] for m in fake.sent]  # the repeat's two pages share a tick
    assert chats[:2] == [BINH, DUNG] and sorted(chats[2:]) == sorted([BINH, DUNG])
    steps = [e["detail"]["step"] for e in await history(third) if e["kind"] == "escalation"]
    assert steps == [1, 2, 3, 4]
    await third.at(T0 + 3100, up=1)  # resolves: nothing more, ever
    await third.at(T0 + 1200 + 2 * 1800 + 1, up=1)
    assert len(fake.sent) == 4
    await third.close()


# -- the ack link of an e-mail -----------------------------------------------------------------


async def serve_ack_pages(inst: Instance, cfg: Config, port: int) -> web.AppRunner:
    """The ack page's handlers on a real server, around this test's dispatcher."""
    templates = jinja2.Environment(loader=jinja2.PackageLoader("web", "templates"),
                                   autoescape=True, undefined=jinja2.StrictUndefined)
    templates.filters["clock"] = _format_clock

    class Wall:
        pass

    class Context:
        pass

    wall, context = Wall(), Context()
    wall.templates = templates  # type: ignore[attr-defined]
    context.alerts, context.config = inst.dispatcher, lambda: cfg  # type: ignore
    webapp = web.Application()
    webapp[CONTEXT] = context  # type: ignore[assignment]
    webapp[WALL] = wall  # type: ignore[assignment]
    webapp[AUTH] = Authenticator([])
    webapp[BODY_LIMITS] = BodyLimits.from_config(cfg.service)
    oncall_api.add_routes(webapp)
    runner = web.AppRunner(webapp)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def links_in(message: Any) -> list[str]:
    text = message.get_body(("plain",)).get_content()
    return re.findall(r"https?://\S+/oncall/ack/\S+", text)


async def open_and_confirm(client: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with client.get(url) as resp:
        page = await resp.text()
        if resp.status != 200:
            return resp.status, page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    action = re.search(r'action="([^"]+)"', page)
    assert csrf and action
    target = f"{url.split('/oncall/')[0]}{unescape(action.group(1))}"
    async with client.post(target, data={"csrf": unescape(csrf.group(1))},
                           headers={"Sec-Fetch-Site": "same-origin"}) as resp:
        return resp.status, await resp.text()


async def test_email_link_acknowledges_once_and_refuses_the_rest(
        store_url: str, bot: tuple[FakeBotApi, str], smtp: tuple[Inbox, int]) -> None:
    fake, bot_url = bot
    inbox, smtp_port = smtp
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    cfg = config(store_url, bot_url, smtp_port, base)
    now = [T0]
    inst = Instance(cfg, now)
    await inst.lead()
    runner = await serve_ack_pages(inst, cfg, port)
    try:
        await inst.at(T0)
        ((recipients, message),) = inbox.messages
        assert recipients == ["binh@haugiang.gov.vn"]
        (url,) = links_in(message)
        assert url.startswith(base + "oncall/ack/")
        html_part = message.get_body(("html",)).get_content()
        assert "&lt;STP&gt;" in html_part and "<STP>" not in html_part
        token = urlsplit(url).path.rsplit("/", 1)[1]
        signer = LinkSigner(SECRET)
        link = signer.verify(token, T0)
        assert (link.person, link.channel) == ("binh", "email")

        now[0] = T0 + 120  # the page runs on the dispatcher's clock
        async with aiohttp.ClientSession() as client:
            # GET changes nothing, however often (mail scanners open links).
            async with client.get(url) as resp:
                page = await resp.text()
                assert resp.status == 200 and "Xác nhận cảnh báo" in page
                assert "Cổng dịch vụ công &lt;STP&gt; ngừng" in page
            assert inst.dispatcher.acks == {}

            # A POST without the page's field, or from another site, is refused.
            async with client.post(url, data={}, headers={"Sec-Fetch-Site": "same-origin"}
                                   ) as resp:
                assert resp.status == 403 and "bấm nút trên trang" in await resp.text()
            async with client.post(url, data={"csrf": signer.csrf(token)},
                                   headers={"Sec-Fetch-Site": "cross-site"}) as resp:
                assert resp.status == 403
            assert inst.dispatcher.acks == {}

            status, page = await open_and_confirm(client, url)
            assert status == 200 and "Đã xác nhận" in page, page
            ack = inst.dispatcher.acks[link.fingerprint]
            assert ack.by == "Trần Thị Bình (binh)"

            # Reused.
            status, page = await open_and_confirm(client, url)
            assert status == 409 and "đã được dùng rồi" in page
            # Expired.
            old = AckLink(link.fingerprint, "binh", now[0] - 1, "n-expired")
            status, page = await open_and_confirm(client, base + "oncall/ack/"
                                                  + signer.sign(old))
            assert status == 410 and "hết hạn" in page
            # Tampered: another person's name in a link signed for binh.
            _, mac = signer.sign(AckLink(link.fingerprint, "binh", now[0] + 600,
                                         "n-2")).split(".")
            other = signer.sign(AckLink(link.fingerprint, "giamdoc", now[0] + 600, "n-2"))
            forged = other.split(".")[0] + "." + mac
            status, page = await open_and_confirm(client, base + "oncall/ack/" + forged)
            assert status == 403 and "không hợp lệ" in page
            status, page = await open_and_confirm(client, base + "oncall/ack/" + "x" * 40)
            assert status == 403
            # Signed with another secret.
            stranger = LinkSigner("another-secret-of-someone-else").sign(
                AckLink(link.fingerprint, "binh", now[0] + 600, "n-3"))
            status, page = await open_and_confirm(client, base + "oncall/ack/" + stranger)
            assert status == 403
            # Wrong person: validly signed, but for someone not on the roster.
            ghost = signer.sign(AckLink(link.fingerprint, "nguoi-la", now[0] + 600, "n-4"))
            status, page = await open_and_confirm(client, base + "oncall/ack/" + ghost)
            assert status == 403 and "không còn trong lịch trực" in page

        events = await history(inst)
        acks = [e for e in events if e["kind"] == "ack"]
        assert [(e["actor"], e["detail"]["channel"]) for e in acks] == [
            ("Trần Thị Bình (binh)", "email")]
        await inst.at(T0 + 600)  # acked: the lead is not paged
        assert [m["chat"]["id"] for m in fake.sent] == [BINH]
        assert inst.metrics.acks.labels(channel="email")._value.get() == 1
    finally:
        await runner.cleanup()
        await inst.close()
