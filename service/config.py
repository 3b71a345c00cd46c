"""The whole config.yaml: every package's section put together, loaded and validated.

The sections live with the code they configure (``ioc.config`` for the service's own,
``alerts.config``, each collector's ``Config``); this module is where they meet, so it sits
in the composition root, the only place that may import every package. Every mistake is
reported with its path (``collectors[3].interval``), the bad value and what was expected,
and *all* mistakes are reported at once: someone fixing a config at night should not have to
run ``ioc check`` once per typo. Nothing starts on a bad config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import Field, ValidationError

from alerts.config import AlertsConfig
from alerts.maintenance import scheduled_spans
from alerts.rules import RuleConfig, gather_rules
from collectors.registry import COLLECTOR_TYPES
from ioc.config import (
    AuthConfig,
    CollectionConfig,
    ConfigError,
    ConfigIssue,
    DepartmentConfig,
    LoggingConfig,
    ProvinceConfig,
    ServiceConfig,
    SimulatorConfig,
    StorageConfig,
    WallConfig,
    format_path,
    issues_from_validation,
    short_value,
    substitute_env,
)
from ioc.config_types import CollectorConfig, StrictModel
from ioc.events_config import EventsConfig
from ioc.incidents import Window
from ioc.indices import IndexConfig, IndexList
from ioc.metrics_config import MetricsConfig
from ioc.remote_write_config import RemoteWriteEndpoint
from ioc.reports.schedule import ReportsConfig
from ioc.sharding import auto_shard_issue
from ioc.status_page_config import StatusPageConfig, status_page_issues

__all__ = ["Config", "ConfigError", "ConfigFile", "ConfigIssue", "load_config", "parse_config"]


class ConfigFile(StrictModel):
    """The shape of config.yaml; collectors are validated per type afterwards."""

    service: ServiceConfig = ServiceConfig()
    logging: LoggingConfig = LoggingConfig()
    province: ProvinceConfig = ProvinceConfig()
    departments: list[DepartmentConfig] = Field(default_factory=list)
    storage: StorageConfig = StorageConfig()
    collection: CollectionConfig = CollectionConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    auth: AuthConfig = AuthConfig()
    wall: WallConfig = WallConfig()
    indices: IndexList = Field(default_factory=list)
    events: EventsConfig = EventsConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    remote_write: list[RemoteWriteEndpoint] = Field(default_factory=list)
    status_pages: list[StatusPageConfig] = Field(default_factory=list)
    reports: ReportsConfig = ReportsConfig()
    collectors: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class Config:
    """A fully validated configuration: what the app is built from."""

    service: ServiceConfig
    logging: LoggingConfig
    province: ProvinceConfig
    departments: tuple[DepartmentConfig, ...]
    storage: StorageConfig
    collection: CollectionConfig
    simulator: SimulatorConfig
    auth: AuthConfig
    collectors: tuple[CollectorConfig, ...]
    source: str = "<memory>"
    secrets: tuple[str, ...] = field(default=(), repr=False)
    indices: tuple[IndexConfig, ...] = ()
    wall: WallConfig = field(default_factory=WallConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    # every rule (config, rule files, defaults) with where it was defined
    alert_rules: tuple[tuple[RuleConfig, str], ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    remote_write: tuple[RemoteWriteEndpoint, ...] = ()
    status_pages: tuple[StatusPageConfig, ...] = ()
    reports: ReportsConfig = field(default_factory=ReportsConfig)

    def interval_of(self, collector: CollectorConfig) -> float:
        return collector.interval or self.collection.interval

    def timeout_of(self, collector: CollectorConfig) -> float:
        timeout = collector.timeout or self.collection.timeout
        return min(timeout, self.interval_of(collector))

    def maintenance_spans(self, start: float, end: float) -> list[Window]:
        """The config's scheduled maintenance (``alerts.maintenance``) over ``[start, end)``
        as windows of the incident ledger and the reports, in ``province.timezone``."""
        tz = ZoneInfo(self.province.timezone)
        return [Window(window.department, a, b) for window in self.alerts.maintenance
                for a, b in scheduled_spans(window, start, end, tz)]

    def department_name(self, code: str) -> str:
        for dept in self.departments:
            if dept.code == code:
                return dept.name
        return code



_COLLECTOR_PATH = re.compile(r"^collectors\[(\d+)\]")


def _collector_names(raw_collectors: Any) -> dict[int, str]:
    """Position -> ``name`` of every collector block that has a usable one."""
    if not isinstance(raw_collectors, list):
        return {}
    names = {}
    for index, block in enumerate(raw_collectors):
        name = block.get("name") if isinstance(block, dict) else None
        if isinstance(name, str) and name.strip():
            names[index] = name if len(name) <= 64 else name[:61] + "..."
    return names


def _name_collectors(issues: list[ConfigIssue], names: Mapping[int, str]) -> None:
    """Give every issue inside ``collectors[N]`` that block's name as its subject."""
    for index, issue in enumerate(issues):
        match = _COLLECTOR_PATH.match(issue.path)
        if match and not issue.subject and int(match.group(1)) in names:
            issues[index] = replace(issue, subject=names[int(match.group(1))])


