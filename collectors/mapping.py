"""JMESPath field mapping: any JSON statistics payload to ioc's canonical counters.

Portals are built on different systems and each answers in its own shape. Rather than a
parser per system, a config block names, with JMESPath expressions, the list of units in the
payload, the unit code inside each item, and each counter inside each item. ioc's own contract
(docs/integrations/portal.md) is just the built-in mapping.

Everything read from the payload is untrusted: a missing field, a negative or non-numeric
count, a strange unit code all raise :class:`PayloadError` with a message naming the unit and
the field, so the operator can tell the integrator exactly what is wrong.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import jmespath
import jmespath.exceptions
import jmespath.parser
from pydantic import Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from ioc import trace
from ioc.config_types import StrictModel
from ioc.logs import fields

log = logging.getLogger("ioc.collector")

MAX_COUNT = 10**12          # far above any province's yearly dossiers; beyond it is garbage
MAX_CODE_LENGTH = 64
_CODE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


class PayloadError(ValueError):
    """The payload cannot be read with the mapping; the message names what and where."""


def compile_expression(text: str) -> jmespath.parser.ParsedResult:
    """Compile a JMESPath expression, turning a syntax error into a ValueError for config.

    The message is one line (where it broke, not jmespath's caret drawing), and a name with
    diacritics or spaces, the usual mistake with Vietnamese payloads, gets the quoting hint.
    """
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {text!r}: {_why(exc, text)}") from None


def _why(exc: jmespath.exceptions.JMESPathError, text: str) -> str:
    position = getattr(exc, "lex_position", getattr(exc, "lexer_position", None))
    what = (str(exc).splitlines() or ["syntax error"])[0].rstrip(": ")
    where = f" at character {position + 1}" if isinstance(position, int) else ""
    why = f"{what}{where}"
    if not text.isascii() or " " in text.split('"')[0]:
        why += ("; a name with diacritics or spaces must be in double quotes, e.g. "
                "'\"Tiếp Nhận\".TongSo'")
    return why


class FieldMapping(StrictModel):
    """Where the units and their counters are in a payload (config block ``mapping``)."""

    units: str = Field(description="JMESPath from the payload's root to the list of units")
    code: str = Field(description="JMESPath inside one unit: its code")
    fields: dict[str, str] = Field(
        min_length=1, description="canonical counter → JMESPath inside one unit")
    optional: list[str] = Field(
        default_factory=list,
        description="counters or province values that may be missing or null in a payload "
                    "(what null means: null_means)")
    null_means: Literal["unknown", "derive"] = Field(
        "unknown",
        description="an optional counter that is null or missing: unknown (never published, "
                    "nothing derived from it) or derive (total minus the other parts)")
    province: dict[str, str] = Field(
        default_factory=dict,
        description="province-wide values → JMESPath from the payload's root")

    def check_names(self, counters: tuple[str, ...], province: tuple[str, ...]) -> None:
        """Refuse bad expressions and names the collector does not know (called by each
        collector's Config, which knows its counters).

        Every problem is reported at once, each at its own path under ``mapping`` (an
        expression that does not compile, an unknown counter, an optional name that is
        mapped nowhere), so ``ioc check`` lists them all instead of one per run.
        """
        problems: list[tuple[tuple[str | int, ...], str, str]] = []

        def expression(loc: tuple[str | int, ...], text: str) -> None:
            try:
                compile_expression(text)
            except ValueError as exc:
                problems.append((loc, text, str(exc)))

        expression(("units",), self.units)
        expression(("code",), self.code)
        for name, text in self.fields.items():
            if name not in counters:
                problems.append((("fields", name), name, f"unknown counter {name!r} "
                                 f"(known: {', '.join(counters)})"))
            expression(("fields", name), text)
        for index, name in enumerate(self.optional):
            if name not in self.fields and name not in self.province:
                problems.append((("optional", index), name,
                                 f"{name!r} is not under mapping.fields or mapping.province"))
        for name, text in self.province.items():
            if name not in province:
                known = ", ".join(province) or "none"
                problems.append((("province", name), name,
                                 f"unknown value {name!r} (known: {known})"))
            expression(("province", name), text)
        if problems:
            raise ValidationError.from_exception_data("mapping", [
                InitErrorDetails(type=PydanticCustomError(CONFIG_ERROR, message),
                                 loc=("mapping", *loc), input=name)
                for loc, name, message in problems])


# The error type of the mapping's own checks; ioc.config prints its message as it is.
CONFIG_ERROR = "ioc_config"


class ListedUnit(Protocol):
    """A unit read from a payload, as far as noticing unknown codes goes (``UnitCounts`` and
    each collector's own unit rows have it)."""

    @property
    def code(self) -> str: ...
    @property
    def listed(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class UnitCounts:
    """One unit's counters as read from a payload (canonical names; absent optional omitted)."""

    code: str
    values: dict[str, int]
    # optional counters left null or out that must stay unknown (``null_means: unknown``)
    unknown: frozenset[str] = frozenset()
    listed: bool = True                   # the code is a department of the config


@dataclass(frozen=True, slots=True)
class Extracted:
    units: tuple[UnitCounts, ...]
    province: dict[str, int]


def parse_count(value: Any, where: str) -> int:
    """A count must be a non-negative whole number; digit strings are accepted (many portals
    send counts as text). Anything else raises PayloadError naming ``where``."""
    if isinstance(value, bool):
        raise PayloadError(f"{where} is {value!r}, expected a count")
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit():
            raise PayloadError(f"{where} is {_show(value)}, expected a count")
        number: float = int(text)
    elif isinstance(value, int | float):
        number = value
    else:
        raise PayloadError(f"{where} is {_show(value)}, expected a count")
    if isinstance(number, float) and (not math.isfinite(number) or not number.is_integer()):
        raise PayloadError(f"{where} is {_show(value)}, expected a whole number")
    if number < 0:
        raise PayloadError(f"{where} is {_show(value)}, a count cannot be negative")
    if number > MAX_COUNT:
        raise PayloadError(f"{where} is {_show(value)}, more than any plausible count")
    return int(number)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class CompiledMapping:
    """A :class:`FieldMapping` with its expressions compiled once, at collector start.

    ``departments`` are the department codes of the config; when given, a unit whose code
    (after ``department_map``) is not one of them is marked ``listed=False`` so the collector
    can warn about it, count it and, with ``unknown_units: exclude``, keep it out of the
    province's totals.
    """

    def __init__(self, mapping: FieldMapping, department_map: Mapping[str, str],
                 departments: frozenset[str] | None = None) -> None:
        self.mapping = mapping
        self.units = compile_expression(mapping.units)
        self.code = compile_expression(mapping.code)
        self.fields = {name: compile_expression(e) for name, e in mapping.fields.items()}
        self.province = {name: compile_expression(e) for name, e in mapping.province.items()}
        self.optional = frozenset(mapping.optional)
        self.department_map = dict(department_map)
        self.departments = departments

    def extract(self, payload: Any) -> Extracted:
        """Read every unit's counters; raise PayloadError naming the first thing that is wrong.

        While ``ioc try`` traces the poll, every read is recorded and reading goes on past a
        bad field, so the trace shows all of them; the error raised is the same.
        """
        tracer = trace.active()
        found = self.units.search(payload)
        if not isinstance(found, list):
            kind = "nothing" if found is None else type(found).__name__
            problem = f"units ({self.mapping.units!r}) selected {kind}, expected a list"
            if tracer is not None:
                tracer.read("payload", "units", self.mapping.units, _outline(found), None,
                            problem)
            raise PayloadError(problem)
        problems: list[str] = []
        units: list[UnitCounts] = []
        seen: dict[str, int] = {}
        unknown_nulls = self.mapping.null_means == "unknown"
        for index, item in enumerate(found):
            here = f"units[{index}]"
            try:
                code = self._code(item, here, tracer)
                if code in seen:
                    raise PayloadError(f"{here}: department {code!r} appears twice "
                                       f"(also units[{seen[code]}])")
            except PayloadError as exc:
                if tracer is None:
                    raise
                problems.append(str(exc))
                continue
            seen[code] = index
            scope = f"{here} ({code})"
            values: dict[str, int] = {}
            nulls: set[str] = set()
            for name, expression in self.fields.items():
                raw = expression.search(item) if isinstance(item, dict) else None
                if tracer is None and type(raw) is int and 0 <= raw <= MAX_COUNT:
                    values[name] = raw  # the usual case, checked as parse_count would
                    continue
                source = self.mapping.fields[name]
                where = f"{scope}.{name} ({source!r})"
                if raw is None:
                    if name in self.optional:
                        nulls.add(name)
                        if tracer is not None:
                            tracer.read(scope, name, source, raw, None,
                                        "null: unknown, not published" if unknown_nulls
                                        else "null: derived from its total if mapped")
                        continue
                    problem = f"{where} is missing"
                    if tracer is None:
                        raise PayloadError(problem)
                    tracer.read(scope, name, source, raw, None, problem)
                    problems.append(problem)
                    continue
                try:
                    values[name] = parse_count(raw, where)
                except PayloadError as exc:
                    if tracer is None:
                        raise
                    tracer.read(scope, name, source, raw, None, str(exc))
                    problems.append(str(exc))
                    continue
                if tracer is not None:
                    tracer.read(scope, name, source, raw, values[name],
                                "text read as a number" if isinstance(raw, str) else "")
            listed = self.departments is None or code in self.departments
            units.append(UnitCounts(code, values, frozenset(nulls) if unknown_nulls
                                    else frozenset(), listed))
        province: dict[str, int] = {}
        for name, expression in self.province.items():
            raw = expression.search(payload)
            source = self.mapping.province[name]
            where = f"province.{name} ({source!r})"
            if raw is None:
                if name in self.optional:
                    if tracer is not None:
                        tracer.read("province", name, source, raw, None,
                                    "null: not published")
                    continue
                problem = f"{where} is missing"
                if tracer is None:
                    raise PayloadError(problem)
                tracer.read("province", name, source, raw, None, problem)
                problems.append(problem)
                continue
            try:
                province[name] = parse_count(raw, where)
            except PayloadError as exc:
                if tracer is None:
                    raise
                tracer.read("province", name, source, raw, None, str(exc))
                problems.append(str(exc))
                continue
            if tracer is not None:
                tracer.read("province", name, source, raw, province[name],
                            "text read as a number" if isinstance(raw, str) else "")
        if problems:
            raise PayloadError(problems[0])
        return Extracted(tuple(units), province)

    def _code(self, item: Any, here: str, tracer: trace.Trace | None) -> str:
        raw = self.code.search(item) if isinstance(item, dict) else None
        source = self.mapping.code
        if raw is None:
            raise self._code_problem(tracer, here, raw,
                                     f"{here}: the unit code ({source!r}) is missing")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise self._code_problem(tracer, here, raw,
                                     f"{here}: the unit code is {_show(raw)}, expected text")
        text = str(raw).strip()
        code = self.department_map.get(text, text)
        if not _CODE.match(code):
            raise self._code_problem(
                tracer, here, raw,
                f"{here}: the unit code {_show(raw)} is empty, longer than "
                f"{MAX_CODE_LENGTH} characters or has control characters")
        if tracer is not None:
            notes = []
            if text in self.department_map:
                notes.append(f"department_map: {text} → {code}")
            if self.departments is not None and code not in self.departments:
                notes.append("not a department of the config (unknown unit)")
            tracer.read(f"{here} ({code})", "code", source, raw, code, "; ".join(notes))
        return code

    def _code_problem(self, tracer: trace.Trace | None, here: str, raw: Any,
                      problem: str) -> PayloadError:
        if tracer is not None:
            tracer.read(here, "code", self.mapping.code, raw, None, problem)
        return PayloadError(problem)


def _outline(value: Any) -> Any:
    """What a units expression found, cut to its shape (an object's keys) for the trace."""
    if isinstance(value, dict):
        return {key: "…" for key in list(value)[:20]}
    return value


class UnknownUnits:
    """Unit codes that are no department of the config: a warning once per code, a count.

    A typo in ``department_map`` (or a unit the province has not listed under
    ``departments:``) would otherwise move a department's figures under a raw code without a
    word. The collector's poll still succeeds; the log says which code, once, and
    ``count`` (bound by the app to ``ioc_backlog_unknown_units_total``) grows by the number
    of such units in every poll, so the problem stays visible on /metrics.
    """

    def __init__(self, target: str, count: Callable[[int], None] | None = None) -> None:
        self.target = target
        self.count = count
        self._warned: set[str] = set()

    def report(self, units: Iterable[ListedUnit], policy: str) -> None:
        """Note the polled ``units`` that are not listed (``UnitCounts.listed``)."""
        unknown = [unit.code for unit in units if not unit.listed]
        if not unknown:
            return
        if self.count is not None:
            self.count(len(unknown))
        tracer = trace.active()
        where = "left out of" if policy == "exclude" else "counted in"
        for code in unknown:
            if tracer is not None:
                tracer.note(f"unknown unit {code!r}: not a department of the config; "
                            f"published under its own code and {where} the province's "
                            "totals (unknown_units)")
            if code not in self._warned and tracer is None:
                self._warned.add(code)
                log.warning("unit code is not a department of the config", extra=fields(
                    target=self.target, code=code, province_totals=where.split()[0]))
