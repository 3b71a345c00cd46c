"""The durable outbox on both databases: retries with backoff, max age, order, restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from alerts.messages import Notification
from alerts.notifiers import Integration
from alerts.notifiers.webhook import WebhookConfig, WebhookNotifier
from alerts.outbox import Outbox, OutboxConfig, backoff
from ioc.store.alert_delivery import DeliveryStore, NewNotification, NflogRow
from tests.alerts.delivery_helpers import T0, sample_notification
from tests.helpers import Changes
from tests.store.conftest import postgres_url, store_url  # noqa: F401  (fixtures)


class Counters:
    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []
        self.depth = -1

    def sent(self, integration: Integration, result: str) -> None:
        self.results.append((integration.id, result))

    def queue_depth(self, depth: int) -> None:
        self.depth = depth


class Receiver:
    """A webhook consumer that refuses (503) while ``refusing`` is set."""

    def __init__(self) -> None:
        self.refusing = False
        self.got: list[str] = []
        self.attempts = 0

    async def hook(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.refusing:
            return web.Response(status=503, text="maintenance")
        self.got.append((await request.json())["dedupKey"])
        return web.Response(text="ok")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def receiver(aiohttp_server) -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.hook)
    server = await aiohttp_server(app)
    yield rec, str(server.make_url("/hook"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def delivery_store(store_url: str) -> AsyncIterator[DeliveryStore]:  # noqa: F811
    store = DeliveryStore(store_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


CONFIG = OutboxConfig(max_age="1h", initial_backoff="5s", max_backoff="1m", queue_limit=10)


def make_outbox(store: DeliveryStore, url: str, session: aiohttp.ClientSession,
                clock: Clock, config: OutboxConfig = CONFIG) -> tuple[Outbox, Counters]:
    integration = Integration("oncall/webhook[0]", "oncall", "webhook",
                              WebhookNotifier(WebhookConfig(url=url, timeout="5s"),
                                              lambda: session))
    counters = Counters()
    return Outbox(store, {integration.id: integration}, config, counters, clock), counters


def row(key: str, at: float) -> NewNotification:
    n: Notification = sample_notification(key=key)
    return NewNotification(key, "oncall/webhook[0]", "oncall", n.group_key, n.status,
                           n.to_json(), at)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


async def test_receiver_refusing_for_two_minutes_gets_everything_once_in_order(
        delivery_store: DeliveryStore, receiver, session) -> None:
    rec, url = receiver
    clock = Clock(T0)
    outbox, counters = make_outbox(delivery_store, url, session, clock)
    rec.refusing = True
    keys = []
    for second in range(0, 120, 10):  # a notification every 10 s while it refuses
        clock.now = T0 + second
        keys.append(f"k{second:03d}")
        await delivery_store.enqueue([row(keys[-1], clock.now)], [])
        await outbox.run_once()
    assert rec.got == [] and rec.attempts < 12, "backoff: not one attempt per notification"
    assert await delivery_store.pending_count() == 12
    rec.refusing = False
    clock.now = T0 + 120
    while (nxt := await delivery_store.next_attempt()) is not None:
        clock.now = max(clock.now, nxt)
        await outbox.run_once()
    assert rec.got == keys, "everything, in order, each once"
    assert counters.results.count(("oncall/webhook[0]", "sent")) == 12
    sent = await delivery_store.recent(limit=50, state="sent")
    assert len(sent) == 12 and all(r.last_error is None for r in sent)


async def test_too_old_is_failed_visible_and_counted(delivery_store: DeliveryStore, receiver,
                                                     session) -> None:
    rec, url = receiver
    clock = Clock(T0)
    outbox, counters = make_outbox(delivery_store, url, session, clock,
                                   CONFIG.model_copy(update={"max_age": 30.0}))
    rec.refusing = True
    await delivery_store.enqueue([row("old", T0)], [])
    for _ in range(10):
        await outbox.run_once()
        nxt = await delivery_store.next_attempt()
        if nxt is None:
            break
        clock.now = nxt
    (failed,) = await delivery_store.recent(limit=5, state="failed")
    assert failed.dedup_key == "old" and "503" in (failed.last_error or "")
    assert ("oncall/webhook[0]", "failed") in counters.results
    history = await delivery_store.history(start=T0 - 1, end=clock.now + 1, limit=10)
    assert history[0]["kind"] == "notification_failed"


async def test_restart_sends_what_was_stored_and_dedup_keys_stay_unique(
        store_url: str, receiver, session) -> None:  # noqa: F811
    rec, url = receiver
    first = DeliveryStore(store_url)
    await first.open()
    log = NflogRow("oncall", "g", ["f1"], [], T0, "c", 1)
    await first.enqueue([row("a", T0), row("b", T0)], [log])
    await first.enqueue([row("a", T0)], [log])  # re-derived after a crash: kept once
    await first.close()  # "crash": nothing was sent
    second = DeliveryStore(store_url)
    await second.open()
    try:
        outbox, _ = make_outbox(second, url, session, Clock(T0 + 5))
        await outbox.run_once()
        assert rec.got == ["a", "b"]
        assert [r.firing for r in await second.load_nflog()] == [["f1"]]
    finally:
        await second.close()


async def test_queue_is_bounded_and_drops_the_oldest(delivery_store: DeliveryStore, receiver,
                                                     session) -> None:
    _, url = receiver
    outbox, counters = make_outbox(delivery_store, url, session, Clock(T0))
    await delivery_store.enqueue([row(f"k{i:02d}", T0) for i in range(13)], [])
    await outbox.after_enqueue()
    assert await delivery_store.pending_count() == 10
    dropped = await delivery_store.recent(limit=20, state="dropped")
    assert sorted(r.dedup_key for r in dropped) == ["k00", "k01", "k02"]
    assert counters.results.count(("oncall/webhook[0]", "dropped")) == 3


async def test_silences_acks_and_history_round_trip(delivery_store: DeliveryStore) -> None:
    from ioc.store.alert_delivery import HistoryEvent

    silence = {"id": "s1", "matchers": ['department="STP"'], "starts_at": T0,
               "ends_at": T0 + 3600, "created_by": "ca-truc", "comment": "nâng cấp",
               "created_at": T0}
    event = HistoryEvent("silence:s1", T0, "silence", None, "ca-truc", {"comment": "nâng cấp"})
    await delivery_store.put_silence(silence, event)
    await delivery_store.put_silence({**silence, "ends_at": T0 + 60},
                                     HistoryEvent("silence_expired:s1", T0 + 60,
                                                  "silence_expired", None, "ca-truc", {}))
    assert await delivery_store.load_silences(T0) == [{**silence, "ends_at": T0 + 60}]
    ack = {"fingerprint": "f1", "by": "ca-truc", "comment": "", "at": T0,
           "expires_at": T0 + 600}
    await delivery_store.put_ack(ack, HistoryEvent("ack:f1", T0 + 1, "ack", "f1", "ca-truc",
                                                   {}))
    assert await delivery_store.load_acks() == [ack]
    await delivery_store.record([event])  # the same event again: kept once
    events = await delivery_store.history(start=T0 - 1, end=T0 + 100, limit=10)
    assert [e["kind"] for e in events] == ["silence_expired", "ack", "silence"]
    assert (await delivery_store.history(start=T0 - 1, end=T0 + 100, limit=10,
                                         fingerprint="f1"))[0]["actor"] == "ca-truc"
    await delivery_store.delete_acks(["f1"])
    assert await delivery_store.load_acks() == []
    assert await delivery_store.prune(T0 + 30) == 2  # the two events before T0 + 30
    assert [e["kind"] for e in await delivery_store.history(
        start=0, end=T0 + 100, limit=10)] == ["silence_expired"]


async def test_overflow_is_logged_once_per_episode(delivery_store: DeliveryStore, receiver,
                                                   session, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.alerts.outbox")
    rec, url = receiver
    outbox, counters = make_outbox(delivery_store, url, session, Clock(T0))
    for burst in range(8):  # an alert storm: every enqueue overflows the bound of 10
        await delivery_store.enqueue([row(f"k{burst}-{i}", T0) for i in range(5)], [])
        await outbox.after_enqueue()
    assert counters.results.count(("oncall/webhook[0]", "dropped")) == 30
    await outbox.run_once()  # the receiver takes the 10 kept
    assert len(rec.got) == 10
    await delivery_store.enqueue([row("calm", T0)], [])
    await outbox.after_enqueue()  # fits: the episode ends
    lines = [r.getMessage() for r in caplog.records if "notification queue" in r.getMessage()]
    assert lines == ["notification queue is full: dropping (counted in metrics)",
                     "notification queue no longer dropping"]
    assert caplog.records[-1].fields["dropped"] == 30  # type: ignore[attr-defined]


async def test_a_hanging_channel_never_holds_up_another(delivery_store: DeliveryStore,
                                                        aiohttp_server, session) -> None:
    """The outbox's own loop: while one receiver hangs until its timeout, another channel's
    notifications — one queued before, one queued during the hang — are delivered."""
    release = asyncio.Event()
    slow_got: list[str] = []
    fast_got: asyncio.Queue[str] = asyncio.Queue()

    async def slow(request: web.Request) -> web.Response:
        slow_got.append((await request.json())["dedupKey"])
        await release.wait()
        return web.Response(text="ok")

    async def fast(request: web.Request) -> web.Response:
        await fast_got.put((await request.json())["dedupKey"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slow", slow)
    app.router.add_post("/fast", fast)
    server = await aiohttp_server(app)
    integrations = {
        name: Integration(name, name, "webhook", WebhookNotifier(
            WebhookConfig(url=str(server.make_url("/" + name)), timeout="60s"),
            lambda: session))
        for name in ("slow", "fast")}
    marked = Changes()  # each "sent" mark in the store, as the outbox counts it

    class Watched(Counters):
        def sent(self, integration: Integration, result: str) -> None:
            super().sent(integration, result)
            marked.set()

    counters = Watched()
    outbox = Outbox(delivery_store, integrations, CONFIG, counters, time.time)

    def new(key: str, integration: str) -> NewNotification:
        n: Notification = sample_notification(key=key)
        return NewNotification(key, integration, integration, n.group_key, n.status,
                               n.to_json(), time.time())

    outbox.start()
    try:
        await delivery_store.enqueue([new("s1", "slow"), new("f1", "fast")], [])
        await outbox.after_enqueue()
        async with asyncio.timeout(20):  # far below the slow channel's 60 s
            assert await fast_got.get() == "f1"
            await delivery_store.enqueue([new("f2", "fast")], [])
            await outbox.after_enqueue()
            assert await fast_got.get() == "f2"
        assert slow_got == ["s1"] and not release.is_set(), "the slow send is still open"
        release.set()
        await marked.until(lambda: counters.results.count(("slow", "sent")) == 1 and
                           counters.results.count(("fast", "sent")) == 2, limit=20)
        sent = await delivery_store.recent(limit=5, state="sent")
        assert sorted(r.dedup_key for r in sent) == ["f1", "f2", "s1"]
    finally:
        release.set()
        await outbox.stop()
