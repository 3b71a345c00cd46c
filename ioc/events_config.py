"""The ``events:`` section of config.yaml: ingest queue, retention and the syslog receiver.

Kept apart from ``ioc.config`` so the syslog receiver and the event sink can import their
settings without importing the loader.
"""

from __future__ import annotations

import string

from pydantic import Field, field_validator

from ioc.config_types import Duration, ListenAddress, Name, StrictModel
from ioc.events import Category, Severity, TimeWindow
from ioc.regex import Pattern, check_pattern, compile_pattern

TEMPLATE_FIELDS = frozenset({"host", "app", "message", "pattern", "sender"})


class SyslogPattern(StrictModel):
    name: Name = Field(description="names the pattern; the `pattern` label of its events")
    match: str = Field(description="regular expression (RE2 syntax) searched in the message text")
    severity: Severity = "medium"
    category: Category = "other"
    title: str = Field("{pattern}: {host}", description="event title template")
    department: str | None = None

    @field_validator("match")
    @classmethod
    def _check_regex(cls, value: str) -> str:
        return check_pattern(value)

    @field_validator("title")
    @classmethod
    def _check_title(cls, value: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"invalid title template {value!r}: {exc}") from None
        for name in names:
            if not name.isidentifier():
                raise ValueError(f"title template field {{{name}}} must be a plain name "
                                 f"({', '.join(sorted(TEMPLATE_FIELDS))} or a named group)")
        return value

    def compiled(self) -> Pattern:
        return compile_pattern(self.match)


class SyslogConfig(StrictModel):
    enabled: bool = False
    udp: ListenAddress | None = Field("127.0.0.1:5514", description="UDP address; null: none")
    tcp: ListenAddress | None = Field("127.0.0.1:5514", description="TCP address; null: none")
    source: Name = Field("syslog", description="the `source` of syslog events")
    rate_limit: float = Field(20.0, gt=0, le=100_000,
                              description="events per second accepted from one sender")
    burst: int = Field(100, ge=1, le=1_000_000, description="events a sender may send at once")
    max_message_bytes: int = Field(8192, ge=480, le=65_535)
    patterns: list[SyslogPattern] = Field(default_factory=list)


class EventsConfig(StrictModel):
    queue_limit: int = Field(100_000, ge=1000, le=10_000_000,
                             description="events held in memory before they are written")
    retention: Duration = Field(90 * 86400.0, description="events older than this are pruned")
    max_future: Duration = Field(300.0, gt=0,
                                 description="how far after the receive time an event's own "
                                             "time may be")
    max_past: Duration = Field(7 * 86400.0, gt=0,
                               description="how far before the receive time an event's own "
                                           "time may be")

    def window(self, *, clamp: bool) -> TimeWindow:
        """The bounds on times from outside: the push API refuses, syslog and SIEM clamp."""
        return TimeWindow(self.max_past, self.max_future, clamp)
    syslog: SyslogConfig = SyslogConfig()
