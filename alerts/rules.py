"""Alert rules: their config model, their compiled form, and loading rule files.

A rule watches one metric of the in-memory windows. Either it compares an aggregate of each
matching series over a window with a threshold::

    - name: TargetDown
      metric: ioc_target_up
      aggregate: max            # the target was down for the whole window
      window: 2m
      op: "<"
      threshold: 1
      for: 1m
      severity: critical
      annotations:
        summary: "{{ labels.target }} ({{ department }}) không truy cập được"

or it fires when a metric has no sample for a while (``absent: 10m``), so a collector that
stopped reporting pages too. Annotations are Jinja2 templates rendered in a sandbox: rules may
come from files an operator did not write, and a template must never reach Python objects.

An annotation may also be given in English beside the default (Vietnamese) text, under the
same key with ``_en`` added (``summary_en``). The annotations stay one flat mapping of strings,
so older rule files, stored alerts and Alertmanager payloads keep their shape; notifications
read the default keys, and screens in English pick the ``_en`` text where there is one
(``localized``).
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, ValidationError, field_validator, model_validator

from alerts.matchers import Matcher, parse_matcher
from alerts.model import SEVERITIES
from ioc.config_types import Duration, StrictModel, format_duration
from ioc.model import Labels

Aggregate = Literal["last", "avg", "min", "max", "sum", "count", "rate", "increase", "delta"]
Combine = Literal["sum", "avg", "min", "max", "count"]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]
Severity = Literal["info", "warning", "critical"]

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}

RESERVED_LABELS = ("alertname", "severity")
# Languages an annotation may be translated into, as the suffix of its key (summary_en); the
# key without a suffix is the default language's text (Vietnamese), which notifications use.
ANNOTATION_LANGS = ("en",)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_RULES = "default_rules.yaml"
MAX_RULE_FILE_BYTES = 10 * 1024 * 1024


class RuleConfig(StrictModel):
    """One alert rule as written in config.yaml or a rule file."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128,
                      description="the alert's name (its `alertname` label)")
    metric: str = Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$", max_length=200,
                        description="metric the condition reads")
    matchers: list[str] = Field(default_factory=list,
                                description='label matchers such as department="STP"')
    aggregate: Aggregate = Field("last", description="how each series' window becomes a value")
    window: Duration = Field(300.0, description="how far back the aggregate looks")
    by: list[str] | None = Field(None, description="combine series sharing these labels")
    combine: Combine = Field("sum", description="how series are combined with `by`")
    transform: Literal["until", "since"] | None = Field(
        None, description="read the value as a unix time: seconds until it, or since it")
    op: Comparison | None = Field(None, description="comparison with the threshold")
    threshold: float | None = Field(None, description="the value compared with")
    absent: Duration | None = Field(
        None, description="fire when a matching series has had no sample for this long")
    for_: Duration | None = Field(None, alias="for",
                                  description="how long the condition must hold to fire")
    keep_firing_for: Duration | None = Field(
        None, description="keep firing this long after the condition clears")
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict, description="labels added to alerts")
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="title, summary, description, runbook_url: Jinja2 templates; the same "
                    "key with `_en` (summary_en) is its English text")

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_matcher(text)
        return value

    @field_validator("by")
    @classmethod
    def _check_by(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not _LABEL_NAME.match(name):
                raise ValueError(f"not a label name: {name!r}")
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name):
                raise ValueError(f"not a label name: {name!r}")
            if name in RESERVED_LABELS:
                raise ValueError(f"label {name!r} is set by ioc (use the rule's "
                                 f"{'severity' if name == 'severity' else 'name'} key)")
        return value

    @field_validator("annotations")
    @classmethod
    def _check_annotations(cls, value: dict[str, str]) -> dict[str, str]:
        env = template_environment()
        for key, source in value.items():
            if not _LABEL_NAME.match(key):
                raise ValueError(f"not an annotation name: {key!r}")
            try:
                env.parse(source)  # syntax only; compile_rule builds the template
            except TemplateError as exc:
                raise ValueError(f"annotation {key!r} is not a valid template: {exc}") from None
            base, lang = translated_key(key)
            if lang and base not in value:
                raise ValueError(f"annotation {key!r} is the {lang!r} text of {base!r}, which "
                                 f"the rule does not give: add {base!r} in the default language "
                                 "(notifications and screens without a translation show it)")
        return value

    @model_validator(mode="after")
    def _check_condition(self) -> RuleConfig:
        given = self.model_fields_set
        if self.absent is not None:
            clash = sorted(given & {"op", "threshold", "aggregate", "by", "transform", "window"})
            if clash:
                raise ValueError(f"a rule with `absent` takes no {', '.join(clash)} (it fires "
                                 "when the metric has no sample for that long)")
            return self
        if self.op is None or self.threshold is None:
            raise ValueError("a rule needs `op` and `threshold` (e.g. op: \">\", threshold: 2), "
                             "or `absent: DURATION`")
        if math.isnan(self.threshold):
            raise ValueError("threshold must be a number, not NaN")
        if self.transform is not None and self.aggregate not in ("last", "min", "max", "avg"):
            raise ValueError(f"`transform` reads a timestamp; it does not apply to "
                             f"aggregate {self.aggregate!r}")
        if "combine" in given and self.by is None:
            raise ValueError("`combine` needs `by` (the labels whose series are combined)")
        return self

    @property
    def pending_for(self) -> float:
        """Seconds the condition must hold before the alert fires (the rule's ``for``)."""
        return self.for_ or 0.0

    @property
    def key(self) -> str:
        """The rule's identity in persisted state: name, severity and extra labels."""
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.name}/{self.severity}/{extra}"

    def describe(self) -> str:
        """One line for listings, e.g. ``max(ioc_target_up{…}[2m]) < 1 for 1m``."""
        sel = "{" + ",".join(self.matchers) + "}"
        if self.absent is not None:
            text = f"absent({self.metric}{sel}) for {format_duration(self.absent)}"
        else:
            text = f"{self.aggregate}({self.metric}{sel}[{format_duration(self.window)}])"
            if self.transform:
                text = f"{self.transform}({text})"
            if self.by is not None:
                text = f"{self.combine} by ({','.join(self.by)}) ({text})"
            text += f" {self.op} {self.threshold:g}"
        if self.for_:
            text += f" for {format_duration(self.for_)}"
        return text


