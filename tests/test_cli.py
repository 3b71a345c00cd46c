"""The ioc command as a user runs it: check, version, and a graceful stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).parent.parent
IOC = [sys.executable, "-m", "ioc"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IOC, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("ioc ")


def test_check_demo_config_prints_summary() -> None:
    result = run("check", "-c", "config.yaml")
    assert result.returncode == 0, result.stderr
    assert "collectors:" in result.stdout and "departments:" in result.stdout
    assert "alert rules:" in result.stdout


def test_check_lists_all_three_mistakes_and_exits_2() -> None:
    result = run("check", "-c", "tests/data/config/three_mistakes.bad.yaml")
    assert result.returncode == 2
    assert "3 error(s)" in result.stderr
    for where in ("collection.interval", "collectors[0].intreval (a)",
                  "collectors[1].department (b)"):
        assert f"  - {where}: " in result.stderr


def test_check_names_each_pattern_re2_refuses() -> None:
    result = run("check", "-c", "tests/data/config/bad_regex.bad.yaml")
    assert result.returncode == 2 and "4 error(s)" in result.stderr
    for path in ("collectors[0].body_regex (a)", "collectors[1].expect (b)",
                 "events.syslog.patterns[0].match", "alerts.inhibit_rules[0].source_matchers"):
        assert f"  - {path}: invalid regular expression" in result.stderr


def test_run_refuses_bad_config_without_starting() -> None:
    result = run("run", "-c", "tests/data/config/three_mistakes.bad.yaml")
    assert result.returncode == 2
    assert "3 error(s)" in result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run("check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.read().decode()


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


@pytest.mark.slow
def test_sigterm_stops_gracefully_and_keeps_every_sample(tmp_path: Path) -> None:
    db = tmp_path / "ioc.db"
    sim_port, web_port = free_port(), free_port()
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["storage"] = {"url": f"sqlite+aiosqlite:///{db}", "flush_interval": "2s"}
    config["simulator"] = {"enabled": True, "listen": f"127.0.0.1:{sim_port}",
                           "latency_scale": 0.2, "token": "${IOC_SIM_TOKEN:-}"}
    config["collection"]["interval"] = "1s"
    for block in config["collectors"]:  # their URLs follow ${simulator.listen}
        assert "${simulator.listen}" in block["url"]
        block.pop("interval", None)
        block.pop("timeout", None)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    proc = subprocess.Popen([*IOC, "run", "-c", str(path), "--listen",
                             f"127.0.0.1:{web_port}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{web_port}"
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the server listens
        assert f"running at {base}" in line, line
        deadline = time.monotonic() + 15
        polls = 0.0
        while time.monotonic() < deadline:
            polls = _metric_sum(_get(base + "/metrics"), "ioc_collector_duration_seconds_count")
            if polls >= 2 * len(config["collectors"]):
                break
            time.sleep(0.2)  # polling a child process over HTTP: there is no event to await
        assert polls >= len(config["collectors"])
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        rc = proc.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert rc == 0, stderr
    assert took < 10
    assert "shutting down" in stderr and "ioc stopped" in stderr
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM ioc_samples JOIN ioc_series ON ioc_series.id = series_id "
            "WHERE metric = 'ioc_target_up'").fetchone()[0]
    # Every poll finished before the scrape (and the ones after it) is on disk.
    assert stored >= polls


@pytest.mark.slow
def test_simulate_serves_the_province_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen([*IOC, "simulate", "--listen", f"127.0.0.1:{port}",
                             "--latency-scale", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ,
                                                                    "IOC_SIM_TOKEN": ""})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"simulator running at http://127.0.0.1:{port}" in line, line
        assert "fault injection disabled" in line
        page = _get(f"http://127.0.0.1:{port}/STP/")
        assert "<title>Sở Tư pháp — Tỉnh Hậu Giang</title>" in page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_during_start_up_is_not_a_kill(tmp_path: Path) -> None:
    """A stop asked for while ioc is still starting ends it cleanly, not by the default action.

    The store here is a PostgreSQL address that accepts connections and never answers, so the
    process is provably inside start-up (its connection has arrived) when the signal is sent.
    """
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
        config["storage"] = {"url": f"postgresql+asyncpg://ioc@127.0.0.1:{port}/ioc"}
        config["simulator"] = {"enabled": False, "listen": "127.0.0.1:9"}  # URLs refer to it
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        proc = subprocess.Popen([*IOC, "run", "-c", str(path), "--listen",
                                 f"127.0.0.1:{free_port()}"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            silent.settimeout(30)
            conn, _ = silent.accept()  # the store is opening: start-up is under way
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            conn.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert rc != -signal.SIGTERM, "killed by SIGTERM's default action during start-up"
    assert rc == 1, stderr
    assert "cannot start" in stderr, stderr
