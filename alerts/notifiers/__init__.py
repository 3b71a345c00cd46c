"""Receivers: one small module per channel behind one interface.

A notifier is ``async send(notification) -> None`` and raises on failure; retry, backoff and
bookkeeping live once, in the outbox. Each module also has a pure builder (the request body or
message) tested on its own. A receiver (``alerts.receivers[]``) groups the channels one route
notifies, e.g. the on-call team's e-mail and Telegram chat; each channel is an *integration*
with its own outbox rows, retries and counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from pydantic import Field

from alerts.messages import Notification
from alerts.notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from alerts.notifiers.apprise import AppriseConfig, AppriseNotifier
from alerts.notifiers.base import NotifierError, RetryLater
from alerts.notifiers.email import EmailConfig, EmailNotifier
from alerts.notifiers.telegram import TelegramConfig, TelegramNotifier
from alerts.notifiers.webhook import WebhookConfig, WebhookNotifier
from alerts.notifiers.zalo import ZaloConfig, ZaloNotifier
from ioc.config_types import Name, StrictModel

__all__ = ["Integration", "Notifier", "NotifierError", "ReceiverConfig", "RetryLater",
           "build_integrations"]


class Notifier(Protocol):
    send_resolved: bool

    async def send(self, notification: Notification) -> None: ...


class ReceiverConfig(StrictModel):
    """A receiver without channels is allowed: it is how a route drops what it matches."""

    name: Name = Field(description="referred to by routes")
    webhook: list[WebhookConfig] = Field(default_factory=list)
    alertmanager: list[AlertmanagerConfig] = Field(default_factory=list)
    email: list[EmailConfig] = Field(default_factory=list)
    telegram: list[TelegramConfig] = Field(default_factory=list)
    zalo: list[ZaloConfig] = Field(default_factory=list)
    apprise: list[AppriseConfig] = Field(default_factory=list)

    def channels(self) -> list[tuple[str, Any]]:
        return [(kind, cfg) for kind in KINDS for cfg in getattr(self, kind)]


SessionFactory = Callable[[], aiohttp.ClientSession]

KINDS: dict[str, Callable[[Any, SessionFactory], Notifier]] = {
    "webhook": lambda cfg, session: WebhookNotifier(cfg, session),
    "alertmanager": lambda cfg, session: AlertmanagerNotifier(cfg, session),
    "email": lambda cfg, session: EmailNotifier(cfg),
    "telegram": lambda cfg, session: TelegramNotifier(cfg, session),
    "zalo": lambda cfg, session: ZaloNotifier(cfg, session),
    "apprise": lambda cfg, session: AppriseNotifier(cfg),
}


@dataclass(frozen=True, slots=True)
class Integration:
    """One channel of one receiver: ``oncall/email[0]``."""

    id: str
    receiver: str
    kind: str
    notifier: Notifier
    resend_interval: float | None = None


def build_integrations(receivers: list[ReceiverConfig],
                       session: SessionFactory) -> dict[str, list[Integration]]:
    """Receiver name -> its integrations, each with a ready notifier."""
    out: dict[str, list[Integration]] = {}
    for receiver in receivers:
        items = []
        counts: dict[str, int] = {}
        for kind, cfg in receiver.channels():
            index = counts.get(kind, 0)
            counts[kind] = index + 1
            resend = getattr(cfg, "resend_interval", None)
            items.append(Integration(f"{receiver.name}/{kind}[{index}]", receiver.name, kind,
                                     KINDS[kind](cfg, session), resend))
        out[receiver.name] = items
    return out


class HttpSession:
    """The HTTP client of the notifiers, opened and closed with the dispatcher.

    Separate from the probes' session on purpose: probes open a fresh connection per check,
    notifications may reuse one, and a probe storm must not use up notification sockets.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60),
                headers={"User-Agent": "ioc-alerts"})
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