# --------------------------------------------------------------------------------------------
# Loading


def _check_collectors(raw_collectors: Any, departments: set[str] | None
                      ) -> tuple[list[CollectorConfig], list[ConfigIssue]]:
    configs: list[CollectorConfig] = []
    issues: list[ConfigIssue] = []
    if not isinstance(raw_collectors, list):
        return configs, issues  # reported by the ConfigFile pass
    seen: dict[str, int] = {}
    for index, block in enumerate(raw_collectors):
        here: tuple[Any, ...] = ("collectors", index)
        if not isinstance(block, dict):
            got = short_value(block)
            issues.append(ConfigIssue(format_path(here),
                                      f"expected a mapping with a type: key, got {got}"))
            continue
        kind = block.get("type")
        cls = COLLECTOR_TYPES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            known = ", ".join(sorted(COLLECTOR_TYPES))
            what = "missing" if kind is None else f"unknown: {short_value(kind)}"
            issues.append(ConfigIssue(format_path((*here, "type")),
                                      f"collector type is {what} (known types: {known})"))
            continue
        name = block.get("name")
        if isinstance(name, str):
            if name in seen:
                issues.append(ConfigIssue(
                    format_path((*here, "name")),
                    f"duplicate collector name {name!r} (also collectors[{seen[name]}].name); "
                    "names identify targets and must be unique"))
            else:
                seen[name] = index
        dept = block.get("department")
        if departments is not None and isinstance(dept, str) and dept not in departments:
            listed = ", ".join(sorted(departments)) or "none defined"
            issues.append(ConfigIssue(
                format_path((*here, "department")),
                f"unknown department {dept!r} (add it under departments:, defined: {listed})"))
        try:
            configs.append(cls.Config.model_validate(block))
        except ValidationError as exc:
            issues.extend(issues_from_validation(exc, here, cls.Config))
    return configs, issues


def _check_report_schedules(model: ConfigFile, departments: set[str] | None
                            ) -> list[ConfigIssue]:
    """Each scheduled report's receivers and department must exist."""
    issues = []
    receivers = {r.name for r in model.alerts.receivers}
    for index, schedule in enumerate(model.reports.schedules):
        here = f"reports.schedules[{index}]"
        for pos, name in enumerate(schedule.receivers):
            if name not in receivers:
                known = ", ".join(sorted(receivers)) or "none defined"
                issues.append(ConfigIssue(f"{here}.receivers[{pos}]",
                                          f"unknown receiver {name!r} (add it under "
                                          f"alerts.receivers, defined: {known})"))
        if schedule.department is not None and departments is not None \
                and schedule.department not in departments:
            issues.append(ConfigIssue(f"{here}.department",
                                      f"unknown department {schedule.department!r}"))
    return issues


