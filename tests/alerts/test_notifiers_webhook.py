"""Webhook (Alertmanager v4 JSON) and Alertmanager forwarding: builders and real posts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from alerts.messages import render_html, render_text
from alerts.notifiers import NotifierError, RetryLater
from alerts.notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier, build_alerts
from alerts.notifiers.webhook import WebhookConfig, WebhookNotifier, build_payload
from tests.alerts.delivery_helpers import sample_notification


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def test_payload_is_alertmanager_webhook_version_4() -> None:
    payload = build_payload(sample_notification())
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["groupKey"] == '{}:{department="STP"}'
    assert payload["receiver"] == "oncall" and payload["truncatedAlerts"] == 0
    assert payload["groupLabels"] == {"department": "STP"}
    assert payload["commonLabels"] == {"department": "STP"}
    first, second = payload["alerts"]
    assert first["status"] == "firing" and first["endsAt"] == "0001-01-01T00:00:00Z"
    assert first["startsAt"] == "2027-01-15T07:48:00.000Z"
    assert second["status"] == "resolved" and second["endsAt"] == "2027-01-15T07:59:00.000Z"
    assert first["fingerprint"] == "f1" and payload["dedupKey"] == "n-1"
    assert build_payload(sample_notification(), max_alerts=1)["truncatedAlerts"] == 1


def test_messages_say_what_where_since_when_value_and_links() -> None:
    text = render_text(sample_notification())
    for part in ("[NGHIÊM TRỌNG]", "Sở Tư pháp (STP)", "stp-dvc", "12 phút trước",
                 "Giá trị hiện tại: 0", "runbook/target-down", "Đã khắc phục (1)",
                 "Màn hình giám sát: http://ioc.haugiang.gov.vn/"):
        assert part in text, part
    page = render_html(sample_notification())
    assert "Kiểm tra &lt;máy chủ&gt; &amp; đường truyền" in page, "HTML is escaped"
    assert '<a href="https://wiki.haugiang.gov.vn/runbook/target-down">' in page


def test_alertmanager_body_sets_ends_at_ahead_for_firing_and_past_for_resolved() -> None:
    body = build_alerts(sample_notification(), resend_interval=60.0)
    assert body[0]["endsAt"] == "2027-01-15T08:04:00.000Z"  # created + 4 x 1 min
    assert body[1]["endsAt"] == "2027-01-15T07:59:00.000Z"
    assert body[0]["labels"]["alertname"] == "TargetDown"
    assert body[0]["generatorURL"] == "http://ioc.haugiang.gov.vn/"


async def test_webhook_posts_json_with_token_and_idempotency_key(aiohttp_server,
                                                                 session) -> None:
    got: list[tuple[dict, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.json(), dict(request.headers)))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    notifier = WebhookNotifier(WebhookConfig(url=str(server.make_url("/hook")),
                                             bearer_token="s3cret-token-value"),
                               lambda: session)
    await notifier.send(sample_notification())
    (payload, headers), = got
    assert payload["alerts"][0]["labels"]["target"] == "stp-dvc"
    assert headers["Authorization"] == "Bearer s3cret-token-value"
    assert headers["Idempotency-Key"] == "n-1"


@pytest.mark.parametrize(("status", "error"), [(500, NotifierError), (429, RetryLater)])
async def test_webhook_failure_raises(aiohttp_server, session, status: int,
                                      error: type[Exception]) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=status, text="no")

    app = web.Application()
    app.router.add_post("/hook", refuse)
    server = await aiohttp_server(app)
    notifier = WebhookNotifier(WebhookConfig(url=str(server.make_url("/hook"))),
                               lambda: session)
    with pytest.raises(error):
        await notifier.send(sample_notification())


async def test_webhook_unreachable_raises(session) -> None:
    from tests.conftest import free_port

    notifier = WebhookNotifier(WebhookConfig(url=f"http://127.0.0.1:{free_port()}/h"),
                               lambda: session)
    with pytest.raises(NotifierError, match="webhook"):
        await notifier.send(sample_notification())


async def test_alertmanager_is_delivered_when_one_of_the_cluster_takes_it(
        aiohttp_server, session) -> None:
    got: list[list] = []

    async def alerts(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/v2/alerts", alerts)
    server = await aiohttp_server(app)
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    notifier = AlertmanagerNotifier(AlertmanagerConfig(urls=[dead, str(server.make_url(""))]),
                                    lambda: session)
    await notifier.send(sample_notification())
    assert len(got) == 1 and len(got[0]) == 2
    only_dead = AlertmanagerNotifier(AlertmanagerConfig(urls=[dead]), lambda: session)
    with pytest.raises(NotifierError):
        await only_dead.send(sample_notification())
