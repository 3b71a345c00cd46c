"""The ``alerts`` section of config.yaml.

The rule engine's keys live here; delivery (routing, receivers, inhibition, maintenance) adds
its own keys to the same model. Kept apart from ``ioc.config`` so the alerting modules can use
it without importing the loader.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from alerts.inhibit import InhibitRuleConfig
from alerts.maintenance import MaintenanceConfig
from alerts.notifiers import ReceiverConfig
from alerts.oncall import OncallConfig
from alerts.outbox import OutboxConfig
from alerts.routing import RouteConfig, check_receivers
from alerts.rules import RuleConfig
from ioc.config_types import Duration, StrictModel


class AlertsConfig(StrictModel):
    evaluation_interval: Duration = Field(
        15.0, description="how often every rule is evaluated against the in-memory windows")
    rules: list[RuleConfig] = Field(default_factory=list, description="alert rules")
    rule_files: list[str] = Field(
        default_factory=list,
        description="glob patterns of rule files, relative to the config file's directory")
    default_rules: bool = Field(
        True, description="load the province's default rule set shipped with ioc")
    # Delivery (docs/alerting.md): from alert to person.
    route: RouteConfig | None = Field(None, description="root of the routing tree")
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)
    outbox: OutboxConfig = OutboxConfig()
    external_url: str | None = Field(
        None, description="ioc's address as people reach it: the wall link and generatorURL "
                          "of every notification, and the base of relative runbook_url "
                          "annotations; default: the address ioc serves on")
    oncall: OncallConfig = Field(default_factory=OncallConfig,
                                 description="duty roster, escalation policies, ack channels")
    leader_election: Literal["auto", "off"] = Field(
        "auto", description="auto: instances sharing a PostgreSQL database elect one alert "
                            "leader that evaluates rules and sends notifications (SQLite: "
                            "always this instance); off: this instance always does, so run "
                            "only one")

    @model_validator(mode="after")
    def _check_delivery(self) -> AlertsConfig:
        check_receivers(self.route, [r.name for r in self.receivers],
                        [t.name for t in self.oncall.teams])
        return self


WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*", "[::]"})


def default_external_url(host: str, port: int, hostname: str) -> tuple[str, bool]:
    """``http://host:port/`` for ``alerts.external_url`` when the config names none.

    A wildcard listen address (``0.0.0.0``) is no address anyone can open, so the machine's
    ``hostname`` stands in for it; the second value says so, for a warning at start.
    """
    wildcard = host in WILDCARD_HOSTS
    shown = hostname if wildcard else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # an IPv6 literal
    return f"http://{shown}:{port}/", wildcard
