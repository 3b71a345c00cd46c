"""Inhibition: a firing cause mutes the alerts it explains.

When the whole Sở Tư pháp is unreachable, its twelve per-target alerts and the "dossier
backlog stale" alert add nothing but noise. A rule names the source (the cause), the target
(the consequences) and the labels both must share (``equal``), as in Alertmanager; an alert
never inhibits itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import Field, field_validator

from alerts.matchers import Matcher, check_matchers, matches_all, parse_matchers
from alerts.model import Alert, AlertState
from ioc.config_types import StrictModel


class InhibitRuleConfig(StrictModel):
    source_matchers: list[str] = Field(min_length=1, description="what the cause looks like")
    target_matchers: list[str] = Field(min_length=1, description="what it mutes")
    equal: list[str] = Field(default_factory=list,
                             description="labels source and target must share")

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return check_matchers(value)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def from_config(cls, config: InhibitRuleConfig) -> InhibitRule:
        return cls(parse_matchers(config.source_matchers),
                   parse_matchers(config.target_matchers), tuple(config.equal))


def inhibited(alerts: Iterable[Alert], rules: Iterable[InhibitRule]) -> dict[str, str]:
    """Fingerprint of each inhibited alert -> fingerprint of the firing alert inhibiting it."""
    alerts = list(alerts)
    firing = [(a, dict(a.labels)) for a in alerts if a.state is AlertState.FIRING]
    out: dict[str, str] = {}
    for rule in rules:
        sources = [(a, labels) for a, labels in firing if matches_all(rule.source, labels)]
        if not sources:
            continue
        for alert in alerts:
            if alert.fingerprint in out:
                continue
            labels = dict(alert.labels)
            if not matches_all(rule.target, labels):
                continue
            for source, source_labels in sources:
                if source.fingerprint == alert.fingerprint:
                    continue
                if all(source_labels.get(n, "") == labels.get(n, "") for n in rule.equal):
                    out[alert.fingerprint] = source.fingerprint
                    break
    return out
