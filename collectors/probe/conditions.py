"""Judging a page's content: wanted text, unwanted text, JSON conditions, title, defacement.

Pure functions over the decoded body, tested on their own; the http collector only fetches
and calls them. Keyword checks use whole words in Unicode (so "bet" hits "bet" but not
"alphabet", and "cá cược" hits Vietnamese text in any letter case).
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions

from ioc.regex import Pattern

# Words injected into defaced or compromised government sites (gambling and betting spam).
DEFAULT_FORBIDDEN_KEYWORDS: tuple[str, ...] = (
    "casino", "cá cược", "cá độ", "nổ hũ", "slot", "bet", "nhà cái", "tài xỉu", "game bài",
    "lô đề",
)

_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFC (Vietnamese may arrive decomposed) with whitespace runs collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def page_title(body: str) -> str | None:
    match = _TITLE.search(body)
    if match is None:
        return None
    return normalize(html.unescape(match.group(1)))


def word_pattern(words: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``words`` as whole words, case-insensitively."""
    cleaned = [normalize(w) for w in words if w.strip()]
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in cleaned)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def forbidden_hits(text: str, pattern: re.Pattern[str] | None, limit: int = 5) -> list[str]:
    """Distinct forbidden words found (lower-cased), at most ``limit``."""
    if pattern is None:
        return []
    found: list[str] = []
    for match in pattern.finditer(text):
        word = normalize(match.group(0)).lower()
        if word not in found:
            found.append(word)
            if len(found) >= limit:
                break
    return found


@dataclass(frozen=True)
class ContentRules:
    """The compiled content conditions of one target."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    case_insensitive: bool = False
    regex: Pattern | None = None
    json_query: jmespath.parser.ParsedResult | None = None
    json_source: str = ""
    expected_title: str | None = None

    def check(self, text: str) -> str | None:
        """The first unmet condition as a message, or None when all are met."""
        haystack = text.casefold() if self.case_insensitive else text
        for needle in self.contains:
            probe = needle.casefold() if self.case_insensitive else needle
            if probe not in haystack:
                return f"body does not contain {needle!r}"
        for needle in self.not_contains:
            probe = needle.casefold() if self.case_insensitive else needle
            if probe in haystack:
                return f"body contains {needle!r}"
        if self.regex is not None and self.regex.search(text) is None:
            return f"body does not match regex {self.regex.pattern!r}"
        if self.expected_title is not None:
            title = page_title(text)
            wanted = normalize(self.expected_title)
            got = title or ""
            ok = (wanted.casefold() in got.casefold()) if self.case_insensitive \
                else (wanted in got)
            if not ok:
                return f"page title is {title!r}, expected it to contain {wanted!r}"
        if self.json_query is not None:
            return check_json(text, self.json_query, self.json_source)
        return None


def check_json(text: str, query: jmespath.parser.ParsedResult, source: str) -> str | None:
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"body is not JSON ({exc.msg} at {exc.pos}), json_condition {source!r} unmet"
    try:
        value = query.search(document)
    except jmespath.exceptions.JMESPathError as exc:
        return f"json_condition {source!r} failed: {exc}"
    if value is None or value is False or value in ("", [], {}):
        shown = json.dumps(value, ensure_ascii=False)[:80]
        return f"json_condition {source!r} is {shown}"
    return None


def compile_jmespath(expression: str) -> jmespath.parser.ParsedResult:
    """Compile at config load, so a bad expression is a config error, not a failed check."""
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {exc}") from exc
