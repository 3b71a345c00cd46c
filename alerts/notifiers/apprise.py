"""Any channel Apprise knows (Slack, Teams, Discord, ntfy, SMS gateways, …) by URL.

Apprise URLs often carry credentials (``slack://T000/B000/XXXX``), so they are secrets: write
them as ``${ENV_VAR}``; they never appear in logs or errors.
"""

from __future__ import annotations

import logging
from typing import Any

import apprise
from pydantic import Field, SecretStr, field_validator

from alerts.messages import Notification, headline, render_text
from alerts.notifiers.base import ChannelConfig, NotifierError


class AppriseConfig(ChannelConfig):
    urls: list[SecretStr] = Field(min_length=1, description="Apprise URLs; write ${ENV_VAR}")

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, url in enumerate(value):
            if not _understood(url.get_secret_value()):
                # The URL itself is not repeated: it usually holds a credential.
                raise ValueError(f"urls[{index}] is not a URL Apprise understands "
                                 "(see https://github.com/caronc/apprise/wiki)")
        return value


def _understood(url: str) -> bool:
    """Whether Apprise knows the URL; its own error line would print the URL, so it is muted."""
    quiet = logging.getLogger("apprise")
    was = quiet.disabled
    quiet.disabled = True
    try:
        return bool(apprise.Apprise().add(url))
    finally:
        quiet.disabled = was


def build_message(n: Notification) -> dict[str, Any]:
    notify_type = apprise.NotifyType.SUCCESS if n.status == "resolved" else (
        apprise.NotifyType.FAILURE if any(a.labels.get("severity") == "critical"
                                          for a in n.firing) else apprise.NotifyType.WARNING)
    return {"title": headline(n), "body": render_text(n).split("\n", 1)[1],
            "notify_type": notify_type}


class AppriseNotifier:
    def __init__(self, config: AppriseConfig) -> None:
        self.config = config
        self.send_resolved = config.send_resolved

    def message(self, notification: Notification) -> dict[str, Any]:
        """Title, body and type (a scheduled report sends its own)."""
        return build_message(notification)

    async def send(self, notification: Notification) -> None:
        sender = apprise.Apprise()
        for url in self.config.urls:
            if not sender.add(url.get_secret_value()):
                raise NotifierError("apprise: a configured URL is not understood by Apprise")
        ok = await sender.async_notify(**self.message(notification))
        if not ok:
            raise NotifierError("apprise: at least one service did not accept the message")
