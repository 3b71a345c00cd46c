"""`ioc rules test` and `ioc check` on rules, run as a user runs them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.cli import main

ROOT = Path(__file__).parent.parent.parent


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def ioc(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the ioc command in-process (the subprocess path is covered by tests/test_cli.py)."""
    def run(*args: str) -> Result:
        here = os.getcwd()
        os.chdir(ROOT)
        try:
            code = main(list(args))
        finally:
            os.chdir(here)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)
    return run


RULES = """\
rules:
  - name: Down
    metric: ioc_target_up
    op: "=="
    threshold: 0
    for: 2m
    annotations: {summary: "{{ labels.target }} down"}
"""

TESTS = """\
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - name: down for two minutes
    interval: 1m
    input_series:
      - series: 'ioc_target_up{target="a"}'
        values: "1 0x4"
    alert_rule_test:
      - eval_time: 2m
        alertname: Down
        exp_alerts: []
      - eval_time: 3m
        alertname: Down
        exp_alerts:
          - exp_labels: {target: a, severity: WRONG}
            exp_annotations: {summary: "a down"}
"""


def test_default_rules_pass_their_tests(ioc) -> None:  # type: ignore[no-untyped-def]
    result = ioc("rules", "test", "alerts/default_rules.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11/11 tests passed" in result.stdout


def test_failing_expectation_exits_1_and_says_what_fired(ioc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "t.yaml").write_text(TESTS, encoding="utf-8")
    result = ioc("rules", "test", str(tmp_path / "t.yaml"))
    assert result.returncode == 1
    assert "0/1 tests passed" in result.stdout
    assert "FAILED down for two minutes" in result.stdout
    assert 'expected, not firing: {alertname="Down", severity="WRONG", target="a"}' \
        in result.stdout
    assert 'firing, not expected: {alertname="Down", severity="warning", target="a"}' \
        in result.stdout
    (tmp_path / "t.yaml").write_text(TESTS.replace("WRONG", "warning"), encoding="utf-8")
    result = ioc("rules", "test", str(tmp_path / "t.yaml"))
    assert result.returncode == 0, result.stdout
    assert "1/1 tests passed" in result.stdout


def test_bad_test_file_exits_2(ioc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "t.yaml").write_text(TESTS.replace('"1 0x4"', '"1 zero"'), encoding="utf-8")
    result = ioc("rules", "test", str(tmp_path / "t.yaml"))
    assert result.returncode == 2
    assert "tests[0].input_series[0].values" in result.stdout
    assert "cannot read 'zero'" in result.stdout


def test_check_counts_rules_and_reports_bad_rule_files(ioc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("alerts:\n  rule_files: ['*.yaml']\n", encoding="utf-8")
    result = ioc("check", "-c", str(config))
    assert result.returncode == 2  # config.yaml itself matches *.yaml and is no rule file
    assert "config.yaml: a rule file is a mapping with one key" in result.stderr
    config.write_text("alerts:\n  rule_files: ['rules.yaml']\n", encoding="utf-8")
    result = ioc("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "alert rules: 12 (0 in config, 1 from rule files, 11 default)" in result.stdout
    (tmp_path / "rules.yaml").write_text(RULES.replace('"=="', '"=>"'), encoding="utf-8")
    result = ioc("check", "-c", str(config))
    assert result.returncode == 2
    assert "rules.yaml: rules[0].op" in result.stderr
