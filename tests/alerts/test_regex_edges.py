"""Operator-supplied regular expressions run on RE2: anchored, linear, refused clearly.

The hostile patterns here (nested stars) take Python's backtracking ``re`` longer than the
test run on the texts used; on RE2 they answer at once, so these tests cannot pass on ``re``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alerts.matchers import parse_matcher
from alerts.silences import new_silence
from collectors.http import HttpConfig
from collectors.tcp import TcpConfig
from ioc.events_config import SyslogPattern
from ioc.regex import PatternError, compile_bytes_pattern, compile_pattern
from ioc.store.alert_delivery import DeliveryStore, HistoryEvent
from service.app import IocApp
from service.config import ConfigError, parse_config
from tests.conftest import demo_config, demo_raw, free_port

OPERATOR = "operator-token-0123456789"
HOSTILE = "(.*.*.*)*Z"
LONG = "a" * 50_000  # no Z: a backtracking engine tries every split of 50,000 characters


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(a)\1", "invalid escape sequence"),
    ("(?=admin)", "invalid perl operator"),
    ("(?<!x)y", "invalid perl operator"),
    ("a++", "bad repetition operator"),
    ("(", "missing )"),
    ("[z-a]", "invalid character class range"),
    ("(a{1000}){1000}", "invalid repetition size"),
    ("((a{100}){100}){100}", "invalid repetition size"),
])
def test_patterns_re2_cannot_compile_are_errors_naming_them(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError) as info:
        compile_pattern(pattern)
    assert repr(pattern) in str(info.value) and reason in str(info.value)
    assert isinstance(info.value, ValueError)  # pydantic and the API report it as bad input


@pytest.mark.parametrize(("matcher", "value", "matches"), [
    ('target=~"stp"', "stp", True),
    ('target=~"stp"', "stp-web", False),        # anchored: the whole value must match
    ('target=~"stp"', "x-stp", False),
    ('target=~"stp|cat"', "stpcat", False),     # ^(?:stp|cat)$, not ^stp|cat$
    ('target=~"stp|cat"', "cat", True),
    ('target!~"stp.*"', "stp-web", False),
    ('target!~"stp.*"', "cat", True),
    ('target=~"(?i)STP.*"', "stp-web", True),
    ('target=~"Sở.*"', "Sở Tư pháp", True),
    ('target=~"\\\\pL+"', "Sởtưpháp", True),    # Unicode letters through \\pL
    ('target=~""', "", True),                   # a missing label is the empty string
    ('target=~"a.b"', "a\ud800b", True),        # lone surrogates never raise
    (f'target=~"{HOSTILE}"', LONG, False),
    (f'target!~"{HOSTILE}"', LONG, True),
])
def test_matchers_are_anchored_re2(matcher: str, value: str, matches: bool) -> None:
    assert parse_matcher(matcher).matches({"target": value}) is matches


@pytest.mark.parametrize(("pattern", "text", "found"), [
    (r"Tra c\w+ hồ sơ", "Tra cứu hồ sơ", True),     # Python's \w is Unicode: kept so
    (r"^[\w.-]+$", "sở-tư.pháp", True),
    (r"^\d+$", "٣٤", True),                          # Unicode digits, as in Python
    (r"^[^\d]+$", "abc", True),
    (r"^\W+$", "ứ", False),
    (r"^\s$", "\u00a0", True),                       # a no-break space from HTML
    (r"^\S+$", "ứng", True),
    (r"^\\w$", "\\w", True),                        # an escaped backslash stays literal
    (r"^[]\w]+$", "]a", True),
    (r"^[[:alpha:]\d]+$", "a1", True),
    (r"phút\Z", "5 phút", True),                    # Python's \Z is RE2's \z
    (r"^a{,3}$", "aa", True),                         # Python's {,n} is {0,n}
    (r"^a{,3}$", "a{,3}", False),
    (r"^\u0110\u00e0 N\u1eb5ng$", "Đà Nẵng", True),  # \uXXXX escapes
    (r"\U0001F600", "😀", True),
])
def test_perl_classes_keep_pythons_unicode_meaning(pattern: str, text: str,
                                                   found: bool) -> None:
    assert (compile_pattern(pattern).search(text) is not None) is found


def test_content_patterns_search_unanchored_on_re2() -> None:
    assert compile_pattern("Đăng nhập").search("Trang Đăng nhập hệ thống") is not None
    assert compile_pattern("ok", case_insensitive=True).search("STATUS: OK") is not None
    assert compile_pattern(HOSTILE).search(LONG) is None
    assert compile_bytes_pattern(r"^\+PONG").search(b"+PONG\r\n")
    assert not compile_bytes_pattern(HOSTILE).search(LONG.encode())
    found = SyslogPattern(name="ssh", match=r"Failed password for (?P<user>\S+)").compiled()
    assert found.search("Failed password for root from 10.0.0.1").groupdict() == \
        {"user": "root"}


@pytest.mark.parametrize(("section", "path"), [
    ({"alerts": {"route": {"receiver": "r", "routes": [
        {"receiver": "r", "matchers": ['target=~"(?=x)"']}]},
        "receivers": [{"name": "r"}]}}, "alerts.route.routes: routes[0].matchers"),
    ({"alerts": {"inhibit_rules": [{"source_matchers": ['alertname=~"(a)\\\\1"'],
                                    "target_matchers": ['severity="warning"']}]}},
     "alerts.inhibit_rules[0].source_matchers"),
    ({"events": {"syslog": {"patterns": [{"name": "p", "match": "a(?!b)"}]}}},
     "events.syslog.patterns[0].match"),
])
def test_config_patterns_re2_refuses_name_their_path(tmp_path: Path, section: dict[str, Any],
                                                     path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(demo_raw(tmp_path, 1, codes=["STP"], extra=section), env={})
    shown = [f"{i.path}: {i.message}" for i in info.value.issues]
    assert any(s.startswith(path) and "invalid regular expression" in s for s in shown), shown


@pytest.mark.parametrize(("model", "raw"), [
    (HttpConfig, {"type": "http", "name": "a", "department": "STP", "url": "http://x/",
                  "body_regex": "(?<=a)b"}),
    (TcpConfig, {"type": "tcp", "name": "a", "department": "STP", "host": "x", "port": 25,
                 "expect": r"(\d)\1"}),
])
def test_collector_patterns_re2_refuses_are_config_errors(model: Any, raw: dict) -> None:
    with pytest.raises(ValueError, match="invalid regular expression"):
        model.model_validate(raw)


def test_a_silence_with_a_pattern_re2_refuses_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid regular expression"):
        new_silence("s", ['target=~"(?=stp)"'], starts_at=0, ends_at=60, created_by="x",
                    comment="why", now=0)


async def _call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    async with aiohttp.ClientSession() as session, session.request(
            method, base + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def _tokens() -> dict[str, Any]:
    return {"auth": {"tokens": [{"name": "ca-truc", "token": OPERATOR,
                                 "roles": ["operator"]}]}}


async def test_silence_api_answers_400_for_re2_errors_and_stays_quick_on_hostile_ones(
        tmp_path: Path) -> None:
    app = IocApp(demo_config(tmp_path, free_port(), codes=["STP"], extra=_tokens()))
    await app.start()
    try:
        base = app.url.rstrip("/")
        now = app.dispatcher.clock()
        silence = {"matchers": ['target=~"(stp)\\\\1"'], "starts_at": now,
                   "ends_at": now + 600, "comment": "bảo trì"}
        status, answer = await _call(base, "POST", "/api/v1/silences", silence)
        assert status == 400 and "(stp)" in answer["detail"], answer
        assert "invalid escape sequence" in answer["detail"]
        hostile = {**silence, "matchers": [f'target=~"{HOSTILE}"', 'department="STP"']}
        status, answer = await _call(base, "POST", "/api/v1/silences", hostile)
        assert status in (200, 201), answer
        # Every alert is checked against the hostile silence on the loop: still answered.
        status, _ = await _call(base, "GET", "/api/v1/alerts")
        assert status == 200
        async with aiohttp.ClientSession() as session, \
                session.get(base + "/healthz") as resp:
            assert resp.status == 200
    finally:
        await app.stop(grace=1.0)


async def test_a_stored_silence_re2_refuses_is_reported_not_fatal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A silence stored before the move to RE2 with lookahead: logged once, counted, skipped."""
    config = demo_config(tmp_path, free_port(), codes=["STP"], extra=_tokens())
    store = DeliveryStore(config.storage.url)
    await store.open()
    now = 1_900_000_000.0
    good = {"id": "good", "matchers": ['department="STP"'], "starts_at": 0.0,
            "ends_at": now, "created_by": "x", "comment": "c", "created_at": 0.0}
    old = {**good, "id": "old", "matchers": ['target=~"(?!stp).*"', 'department="STP"']}
    for row in (good, old):
        await store.put_silence(row, HistoryEvent(f"silence:{row['id']}", 0.0, "silence",
                                                  None, "x", {}))
    await store.close()
    app = IocApp(config)
    caplog.set_level(logging.ERROR, "ioc.alerts.dispatcher")
    await app.start()
    try:
        assert set(app.dispatcher.silences) == {"good"}
        assert set(app.dispatcher.unusable_silences) == {"old"}
        assert app.registry.get_sample_value("ioc_silences_unusable") == 1
        await app.dispatcher.refresh(app.dispatcher.clock())  # re-read: not logged again
        lines = [r for r in caplog.records if "stored silence cannot be used" in r.message]
        assert len(lines) == 1
    finally:
        await app.stop(grace=1.0)


def test_remembered_answers_stay_right_and_bounded() -> None:
    from ioc.regex import MEMO_SIZE

    pattern = compile_pattern("stp-[0-9]+")
    values = [f"stp-{i}" if i % 3 else f"cat-{i}" for i in range(MEMO_SIZE * 3)]
    for _ in range(2):  # the second pass answers from the memo where it still holds them
        assert [pattern.fullmatch(v) for v in values] == [bool(i % 3) for i in
                                                          range(len(values))]
        assert len(pattern._memo) <= MEMO_SIZE
