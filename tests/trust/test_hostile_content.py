"""Hostile text from departments, event sources and rule authors is kept verbatim and shown
escaped, never evaluated, and never answered with a 5xx.

The strings are HTML and attribute breakers, template syntax, control characters
(\\x00–\\x1f, the right-to-left override) and a 10 kB string. They go through a running ioc
(department names from config, events pushed over the API, alert annotations rendered from a
rule, the announcement) and through the pure message builders of every notifier.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import markupsafe
import pytest
from aiohttp import web

from alerts.messages import Notification, NotifiedAlert, headline, render_html, render_text
from alerts.notifiers.email import build_message
from alerts.notifiers.telegram import build_request
from alerts.notifiers.webhook import build_payload
from alerts.notifiers.zalo import build_message as zalo_payload
from alerts.rules import RuleConfig, compile_rule
from ioc.bidi import strip_bidi
from ioc.model import Event, make_labels
from ioc.store.events import EventQuery, EventStore
from service.app import IocApp
from service.config import ConfigError, parse_config
from tests.conftest import PollWatcher, demo_config, free_port
from tests.events.conftest import Arrivals
from tests.store.conftest import postgres_url, store_url  # noqa: F401  (fixtures)
from tests.trust.conftest import TOKENS, bearer

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
TEMPLATE = "{{ 7*7 }} {% raw %}"
CONTROL = "".join(chr(c) for c in range(0x20)) + "\u202e"
HOSTILE = [SCRIPT, ATTRIBUTE, TEMPLATE, CONTROL, "Sở " + "x" * 9_997]  # 10,000 characters
# One string with all of them, for the places that take one value.
MIXED = f"Sở {SCRIPT} {ATTRIBUTE} {TEMPLATE} {CONTROL}"
# Control characters printable in a single-line field (no newlines, no NUL).
TITLE = f"{SCRIPT}{ATTRIBUTE}{TEMPLATE}\x01\x1b[31m\u202e"
DANGEROUS = ("<script>alert", "<img src=x")


def assert_escaped(page: str, value: str) -> None:
    forms = {html.escape(value, quote=True), html.escape(value, quote=False),
             str(markupsafe.escape(value))}  # the last is how Jinja2 escapes
    assert any(form in page for form in forms), "not shown verbatim (escaped)"
    if any(c in value for c in '<>"'):
        assert value not in page, "unescaped in the page"
    for raw in DANGEROUS:
        if raw in value:
            assert raw not in page, f"{raw!r} unescaped in the page"


# --------------------------------------------------------------------------------------------
# The message builders (pure functions)


def notification(text: str) -> Notification:
    alert = NotifiedAlert(
        fingerprint="f1", status="firing",
        labels={"alertname": "Down", "severity": "critical", "department": "STP",
                "target": "stp-health", "host": text},
        annotations={"summary": text, "description": text, "runbook_url": text},
        starts_at=1_700_000_000.0, value=0.0, department_name=text)
    return Notification(receiver="duty", group_key="g", status="firing",
                        group_labels={"alertname": "Down"}, alerts=(alert,),
                        created_at=1_700_000_060.0, dedup_key="d1",
                        external_url="http://ioc.example/wall?x=\"><script>")


@pytest.mark.parametrize("text", [*HOSTILE, MIXED], ids=["script", "attribute", "template",
                                                           "control", "long", "mixed"])
def test_message_builders_keep_text_verbatim_and_escape_html(text: str) -> None:
    n = notification(text)
    shown = strip_bidi(text)  # people's messages lose bidi controls only (ioc/bidi.py)
    assert shown in render_text(n)
    page = render_html(n)
    assert_escaped(page, shown)
    assert "<script>" not in page
    payload = build_payload(n)  # machines get what was sent
    assert json.loads(json.dumps(payload))["alerts"][0]["annotations"]["summary"] == text
    telegram = build_request(n, "chat")
    assert telegram["parse_mode"] == "HTML" and "<script" not in telegram["text"]
    assert html.escape(shown[:100]) in telegram["text"] or len(text) > 4000
    message = build_message(n, "ioc@example.org", ["duty@example.org"])
    subject = str(message["Subject"])
    assert "\n" not in subject and "\r" not in subject and "\x00" not in subject
    body = message.get_body(("plain",))
    assert body is not None
    if not any(c in text for c in "\r\x0b\x0c\x1c\x1d\x1e\x85"):  # line breaks to MIME
        assert shown in body.get_content()
    html_part = message.get_body(("html",))
    assert html_part is not None and "<script>" not in html_part.get_content()


def test_annotation_templates_are_sandboxed_and_labels_not_reevaluated() -> None:
    rule = compile_rule(RuleConfig.model_validate({
        "name": "Hostile", "metric": "ioc_target_up", "op": "==", "threshold": 1,
        "annotations": {"summary": "{{ ''.__class__.__mro__ }}",
                        "description": "{{ labels.host }} {{ 7*7 }}"}}))
    rendered = dict(rule.render((("host", TEMPLATE + SCRIPT),), 1.0))
    assert "class 'object'" not in rendered["summary"]
    assert "unsafe" in rendered["summary"]  # says the template was refused, runs nothing
    assert rendered["description"] == f"{TEMPLATE}{SCRIPT} 49"


# --------------------------------------------------------------------------------------------
# Refused at the door


@pytest.mark.parametrize("key,value", [
    ("departments", [{"code": SCRIPT, "name": "x"}]),
    ("departments", [{"code": "A\x00B", "name": "x"}]),
    ("collectors", [{"type": "http", "name": ATTRIBUTE, "department": "STP",
                     "url": "http://127.0.0.1:1/"}]),
])
def test_codes_and_names_with_markup_are_config_errors(key: str, value: Any) -> None:
    raw: dict[str, Any] = {"departments": [{"code": "STP", "name": "Sở"}], key: value}
    if key == "collectors":
        raw["departments"] = [{"code": "STP", "name": "Sở"}]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={})
    assert "should match pattern" in str(caught.value)


# --------------------------------------------------------------------------------------------
# Through a running ioc


@dataclass
class Hostile:
    app: IocApp
    received: list[dict[str, Any]]   # webhook payloads
    notified: asyncio.Event
    arrivals: Arrivals


@pytest.fixture
async def hostile_app(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[Hostile]:
    received: list[dict[str, Any]] = []
    notified = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        notified.set()
        return web.Response()

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    hook_server = await aiohttp_server(hook_app)
    config = demo_config(tmp_path, free_port(), codes=["STP"], extra={
        "departments": [{"code": "STP", "name": MIXED}],
        "auth": {"tokens": [{"name": f"{role}-desk", "token": token, "roles": [role]}
                            for role, token in TOKENS.items()]},
        "alerts": {
            "evaluation_interval": "100ms", "default_rules": False,
            "rules": [{"name": "Hostile", "metric": "ioc_target_up", "op": ">=",
                       "threshold": 0, "annotations": {
                           "summary": f"{SCRIPT} {{{{ department }}}}",
                           "description": "{{ ''.__class__.__mro__ }}"}}],
            "route": {"receiver": "hook", "group_wait": "0s"},
            "receivers": [{"name": "hook", "webhook": [
                {"url": str(hook_server.make_url("/hook")), "timeout": "1s"}]}],
        },
    })
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    arrivals = Arrivals()
    app.events.subscribe(arrivals)
    await app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)
        yield Hostile(app, received, notified, arrivals)
    finally:
        await app.stop(grace=1.0)


BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
        "\u2069", "\u200e", "\u200f", "\u061c"]


@pytest.mark.parametrize("control", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
def test_plain_text_messages_carry_no_bidi_control(control: str) -> None:
    name = f"Sở{control} Tư pháp{control}gnp.exe"
    n = notification(name)
    telegram = build_request(n, "chat")["text"]
    zalo = zalo_payload(n, "u1")["message"]["text"]
    message = build_message(n, "ioc@example.org", ["duty@example.org"])
    plain = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert plain is not None and html_part is not None
    for text in (render_text(n), headline(n), telegram, zalo, str(message["Subject"]),
                 plain.get_content(), html_part.get_content(), render_html(n)):
        assert control not in text
        assert "Sở Tư phápgnp.exe" in html.unescape(text)
    assert "<bdi>" in render_html(n)  # and HTML mail isolates each value as well
    assert build_payload(n)["alerts"][0]["annotations"]["summary"] == name  # verbatim


async def test_hostile_content_is_stored_verbatim_and_shown_escaped(
        hostile_app: Hostile) -> None:
    app = hostile_app.app
    events = [{"source": "siem", "id": f"e{i}", "severity": "critical", "department": "STP",
               "title": title, "message": text, "host": text[:255],
               "labels": {"note": text[:500]}}
              for i, (title, text) in enumerate(
                  [(TITLE, t) for t in HOSTILE] + [("x" * 500, MIXED)])]
    async with aiohttp.ClientSession(app.url) as http:
        async with http.post("/api/v1/events", json=events, headers=bearer("ingest")) as r:
            assert r.status == 202, await r.text()

        await hostile_app.arrivals.until(len(events))
        async with http.get("/api/v1/events?limit=100") as r:
            assert r.status == 200
            got = {e["id"]: e for e in (await r.json())["events"]}
        for sent in events:
            back = got[sent["id"]]
            nul = str.maketrans({0: "\ufffd"})  # the one change: see the test below
            assert (back["title"], back["message"], back["host"], back["labels"]) == \
                (sent["title"], sent["message"].translate(nul), sent["host"].translate(nul),
                 sent["labels"])

        # the announcement refuses control characters with a clear 400, takes markup verbatim
        async with http.post("/api/v1/announcement", json={"text": "a\x00b"},
                             headers=bearer("operator")) as r:
            assert r.status == 400
            assert "control characters" in (await r.json())["detail"]
        async with http.post("/api/v1/announcement", json={"text": f"{SCRIPT} {TEMPLATE}"},
                             headers=bearer("operator")) as r:
            assert r.status < 300, await r.text()

        async with http.get("/api/v1/status") as r:
            assert r.status == 200
            status = await r.json()
        assert status["targets"][0]["department_name"] == MIXED

        async with asyncio.timeout(10):
            await hostile_app.notified.wait()  # the rule fired and the webhook was called
        async with http.get("/api/v1/alerts") as r:
            assert r.status == 200
            alert = (await r.json())["alerts"][0]
        assert alert["annotations"]["summary"] == f"{SCRIPT} {MIXED}"
        assert "unsafe" in alert["annotations"]["description"]
        assert "class 'object'" not in alert["annotations"]["description"]

        async with http.get("/") as r:
            assert r.status == 200
            page = await r.text()
        assert_escaped(page, MIXED)        # the department's name on its tile
        assert_escaped(page, SCRIPT)       # the announcement
        assert TEMPLATE in page            # shown as written, not evaluated

    sent_alert = hostile_app.received[0]["alerts"][0]
    assert sent_alert["annotations"]["summary"] == f"{SCRIPT} {MIXED}"


async def test_events_with_nul_and_control_characters_are_stored_on_every_backend(
        store_url: str) -> None:  # noqa: F811  (the fixture)
    """PostgreSQL text cannot hold NUL; the store keeps the event with U+FFFD in its place."""
    store = EventStore(store_url)
    await store.open()
    try:
        event = Event(source="siem", id="n\x00l", severity="high", category="other",
                      title=f"a\x00b{TITLE}", occurred_at=1_700_000_000.0,
                      message=CONTROL + MIXED, host="h\x00", labels=make_labels({"k": "v\x00"}))
        assert await store.insert([event], 1_700_000_000.0) == [event]
        [back] = [s.event for s in await store.query(EventQuery())]
    finally:
        await store.close()
    assert back.title == f"a\ufffdb{TITLE}" and back.id == "n\ufffdl"
    assert back.message == (CONTROL + MIXED).replace("\x00", "\ufffd")
    assert (back.host, dict(back.labels)) == ("h\ufffd", {"k": "v\x00"})  # JSON: \u0000
