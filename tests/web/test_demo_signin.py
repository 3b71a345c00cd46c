"""The demo config can be signed into: its operator token comes from IOC_DEMO_TOKEN, with a
public demo default, and `ioc run` says how to sign in (by token name, never the token)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml

from service.app import IocApp
from service.cli import console_hint
from service.config import load_config, parse_config
from tests.conftest import demo_raw, free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO_DEFAULT = "demo-operator-token-public"


def demo_auth() -> dict[str, object]:
    return dict(yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))["auth"])


def test_the_demo_token_is_the_environments_else_the_marked_default() -> None:
    mine = "f3b1c0de" * 4
    for env, expected in (({}, DEMO_DEFAULT), ({"IOC_DEMO_TOKEN": mine}, mine),
                          ({"IOC_DEMO_TOKEN": ""}, DEMO_DEFAULT)):
        config = load_config(ROOT / "config.yaml", env=env)
        (token,) = config.auth.tokens
        assert token.roles == ["operator"] and token.token.get_secret_value() == expected
    assert mine in load_config(ROOT / "config.yaml", env={"IOC_DEMO_TOKEN": mine}).secrets
    assert "DEMO ONLY" in (ROOT / "config.yaml").read_text(encoding="utf-8")


def test_the_hint_names_who_can_sign_in_or_says_why_nobody_can() -> None:
    config = load_config(ROOT / "config.yaml", env={})
    hint = console_hint(config, "http://127.0.0.1:8080/")
    assert hint.startswith("console: http://127.0.0.1:8080/console ")
    assert "demo-operator" in hint and DEMO_DEFAULT not in hint
    bare = parse_config({}, env={})
    assert "auth.tokens has none" in console_hint(bare, "http://127.0.0.1:8080")
    viewers = parse_config({"auth": {"tokens": [{"name": "screen", "token": "v" * 20,
                                                 "roles": ["viewer"]}]}}, env={})
    assert "auth.tokens has none" in console_hint(viewers, "http://h:1")


@pytest.mark.parametrize("env_token", [None, "a-token-of-my-own-0042"])
async def test_the_console_accepts_the_demo_operator(tmp_path: Path,
                                                     env_token: str | None) -> None:
    raw = demo_raw(tmp_path, free_port(), codes=["STP"], extra={"auth": demo_auth()})
    env = {} if env_token is None else {"IOC_DEMO_TOKEN": env_token}
    app = IocApp(parse_config(raw, env=env))
    await app.start()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            for token, status in ((env_token or DEMO_DEFAULT, 303),
                                  (DEMO_DEFAULT if env_token else "wrong-token-0000000", 401)):
                async with session.post(app.url + "/console/login", data={"token": token},
                                        allow_redirects=False) as resp:
                    assert resp.status == status
    finally:
        await app.stop(grace=1.0)