def parse_config(raw: Any, *, env: Mapping[str, str] | None = None,
                 source: str = "<memory>") -> Config:
    """Validate an already parsed YAML document. Raises ConfigError listing every issue."""
    env = os.environ if env is None else env
    issues: list[ConfigIssue] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [ConfigIssue("", "the config must be a YAML mapping")])
    used: list[str] = []
    data = substitute_env(raw, env, (), issues, used)

    file_model: ConfigFile | None = None
    try:
        file_model = ConfigFile.model_validate(data)
    except ValidationError as exc:
        issues.extend(issues_from_validation(exc, (), ConfigFile))

    departments: set[str] | None = None
    raw_depts = data.get("departments")
    if isinstance(raw_depts, list):
        departments = {d["code"] for d in raw_depts if isinstance(d, dict)
                       and isinstance(d.get("code"), str)}
        codes_seen: set[str] = set()
        for index, dept in enumerate(raw_depts):
            code = dept.get("code") if isinstance(dept, dict) else None
            if isinstance(code, str):
                if code in codes_seen:
                    issues.append(ConfigIssue(f"departments[{index}].code",
                                              f"duplicate department code {code!r}"))
                codes_seen.add(code)
    elif raw_depts is None:
        departments = set()

    collectors, collector_issues = _check_collectors(data.get("collectors", []), departments)
    issues.extend(collector_issues)

    if file_model is not None:
        # by the block's own position: `collectors` holds only the blocks that validated
        position = {name: index for index, name in reversed(
            _collector_names(data.get("collectors")).items())}
        for block in collectors:
            index = position.get(block.name, 0)
            interval = block.interval or file_model.collection.interval
            if block.timeout is not None and block.timeout > interval:
                issues.append(ConfigIssue(
                    f"collectors[{index}].timeout",
                    f"timeout ({block.timeout:g}s) is longer than the interval ({interval:g}s)"))

    if file_model is not None and departments is not None:
        for index, view in enumerate(file_model.wall.views):
            for pos, code in enumerate(view.departments):
                if code not in departments:
                    issues.append(ConfigIssue(f"wall.views[{index}].departments[{pos}]",
                                              f"unknown department {code!r}"))
        names = [v.name for v in file_model.wall.views]
        for index, name in enumerate(names):
            if name in names[:index]:
                issues.append(ConfigIssue(f"wall.views[{index}].name",
                                          f"duplicate view name {name!r}"))

    if file_model is not None:
        issues.extend(_check_report_schedules(file_model, departments))

    if file_model is not None:
        problem = auto_shard_issue(file_model.collection.shard, file_model.storage.url)
        if problem is not None:
            issues.append(ConfigIssue("collection.shard", problem))

    if file_model is not None and file_model.status_pages:
        target_names = {c.name for c in collectors} | set(_collector_names(
            data.get("collectors")).values())
        issues.extend(ConfigIssue(path, message) for path, message in status_page_issues(
            file_model.status_pages, target_names, departments or ()))

    alert_rules: list[tuple[RuleConfig, str]] = []
    if file_model is not None:
        base_dir = Path(source).parent if source != "<memory>" else Path.cwd()
        alerts = file_model.alerts
        alert_rules, rule_issues = gather_rules(alerts.rules, alerts.rule_files,
                                                alerts.default_rules, base_dir)
        issues.extend(ConfigIssue(issue.path, issue.message) for issue in rule_issues)

    if issues or file_model is None:
        _name_collectors(issues, _collector_names(data.get("collectors")))
        # Values from the environment are secrets: `ioc check` must not print them back.
        # Both as written and as quoted by repr() in "(got '…')": a backslash or quote in
        # the value would otherwise let the quoted form through.
        hidden = sorted({form for v in used if len(v) >= 4 for form in (v, repr(v)[1:-1])},
                        key=len, reverse=True)
        for index, issue in enumerate(issues):
            message = issue.message
            for value in hidden:
                message = message.replace(value, "***")
            subject = issue.subject
            for value in hidden:
                subject = subject.replace(value, "***")
            issues[index] = ConfigIssue(issue.path, message, subject)
        raise ConfigError(source, issues)
    secrets = tuple(sorted(set(used), key=len, reverse=True))
    extra = [t.token.get_secret_value() for t in file_model.auth.tokens]
    if file_model.simulator.token is not None:
        extra.append(file_model.simulator.token.get_secret_value())
    extra.extend(file_model.metrics.secrets())
    for endpoint in file_model.remote_write:
        extra.extend(endpoint.secrets())
    secrets = (*secrets, *(t for t in extra if t and t not in secrets))
    return Config(
        service=file_model.service,
        logging=file_model.logging,
        province=file_model.province,
        departments=tuple(file_model.departments),
        storage=file_model.storage,
        collection=file_model.collection,
        simulator=file_model.simulator,
        auth=file_model.auth,
        collectors=tuple(collectors),
        indices=tuple(file_model.indices),
        source=source,
        secrets=secrets,
        wall=file_model.wall,
        events=file_model.events,
        alerts=file_model.alerts,
        alert_rules=tuple(alert_rules),
        metrics=file_model.metrics,
        remote_write=tuple(file_model.remote_write),
        status_pages=tuple(file_model.status_pages),
        reports=file_model.reports,
    )


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a config file. Raises ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read file: {exc}")]) from None
    try:
        # libyaml's loader when PyYAML has it: the pure-Python one takes ~1.5 s per 1,000 targets
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {where}{problem}")]) \
            from None
    return parse_config(raw, env=env, source=source)
