"""The channels of one person on the roster, each carrying a way to acknowledge from itself.

* Telegram: the usual message to the person's private chat, with inline buttons "Xác nhận"
  and "Tạm ẩn 1 giờ" per firing alert; the presses come back through getUpdates
  (:mod:`alerts.oncall_telegram`).
* E-mail and Zalo: the usual message with one signed link per firing alert
  (:mod:`alerts.oncall_links`) to a confirmation page of ioc.

They are the existing notifiers with the person's address filled in and the message extended,
so retries, rate limits and token refresh stay in one place. Links are issued at the
notification's ``created_at`` (no clock read) with a nonce derived from its dedup key.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import aiohttp

from alerts.messages import Notification
from alerts.notifiers import Integration
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.telegram import TelegramConfig, TelegramNotifier
from alerts.notifiers.zalo import ZaloConfig, ZaloNotifier
from alerts.oncall import OncallConfig, PersonConfig, Roster
from alerts.oncall_links import AckLink, LinkSigner, link_nonce

MAX_ACTIONS = 5       # firing alerts of one message that get a button or a link
ACK_TEXT = "Xác nhận"
SNOOZE_TEXT = "Tạm ẩn 1 giờ"


def receiver_of(person: str) -> str:
    return f"oncall/{person}"


def buttons(n: Notification) -> dict[str, Any] | None:
    """The inline keyboard: one row of two buttons per firing alert (callback_data ≤ 64 B)."""
    firing = n.firing[:MAX_ACTIONS]
    if not firing:
        return None
    rows = []
    for index, alert in enumerate(firing, 1):
        suffix = f" #{index}" if len(firing) > 1 else ""
        rows.append([{"text": ACK_TEXT + suffix, "callback_data": f"ack:{alert.fingerprint}"},
                     {"text": SNOOZE_TEXT + suffix,
                      "callback_data": f"snooze:{alert.fingerprint}"}])
    return {"inline_keyboard": rows}


class AckLinks:
    """Builds the signed links of a notification for one person."""

    def __init__(self, signer: LinkSigner, base_url: str, ttl: float) -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/") + "/"
        self.ttl = ttl

    def for_person(self, n: Notification, person: str,
                   channel: str = "email") -> list[tuple[str, str]]:
        """(alert summary, URL) per firing alert."""
        out = []
        for alert in n.firing[:MAX_ACTIONS]:
            link = AckLink(alert.fingerprint, person, n.created_at + self.ttl,
                           link_nonce(n.dedup_key, alert.fingerprint), channel)
            out.append((alert.summary, f"{self.base_url}oncall/ack/{self.signer.sign(link)}"))
        return out


class PersonTelegram(TelegramNotifier):
    def request(self, notification: Notification) -> dict[str, Any]:
        body = super().request(notification)
        markup = buttons(notification)
        if markup is not None:
            body["reply_markup"] = markup
        return body


class PersonEmail(EmailNotifier):
    def __init__(self, config: Any, person: str, links: AckLinks | None) -> None:
        super().__init__(config)
        self.person = person
        self.links = links

    def message(self, notification: Notification) -> EmailMessage:
        found = self.links.for_person(notification, self.person) if self.links else []
        if not found:
            return super().message(notification)
        text_links = "\n".join(f"- {summary}: {url}" for summary, url in found)
        html_links = "".join(f'<li>{html.escape(summary)}: <a href="{html.escape(url)}">'
                             f"{ACK_TEXT}</a></li>" for summary, url in found)
        message = super().message(notification)
        plain = message.get_body(("plain",))
        rich = message.get_body(("html",))
        assert plain is not None and rich is not None
        plain.set_content(f"{plain.get_content()}\n{ACK_TEXT} (mở liên kết, bấm nút):\n"
                          f"{text_links}\n", charset="utf-8")
        rich.set_content(str(rich.get_content()).replace(
            "</body>", f"<p><b>{ACK_TEXT}</b></p><ul>{html_links}</ul></body>"),
            subtype="html", charset="utf-8")
        return message


class PersonZalo(ZaloNotifier):
    """One follower of the OA. The access and refresh tokens belong to the OA, not to the
    person: Zalo rotates the refresh token at every renewal and the old one stops working,
    so every person's notifier posts and renews through one shared ``account``."""

    def __init__(self, config: ZaloConfig, session: Callable[[], aiohttp.ClientSession],
                 person: str, links: AckLinks | None, account: ZaloNotifier) -> None:
        super().__init__(config, session)
        self.person = person
        self.links = links
        self.account = account

    async def _post(self, body: dict[str, Any]) -> tuple[int, str]:
        return await self.account._post(body)

    async def _refresh_token(self) -> bool:
        return await self.account._refresh_token()

    def message(self, notification: Notification, user_id: str) -> dict[str, Any]:
        body = super().message(notification, user_id)
        found = self.links.for_person(notification, self.person, "zalo") if self.links else []
        if found:
            extra = "\n".join(f"{ACK_TEXT}: {url}" for _, url in found)
            text = body["message"]["text"]
            body["message"]["text"] = text[:max(0, 2000 - len(extra) - 1)] + "\n" + extra
        return body


