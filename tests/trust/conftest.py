"""A running ioc with one token per role and nothing open to anonymous requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.app import IocApp
from tests.conftest import PollWatcher, demo_config, free_port

TOKENS = {
    "viewer": "viewer-token-0123456789",
    "operator": "operator-token-0123456789",
    "ingest": "ingest-token-0123456789",
    "admin": "admin-token-0123456789",
}
METRICS_TOKEN = "metrics-token-0123456789"


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def closed_config(tmp_path: Path, **auth: Any) -> Any:
    return demo_config(tmp_path, free_port(), codes=["STP"], extra={
        "auth": {"anonymous": [], **auth,
                 "tokens": [{"name": f"{role}-desk", "token": token, "roles": [role]}
                            for role, token in TOKENS.items()]},
        "metrics": {"bearer_token": METRICS_TOKEN},
    })


@pytest.fixture
async def closed_app(tmp_path: Path) -> AsyncIterator[IocApp]:
    app = IocApp(closed_config(tmp_path))
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1)
        yield app
    finally:
        await app.stop(grace=1.0)
