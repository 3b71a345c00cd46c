"""Judging a page's content: wanted text, unwanted text, JSON conditions, title, defacement.

Pure functions over the decoded body, tested on their own; the http collector only fetches
and calls them. Keyword checks read the page's visible text (collectors.probe.text: entities
decoded, tags and invisible characters removed, NFC, case-folded) and match whole words in
Unicode (so "bet" hits "bet" but not "alphabet", and "cá cược" hits Vietnamese text in any
letter case, written in entities or decomposed). Work over a page is sliced: the functions
that read one are generators that yield between slices, so the collector can let the event
loop run, and ``drain`` runs them at once.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import jmespath
import jmespath.exceptions

from collectors.probe.text import SLICE, fold, strip_marks, visible, visible_slices
from ioc.regex import Pattern

T = TypeVar("T")

# Words injected into defaced or compromised government sites (gambling and betting spam).
DEFAULT_FORBIDDEN_KEYWORDS: tuple[str, ...] = (
    "casino", "cá cược", "cá độ", "nổ hũ", "slot", "bet", "nhà cái", "tài xỉu", "game bài",
    "lô đề",
)

# Bounded so that a page of many unclosed "<title" costs linear time, not quadratic.
_TITLE = re.compile(r"<title[^<>]{0,1024}>(.{0,4096}?)</title\s*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
_WINDOW = SLICE   # characters of text one keyword search covers between two yields


def normalize(text: str) -> str:
    """NFC (Vietnamese may arrive decomposed) with whitespace runs collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def page_title(body: str) -> str | None:
    match = _TITLE.search(body)
    if match is None:
        return None
    return visible(match.group(1))


def drain(steps: Generator[None, None, T]) -> T:
    """Run a sliced computation to its end at once (tests, benchmarks, short texts)."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return cast(T, stop.value)


@dataclass(frozen=True, slots=True)
class PageText:
    """A decoded page and its visible text (collectors.probe.text), folded for keywords."""

    raw: str
    visible: str
    folded: str


def read_page(raw: str) -> Generator[None, None, PageText]:
    """The page's texts, a slice of work per step (the caller lets the loop run between)."""
    shown: list[str] = []
    folded: list[str] = []
    for piece in visible_slices(raw):
        shown.append(piece)
        folded.append(fold(piece))
        yield
    return PageText(raw, "".join(shown).strip(), "".join(folded).strip())


@dataclass(frozen=True, slots=True)
class Keywords:
    """Words searched in a page's folded visible text, whole words only.

    With ``unaccented``, each word with diacritics is also searched as written without any
    (``nha cai`` for ``nhà cái``, ``lo de`` for ``lô đề``). Only a span the page wrote with
    no diacritic at all matches that form, so correctly accented text that merely shares a
    word's bare letters (``lo để``, "worry to", beside ``lô đề``) is not taken for it; text
    written without diacritics throughout (SMS style) can still be.
    """

    words: tuple[str, ...]
    pattern: re.Pattern[str]
    unaccented: bool
    longest: int

    @classmethod
    def compile(cls, words: Sequence[str], unaccented: bool = False) -> Keywords | None:
        cleaned = tuple(dict.fromkeys(fold(visible(w)) for w in words if w.strip()))
        if not cleaned:
            return None
        forms = cleaned + (tuple(strip_marks(w) for w in cleaned) if unaccented else ())
        forms = tuple(dict.fromkeys(forms))
        alternatives = "|".join(re.escape(w).replace(r"\ ", " ")
                                for w in sorted(forms, key=len, reverse=True))
        return cls(words=cleaned, pattern=re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)"),
                   unaccented=unaccented, longest=max(len(w) for w in forms))

    def search(self, page: PageText, limit: int = 5) -> Generator[None, None, list[str]]:
        """Distinct words found (as the page wrote them, folded), at most ``limit``.

        The folded text is searched a window at a time (yielding between windows); a
        window reaches ``longest`` characters into the next so no word is cut in two.
        """
        found: list[str] = []
        text = page.folded
        size = len(text)
        start = 0
        while start < size:
            stop = min(size, start + _WINDOW + self.longest + 1)
            for match in self.pattern.finditer(text, start, stop):
                if match.start() >= start + _WINDOW:
                    break
                if match.end() == stop < size:
                    continue  # the word may go on past the window: the next one sees it
                word = match.group(0)
                if word not in found:
                    found.append(word)
                    if len(found) >= limit:
                        return found
            start += _WINDOW
            if start < size:
                yield
        return found


def word_pattern(words: Sequence[str]) -> Keywords | None:
    """``words`` compiled for ``forbidden_hits`` (accented forms only)."""
    return Keywords.compile(words)


def forbidden_hits(text: str, keywords: Keywords | None, limit: int = 5) -> list[str]:
    """Distinct forbidden words in ``text`` (HTML or plain), at most ``limit``."""
    if keywords is None:
        return []
    page = drain(read_page(text))
    return drain(keywords.search(page, limit))


@dataclass(frozen=True)
class ContentRules:
    """The compiled content conditions of one target.

    ``contains`` and ``not_contains`` look for each string in the page as sent and in its
    visible text (both forms normalised the same way), so ``Sở Tư pháp`` is found whether
    the page wrote it in entities, split by a tag or decomposed, and markup or JSON
    fragments are still found as written. ``regex`` runs on the page as sent.
    """

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    case_insensitive: bool = False
    regex: Pattern | None = None
    json_query: jmespath.parser.ParsedResult | None = None
    json_source: str = ""
    expected_title: str | None = None

    def check(self, page: PageText | str) -> str | None:
        """The first unmet condition as a message, or None when all are met."""
        if isinstance(page, str):
            page = drain(read_page(page))
        text = page.raw
        folded_raw: list[str] = []

        def present(needle: str) -> bool:
            if self.case_insensitive:
                if fold(visible(needle)) in page.folded:
                    return True
                if not folded_raw:
                    folded_raw.append(text.casefold())
                return needle.casefold() in folded_raw[0]
            return needle in text or visible(needle) in page.visible

        for needle in self.contains:
            if not present(needle):
                return f"body does not contain {needle!r}"
        for needle in self.not_contains:
            if present(needle):
                return f"body contains {needle!r}"
        if self.regex is not None and self.regex.search(text) is None:
            return f"body does not match regex {self.regex.pattern!r}"
        if self.expected_title is not None:
            title = page_title(text)
            wanted = visible(self.expected_title)
            got = title or ""
            ok = (fold(wanted) in fold(got)) if self.case_insensitive else (wanted in got)
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
