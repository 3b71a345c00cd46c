"""Secrets stay secret: not printed by ``ioc check``, not in /metrics, API answers, error
pages or the log."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from service.app import IocApp
from tests.trust.conftest import METRICS_TOKEN, TOKENS, bearer

ROOT = Path(__file__).parent.parent.parent
CONFIG = """\
storage:
  url: ${IOC_DB_URL}
auth:
  tokens:
    - {name: desk, token: "${IOC_TOKEN}", roles: [admin]}
metrics:
  bearer_token: ${IOC_METRICS}
alerts:
  receivers:
    - name: duty
      telegram: [{bot_token: "${IOC_BOT}", chat_id: "1"}]
  route: {receiver: duty}
departments: [{code: STP, name: Sở}]
"""
# Each invalid, each with characters that repr() escapes (a quoted form must not slip out).
BAD_SECRETS = {
    "IOC_DB_URL": "mysql://ioc:Db\\Secret'Pw123@db/ioc",
    "IOC_TOKEN": "sh\\ort-Secret",
    "IOC_METRICS": "Sé\\cret\t1",
    "IOC_BOT": "not-a-bot-token\\Secret",
}


def ioc_check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, check=False)


def test_ioc_check_never_prints_invalid_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    done = ioc_check(path, BAD_SECRETS)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "storage.url" in output and "auth.tokens[0].token" in output  # the errors, named
    for name, value in BAD_SECRETS.items():
        for form in (value, repr(value)[1:-1], "Secret"):
            assert form not in output, f"{name} printed by ioc check:\n{output}"


def test_ioc_check_of_a_valid_config_prints_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    good = {"IOC_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}",
            "IOC_TOKEN": "desk-Secret-0123456789", "IOC_METRICS": "metrics-Secret-0123456789",
            "IOC_BOT": "123456:ABC-Secret-0123456789"}
    done = ioc_check(path, good)
    assert done.returncode == 0, done.stderr
    assert "Secret" not in done.stdout + done.stderr


async def test_tokens_never_in_metrics_status_errors_or_log(
        closed_app: IocApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [*TOKENS.values(), METRICS_TOKEN]
    metrics = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", "/metrics", metrics, None),
        ("GET", "/api/v1/status", bearer("viewer"), None),
        ("GET", "/", bearer("viewer"), None),
        ("GET", "/api/v1/audit", bearer("admin"), None),
        ("GET", "/-/reload", bearer("admin"), None),
        # refusals and errors
        ("GET", "/api/v1/status", {}, None),                                   # 401
        ("GET", "/api/v1/status", {"Authorization": f"Bearer {METRICS_TOKEN}"}, None),
        ("GET", "/api/v1/audit", bearer("viewer"), None),                       # 403
        ("POST", "/api/v1/events", bearer("viewer"), b"[]"),                    # 403
        ("POST", "/api/v1/events", bearer("ingest"), b"{not json"),             # 400
        ("GET", "/api/v1/series?metric=x&start=nope", bearer("viewer"), None),  # 400
        ("GET", "/no/such/page", bearer("admin"), None),                        # 404
        ("GET", "/metrics", {"Authorization": f"Bearer {TOKENS['admin']}"}, None),
        ("POST", "/api/v1/announcement", bearer("operator"), b"x" * 20_000),   # 413
        ("GET", f"/wall/x?token={TOKENS['viewer']}", {}, None),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, headers, body in requests:
            async with http.request(method, closed_app.url + path, headers=headers,
                                    data=body, allow_redirects=False) as resp:
                text = await resp.text(errors="replace")
                assert resp.status < 500, (method, path, resp.status)
                shown = text + "".join(f"{k}: {v}\n" for k, v in resp.headers.items()
                                       if k.lower() != "set-cookie")
                for secret in secrets:
                    assert secret not in shown, (method, path, resp.status)
        # after all those requests the metric families still hold no token
        async with http.get(closed_app.url + "/metrics", headers=metrics) as resp:
            assert resp.status == 200
            exposition = await resp.text()
    assert all(secret not in exposition for secret in secrets)
    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    assert all(secret not in logged for secret in secrets)
