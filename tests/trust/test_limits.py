"""Configured request caps on a running ioc: per-endpoint body limits and the API request cap.

Each refusal must reach the client as a clear status, be counted in
``ioc_http_requests_rejected_total{reason}``, and a flood of refusals must write one log line
when it starts and one when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.app import IocApp
from tests.conftest import PollWatcher, demo_config, free_port
from tests.trust.conftest import TOKENS, bearer

CAP = 1024  # the smallest body limit the config accepts


def limited_config(tmp_path: Path, **service: Any) -> Any:
    return demo_config(tmp_path, free_port(), codes=["STP"], extra={
        "service": {"listen": "127.0.0.1:0", **service},
        "auth": {"anonymous": [],
                 "tokens": [{"name": f"{role}-desk", "token": token, "roles": [role]}
                            for role, token in TOKENS.items()]},
    })


@asynccontextmanager
async def started(config: Any) -> AsyncIterator[IocApp]:
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        await watcher.until(lambda seen: len(seen) >= 1, limit=30)
        yield app
    finally:
        await app.stop(grace=1.0)


@pytest.fixture
async def small_bodies(tmp_path: Path) -> AsyncIterator[IocApp]:
    limits = {"events": CAP, "alerts": CAP, "announcement": CAP, "console": CAP}
    async with started(limited_config(tmp_path, body_limits=limits)) as app:
        yield app


def rejected(app: IocApp, reason: str) -> float:
    return app.registry.get_sample_value("ioc_http_requests_rejected_total",
                                         {"reason": reason}) or 0.0


def padded_json(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    head, tail = b'{"comment": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


OVER_CAP = [
    ("/api/v1/events", "ingest", "application/json"),
    ("/api/v1/alerts/0123456789abcdef/ack", "operator", "application/json"),
    ("/api/v1/silences", "operator", "application/json"),
    ("/api/v1/maintenance", "operator", "application/json"),
    ("/api/v1/announcement", "operator", "application/json"),
    ("/console/login", None, "application/x-www-form-urlencoded"),
]


async def test_configured_body_limits_refuse_larger_bodies_and_count_them(
        small_bodies: IocApp) -> None:
    app = small_bodies
    async with aiohttp.ClientSession() as session:
        for path, role, content_type in OVER_CAP:
            headers = {"Content-Type": content_type, **(bearer(role) if role else {})}
            body = (b"token=" + b"x" * CAP) if role is None else padded_json(CAP + 1)
            async with session.post(app.url + path, data=body, headers=headers) as resp:
                answer = await resp.json()
                assert resp.status == 413, (path, resp.status, answer)
                assert answer == {"error": "body too large",
                                  "detail": answer["detail"]}, path
                assert f"at most {CAP} bytes" in answer["detail"], path
    assert rejected(app, "too_large") == len(OVER_CAP)


async def test_a_streamed_body_is_refused_once_it_passes_the_cap(small_bodies: IocApp) -> None:
    """No Content-Length: the cap is enforced while reading, not by trusting a header."""
    app = small_bodies
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 64 KiB offered in all, far over the 1 KiB cap
            sent.append(1024)
            yield b" " * 1024

    async with aiohttp.ClientSession() as session:
        async with session.post(app.url + "/api/v1/announcement", data=chunks(),
                                headers={**bearer("operator"),
                                         "Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "body too large"
    assert rejected(app, "too_large") == 1


async def test_a_body_within_the_configured_limit_is_read(small_bodies: IocApp) -> None:
    app = small_bodies
    text = "Bảo trì hệ thống một cửa điện tử " * 15  # under 500 characters, over 700 bytes
    body = ('{"text": "' + text.strip() + '"}').encode()
    assert 700 < len(body) <= CAP
    async with aiohttp.ClientSession() as session:
        async with session.post(app.url + "/api/v1/announcement", data=body,
                                headers={**bearer("operator"),
                                         "Content-Type": "application/json"}) as resp:
            assert resp.status == 200, await resp.text()
    assert rejected(app, "too_large") == 0


def overflow_lines(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(what)]


async def test_api_request_cap_refuses_counts_and_logs_one_episode(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ioc.web")
    async with started(limited_config(tmp_path, max_concurrent_requests=2)) as app:
        release = asyncio.Event()

        async def held_body() -> AsyncIterator[bytes]:
            yield b"["
            await release.wait()  # the push stays in flight, holding its slot, until then
            yield b"]"

        async with aiohttp.ClientSession() as session:
            url = app.url + "/api/v1/events"
            holders = [asyncio.create_task(session.post(
                url, data=held_body(), headers={**bearer("ingest"),
                                                "Content-Type": "application/json"}))
                for _ in range(2)]
            async with asyncio.timeout(30):
                while True:  # read the status until the two pushes hold both slots
                    async with session.get(app.url + "/api/v1/status",
                                           headers=bearer("viewer")) as resp:
                        if resp.status == 503:
                            break
                        assert resp.status == 200
            assert app.registry.get_sample_value("ioc_http_requests_in_flight") == 2
            for _ in range(19):
                async with session.get(app.url + "/api/v1/status",
                                       headers=bearer("viewer")) as resp:
                    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
            assert overflow_lines(caplog, "API request cap") == [
                "API request cap reached: refusing (counted in metrics)"]
            release.set()
            for task in holders:
                async with await task as resp:
                    assert resp.status == 400  # "[]" is not a batch: answered, not refused
            async with session.get(app.url + "/api/v1/status",
                                   headers=bearer("viewer")) as resp:
                assert resp.status == 200
        assert rejected(app, "busy") == 20
        assert overflow_lines(caplog, "API request cap") == [
            "API request cap reached: refusing (counted in metrics)",
            "API request cap no longer refusing"]
        (ended,) = [r for r in caplog.records
                    if r.getMessage() == "API request cap no longer refusing"]
        assert ended.fields["dropped"] == 20  # type: ignore[attr-defined]
