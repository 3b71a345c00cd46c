"""The routing tree: which receiver hears about an alert, and how its notifications are grouped.

Alertmanager's meaning, so people who know it can read an ioc config: the root route matches
every alert; an alert descends into the first child whose matchers it satisfies (and into later
siblings too when that child has ``continue: true``); the deepest matching routes win. A child
inherits ``receiver``, ``group_by`` and the three timers from its parent unless it sets them.

``group_by: ["..."]`` groups by every label (one notification per alert); an empty ``group_by``
puts all of a route's alerts into one group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, field_validator

from alerts.matchers import Matcher, check_matchers, matches_all, parse_matchers
from ioc.config_types import Duration, StrictModel, parse_duration

GROUP_BY_ALL = "..."


def _duration_or_zero(value: Any) -> float:
    """``0s`` is a meaningful group_wait (notify at once), unlike a zero poll interval."""
    if isinstance(value, str) and value.strip() in ("0", "0s", "0ms"):
        return 0.0
    return parse_duration(value)


DurationOrZero = Annotated[float, BeforeValidator(_duration_or_zero)]


class RouteConfig(StrictModel):
    """One node of the routing tree (the root is ``alerts.route``)."""

    receiver: str | None = Field(None, description="receiver name; inherited when absent")
    matchers: list[str] = Field(default_factory=list,
                                description='label matchers such as severity="critical"')
    continue_: bool = Field(False, alias="continue",
                            description="keep matching later siblings after this one")
    group_by: list[str] | None = Field(None, description="labels that split groups")
    group_wait: DurationOrZero | None = Field(None, description="wait before a new group's first "
                                                          "notification")
    group_interval: Duration | None = Field(None, description="wait before notifying changes "
                                                              "to a group")
    repeat_interval: Duration | None = Field(None, description="re-send an unchanged group")
    # Child routes are validated as RouteConfig by the validator below; the annotation stays
    # untyped so the model does not refer to itself (documentation tooling walks models).
    routes: list[Any] = Field(default_factory=list, description="child routes")

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, value: list[str]) -> list[str]:
        return check_matchers(value)

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, value: list[Any]) -> list[Any]:
        children = []
        for index, child in enumerate(value):
            if isinstance(child, RouteConfig):
                children.append(child)
                continue
            try:
                children.append(RouteConfig.model_validate(child))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                message = str(first["msg"]).removeprefix("Value error, ")
                raise ValueError(f"routes[{index}]{'.' + where if where else ''}: "
                                 f"{message}") from None
        return children


DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved route: every inherited value filled in."""

    key: str                     # stable identity, part of every group key
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    children: tuple[Route, ...]

    @property
    def group_by_all(self) -> bool:
        return GROUP_BY_ALL in self.group_by

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` is delivered through (deepest matches)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.children:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that identify the alert's group on this route."""
        if self.group_by_all:
            return dict(labels)
        return {name: labels[name] for name in self.group_by if name in labels}

    def walk(self) -> list[Route]:
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


def build_route(config: RouteConfig, parent: Route | None = None, index: int = 0) -> Route:
    """Resolve inheritance; the root must name a receiver."""
    if parent is None and not config.receiver:
        raise ValueError("the root route must name a receiver")
    matchers = parse_matchers(config.matchers)
    if parent is None:
        key = "{}"
    else:
        key = f"{parent.key}/{{{','.join(str(m) for m in matchers)}}}#{index}"

    def pick(own: float | None, inherited: float | None, default: float) -> float:
        return own if own is not None else inherited if inherited is not None else default

    route = Route(
        key=key,
        receiver=config.receiver or (parent.receiver if parent else ""),
        matchers=matchers,
        continue_=config.continue_,
        group_by=tuple(config.group_by) if config.group_by is not None
        else (parent.group_by if parent else ()),
        group_wait=pick(config.group_wait, parent.group_wait if parent else None,
                        DEFAULT_GROUP_WAIT),
        group_interval=pick(config.group_interval, parent.group_interval if parent else None,
                            DEFAULT_GROUP_INTERVAL),
        repeat_interval=pick(config.repeat_interval, parent.repeat_interval if parent else None,
                             DEFAULT_REPEAT_INTERVAL),
        children=(),
    )
    children = tuple(build_route(child, route, i) for i, child in enumerate(config.routes))
    return Route(**{**_fields(route), "children": children})


def _fields(route: Route) -> dict[str, Any]:
    return {name: getattr(route, name) for name in Route.__slots__}


def receivers_used(route: Route) -> set[str]:
    return {r.receiver for r in route.walk()}


def check_receivers(route: RouteConfig | None, names: list[str],
                    teams: Iterable[str] = ()) -> None:
    """Every route names a defined receiver, and receiver names are unique.

    ``oncall:TEAM`` names the on-duty person of an on-call team (``alerts.oncall.teams``).
    """
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"receivers: duplicate name(s) {', '.join(duplicates)}")
    if route is None:
        return
    if not route.receiver:
        raise ValueError("route: the root route must name a receiver")
    known = set(names) | {f"oncall:{team}" for team in teams}

    def walk(node: RouteConfig, path: str) -> None:
        if node.receiver and node.receiver not in known:
            listed = ", ".join(sorted(known)) or "none defined"
            raise ValueError(f"{path}.receiver: unknown receiver {node.receiver!r} "
                             f"(defined: {listed})")
        for index, child in enumerate(node.routes):
            walk(child, f"{path}.routes[{index}]")

    walk(route, "route")
