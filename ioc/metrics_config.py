"""The ``metrics:`` section: optional protection of ``/metrics``.

Many sites scrape ioc across a network they do not fully trust; the target names, departments
and versions on ``/metrics`` are not for everyone. Prometheus can send either a bearer token
(``authorization: {credentials: …}``) or basic auth (``basic_auth:``), so ioc accepts either,
or both. Without either key ``/metrics`` stays open, which suits a scrape on localhost.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ioc.config_types import SecretStr, StrictModel

MIN_SECRET = 16


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_SECRET:
        raise ValueError(f"must be at least {MIN_SECRET} characters (generate one with "
                         "`openssl rand -hex 24`)")
    return value


class MetricsBasicAuth(StrictModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^:\s]+$",
                          description="user name Prometheus sends (no colon)")
    password: SecretStr = Field(description="the password; write it as ${ENV_VAR}")

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: SecretStr) -> SecretStr:
        return _long_enough(value)


class MetricsConfig(StrictModel):
    bearer_token: SecretStr | None = Field(
        None, description="token a scraper may send as Authorization: Bearer")
    basic_auth: MetricsBasicAuth | None = Field(
        None, description="user and password a scraper may send with basic auth")

    @field_validator("bearer_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else _long_enough(value)

    def secrets(self) -> list[str]:
        """The secret values, so logs can mask them."""
        out = []
        if self.bearer_token is not None:
            out.append(self.bearer_token.get_secret_value())
        if self.basic_auth is not None:
            out.append(self.basic_auth.password.get_secret_value())
        return out
