"""The syslog receiver: parsing both RFCs, patterns, rate limits, and real UDP and TCP."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from ioc import clock
from ioc.store.events import EventQuery
from ioc.syslog import SyslogMatcher, SyslogReceiver, TokenBuckets, parse_syslog
from service.app import IocApp
from tests.events.conftest import Arrivals, events_config

SSH_FAIL = "Failed password for invalid user admin from 203.0.113.7 port 52113 ssh2"
PATTERNS = [
    {"name": "ssh-brute", "match": r"Failed password for (invalid user )?(?P<user>\S+) from "
                                    r"(?P<ip>\S+)",
     "severity": "high", "category": "auth_failure", "department": "STTTT",
     "title": "SSH: sai mật khẩu {user} từ {ip} trên {host}"},
    {"name": "waf-block", "match": "ModSecurity: Access denied", "severity": "medium",
     "category": "intrusion"},
]


def test_parse_rfc5424() -> None:
    msg = parse_syslog('<38>1 2024-05-01T08:30:00.5+07:00 fw01.haugiang.gov.vn sshd 811 - '
                       '[meta sequenceId="1"] ' + SSH_FAIL)
    assert (msg.rfc, msg.facility, msg.level) == (5424, 4, 6)
    assert (msg.host, msg.app, msg.message) == ("fw01.haugiang.gov.vn", "sshd", SSH_FAIL)
    assert msg.timestamp == pytest.approx(1714527000.5)
    nil = parse_syslog("<13>1 - - - - - -")
    assert (nil.timestamp, nil.host, nil.message) == (None, "", "")


def test_parse_rfc3164() -> None:
    msg = parse_syslog(f"<34>Oct 11 22:14:15 mymachine sshd[4721]: {SSH_FAIL}\n")
    assert (msg.rfc, msg.host, msg.app, msg.message) == (3164, "mymachine", "sshd", SSH_FAIL)
    assert msg.timestamp is None  # no year, no zone: the receive time is used
    assert parse_syslog("<13>May  1 08:30:00 host plain text").message == "plain text"


@pytest.mark.parametrize("line", ["no header", "<999>1 - - - - - -", "<13>garbage",
                                  "<13>1 yesterday h a - - - x"])
def test_unparseable_lines(line: str) -> None:
    with pytest.raises(ValueError):
        parse_syslog(line)


def test_patterns_fill_the_title_and_first_match_wins() -> None:
    from ioc.events_config import SyslogConfig

    matcher = SyslogMatcher(SyslogConfig.model_validate({"patterns": PATTERNS}))
    event = matcher.match(parse_syslog(f"<34>Oct 11 22:14:15 fw01 sshd[1]: {SSH_FAIL}"),
                          "10.0.0.9", 1_750_000_000.0)
    assert event is not None
    assert event.title == "SSH: sai mật khẩu admin từ 203.0.113.7 trên fw01"
    assert (event.severity, event.category, event.department) == ("high", "auth_failure",
                                                                   "STTTT")
    assert event.occurred_at == 1_750_000_000.0 and event.source == "syslog"
    assert dict(event.labels)["sender"] == "10.0.0.9"
    assert matcher.match(parse_syslog("<34>Oct 11 22:14:15 fw01 cron[1]: ok"), "x", 0) is None


def test_token_bucket_per_sender() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.allow("b", 100.0)            # another sender has its own bucket
    assert not buckets.allow("a", 100.4)        # 0.8 token refilled: not yet
    assert buckets.allow("a", 100.5)            # one token after 0.5 s at 2/s


def test_bad_pattern_is_a_config_error() -> None:
    from service.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"events": {"syslog": {"patterns": [
            {"name": "x", "match": "(unclosed", "severity": "urgent"},
            {"name": "y", "match": "ok", "title": "{a.b}"}]}}}, env={})
    assert {i.path for i in err.value.issues} == {
        "events.syslog.patterns[0].match", "events.syslog.patterns[0].severity",
        "events.syslog.patterns[1].title"}


def syslog_app(tmp_path: Path, **over: Any) -> IocApp:
    return IocApp(events_config(tmp_path, extra={"events": {"syslog": {
        "enabled": True, "udp": "127.0.0.1:0", "tcp": "127.0.0.1:0", "patterns": PATTERNS,
        **over}}}))


async def test_udp_and_tcp_messages_become_events(tmp_path: Path) -> None:
    app = syslog_app(tmp_path)
    arrivals = Arrivals()
    app.events.subscribe(arrivals)
    await app.start()
    sent = float(int(clock.now()) - 3600)  # an hour ago: within events.max_past
    stamp = datetime.fromtimestamp(sent, ZoneInfo("Asia/Ho_Chi_Minh")).isoformat()
    try:
        assert app.syslog is not None and app.syslog.udp_address and app.syslog.tcp_address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(f"<38>1 {stamp} fw01 sshd 1 - - {SSH_FAIL}".encode(),
                       app.syslog.udp_address)
            udp.sendto(b"<38>Oct 11 22:14:15 fw01 cron[2]: nothing to see",
                       app.syslog.udp_address)
            udp.sendto(b"<38>Oct 11 22:14:15 waf01 httpd[2]: ModSecurity: Access denied "
                       b"with code 403", app.syslog.udp_address)
        await arrivals.until(2)
        _, writer = await asyncio.open_connection(*app.syslog.tcp_address)
        framed = b"<86>Oct 11 22:14:15 vpn01 sshd[9]: " + SSH_FAIL.encode()
        writer.write(b"%d %s" % (len(framed), framed))           # octet counting
        writer.write(b"<86>Oct 11 22:14:15 waf02 httpd[3]: ModSecurity: Access denied\n")
        writer.write(b"\n<86>not syslog at all\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await arrivals.until(4)
        await app.events.flush()
        stored = await app.events.store.query(EventQuery(sources=("syslog",), limit=10))
    finally:
        await app.stop(grace=1.0)
    hosts = sorted(s.event.host or "" for s in stored)
    assert hosts == ["fw01", "vpn01", "waf01", "waf02"]
    fw = next(s.event for s in stored if s.event.host == "fw01")
    assert fw.occurred_at == sent and fw.category == "auth_failure"
    assert "sent_at" not in dict(fw.labels)
    value = app.registry.get_sample_value
    assert value("ioc_syslog_messages_total", {"transport": "udp", "result": "unmatched"}) == 1
    assert value("ioc_syslog_messages_total", {"transport": "tcp", "result": "invalid"}) == 1
    assert value("ioc_syslog_messages_total", {"transport": "tcp", "result": "event"}) == 2
    assert value("ioc_security_events_total", {"department": "STTTT", "source": "syslog",
                                               "severity": "high",
                                               "category": "auth_failure"}) == 2


async def test_a_flooding_sender_is_rate_limited(tmp_path: Path) -> None:
    app = syslog_app(tmp_path, rate_limit=1, burst=5)
    await app.start()
    try:
        assert app.syslog is not None
        line = b"<86>Oct 11 22:14:15 vpn01 sshd[9]: " + SSH_FAIL.encode()
        results = [app.syslog.handle(line, "198.51.100.1", "udp") for _ in range(20)]
        assert results.count("event") == 5 and results.count("rate_limited") == 15
        assert app.syslog.handle(line, "198.51.100.2", "udp") == "event"
        assert app.syslog.handle(b"<86>" + b"x" * 9000, "198.51.100.3", "udp") == "too_large"
        await app.events.flush()
        assert len(await app.events.store.query(EventQuery(limit=100))) == 6
    finally:
        await app.stop(grace=1.0)


async def test_rate_limiting_is_logged_once_per_episode(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.syslog")
    app = syslog_app(tmp_path, rate_limit=1, burst=5)
    await app.start()
    try:
        assert app.syslog is not None
        now = [1000.0]
        receiver = SyslogReceiver(app.syslog.config, app.events, CollectorRegistry(),
                                  monotonic=lambda: now[0])
        line = b"<86>Oct 11 22:14:15 vpn01 sshd[9]: " + SSH_FAIL.encode()
        flood = [receiver.handle(line, f"198.51.100.{n % 3}", "udp") for n in range(300)]
        assert flood.count("event") == 15 and flood.count("rate_limited") == 285
        now[0] += 4.0  # under the 5 s refill time: a limited sender is still an episode
        assert receiver.handle(line, "203.0.113.9", "udp") == "event"
        now[0] += 1.0  # a whole bucket's refill time without any refusal
        assert receiver.handle(line, "203.0.113.9", "udp") == "event"
    finally:
        await app.stop(grace=1.0)
    records = [r for r in caplog.records if "rate limit" in r.getMessage()]
    assert [r.getMessage() for r in records] == [
        "syslog rate limit reached: dropping (counted in metrics)",
        "syslog rate limit no longer dropping"]
    assert records[-1].fields["dropped"] == 285  # type: ignore[attr-defined]
