"""Local stand-ins for the on-call channels: a Telegram Bot API and an SMTP inbox.

The fake Bot API implements the four methods ioc calls with the JSON shapes of the Bot API
documentation (https://core.telegram.org/bots/api): every answer is ``{"ok": true,
"result": …}`` or ``{"ok": false, "error_code": …, "description": …}``; ``sendMessage`` and
``editMessageText`` return a Message (``message_id``, ``from``, ``chat``, ``date``,
``text``, ``reply_markup``); ``getUpdates`` returns Updates (``update_id``,
``callback_query`` with ``id``, ``from``, ``message``, ``chat_instance``, ``data``) after
``offset``; ``answerCallbackQuery`` returns True.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token-for-the-fake-bot"
BOT = {"id": 123456, "is_bot": True, "first_name": "ioc", "username": "ioc_test_bot"}


@dataclass
class FakeBotApi:
    sent: list[dict[str, Any]] = field(default_factory=list)        # Messages
    answers: list[dict[str, Any]] = field(default_factory=list)     # answerCallbackQuery
    edits: list[dict[str, Any]] = field(default_factory=list)       # editMessageText params
    updates: list[dict[str, Any]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        params = await request.json()
        method = request.match_info["method"]
        if method == "sendMessage":
            message = {"message_id": next(self._ids), "from": BOT, "date": 1_800_000_000,
                       "chat": {"id": int(params["chat_id"]), "type": "private"},
                       "text": params["text"]}
            if "reply_markup" in params:
                message["reply_markup"] = params["reply_markup"]
            self.sent.append(message)
            self._changed.set()
            return web.json_response({"ok": True, "result": message})
        if method == "getUpdates":
            # Long polling, as the Bot API does: answer when there is an update or after
            # `timeout` seconds (capped here so a test's server shuts down quickly).
            offset = int(params.get("offset", 0))
            fresh = [u for u in self.updates if u["update_id"] >= offset]
            if not fresh and params.get("timeout"):
                self._changed.clear()
                try:
                    async with asyncio.timeout(min(float(params["timeout"]), 1.0)):
                        await self._changed.wait()
                except TimeoutError:
                    pass
                fresh = [u for u in self.updates if u["update_id"] >= offset]
            return web.json_response({"ok": True, "result": fresh})
        if method == "answerCallbackQuery":
            self.answers.append(params)
            return web.json_response({"ok": True, "result": True})
        if method == "editMessageText":
            self.edits.append(params)
            message = next(m for m in self.sent if m["message_id"] == params["message_id"])
            message["text"] = params["text"]
            if "reply_markup" in params:
                message["reply_markup"] = params["reply_markup"]
            else:
                message.pop("reply_markup", None)
            return web.json_response({"ok": True, "result": message})
        return web.json_response({"ok": False, "error_code": 404,
                                  "description": "Not Found: method not found"}, status=404)

    def press(self, message: dict[str, Any], user_id: int, data: str) -> None:
        """A user taps an inline button of ``message``."""
        update_id = 1000 + len(self.updates)
        self.updates.append({"update_id": update_id, "callback_query": {
            "id": f"cq-{update_id}",
            "from": {"id": user_id, "is_bot": False, "first_name": "Người dùng"},
            "message": dict(message), "chat_instance": "-42", "data": data}})
        self._changed.set()

    async def until(self, count: int, limit: float) -> list[dict[str, Any]]:
        """Wait until ``count`` messages were sent (AssertionError after ``limit`` s)."""
        async with asyncio.timeout(limit):
            while len(self.sent) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.sent

    def to(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["chat"]["id"] == chat_id]


