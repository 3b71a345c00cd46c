"""The ``status_pages:`` section: public status pages for citizens, defined service by service.

A public page shows only what is written here: a page's title, groups of services with their
public names, and for each service the targets (by name) and/or departments (every target of
the department) whose polls make up its state. Nothing else of ioc — no target name, URL,
failure reason or internal note — reaches a citizen, so a page is safe to publish by
construction: what is not configured does not exist for it.

Cross-checks that need the rest of the config (the targets and departments named exist,
slugs unique across pages) are in ``service.config`` with the other cross-section checks;
:func:`status_page_issues` does them, so ``ioc check`` and the app report the same errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import Field, field_validator, model_validator

from ioc.config_types import Duration, StrictModel

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
RESERVED_SLUGS = frozenset({"badge"})   # /status/badge/{service}.svg


class Words(StrictModel):
    """A public text in Vietnamese and, optionally, English (Vietnamese stands in for it)."""

    vi: str = Field(min_length=1, max_length=200)
    en: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return {"vi": value} if isinstance(value, str) else value

    def pick(self, lang: str) -> str:
        return self.en if lang == "en" and self.en else self.vi


class StatusServiceConfig(StrictModel):
    slug: str = Field(pattern=SLUG_PATTERN,
                      description="unique across pages; names the badge /status/badge/SLUG.svg")
    name: Words = Field(description="public name (vi, optional en)")
    targets: list[str] = Field(default_factory=list, description="target names")
    departments: list[str] = Field(default_factory=list,
                                   description="department codes: every target of each")

    @model_validator(mode="after")
    def _some(self) -> StatusServiceConfig:
        if not self.targets and not self.departments:
            raise ValueError("give at least one of targets or departments")
        return self


class StatusGroupConfig(StrictModel):
    name: Words
    services: list[StatusServiceConfig] = Field(min_length=1)


class StatusRateLimit(StrictModel):
    """A token bucket per client address: ``burst`` requests at once, refilled at
    ``requests`` per ``per``."""

    requests: int = Field(120, ge=1, le=1_000_000)
    per: Duration = 60.0
    burst: int = Field(60, ge=1, le=1_000_000)


class StatusPageConfig(StrictModel):
    slug: str = Field(pattern=SLUG_PATTERN, description="the first page is also /status")
    title: Words
    description: Words | None = None
    groups: list[StatusGroupConfig] = Field(min_length=1)
    require_auth: bool = Field(False, description="a private page: needs the viewer role")
    history_days: int = Field(90, ge=7, le=90, description="days of availability bars")
    incident_days: int = Field(14, ge=1, le=90, description="days of past incidents shown")
    min_incident: Duration = Field(
        60.0, description="closed incidents shorter than this are not listed (unless they "
                          "have a public note)")
    refresh: Duration = Field(5.0, description="the page's snapshot is rebuilt at most "
                                               "this often")
    max_age: Duration = Field(30.0, description="Cache-Control max-age")
    rate_limit: StatusRateLimit = StatusRateLimit()

    @field_validator("slug")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_SLUGS:
            raise ValueError(f"{value!r} is reserved (badges live under /status/badge/)")
        return value

    def services(self) -> list[StatusServiceConfig]:
        return [s for g in self.groups for s in g.services]


def status_page_issues(pages: Sequence[StatusPageConfig], targets: Iterable[str],
                       departments: Iterable[str]) -> list[tuple[str, str]]:
    """(path, message) of every cross-reference mistake: unknown targets and departments,
    duplicate page or service slugs."""
    known_targets, known_departments = set(targets), set(departments)
    issues: list[tuple[str, str]] = []
    pages_seen: dict[str, int] = {}
    services_seen: dict[str, str] = {}
    for p, page in enumerate(pages):
        here = f"status_pages[{p}]"
        if page.slug in pages_seen:
            issues.append((f"{here}.slug", f"duplicate page slug {page.slug!r} (also "
                                           f"status_pages[{pages_seen[page.slug]}].slug)"))
        pages_seen.setdefault(page.slug, p)
        for g, group in enumerate(page.groups):
            for s, service in enumerate(group.services):
                where = f"{here}.groups[{g}].services[{s}]"
                if service.slug in services_seen:
                    issues.append((f"{where}.slug",
                                   f"duplicate service slug {service.slug!r} (also "
                                   f"{services_seen[service.slug]}.slug); badges are named "
                                   f"by it, so it must be unique across pages"))
                services_seen.setdefault(service.slug, where)
                for i, name in enumerate(service.targets):
                    if name not in known_targets:
                        issues.append((f"{where}.targets[{i}]",
                                       f"unknown target {name!r} (no collector has this name)"))
                for i, code in enumerate(service.departments):
                    if code not in known_departments:
                        issues.append((f"{where}.departments[{i}]",
                                       f"unknown department {code!r} (add it under "
                                       f"departments:)"))
    return issues
