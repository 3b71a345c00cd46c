"""``ioc rules test FILE``: unit tests for alert rules, in the spirit of ``promtool test rules``.

A test file lists input series over time and the alerts expected to be firing at given
times; the runner feeds the series into an in-memory window cache, steps time forward by the
evaluation interval, and evaluates the rules with the engine's own :class:`Evaluator`, so a
passing test says what the service will do::

    rule_files: [my_rules.yaml]     # relative to this file; the defaults with default_rules
    default_rules: false            # test ioc's default rule set too
    evaluation_interval: 1m
    departments: {STP: "Sở Tư pháp"}  # names for {{ department }} in annotations
    tests:
      - name: the portal goes down
        interval: 1m                # time between the values below
        input_series:
          - series: 'ioc_target_up{target="stp-portal",department="STP",kind="http"}'
            values: "1 1 0x5"       # 1 1 0 0 0 0 0 0
        alert_rule_test:
          - eval_time: 4m
            alertname: TargetDown
            exp_alerts:
              - exp_labels: {target: stp-portal, department: STP, kind: http,
                             severity: critical}
                exp_annotations: {summary: "stp-portal (Sở Tư pháp) không truy cập được"}

Values use promtool's expanding notation: ``a+bxn`` is a, a+b, …, a+n·b (n+1 values),
``a-bxn`` counts down, ``axn`` repeats a n+1 times, ``_`` is a missing sample and ``_xn``
n missing samples. Time starts at 0 (the unix epoch). ``exp_labels`` is the alert's full
label set except ``alertname``; ``exp_annotations`` lists the annotations to check (others
are ignored). Only firing alerts are compared, as promtool does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from alerts.engine import Evaluator
from alerts.model import AlertState
from alerts.rules import RuleConfig, compile_rules, gather_rules, read_rule_file
from ioc.cache import SeriesCache
from ioc.config_types import Duration, StrictModel, format_duration
from ioc.model import Labels, Sample, make_labels

_SERIES = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$", re.DOTALL)
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_EXPAND = re.compile(r"^([-+]?[^x+\-]+|_)(?:([+-])([^x]+))?x(\d+)$")


class ExpectedAlert(StrictModel):
    exp_labels: dict[str, str] = Field(default_factory=dict)
    exp_annotations: dict[str, str] = Field(default_factory=dict)


class AlertCheck(StrictModel):
    eval_time: Duration | float
    alertname: str
    exp_alerts: list[ExpectedAlert] = Field(default_factory=list)

    @field_validator("eval_time", mode="before")
    @classmethod
    def _zero(cls, value: Any) -> Any:
        return 0.0 if value in (0, "0", "0s") else value


class InputSeries(StrictModel):
    series: str
    values: str

    @field_validator("series")
    @classmethod
    def _check_series(cls, value: str) -> str:
        parse_series(value)
        return value

    @field_validator("values")
    @classmethod
    def _check_values(cls, value: str) -> str:
        expand_values(value)
        return value


class RuleTest(StrictModel):
    name: str = ""
    interval: Duration = 60.0
    input_series: list[InputSeries] = Field(default_factory=list)
    alert_rule_test: list[AlertCheck] = Field(default_factory=list)


class RuleTestFile(StrictModel):
    rule_files: list[str] = Field(default_factory=list)
    default_rules: bool = False
    evaluation_interval: Duration = 60.0
    departments: dict[str, str] = Field(default_factory=dict)
    tests: list[RuleTest] = Field(min_length=1)


def parse_series(text: str) -> tuple[str, Labels]:
    """``metric{a="b",c="d"}`` → metric name and labels."""
    match = _SERIES.match(text)
    if match is None:
        raise ValueError(f'expected a series such as ioc_target_up{{target="x"}}, got {text!r}')
    metric, body = match.group(1), match.group(2) or ""
    labels: dict[str, str] = {}
    pos = 0
    body = body.strip()
    while pos < len(body):
        found = _LABEL.match(body, pos)
        if found is None:
            raise ValueError(f"cannot read the labels of {text!r} at {body[pos:]!r}")
        labels[found.group(1)] = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n"
                                        else m.group(1), found.group(2))
        pos = found.end()
    return metric, make_labels(labels)


def expand_values(text: str) -> list[float | None]:
    """promtool's notation → values, None for a missing sample."""
    out: list[float | None] = []
    for token in text.split():
        if token in ("_", "stale"):
            out.append(None)
            continue
        match = _EXPAND.match(token)
        if match is None:
            out.append(_number(token, text))
            continue
        start, sign, step, count = match.groups()
        times = int(count)
        if start == "_":
            if sign:
                raise ValueError(f"'_' cannot have a step in {token!r}")
            out.extend([None] * times)
            continue
        first = _number(start, text)
        delta = _number(step, text) if step else 0.0
        delta = -delta if sign == "-" else delta
        out.extend(first + i * delta for i in range(times + 1))
    if not out:
        raise ValueError("values is empty")
    return out


def _number(token: str, text: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"cannot read {token!r} in values {text!r} (numbers, _, a+bxn, "
                         "a-bxn, axn, _xn)") from None


