"""The event loop ioc runs on: uvloop by default, asyncio's loop on request or without uvloop.

A machine without uvloop is a real subprocess whose ``import uvloop`` fails (a
``sitecustomize`` that blocks the module), not a patched ioc.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import uvloop
import yaml

from ioc.event_loop import choose, loop_name, watch_lag
from service.config import ConfigError, parse_config
from tests.conftest import free_port

ROOT = Path(__file__).parent.parent
IOC = [sys.executable, "-m", "ioc"]


def without_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import uvloop`` raises ImportError."""
    site = tmp_path / "no-uvloop"
    site.mkdir()
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["uvloop"] = None\n')
    return {**os.environ, "PYTHONPATH": str(site)}


def write_config(tmp_path: Path, event_loop: str | None = None) -> Path:
    sim_port = free_port()
    config = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ioc.db'}"},
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}", "latency_scale": 0},
        "departments": [{"code": "STP", "name": "Sở Tư pháp"}],
        "collectors": [{"type": "http", "name": "stp-health", "department": "STP",
                        "url": f"http://127.0.0.1:{sim_port}/STP/health"}],
    }
    if event_loop is not None:
        config["service"] = {"event_loop": event_loop}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("value", ["auto", "uvloop", "asyncio"])
def test_event_loop_setting_accepts_the_three_values(value: str) -> None:
    config = parse_config({"service": {"event_loop": value}}, env={})
    assert config.service.event_loop == value


def test_event_loop_default_is_auto_and_a_typo_names_its_path() -> None:
    assert parse_config({}, env={}).service.event_loop == "auto"
    with pytest.raises(ConfigError) as info:
        parse_config({"service": {"event_loop": "uv"}}, env={})
    assert "service.event_loop" in str(info.value)


def test_choices_here() -> None:
    assert choose("auto").name == "uvloop" and choose("uvloop").name == "uvloop"
    assert choose("asyncio").name == "asyncio"
    loop = choose("auto").factory()
    try:
        assert isinstance(loop, uvloop.Loop) and loop_name(loop) == "uvloop"
    finally:
        loop.close()
    loop = choose("asyncio").factory()
    try:
        assert loop_name(loop) == "asyncio"
    finally:
        loop.close()


@pytest.mark.parametrize("command", ["check", "run"])
def test_uvloop_asked_for_but_missing_is_a_config_error(tmp_path: Path, command: str) -> None:
    path = write_config(tmp_path, "uvloop")
    result = subprocess.run([*IOC, command, "-c", str(path)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env=without_uvloop(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "1 error(s)" in result.stderr
    assert "  - service.event_loop: " in result.stderr
    assert "uvloop cannot be loaded here" in result.stderr and "Hint:" in result.stderr
    assert not (tmp_path / "ioc.db").exists()  # nothing started


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def run_until_ready(path: Path, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    """Start ``ioc run``, check /readyz and /metrics answer, stop it with SIGTERM; its log."""
    web_port = free_port()
    proc = subprocess.Popen([*IOC, "run", "-c", str(path), "--listen", f"127.0.0.1:{web_port}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the server listens
        assert f"running at http://127.0.0.1:{web_port}" in line, line
        base = f"http://127.0.0.1:{web_port}"
        deadline = time.monotonic() + 15
        while True:  # a child process over HTTP: there is no event to await
            status, body = _get(base + "/readyz")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200 and json.loads(body)["status"] == "ready", body
        status, body = _get(base + "/metrics")
        assert status == 200 and "ioc_build_info" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert "ioc stopped" in stderr, stderr
    return stderr


def started_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if 'msg="ioc started"' in line)


@pytest.mark.slow
def test_run_starts_on_uvloop_says_so_and_serves(tmp_path: Path) -> None:
    stderr = run_until_ready(write_config(tmp_path), tmp_path)
    assert "event_loop=uvloop" in started_line(stderr)
    assert "running on asyncio's event loop" not in stderr


@pytest.mark.slow
def test_run_without_uvloop_falls_back_and_says_why(tmp_path: Path) -> None:
    stderr = run_until_ready(write_config(tmp_path), tmp_path, env=without_uvloop(tmp_path))
    assert "event_loop=asyncio" in started_line(stderr)
    notes = [line for line in stderr.splitlines() if "running on asyncio's event loop" in line]
    assert len(notes) == 1 and "uvloop not available" in notes[0]


@pytest.mark.slow
def test_run_on_asyncio_when_asked(tmp_path: Path) -> None:
    stderr = run_until_ready(write_config(tmp_path, "asyncio"), tmp_path)
    assert "event_loop=asyncio" in started_line(stderr)
    assert "running on asyncio's event loop" not in stderr  # asked for: nothing to explain


@pytest.mark.both_loops
async def test_stop_signals_arrive_on_both_loops() -> None:
    """cli._StopSignals needs loop.add_signal_handler, which uvloop has too."""
    from service.cli import _StopSignals

    with _StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop, not the default action
        assert await signals.wait() == "SIGTERM"


async def test_a_stall_of_the_loop_is_observed_as_lag() -> None:
    """Holding the loop (as a callback that works too long would) shows up as lag, and a
    loop that is free shows next to none (each wake-up observed; the task stops on
    cancel)."""
    seen: list[float] = []
    loop = asyncio.get_running_loop()
    enough = asyncio.Event()

    def observe(lag: float) -> None:
        seen.append(lag)
        if len(seen) == 2:  # a callback that holds the loop past the next wake-up
            loop.call_soon(time.sleep, 0.2)
        if len(seen) == 4:
            enough.set()

    task = asyncio.create_task(watch_lag(observe, tick=0.01))
    await enough.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert seen[2] >= 0.15, seen  # the stall, less at most the tick it overlapped
    assert min(seen) < seen[2]
