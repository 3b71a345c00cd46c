"""Button presses from Telegram, read by long polling ``getUpdates``: no inbound address needed.

Only the alert leader polls (Telegram allows one ``getUpdates`` consumer per bot and answers
409 to a second). Each ``callback_query`` is handled once — the offset confirms it to Telegram
— by :meth:`Presses.handle`: the person is found on the roster by the pressing user's id
(nobody else may acknowledge), the ack or snooze is written, the press is answered
(``answerCallbackQuery``) and the message edited (``editMessageText``) to say who
acknowledged, so everyone in the chat sees it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from alerts.oncall import OncallTelegramConfig, PersonConfig
from alerts.oncall_notifiers import ACK_TEXT, SNOOZE_TEXT
from ioc.logs import fields
from ioc.tasks import cancel_and_wait

log = logging.getLogger("ioc.alerts.telegram")

MAX_TEXT = 4096
RETRY_SECONDS = 5.0

# (person, fingerprint, action "ack"/"snooze", now) -> None when done, else why not
PressHandler = Callable[[PersonConfig, str, str, float], Awaitable[str | None]]


class Presses:
    """What to do with one update; I/O through ``call(method, params)``."""

    def __init__(self, person_of: Callable[[int | str], PersonConfig | None],
                 on_press: PressHandler, timezone: str) -> None:
        self.person_of = person_of
        self.on_press = on_press
        self.tz = ZoneInfo(timezone)

    async def handle(self, update: dict[str, Any], now: float,
                     call: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> None:
        query = update.get("callback_query")
        if not isinstance(query, dict):
            return
        query_id = str(query.get("id", ""))
        sender = query.get("from") or {}
        data = str(query.get("data") or "")
        action, _, fingerprint = data.partition(":")
        sender_id = sender.get("id") if isinstance(sender, dict) else None
        person = self.person_of(sender_id) if isinstance(sender_id, int | str) else None
        if person is None:
            await call("answerCallbackQuery", {
                "callback_query_id": query_id, "show_alert": True,
                "text": "Bạn không có trong lịch trực nên không thể xác nhận cảnh báo này."})
            return
        if action not in ("ack", "snooze") or not fingerprint:
            await call("answerCallbackQuery", {"callback_query_id": query_id,
                                               "text": "Nút không hợp lệ."})
            return
        problem = await self.on_press(person, fingerprint, action, now)
        if problem is not None:
            await call("answerCallbackQuery", {"callback_query_id": query_id,
                                               "text": problem, "show_alert": True})
            return
        done = ACK_TEXT if action == "ack" else SNOOZE_TEXT
        await call("answerCallbackQuery", {"callback_query_id": query_id,
                                           "text": f"Đã ghi nhận: {done}."})
        message = query.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            when = datetime.fromtimestamp(now, self.tz).strftime("%H:%M %d/%m/%Y")
            mark = "✅ Đã xác nhận" if action == "ack" else "⏸ Tạm ẩn 1 giờ"
            footer = f"\n\n{mark}: {person.name} lúc {when} (Telegram)"
            text = str(message.get("text") or "")
            params: dict[str, Any] = {
                "chat_id": message["chat"].get("id"), "message_id": message.get("message_id"),
                "text": text[:MAX_TEXT - len(footer)] + footer}
            if action == "snooze":  # acknowledging for good stays possible
                params["reply_markup"] = {"inline_keyboard": [[
                    {"text": ACK_TEXT, "callback_data": f"ack:{fingerprint}"}]]}
            await call("editMessageText", params)


class TelegramPoller:
    def __init__(self, config: OncallTelegramConfig, presses: Presses,
                 session: Callable[[], aiohttp.ClientSession],
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.presses = presses
        self.session = session
        self.clock = clock
        self.offset = 0
        self._task: asyncio.Task[None] | None = None

    def _url(self, method: str) -> str:
        token = self.config.bot_token.get_secret_value()
        return f"{self.config.api_url.rstrip('/')}/bot{token}/{method}"

    async def call(self, method: str, params: dict[str, Any],
                   wait: float | None = None) -> Any:
        """One Bot API call; raises RuntimeError (token masked) when it fails."""
        token = self.config.bot_token.get_secret_value()
        try:
            async with self.session().post(
                    self._url(method), json=params,
                    timeout=aiohttp.ClientTimeout(total=wait or self.config.timeout)) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RuntimeError(f"telegram {method}: {type(exc).__name__}: "
                               f"{str(exc).replace(token, '***')}") from None
        if not isinstance(body, dict) or not body.get("ok"):
            description = body.get("description") if isinstance(body, dict) else None
            raise RuntimeError(f"telegram {method}: {str(description)[:200]}")
        return body.get("result")

    async def poll_once(self) -> int:
        """One getUpdates round; returns how many updates were handled."""
        updates = await self.call("getUpdates", {
            "offset": self.offset, "timeout": int(self.config.poll_timeout),
            "allowed_updates": ["callback_query"]}, wait=self.config.poll_timeout + 10)
        count = 0
        for update in updates or []:
            if not isinstance(update, dict):
                continue
            self.offset = max(self.offset, int(update.get("update_id", 0)) + 1)
            try:
                await self.presses.handle(update, self.clock(), self.call)
            except Exception:  # one bad press must not stop the others
                log.exception("telegram press not handled")
            count += 1
        return count

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ioc-oncall-telegram")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.poll_once()
                if failing:
                    failing = False
                    log.info("telegram getUpdates works again")
            except RuntimeError as exc:
                if not failing:
                    failing = True
                    log.warning("telegram getUpdates failed; retrying",
                                extra=fields(error=str(exc)))
                await asyncio.sleep(RETRY_SECONDS)
