"""Fixtures shared across the suite: a running ioc polling the bundled simulator."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from collectors.simulator import units
from ioc.pipeline import PollOutcome
from service.app import IocApp
from service.config import Config, parse_config
from tests.helpers import Changes, Inbox

SIM_TOKEN = "test-sim-token"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _uvloop_factory() -> LoopFactory:
    import uvloop

    return uvloop.new_event_loop


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
                     help="event loop of every async test (@pytest.mark.both_loops: both)")


def pytest_asyncio_loop_factories(config: pytest.Config,
                                  item: pytest.Item) -> dict[str, LoopFactory]:
    """The loops an async test runs on (pytest-asyncio's hook; the test id names the loop).

    ``ioc run`` runs on uvloop where it is installed; a module marked ``both_loops`` runs each
    test on asyncio's loop and on uvloop, ``--event-loop uvloop`` runs every test on uvloop.
    """
    if item.get_closest_marker("both_loops") is not None:
        return {"asyncio": asyncio.new_event_loop, "uvloop": _uvloop_factory()}
    if config.getoption("--event-loop") == "uvloop":
        return {"uvloop": _uvloop_factory()}
    return {"asyncio": asyncio.new_event_loop}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, package: str = "prometheus") -> str:
    """Path of a Debian-packaged peer; skip without it, but never under CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI (.ci/run installs it)")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return path


def demo_config(tmp_path: Path, sim_port: int, *, codes: list[str] | None = None,
                interval: str = "200ms", extra: dict[str, Any] | None = None) -> Config:
    return parse_config(demo_raw(tmp_path, sim_port, codes=codes, interval=interval,
                                 extra=extra), env={})


def demo_raw(tmp_path: Path, sim_port: int, *, codes: list[str] | None = None,
             interval: str = "200ms", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo config as config.yaml would hold it: the simulator's units, polled fast."""
    chosen = [u for u in units() if codes is None or u.code in codes]
    raw: dict[str, Any] = {
        "service": {"listen": "127.0.0.1:0"},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}",
                    "flush_interval": "100ms"},
        "collection": {"interval": interval, "timeout": "150ms"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}",
                      "token": SIM_TOKEN, "latency_scale": 0},
        "departments": [{"code": u.code, "name": u.name, "kind": u.kind} for u in chosen],
        "collectors": [{"type": "http", "name": f"{u.code.lower()}-health",
                        "department": u.code,
                        "url": f"http://127.0.0.1:{sim_port}/{u.code}/health"}
                       for u in chosen],
    }
    raw.update(extra or {})
    return raw


def write_yaml(path: Path, raw: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")


class PollWatcher:
    """A pipeline hook that lets a test await polls instead of sleeping."""

    def __init__(self) -> None:
        self.outcomes: list[PollOutcome] = []
        self._changed = Changes()

    def __call__(self, outcome: PollOutcome) -> None:
        self.outcomes.append(outcome)
        self._changed.set()

    async def until(self, predicate: Any, limit: float = 10.0) -> None:
        await self._changed.until(lambda: predicate(self.outcomes), limit)


@contextlib.asynccontextmanager
async def polled_app(config: Config) -> AsyncIterator[tuple[IocApp, PollWatcher]]:
    """A started app, handed over once every target has been polled; stopped afterwards."""
    app = IocApp(config)
    watcher = PollWatcher()
    app.pipeline.add_hook(watcher)
    await app.start()
    try:
        targets = set(app.runners)
        await watcher.until(lambda seen: targets <= {o.target for o in seen})
        yield app, watcher
    finally:
        await app.stop(grace=1.0)


@pytest.fixture
async def running_app(tmp_path: Path) -> AsyncIterator[tuple[IocApp, PollWatcher]]:
    config = demo_config(tmp_path, free_port(), codes=["STTTT", "STP", "CAT", "VITHANH"])
    async with polled_app(config) as started:
        yield started


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on a free port, keeping what it is sent."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
