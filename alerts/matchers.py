"""Label matchers in Alertmanager's notation, shared by routes, inhibition and silences.

``severity="critical"``, ``department!="CAT"``, ``target=~"stp-.*"``, ``kind!~"http|tcp"``.
Regular expressions are anchored (the whole value must match, as ``^(?:value)$``), as in
Alertmanager, and a missing label matches as the empty string, so ``team=""`` selects alerts
without ``team``. They run on RE2 (``ioc.regex``), as Alertmanager's do on Go's engine: a
silence an operator types is matched in linear time on the event loop, never backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ioc.regex import Pattern, compile_pattern

_MATCHER = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s]*))\s*$')
_ESCAPE = re.compile(r"\\(.)")

OPERATORS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, op: str, value: str) -> Matcher:
        if op not in OPERATORS:
            raise ValueError(f"unknown matcher operator {op!r} (use one of {OPERATORS})")
        regex = None
        if op in ("=~", "!~"):
            regex = compile_pattern(value)  # PatternError (a ValueError) names the pattern
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual)
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value,
                "isRegex": self.op in ("=~", "!~"), "isEqual": self.op in ("=", "=~")}


def parse_matcher(text: str) -> Matcher:
    """``name="value"`` (or ``name=value``) with one of ``= != =~ !~``; ValueError if not."""
    if not isinstance(text, str):
        raise ValueError(f'expected a matcher such as severity="critical", got {text!r}')
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(f'expected a matcher such as severity="critical" or '
                         f'department=~"STP|STTTT", got {text!r}')
    name, op, quoted, bare = found.groups()
    value = _ESCAPE.sub(r"\1", quoted) if quoted is not None else bare
    return Matcher.create(name, op, value)


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(text) for text in texts)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def check_matchers(texts: list[str]) -> list[str]:
    """Pydantic validator body: refuse bad matchers at config load, keep the text form."""
    for text in texts:
        parse_matcher(text)
    return texts
