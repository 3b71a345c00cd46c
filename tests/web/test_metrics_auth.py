"""/metrics behind the `metrics:` credentials: bearer, basic auth, or open when unset."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest

from ioc.metrics_config import MetricsConfig
from service.app import IocApp
from service.config import ConfigError, parse_config
from tests.conftest import demo_config, free_port
from web.metrics_auth import MetricsGuard

TOKEN = "scrape-token-0123456789"
PASSWORD = "scrape-password-0123456789"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_guard_accepts_only_the_configured_credentials() -> None:
    guard = MetricsGuard(MetricsConfig.model_validate(
        {"bearer_token": TOKEN, "basic_auth": {"username": "prometheus", "password": PASSWORD}}))
    assert guard.allows(f"Bearer {TOKEN}")
    assert guard.allows(basic("prometheus", PASSWORD))
    for bad in (None, "", f"Bearer {TOKEN}x", basic("prometheus", TOKEN),
                basic("grafana", PASSWORD), "Basic !!!", f"Token {TOKEN}", "Bearer"):
        assert not guard.allows(bad), bad
    assert "Basic" in guard.challenge and "Bearer" in guard.challenge


def test_open_without_credentials() -> None:
    guard = MetricsGuard(MetricsConfig())
    assert guard.open and guard.allows(None)


def test_short_secrets_are_refused_with_their_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"metrics": {"bearer_token": "short",
                                  "basic_auth": {"username": "a:b", "password": "x"}}}, env={})
    text = str(info.value)
    assert "metrics.bearer_token" in text and "metrics.basic_auth.password" in text
    assert "metrics.basic_auth.username" in text


async def test_running_app_guards_metrics_and_masks_secrets(tmp_path: Path) -> None:
    config = demo_config(tmp_path, free_port(), codes=["STP"], extra={
        "metrics": {"bearer_token": TOKEN,
                    "basic_auth": {"username": "prometheus", "password": PASSWORD}}})
    assert TOKEN in config.secrets and PASSWORD in config.secrets
    app = IocApp(config)
    await app.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(app.url + "/metrics") as resp:
                assert resp.status == 401
                assert "Bearer" in resp.headers["WWW-Authenticate"]
                assert TOKEN not in await resp.text()
            async with session.get(app.url + "/metrics",
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
                assert "ioc_build_info" in await resp.text()
            async with session.get(app.url + "/metrics", headers={
                    "Authorization": basic("prometheus", PASSWORD)}) as resp:
                assert resp.status == 200
            async with session.get(app.url + "/healthz") as resp:
                assert resp.status == 200  # only /metrics is guarded
    finally:
        await app.stop(grace=1.0)
