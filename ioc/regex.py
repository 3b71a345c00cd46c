"""Regular expressions that operators and config files supply, on RE2's linear-time engine.

Python's ``re`` backtracks: ``(.*.*.*)*Z`` against a 30-character label takes seconds, and a
silence, route or syslog pattern is evaluated on the event loop, so one such pattern freezes
the wall, the API and the probes alike. RE2 (the ``google-re2`` package) matches in time
linear in the text whatever the pattern, at the price of a smaller syntax: no backreferences
(``\\1``), no lookaround (``(?=…)``, ``(?<!…)``), no possessive or atomic groups.
RE2's ``\\d``, ``\\w`` and ``\\s`` are ASCII only, where Python's match Vietnamese letters
(``Tra c\\w+`` must go on matching "Tra cứu"), so :func:`unicode_classes` rewrites them to
the Unicode classes Python means before compiling; ``\\b`` stays ASCII. Every pattern that
comes from outside the code goes through :func:`compile_pattern`; ioc's own fixed patterns
stay on ``re``.

:func:`compile_pattern` raises :class:`PatternError` (a ``ValueError``, so pydantic reports it
at the config path and the API answers 400) with RE2's own reason. Matching never raises: a
text holding lone surrogates (undecodable bytes a sender smuggled in) is matched with them
replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

#: RE2 refuses programs bigger than this while compiling (its default is 8 MiB): a config
#: pattern like ``(a{999}){999}`` is an error at load time instead of a memory spike.
MAX_PROGRAM_BYTES = 8 << 20


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message names the pattern and the reason."""


def _options(case_insensitive: bool) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the reason goes into PatternError, not onto stderr
    options.max_mem = MAX_PROGRAM_BYTES
    options.case_sensitive = not case_insensitive
    return options


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


#: Label values a matcher remembers its answer for. The same series are matched at every
#: evaluation and every notification flush, and a call into RE2 through its Python wrapper
#: costs ~5 µs where Python's ``re`` costs ~1 µs; a dict lookup costs ~0.1 µs.
MEMO_SIZE = 1024  # ~70 KB at most per pattern (the keys are the label strings themselves)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled operator pattern: ``search`` finds it anywhere, ``fullmatch`` anchors it."""

    pattern: str
    _regex: Any
    _memo: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def search(self, text: str) -> Any:
        """The first match in ``text`` (a ``re2`` match, with ``group``/``groupdict``) or None."""
        try:
            return self._regex.search(text)
        except UnicodeEncodeError:
            return self._regex.search(_valid(text))

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of ``text`` matches, as Alertmanager anchors its matchers."""
        memo = self._memo
        found = memo.get(text)
        if found is None:
            try:
                found = self._regex.fullmatch(text) is not None
            except UnicodeEncodeError:
                found = self._regex.fullmatch(_valid(text)) is not None
            if len(memo) >= MEMO_SIZE:
                memo.clear()  # a new set of values: start over rather than track age
            memo[text] = found
        return found


@dataclass(frozen=True, slots=True)
class BytesPattern:
    """A compiled operator pattern searched in raw bytes (a TCP banner)."""

    pattern: str
    _regex: Any

    def search(self, data: bytes) -> bool:
        return self._regex.search(data) is not None


# Python's meaning of the Perl classes, in RE2's Unicode properties: outside a character
# class (first) and inside one (second; None: keep RE2's ASCII class, no negation there).
_CLASSES: dict[str, tuple[str, str | None]] = {
    "w": (r"[\p{L}\p{N}_]", r"\p{L}\p{N}_"),
    "W": (r"[^\p{L}\p{N}_]", None),
    "d": (r"\p{Nd}", r"\p{Nd}"),
    "D": (r"\P{Nd}", r"\P{Nd}"),
    "s": (r"[\s\p{Z}\x{85}]", r"\s\p{Z}\x{85}"),
    "S": (r"[^\s\p{Z}\x{85}]", None),
}


_HEX = frozenset("0123456789abcdefABCDEF")


def unicode_classes(pattern: str) -> str:
    """``pattern`` with Python's meaning where RE2 spells it differently or not at all.

    ``\\w \\W \\d \\D \\s \\S`` become the Unicode classes Python means; ``\\Z`` (the end,
    in Python) becomes RE2's ``\\z``; ``\\uXXXX`` and ``\\UXXXXXXXX`` become ``\\x{…}``; a
    repetition ``{,n}`` (Python: 0 to n times; RE2: the literal text) becomes ``{0,n}``.
    A small scan instead of a parser (written here because no library translates Python
    patterns to RE2): it only has to know escapes and where a character class (``[...]``,
    where ``]`` first is a literal) starts and ends; RE2 parses and checks the result.
    """
    out: list[str] = []
    in_class = False
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            width = {"u": 4, "U": 8}.get(nxt, 0)
            digits = pattern[i + 2:i + 2 + width]
            if width and len(digits) == width and set(digits) <= _HEX:
                out.append(f"\\x{{{digits}}}")
                i += 2 + width
                continue
            if nxt == "Z" and not in_class:
                out.append("\\z")
                i += 2
                continue
            mapped = _CLASSES.get(nxt)
            replacement = None if mapped is None else mapped[1] if in_class else mapped[0]
            out.append(replacement if replacement is not None else pattern[i:i + 2])
            i += 2
            continue
        if char == "{" and not in_class and pattern.startswith("{,", i):
            end = pattern.find("}", i + 2)
            if end > i + 2 and pattern[i + 2:end].isdigit() and out:
                out.append("{0," + pattern[i + 2:end] + "}")
                i = end + 1
                continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a literal ] first in the class
                out.append("]")
                i += 1
            continue
        if char == "[" and in_class and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)  # [[:alpha:]] inside a class
            if end != -1:
                out.append(pattern[i:end + 2])
                i = end + 2
                continue
        if char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


def _valid(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _compile(source: str | bytes, case_insensitive: bool) -> Any:
    try:
        return re2.compile(source, _options(case_insensitive))
    except re2.error as exc:
        shown = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        raise PatternError(f"invalid regular expression {shown!r}: {_reason(exc)} "
                           "(RE2 syntax: no backreferences or lookaround)") from None
    except (TypeError, UnicodeEncodeError) as exc:
        raise PatternError(f"invalid regular expression {source!r}: {exc}") from None


def compile_pattern(pattern: str, *, case_insensitive: bool = False) -> Pattern:
    """RE2-compile an operator's pattern; PatternError when RE2 cannot."""
    if not isinstance(pattern, str):
        raise PatternError(f"expected a regular expression as text, got {pattern!r}")
    return Pattern(pattern, _compile(unicode_classes(pattern), case_insensitive))


def compile_bytes_pattern(pattern: str) -> BytesPattern:
    """RE2-compile an operator's pattern for searching bytes (UTF-8 of the pattern)."""
    if not isinstance(pattern, str):
        raise PatternError(f"expected a regular expression as text, got {pattern!r}")
    return BytesPattern(pattern, _compile(pattern.encode("utf-8", "surrogatepass"), False))


def check_pattern(value: str) -> str:
    """Pydantic validator body: refuse a pattern RE2 cannot compile, keep the text."""
    compile_pattern(value)
    return value