# --------------------------------------------------------------------------------------------
# Templates


class _Blank(Undefined):
    """A missing label renders as an empty string, as in Prometheus templates."""


def translated_key(key: str) -> tuple[str, str]:
    """``summary_en`` → (``summary``, ``en``); a key with no language suffix → (key, "")."""
    for lang in ANNOTATION_LANGS:
        suffix = "_" + lang
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[:-len(suffix)], lang
    return key, ""


def localized(annotations: Mapping[str, str], key: str, lang: str) -> str:
    """The annotation ``key`` in ``lang`` where the rule gives it, else the default text."""
    if lang in ANNOTATION_LANGS:
        text = annotations.get(f"{key}_{lang}")
        if text:
            return text
    return annotations.get(key, "")


_UNITS = {
    "vi": (("ngày", "ngày"), ("giờ", "giờ"), ("phút", "phút"), ("giây", "giây")),
    "en": (("day", "days"), ("hour", "hours"), ("minute", "minutes"), ("second", "seconds")),
}


def human_duration(seconds: Any, lang: str = "vi") -> str:
    """``93784`` → ``1 ngày 2 giờ`` (``|duration("en")``: ``1 day 2 hours``): the two
    largest units, in Vietnamese unless English is asked for."""
    try:
        total = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return str(seconds)[:40]
    if math.isnan(total) or math.isinf(total):
        return str(total)
    sign = "-" if total < 0 else ""
    rest = int(abs(total))
    units = _UNITS.get(lang, _UNITS["vi"])
    parts = []
    for size, (one, many) in zip((86400, 3600, 60, 1), units, strict=True):
        if rest >= size:
            count = rest // size
            parts.append(f"{count} {one if count == 1 else many}")
            rest %= size
        if len(parts) == 2:
            break
    return sign + (" ".join(parts) if parts else f"0 {units[3][1]}")


def percent(value: Any, digits: int = 1) -> str:
    """``0.9432`` → ``94.3 %``."""
    try:
        return f"{float(value) * 100:.{digits}f} %"
    except (TypeError, ValueError, OverflowError):
        return str(value)[:40]


def template_environment() -> SandboxedEnvironment:
    """A sandbox for annotation templates: no attribute access to Python internals.

    Autoescape is off because annotations are plain text; every channel that puts them into
    HTML escapes them there.
    """
    env = SandboxedEnvironment(autoescape=False, undefined=_Blank)
    env.filters["duration"] = human_duration
    env.filters["percent"] = percent
    return env


# --------------------------------------------------------------------------------------------
# The compiled rule


