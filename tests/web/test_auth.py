"""Tokens and roles: 401 without or with a wrong token, 403 with a token lacking the role."""

from __future__ import annotations

import pytest

from service.config import ConfigError, parse_config
from web.auth import Authenticator, expand_roles
from web.errors import ApiError

OPERATOR = "operator-token-0123456789"
INGEST = "ingest-token-0123456789ab"


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator([("duty-officer", OPERATOR, ["operator"]),
                          ("siem", INGEST, ["ingest"])], anonymous_roles=["viewer"])


def test_roles_imply() -> None:
    assert expand_roles(["admin"]) == {"viewer", "operator", "ingest", "admin"}
    assert expand_roles(["operator"]) == {"operator", "viewer"}
    assert expand_roles(["ingest"]) == {"ingest"}


def test_anonymous_and_known_tokens(auth: Authenticator) -> None:
    assert auth.identify(None).name == "anonymous"
    assert auth.identify(None).has("viewer") and not auth.identify(None).has("ingest")
    principal = auth.identify(f"Bearer {OPERATOR}")
    assert principal.name == "duty-officer" and principal.has("viewer")


@pytest.mark.parametrize("header", ["Bearer nope", "Basic abc", "Bearer ", "token"])
def test_bad_tokens_are_401(auth: Authenticator, header: str) -> None:
    with pytest.raises(ApiError) as info:
        auth.identify(header)
    assert info.value.status == 401


def test_config_tokens_come_from_env_and_are_masked() -> None:
    config = parse_config({"auth": {"tokens": [
        {"name": "siem", "token": "${IOC_TOKEN_SIEM}", "roles": ["ingest"]}]}},
        env={"IOC_TOKEN_SIEM": INGEST})
    assert config.auth.tokens[0].token.get_secret_value() == INGEST
    assert INGEST in config.secrets
    assert INGEST not in repr(config)


def test_short_tokens_and_unknown_roles_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"tokens": [{"name": "x", "token": "short", "roles": ["root"]}]}},
                     env={})
    paths = {i.path for i in info.value.issues}
    assert paths == {"auth.tokens[0].token", "auth.tokens[0].roles[0]"}
