"""E-mail through an SMTP relay (aiosmtplib): Vietnamese subject and body, HTML and text.

``tls: starttls`` (port 587) upgrades a plain connection, ``tls: tls`` (port 465) speaks TLS
from the first byte, ``tls: none`` is for a relay on the same host or LAN only.
"""

from __future__ import annotations

import unicodedata
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

import aiosmtplib
from pydantic import Field, SecretStr

from alerts.messages import Notification, headline, render_html, render_text
from alerts.notifiers.base import ChannelConfig, NotifierError
from ioc.config_types import ListenAddress, split_listen


class EmailConfig(ChannelConfig):
    to: list[str] = Field(min_length=1, description="recipient addresses")
    sender: str = Field(description="From: address, e.g. ioc@haugiang.gov.vn")
    smarthost: ListenAddress = Field(description="SMTP relay HOST:PORT")
    tls: Literal["starttls", "tls", "none"] = Field("starttls",
                                                    description="how to secure the connection")
    username: str | None = Field(None, description="SMTP login, if the relay wants one")
    password: SecretStr | None = Field(None, description="SMTP password; write ${ENV_VAR}")
    verify_tls: bool = Field(True, description="check the relay's certificate")


def one_line(text: str) -> str:
    """A header value: control characters (line breaks among them) become single spaces.

    The headline carries department names and annotations, which are untrusted; a line
    break in a header would make the message refuse to build (or, elsewhere, inject headers).
    """
    return " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Cf") else c
                            for c in text).split())


def build_message(n: Notification, sender: str, to: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = one_line(headline(n))
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(n.created_at, localtime=False)
    message["Message-ID"] = make_msgid(idstring=n.dedup_key, domain="ioc")
    message["X-Ioc-Dedup-Key"] = n.dedup_key
    message.set_content(render_text(n), charset="utf-8")
    message.add_alternative(render_html(n), subtype="html", charset="utf-8")
    return message


class EmailNotifier:
    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self.send_resolved = config.send_resolved

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail to send (the on-call notifier adds its ack links)."""
        return build_message(notification, self.config.sender, self.config.to)

    async def send(self, notification: Notification) -> None:
        await self.deliver(self.message(notification))

    async def deliver(self, message: EmailMessage) -> None:
        """Hand one built message to the relay (scheduled reports build their own)."""
        cfg = self.config
        host, port = split_listen(cfg.smarthost)
        try:
            await aiosmtplib.send(
                message, hostname=host, port=port,
                username=cfg.username,
                password=cfg.password.get_secret_value() if cfg.password else None,
                use_tls=cfg.tls == "tls", start_tls=cfg.tls == "starttls",
                validate_certs=cfg.verify_tls, timeout=cfg.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise NotifierError(f"email via {cfg.smarthost}: {type(exc).__name__}: {exc}") \
                from exc
