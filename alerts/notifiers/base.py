"""What notifiers share: their failure types and the config keys every channel has."""

from __future__ import annotations

from pydantic import Field

from ioc.config_types import Duration, StrictModel


class NotifierError(Exception):
    """A send failed; the outbox retries it with backoff until the notification's max age."""


class RetryLater(NotifierError):
    """The channel asked us to wait (HTTP 429 with retry_after); honoured by the outbox."""

    def __init__(self, message: str, after: float) -> None:
        super().__init__(message)
        self.after = after


class ChannelConfig(StrictModel):
    send_resolved: bool = Field(True, description="also send 'resolved' notifications")
    timeout: Duration = Field(10.0, description="how long one send may take")


def check_http_status(status: int, body: str, what: str) -> None:
    """Raise for a response that is not a success; 429 becomes RetryLater."""
    if status == 429:
        raise RetryLater(f"{what}: HTTP 429 Too Many Requests", 30.0)
    if not 200 <= status < 300:
        raise NotifierError(f"{what}: HTTP {status}: {body[:200]}")
