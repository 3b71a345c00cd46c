"""The ``remote_write:`` section: Prometheus remote-write endpoints that receive every sample.

A list, like Prometheus' own ``remote_write:``, because a site may feed two systems at once (a
provincial VictoriaMetrics and the national one). Each endpoint has its own bounded queue, so a
slow or absent receiver never holds back another, nor polling, nor the store.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ioc.config_types import Duration, SecretStr, StrictModel

LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class RemoteWriteBasicAuth(StrictModel):
    username: str = Field(min_length=1, max_length=256, pattern=r"^[^:\s]+$",
                          description="user name (no colon)")
    password: SecretStr = Field(description="the password; write it as ${ENV_VAR}")


class RemoteWriteEndpoint(StrictModel):
    url: str = Field(description="http(s) address of the receiver, e.g. "
                                 "http://vm:8428/api/v1/write")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64,
                             description="the `remote` label of the metrics; default host:port")
    bearer_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer")
    basic_auth: RemoteWriteBasicAuth | None = None
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="added to every series sent (e.g. province)")
    batch_size: int = Field(2000, ge=1, le=100_000, description="samples per request at most")
    flush_interval: Duration = Field(1.0, description="a partial batch is sent after this")
    queue_limit: int = Field(100_000, ge=100, le=10_000_000,
                             description="samples held while the receiver is away")
    timeout: Duration = Field(30.0, description="of one request")
    min_backoff: Duration = Field(0.5, description="first retry delay; doubles per failure")
    max_backoff: Duration = Field(30.0, description="longest retry delay")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL such as "
                             "http://127.0.0.1:8428/api/v1/write")
        if parts.username or parts.password:
            raise ValueError("put credentials in basic_auth (from ${ENV_VAR}), not in the URL")
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(LABEL_NAME, name) or name.startswith("__"):
                raise ValueError(f"invalid label name {name!r} (letters, digits and _; "
                                 "not starting with __)")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> RemoteWriteEndpoint:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("give bearer_token or basic_auth, not both")
        if self.max_backoff < self.min_backoff:
            raise ValueError("max_backoff must not be shorter than min_backoff")
        return self

    @property
    def remote(self) -> str:
        """The endpoint's name in metrics and logs: never its path, query or credentials."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        return parts.netloc

    def secrets(self) -> list[str]:
        out = []
        if self.bearer_token is not None:
            out.append(self.bearer_token.get_secret_value())
        if self.basic_auth is not None:
            out.append(self.basic_auth.password.get_secret_value())
        return out