@dataclass
class CaseOutcome:
    name: str
    failures: list[str] = field(default_factory=list)


@dataclass
class FileOutcome:
    path: str
    errors: list[str] = field(default_factory=list)  # the file itself is wrong
    tests: list[CaseOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(not t.failures for t in self.tests)


def run_file(path: Path) -> FileOutcome:
    outcome = FileOutcome(str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = RuleTestFile.model_validate(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        outcome.errors.append(f"cannot read test file: {exc}")
        return outcome
    except ValidationError as exc:
        from ioc.config import issues_from_validation

        outcome.errors.extend(str(i) for i in issues_from_validation(exc, (), RuleTestFile))
        return outcome
    base = path.parent
    rules: list[tuple[RuleConfig, str]] = []
    problems: list[str] = []
    for name in spec.rule_files:
        found, issues = read_rule_file(base / name, name)
        rules.extend(found)
        problems.extend(f"{i.path}: {i.message}" for i in issues)
    if spec.default_rules:
        rules, issues = gather_rules([r for r, _ in rules], [], True, base)
        problems.extend(f"{i.path}: {i.message}" for i in issues)
    if problems:
        outcome.errors.extend(problems)
        return outcome
    if not rules:
        outcome.errors.append("no rules to test: list rule_files or set default_rules: true")
        return outcome
    for index, test in enumerate(spec.tests):
        outcome.tests.append(run_test(test, rules, spec, index))
    return outcome


def run_test(test: RuleTest, rules: list[tuple[RuleConfig, str]], spec: RuleTestFile,
             index: int) -> CaseOutcome:
    result = CaseOutcome(test.name or f"tests[{index}]")
    samples: list[Sample] = []
    for item in test.input_series:
        metric, labels = parse_series(item.series)
        for step, value in enumerate(expand_values(item.values)):
            if value is not None:
                samples.append(Sample(metric, labels, value, step * test.interval))
    samples.sort(key=lambda s: s.ts)
    checks = sorted(test.alert_rule_test, key=lambda c: c.eval_time)
    end = float(max((c.eval_time for c in checks), default=0.0))
    span = max(end, samples[-1].ts if samples else 0.0) + 1.0
    cache = SeriesCache(span + 86400.0, 1_000_000)
    evaluator = Evaluator(compile_rules(rules, spec.departments))
    every = spec.evaluation_interval
    times = sorted({*(i * every for i in range(int(end // every) + 1)),
                    *(c.eval_time for c in checks)})
    fed = 0
    pending_checks = list(checks)
    for now in times:
        upto = fed
        while upto < len(samples) and samples[upto].ts <= now:
            upto += 1
        cache.add(samples[fed:upto])
        fed = upto
        evaluator.evaluate([cache], now, data_since=0.0)
        while pending_checks and pending_checks[0].eval_time == now:
            check = pending_checks.pop(0)
            result.failures.extend(_compare(check, evaluator, now))
    return result


def _compare(check: AlertCheck, evaluator: Evaluator, now: float) -> list[str]:
    got = []
    for rule, state in zip(evaluator.rules, evaluator.states, strict=True):
        if rule.name != check.alertname:
            continue
        for alert in state.alerts.values():
            if alert.state is AlertState.FIRING:
                got.append((dict(alert.labels), dict(alert.annotations)))
    expected = [({**e.exp_labels, "alertname": check.alertname}, e.exp_annotations)
                for e in check.exp_alerts]
    unmatched = list(got)
    missing = []
    for labels, wanted in expected:
        hit = next((g for g in unmatched if g[0] == labels
                    and all(g[1].get(k) == v for k, v in wanted.items())), None)
        if hit is None:
            missing.append((labels, wanted))
        else:
            unmatched.remove(hit)
    if not missing and not unmatched:
        return []
    when = format_duration(now) if now > 0 else "0s"
    lines = [f"alertname={check.alertname}, time={when}:"]
    for labels, wanted in missing:
        lines.append(f"    expected, not firing: {_show(labels)}"
                     + (f" {wanted}" if wanted else ""))
    for labels, found in unmatched:
        lines.append(f"    firing, not expected: {_show(labels)} {found}")
    for labels, _found in [g for g in got if g not in unmatched]:
        lines.append(f"    firing as expected:   {_show(labels)}")
    return ["\n".join(lines)]


def _show(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def main(paths: list[str]) -> int:
    """Run every file; print a report; 0 when all pass, 1 on a failed test, 2 on a bad file."""
    worst = 0
    for text in paths:
        outcome = run_file(Path(text))
        if outcome.errors:
            print(f"{outcome.path}: FAILED to load")
            for error in outcome.errors:
                print(f"  - {error}")
            worst = 2
            continue
        passed = sum(1 for t in outcome.tests if not t.failures)
        print(f"{outcome.path}: {passed}/{len(outcome.tests)} tests passed")
        for test in outcome.tests:
            if test.failures:
                print(f"  FAILED {test.name}")
                for failure in test.failures:
                    print(f"    {failure}")
                worst = max(worst, 1)
    return worst