def zalo_account(config: OncallConfig,
                 session: Callable[[], aiohttp.ClientSession]) -> ZaloNotifier | None:
    """The OA's tokens, shared by every person's Zalo channel (kept across roster edits)."""
    zc = config.zalo
    if zc is None:
        return None
    return ZaloNotifier(ZaloConfig.model_construct(
        user_ids=[], access_token=zc.access_token, refresh_token=zc.refresh_token,
        app_id=zc.app_id, secret_key=zc.secret_key, api_url=zc.api_url,
        oauth_url=zc.oauth_url, timeout=zc.timeout), session)


def person_integrations(person: PersonConfig, config: OncallConfig, links: AckLinks | None,
                        session: Callable[[], aiohttp.ClientSession],
                        zalo: ZaloNotifier | None = None) -> list[Integration]:
    """The channels ioc can reach a person through, given the on-call channels configured.

    The channel configs are built with ``model_construct``: every value comes from the
    validated ``alerts.oncall`` section (durations already in seconds, which the duration
    validators would refuse as bare numbers).
    """
    receiver = receiver_of(person.id)
    out: list[Integration] = []
    if person.telegram and config.telegram is not None:
        tg = config.telegram
        out.append(Integration(f"{receiver}/telegram", receiver, "telegram", PersonTelegram(
            TelegramConfig.model_construct(bot_token=tg.bot_token, chat_id=person.telegram,
                           api_url=tg.api_url, min_interval=tg.min_interval,
                           timeout=tg.timeout), session)))
    # Without alerts.oncall.link_secret e-mail and Zalo still page people, without links.
    if person.email and config.email is not None:
        out.append(Integration(f"{receiver}/email", receiver, "email", PersonEmail(
            config.email.for_person(person.email), person.id, links)))
    if person.zalo and config.zalo is not None and zalo is not None:
        zc = config.zalo
        out.append(Integration(f"{receiver}/zalo", receiver, "zalo", PersonZalo(
            ZaloConfig.model_construct(user_ids=[person.zalo], access_token=zc.access_token,
                       refresh_token=zc.refresh_token, app_id=zc.app_id,
                       secret_key=zc.secret_key, api_url=zc.api_url, oauth_url=zc.oauth_url,
                       timeout=zc.timeout), session, person.id, links, zalo)))
    return out


def roster_integrations(roster: Roster, config: OncallConfig, links: AckLinks | None,
                        session: Callable[[], aiohttp.ClientSession],
                        zalo: ZaloNotifier | None = None) -> dict[str, list[Integration]]:
    """Person id -> their channels, for everyone on the roster."""
    return {pid: person_integrations(person, config, links, session, zalo)
            for pid, person in roster.people.items()}
