"""Telegram through the Bot API ``sendMessage``, respecting its rate limits.

Telegram allows about one message per second to a chat and twenty per minute to a group; over
that it answers 429 with ``parameters.retry_after``, which becomes ``RetryLater`` so the outbox
waits exactly that long. The notifier also spaces its own messages to one chat by
``min_interval``, so a burst of groups does not trip the limit in the first place.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import Field, SecretStr

from alerts.messages import Notification, headline, render_short
from alerts.notifiers.base import ChannelConfig, NotifierError, RetryLater
from ioc import clock
from ioc.config_types import Duration

MAX_TEXT = 4096


class TelegramConfig(ChannelConfig):
    bot_token: SecretStr = Field(description="from @BotFather; write ${ENV_VAR}")
    chat_id: str = Field(description="chat, group (-100…) or @channel to post to")
    api_url: str = Field("https://api.telegram.org", pattern=r"^https?://",
                         description="Bot API base URL (a local Bot API server also works)")
    min_interval: Duration = Field(3.0, description="least time between two messages to "
                                                    "the chat")


def build_request(n: Notification, chat_id: str) -> dict[str, Any]:
    """sendMessage parameters: bold headline, the text body, HTML-escaped."""
    head = f"<b>{html.escape(headline(n))}</b>\n"
    body = html.escape(render_short(n, MAX_TEXT - len(head) - 64).split("\n", 1)[1])
    return {"chat_id": chat_id, "text": (head + body)[:MAX_TEXT], "parse_mode": "HTML",
            "disable_web_page_preview": True}


def retry_after(status: int, body: str) -> float | None:
    """Seconds Telegram asks us to wait, from a 429 answer."""
    if status != 429:
        return None
    try:
        return float(json.loads(body)["parameters"]["retry_after"])
    except (ValueError, KeyError, TypeError):
        return 30.0


class TelegramNotifier:
    def __init__(self, config: TelegramConfig,
                 session: Callable[[], aiohttp.ClientSession]) -> None:
        self.config = config
        self.send_resolved = config.send_resolved
        self._session = session
        self._last_sent: float | None = None
        self._lock = asyncio.Lock()

    def request(self, notification: Notification) -> dict[str, Any]:
        """The sendMessage parameters (the on-call notifier adds its buttons)."""
        return build_request(notification, self.config.chat_id)

    async def send(self, notification: Notification) -> None:
        cfg = self.config
        token = cfg.bot_token.get_secret_value()
        url = f"{cfg.api_url.rstrip('/')}/bot{token}/sendMessage"
        async with self._lock:
            if self._last_sent is not None:
                wait = self._last_sent + cfg.min_interval - clock.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                async with self._session().post(
                        url, json=self.request(notification),
                        timeout=aiohttp.ClientTimeout(total=cfg.timeout)) as resp:
                    body = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Never let the URL (it holds the bot token) reach a log line.
                message = str(exc).replace(token, "***")
                raise NotifierError(f"telegram: {type(exc).__name__}: {message}") from None
            finally:
                self._last_sent = clock.monotonic()
        wait_for = retry_after(status, body)
        if wait_for is not None:
            raise RetryLater(f"telegram: rate limited, retry after {wait_for:g} s", wait_for)
        if status != 200:
            raise NotifierError(f"telegram: HTTP {status}: {body[:200].replace(token, '***')}")