@dataclass(frozen=True, eq=False)
class Rule:
    """A validated rule made ready to evaluate: matchers parsed, templates compiled."""

    config: RuleConfig
    source: str                         # where it was defined, for messages
    equal: tuple[tuple[str, str], ...]  # non-empty equality matchers: the index lookup
    others: tuple[Matcher, ...]         # every other matcher, checked per series
    static_labels: Labels               # rule labels + alertname + severity
    templates: tuple[tuple[str, Any], ...]
    department_names: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.config.name

    def render(self, labels: Labels, value: float | None) -> tuple[tuple[str, str], ...]:
        """The annotations for one alert; a failing template says so instead of raising."""
        label_map = dict(labels)
        context = {
            "labels": label_map,
            "value": value,
            "threshold": self.config.threshold,
            "department": self.department_names.get(label_map.get("department", ""),
                                                    label_map.get("department", "")),
        }
        out = []
        for key, template in self.templates:
            try:
                text = template.render(context)
            except Exception as exc:  # sandbox violations, bad filters on odd values
                text = f"(template error in {key}: {exc})"
            out.append((key, text))
        return tuple(out)


def compile_rule(config: RuleConfig, *, source: str = "",
                 department_names: Mapping[str, str] | None = None,
                 env: SandboxedEnvironment | None = None,
                 compiled: dict[str, Any] | None = None, external_url: str = "") -> Rule:
    """``compiled`` shares templates between rules with the same annotation text.

    A ``runbook_url`` that starts with ``/`` is a page of ioc's own (``/runbooks/{rule}``)
    and is made absolute with ``external_url``: a link in a Telegram message or an e-mail
    must open from wherever the person reading it is.
    """
    env = env or template_environment()
    compiled = {} if compiled is None else compiled

    def template(text: str) -> Any:
        found = compiled.get(text)
        if found is None:
            found = compiled[text] = env.from_string(text)
        return found

    matchers = [parse_matcher(text) for text in config.matchers]
    equal = tuple((m.name, m.value) for m in matchers if m.op == "=" and m.value)
    others = tuple(m for m in matchers if not (m.op == "=" and m.value))
    static = dict(config.labels)
    static["alertname"] = config.name
    static["severity"] = config.severity
    return Rule(
        config=config, source=source, equal=equal, others=others,
        static_labels=tuple(sorted(static.items())),
        templates=tuple((k, template(absolute(k, v, external_url)))
                        for k, v in sorted(config.annotations.items())),
        department_names=dict(department_names or {}),
    )


# Annotation templates compiled once per process and text, shared by every compile_rules
# (each config load and reload; the sandboxed templates are safe to share and render from
# any thread). Bounded: a long-running instance reloaded with ever new texts starts over.
_SHARED: dict[str, Any] = {}
_SHARED_MAX = 4096


@functools.cache
def _shared_environment() -> SandboxedEnvironment:
    return template_environment()


def compile_rules(configs: list[tuple[RuleConfig, str]],
                  department_names: Mapping[str, str] | None = None,
                  external_url: str = "") -> list[Rule]:
    env = _shared_environment()
    if len(_SHARED) > _SHARED_MAX:
        _SHARED.clear()
    compiled = _SHARED
    names = dict(department_names or {})
    return [compile_rule(cfg, source=src, department_names=names, env=env, compiled=compiled,
                         external_url=external_url)
            for cfg, src in configs]


def absolute(key: str, text: str, external_url: str) -> str:
    """``runbook_url: /runbooks/X`` as ``{external_url}runbooks/X``; any other text as is."""
    if key != "runbook_url" or not text.startswith("/") or text.startswith("//") \
            or not external_url:
        return text
    return external_url.rstrip("/") + text


def read_ranges(rules: Iterable[Rule]) -> dict[str, float]:
    """How far back the rules read each metric they name: the longest ``window`` (for an
    ``absent`` rule, its duration). The sample cache keeps a window only this long for these
    metrics and only the latest point of every other one (ioc.cache)."""
    spans: dict[str, float] = {}
    for rule in rules:
        cfg = rule.config
        span = cfg.absent if cfg.absent is not None else cfg.window
        spans[cfg.metric] = max(span, spans.get(cfg.metric, 0.0))
    return spans


# --------------------------------------------------------------------------------------------
# Rule files


@dataclass(frozen=True)
class RuleIssue:
    path: str
    message: str


def default_rules_text() -> str:
    return Path(__file__).with_name(DEFAULT_RULES).read_text(encoding="utf-8")


