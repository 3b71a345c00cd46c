"""The Prometheus rules in deploy/prometheus: `promtool check rules` and `promtool test rules`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_binary

RULES_DIR = Path(__file__).parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], cwd=RULES_DIR,
                          capture_output=True, text=True, timeout=60, check=False)


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "ioc-rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "ioc-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
