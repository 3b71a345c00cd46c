"""Telegram, Zalo OA and Apprise against local imitations of their APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from alerts.notifiers import NotifierError, RetryLater
from alerts.notifiers.apprise import AppriseConfig, AppriseNotifier
from alerts.notifiers.apprise import build_message as apprise_message
from alerts.notifiers.telegram import TelegramConfig, TelegramNotifier, build_request
from alerts.notifiers.zalo import ZaloConfig, ZaloNotifier
from alerts.notifiers.zalo import build_message as zalo_message
from tests.alerts.delivery_helpers import sample_notification

BOT_TOKEN = "123456:ABC-secret-bot-token"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# -- Telegram ----------------------------------------------------------------------------


def test_telegram_request_is_escaped_html_within_the_limit() -> None:
    body = build_request(sample_notification(), "-1001234")
    assert body["chat_id"] == "-1001234" and body["parse_mode"] == "HTML"
    assert body["text"].startswith("<b>[NGHIÊM TRỌNG] Sở Tư pháp")
    assert "Kiểm tra &lt;máy chủ&gt; &amp; đường truyền" in body["text"]
    assert len(body["text"]) <= 4096


async def test_telegram_sends_and_honours_retry_after(aiohttp_server, session) -> None:
    calls: list[dict] = []

    async def send_message(request: web.Request) -> web.Response:
        assert request.match_info["token"] == BOT_TOKEN
        calls.append(await request.json())
        if len(calls) == 1:
            return web.json_response({"ok": False, "error_code": 429,
                                      "description": "Too Many Requests: retry after 7",
                                      "parameters": {"retry_after": 7}}, status=429)
        return web.json_response({"ok": True, "result": {"message_id": len(calls)}})

    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", send_message)
    server = await aiohttp_server(app)
    notifier = TelegramNotifier(TelegramConfig(bot_token=BOT_TOKEN, chat_id="-1001234",
                                               api_url=str(server.make_url("")),
                                               min_interval="1ms"), lambda: session)
    with pytest.raises(RetryLater) as caught:
        await notifier.send(sample_notification())
    assert caught.value.after == 7.0
    await notifier.send(sample_notification())
    assert len(calls) == 2 and calls[1]["chat_id"] == "-1001234"


async def test_telegram_errors_never_show_the_bot_token(session) -> None:
    notifier = TelegramNotifier(TelegramConfig(bot_token=BOT_TOKEN, chat_id="1",
                                               api_url="http://127.0.0.1:1"), lambda: session)
    with pytest.raises(NotifierError) as caught:
        await notifier.send(sample_notification())
    assert BOT_TOKEN not in str(caught.value)


# -- Zalo OA -----------------------------------------------------------------------------


class ZaloImitation:
    """The OA message API and the OAuth refresh, with a 48-hour window per follower."""

    def __init__(self) -> None:
        self.token = "fresh-access-token"
        self.refresh = "refresh-1"
        self.interacted = {"u-truc"}
        self.delivered: list[tuple[str, str]] = []

    async def message(self, request: web.Request) -> web.Response:
        if request.headers.get("access_token") != self.token:
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        body = await request.json()
        user = body["recipient"]["user_id"]
        if user not in self.interacted:
            return web.json_response({"error": -213, "message":
                                      "User has not interacted with the OA in 48 hours"})
        self.delivered.append((user, body["message"]["text"]))
        return web.json_response({"error": 0, "message": "Success",
                                  "data": {"message_id": "m1", "user_id": user}})

    async def oauth(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("secret_key") != "app-secret" or \
                form.get("refresh_token") != self.refresh:
            return web.json_response({"error": -14014, "message": "Invalid refresh token"})
        self.refresh = "refresh-2"  # single use: a new one each time
        return web.json_response({"access_token": self.token, "refresh_token": self.refresh,
                                  "expires_in": "90000"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self.message)
        app.router.add_post("/v4/oa/access_token", self.oauth)
        return app


def test_zalo_message_is_plain_text_within_2000_characters() -> None:
    body = zalo_message(sample_notification(), "u-truc")
    assert body["recipient"] == {"user_id": "u-truc"}
    assert body["message"]["text"].startswith("[NGHIÊM TRỌNG]")
    assert len(body["message"]["text"]) <= 2000


async def test_zalo_refreshes_an_expired_token_and_delivers(aiohttp_server, session) -> None:
    zalo = ZaloImitation()
    server = await aiohttp_server(zalo.app())
    base = str(server.make_url("")).rstrip("/")
    notifier = ZaloNotifier(ZaloConfig(user_ids=["u-truc"], access_token="expired-token",
                                       refresh_token="refresh-1", app_id="42",
                                       secret_key="app-secret", api_url=base, oauth_url=base),
                            lambda: session)
    await notifier.send(sample_notification())
    assert [u for u, _ in zalo.delivered] == ["u-truc"]
    assert zalo.refresh == "refresh-2"
    await notifier.send(sample_notification("resolved"))  # the new token is kept
    assert len(zalo.delivered) == 2


async def test_zalo_outside_the_48_hour_window_is_a_failure(aiohttp_server, session) -> None:
    zalo = ZaloImitation()
    server = await aiohttp_server(zalo.app())
    base = str(server.make_url("")).rstrip("/")
    notifier = ZaloNotifier(ZaloConfig(user_ids=["u-truc", "u-away"],
                                       access_token="fresh-access-token", api_url=base,
                                       oauth_url=base), lambda: session)
    with pytest.raises(NotifierError, match="u-away: error -213"):
        await notifier.send(sample_notification())
    assert [u for u, _ in zalo.delivered] == ["u-truc"]


# -- Apprise -----------------------------------------------------------------------------


def test_apprise_message_uses_the_vietnamese_headline() -> None:
    message = apprise_message(sample_notification())
    assert message["title"].startswith("[NGHIÊM TRỌNG]")
    assert "Sở Tư pháp (STP)" in message["body"]


async def test_apprise_json_url_reaches_a_local_server(aiohttp_server) -> None:
    got: list[dict] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/notify", receive)
    server = await aiohttp_server(app)
    url = f"json://127.0.0.1:{server.port}/notify"
    await AppriseNotifier(AppriseConfig(urls=[url])).send(sample_notification())
    (body,) = got
    assert body["title"].startswith("[NGHIÊM TRỌNG]") and "stp-dvc" in body["message"]


async def test_apprise_failure_raises() -> None:
    from tests.conftest import free_port

    notifier = AppriseNotifier(AppriseConfig(urls=[f"json://127.0.0.1:{free_port()}/x"]))
    with pytest.raises(NotifierError):
        await notifier.send(sample_notification())


def test_apprise_url_is_checked_at_config_load_without_echoing_it() -> None:
    from service.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config({"alerts": {"default_rules": False, "receivers": [
            {"name": "x", "apprise": [{"urls": ["${IOC_APPRISE_URL}"]}]}]}},
            env={"IOC_APPRISE_URL": "nosuchservice://secret-token@host"})
    assert "urls[0] is not a URL Apprise understands" in str(caught.value)
    assert "secret-token" not in str(caught.value)