def parse_rule_document(raw: Any, source: str) -> tuple[list[tuple[RuleConfig, str]],
                                                        list[RuleIssue]]:
    """Validate a rule file's parsed YAML: a mapping with a ``rules:`` list."""
    from ioc.config import format_path, issues_from_validation

    if raw is None:
        return [], []
    if not isinstance(raw, dict) or set(raw) - {"rules"}:
        return [], [RuleIssue(source, "a rule file is a mapping with one key, rules: [...]")]
    items = raw.get("rules") or []
    if not isinstance(items, list):
        return [], [RuleIssue(f"{source}: rules", "expected a list of rules")]
    rules: list[tuple[RuleConfig, str]] = []
    issues: list[RuleIssue] = []
    for index, item in enumerate(items):
        where = f"rules[{index}]"
        try:
            rules.append((RuleConfig.model_validate(item), f"{source}: {where}"))
        except ValidationError as exc:
            for issue in issues_from_validation(exc, ("rules", index), RuleConfig):
                issues.append(RuleIssue(f"{source}: {issue.path or format_path(('rules',))}",
                                        issue.message))
    return rules, issues


def read_rule_file(path: Path, shown: str | None = None
                   ) -> tuple[list[tuple[RuleConfig, str]], list[RuleIssue]]:
    shown = shown or str(path)
    try:
        if path.stat().st_size > MAX_RULE_FILE_BYTES:
            return [], [RuleIssue(shown, f"file is larger than {MAX_RULE_FILE_BYTES} bytes")]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RuleIssue(shown, f"cannot read rule file: {exc}")]
    return parse_rule_text(text, shown)


@functools.lru_cache(maxsize=32)
def _yaml(text: str) -> Any:
    """A rule file's YAML, parsed once per text: the default rules are read at every config
    load and reload (and tests load hundreds of configs), always the same few kilobytes."""
    return yaml.safe_load(text)


def parse_rule_text(text: str, shown: str) -> tuple[list[tuple[RuleConfig, str]],
                                                    list[RuleIssue]]:
    try:
        raw = copy.deepcopy(_yaml(text))  # the caller's to keep; the parse is shared
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return [], [RuleIssue(shown, f"invalid YAML: {where}{problem}")]
    return parse_rule_document(raw, shown)


def gather_rules(config_rules: list[RuleConfig], rule_files: list[str], default_rules: bool,
                 base_dir: Path) -> tuple[list[tuple[RuleConfig, str]], list[RuleIssue]]:
    """Every rule of a config: its own, its rule files', and the defaults it did not replace.

    A rule in the config or a rule file whose name is also a default rule's name replaces
    every default rule of that name, so a province tunes a threshold without copying the set.
    """
    rules = [(rule, f"alerts.rules[{i}]") for i, rule in enumerate(config_rules)]
    issues: list[RuleIssue] = []
    for index, pattern in enumerate(rule_files):
        full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
        matched = sorted(Path(p) for p in _glob(full))
        if not matched and not any(ch in pattern for ch in "*?["):
            issues.append(RuleIssue(f"alerts.rule_files[{index}]",
                                    f"no such rule file: {pattern!r}"))
        for path in matched:
            found, problems = read_rule_file(path, _shown(path, base_dir))
            rules.extend(found)
            issues.extend(problems)
    if default_rules:
        defaults, problems = parse_rule_text(default_rules_text(), f"<ioc>/{DEFAULT_RULES}")
        issues.extend(problems)
        own = {rule.name for rule, _ in rules}
        rules.extend((rule, src) for rule, src in defaults if rule.name not in own)
    issues.extend(duplicate_issues(rules))
    return rules, issues


def duplicate_issues(rules: list[tuple[RuleConfig, str]]) -> list[RuleIssue]:
    """Two rules with the same name, severity and labels would make alerts with one identity."""
    seen: dict[str, str] = {}
    issues = []
    for rule, source in rules:
        if rule.key in seen:
            issues.append(RuleIssue(source, f"rule {rule.name!r} has the same name, severity "
                                             f"and labels as {seen[rule.key]}; give it another "
                                             "name, severity or label"))
        else:
            seen[rule.key] = source
    return issues


def _glob(pattern: str) -> list[str]:
    import glob

    return [p for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]


def _shown(path: Path, base_dir: Path) -> str:
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


__all__ = [
    "COMPARE",
    "SEVERITIES",
    "Rule",
    "RuleConfig",
    "RuleIssue",
    "compile_rule",
    "compile_rules",
    "gather_rules",
    "human_duration",
    "localized",
    "parse_rule_text",
    "percent",
    "read_rule_file",
    "template_environment",
]
