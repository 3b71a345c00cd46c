"""E-mail to a real SMTP server (aiosmtpd): plain relay and STARTTLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller

from alerts.notifiers import NotifierError
from alerts.notifiers.email import EmailConfig, EmailNotifier, build_message
from tests.alerts.delivery_helpers import sample_notification
from tests.conftest import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


def server_tls() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def smtp(request: pytest.FixtureRequest) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    extra: dict[str, Any] = {}
    if getattr(request, "param", "none") == "starttls":
        extra = {"tls_context": server_tls(), "require_starttls": True}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **extra)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_message_has_vietnamese_subject_and_text_and_html_parts() -> None:
    message = build_message(sample_notification(), "ioc@haugiang.gov.vn",
                            ["truc@haugiang.gov.vn"])
    assert message["Subject"].startswith("[NGHIÊM TRỌNG] Sở Tư pháp")
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert message["X-Ioc-Dedup-Key"] == "n-1"


@pytest.mark.parametrize("smtp", ["none", "starttls"], indirect=True)
async def test_real_smtp_server_receives_the_mail(smtp: tuple[Inbox, int],
                                                  request: pytest.FixtureRequest) -> None:
    inbox, port = smtp
    mode = request.node.callspec.params["smtp"]
    config = EmailConfig(to=["truc@haugiang.gov.vn", "lanhdao@haugiang.gov.vn"],
                         sender="ioc@haugiang.gov.vn", smarthost=f"127.0.0.1:{port}",
                         tls=mode, verify_tls=False)
    if mode == "starttls":  # the server insists on TLS: a plain session must not get through
        with pytest.raises(NotifierError):
            await EmailNotifier(config.model_copy(update={"tls": "none"})).send(
                sample_notification())
    await EmailNotifier(config).send(sample_notification("resolved"))
    (sender, rcpts, message), = inbox.messages
    assert sender == "ioc@haugiang.gov.vn"
    assert rcpts == ["truc@haugiang.gov.vn", "lanhdao@haugiang.gov.vn"]
    assert message["Subject"].startswith("[ĐÃ KHẮC PHỤC]")
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and "Đã khắc phục (2)" in text.get_content()
    assert html is not None and "<h2>" in html.get_content()


async def test_unreachable_relay_raises() -> None:
    notifier = EmailNotifier(EmailConfig(to=["a@b.vn"], sender="ioc@b.vn",
                                         smarthost=f"127.0.0.1:{free_port()}", tls="none",
                                         timeout="2s"))
    with pytest.raises(NotifierError, match="email via"):
        await notifier.send(sample_notification())
