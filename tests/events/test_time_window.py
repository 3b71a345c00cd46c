"""Every time from outside is bounded: the push API refuses, syslog and SIEM pulls clamp."""

from __future__ import annotations

import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from ioc.events import EventBatchError, TimeWindow, validate_events
from ioc.events_config import SyslogConfig
from ioc.store.events import EventQuery
from ioc.syslog import SyslogMatcher, parse_syslog
from tests.events.conftest import INGEST_TOKEN, Arrivals

NOW = 1_800_000_000.0
DAY = 86400.0
WINDOW = TimeWindow(max_past=7 * DAY, max_future=300.0)


def event(occurred_at: object) -> dict[str, object]:
    return {"source": "waf", "id": "e1", "severity": "high", "title": "t",
            "occurred_at": occurred_at}


@pytest.mark.parametrize(("occurred_at", "side"), [
    (NOW, None),
    (NOW + 299, None),
    (NOW - 7 * DAY + 1, None),
    (NOW + 301, "future"),
    (NOW - 7 * DAY - 1, "past"),
    ("2200-01-01T00:00:00Z", "future"),
    ("9999-12-31T23:59:59Z", "invalid"),   # beyond 1e11 s: not a time at all
    (NOW * 1000, "invalid"),                # milliseconds
    ("2020-01-01T00:00:00+07:00", "past"),
    (float("nan"), "invalid"),
    ("2024-05-01T08:30:00", "invalid"),     # no time zone
])
def test_push_refuses_times_outside_the_window(occurred_at: object, side: str | None) -> None:
    seen: Counter[str] = Counter()
    if side is None:
        [accepted] = validate_events(event(occurred_at), now=NOW, window=WINDOW,
                                     out_of_window=seen)
        assert not seen and "sent_at" not in dict(accepted.labels)
        return
    with pytest.raises(EventBatchError) as info:
        validate_events(event(occurred_at), now=NOW, window=WINDOW, out_of_window=seen)
    [error] = info.value.errors
    assert error.field == "occurred_at"
    if side != "invalid":
        assert seen == {side: 1} and side in error.message
        assert ("events.max_past" in error.message) == (side == "past")


def line(stamp: str) -> str:
    return f"<38>1 {stamp} fw01 sshd 1 - - Failed password for root from 203.0.113.7"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@pytest.mark.parametrize(("stamp", "side"), [
    (iso(NOW - 3600), None),
    (iso(NOW + 60), None),
    ("9999-12-31T23:59:59Z", "future"),
    ("2200-01-01T00:00:00+07:00", "future"),
    (iso(NOW + 301), "future"),
    (iso(NOW - 8 * DAY), "past"),
    ("1970-01-01T00:00:00Z", "past"),
    ("0001-01-01T00:00:00Z", "past"),
])
def test_syslog_clamps_times_outside_the_window(stamp: str, side: str | None) -> None:
    matcher = SyslogMatcher(SyslogConfig.model_validate(
        {"patterns": [{"name": "ssh", "match": "Failed password"}]}),
        TimeWindow(7 * DAY, 300.0, clamp=True))
    msg = parse_syslog(line(stamp))
    found = matcher.match(msg, "10.0.0.1", NOW)
    assert found is not None
    labels = dict(found.labels)
    if side is None:
        assert found.occurred_at == msg.timestamp and "sent_at" not in labels
        assert not matcher.out_of_window
    else:
        assert found.occurred_at == NOW and labels["sent_at"]
        assert matcher.out_of_window == {side: 1}


async def test_a_datagram_from_9999_is_stored_at_its_receive_time_and_counted(
        tmp_path: Path) -> None:
    from tests.events.test_syslog import syslog_app

    app = syslog_app(tmp_path)
    arrivals = Arrivals()
    app.events.subscribe(arrivals)
    await app.start()
    try:
        assert app.syslog is not None and app.syslog.udp_address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"<38>1 9999-12-31T23:59:59Z fw01 sshd 1 - - Failed password for root "
                       b"from 203.0.113.7 port 22 ssh2", app.syslog.udp_address)
        await arrivals.until(1)
        await app.events.flush()
        [stored] = await app.events.store.query(EventQuery(sources=("syslog",), limit=10))
        assert stored.event.occurred_at <= stored.received_at + 1
        assert dict(stored.event.labels)["sent_at"].startswith("9999-12-31")
        value = app.registry.get_sample_value
        assert value("ioc_security_events_out_of_window_total",
                     {"ingest": "syslog", "side": "future"}) == 1
        async with aiohttp.ClientSession() as session, session.get(app.url + "/") as resp:
            assert resp.status == 200
    finally:
        await app.stop(grace=1.0)


async def test_push_api_refuses_and_counts_out_of_window_times(events_app) -> None:
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    now = datetime.now(UTC).timestamp()
    batch = [event(now - 30 * DAY), {**event(now), "id": "ok"}]
    async with aiohttp.ClientSession() as session, session.post(
            events_app.url + "/api/v1/events", json=batch, headers=headers) as resp:
        answer = await resp.json()
    assert resp.status == 400 and answer["detail"][0]["field"] == "occurred_at"
    assert events_app.registry.get_sample_value(
        "ioc_security_events_out_of_window_total", {"ingest": "push", "side": "past"}) == 1
