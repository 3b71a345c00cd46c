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

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser
from pydantic import Field, field_validator

from ioc.config_types import StrictModel

MAX_COUNT = 10**12          # far above any province's yearly dossiers; beyond it is garbage
MAX_CODE_LENGTH = 64
_CODE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


class PayloadError(ValueError):
    """The payload cannot be read with the mapping; the message names what and where."""


def compile_expression(text: str) -> jmespath.parser.ParsedResult:
    """Compile a JMESPath expression, turning a syntax error into a ValueError for config."""
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {text!r}: {exc}") from None


def _check_expression(value: str) -> str:
    compile_expression(value)
    return value


class FieldMapping(StrictModel):
    """Where the units and their counters are in a payload (config block ``mapping``)."""

    units: str = Field(description="JMESPath from the payload's root to the list of units")
    code: str = Field(description="JMESPath inside one unit: its code")
    fields: dict[str, str] = Field(
        min_length=1, description="canonical counter → JMESPath inside one unit")
    optional: list[str] = Field(
        default_factory=list,
        description="counters or province values that may be missing or null in a payload "
                    "(then not reported)")
    province: dict[str, str] = Field(
        default_factory=dict,
        description="province-wide values → JMESPath from the payload's root")

    @field_validator("units", "code")
    @classmethod
    def _expression(cls, value: str) -> str:
        return _check_expression(value)

    @field_validator("fields", "province")
    @classmethod
    def _expressions(cls, value: dict[str, str]) -> dict[str, str]:
        for key, expression in value.items():
            try:
                compile_expression(expression)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value

    def check_names(self, counters: tuple[str, ...], province: tuple[str, ...]) -> None:
        """Refuse counters the collector does not know (called by each collector's Config)."""
        for name in self.fields:
            if name not in counters:
                raise ValueError(f"mapping.fields: unknown counter {name!r} "
                                 f"(known: {', '.join(counters)})")
        for name in self.optional:
            if name not in self.fields and name not in self.province:
                raise ValueError(f"mapping.optional: {name!r} is not under mapping.fields "
                                 "or mapping.province")
        for name in self.province:
            if name not in province:
                known = ", ".join(province) or "none"
                raise ValueError(f"mapping.province: unknown value {name!r} (known: {known})")


@dataclass(frozen=True, slots=True)
class UnitCounts:
    """One unit's counters as read from a payload (canonical names; absent optional omitted)."""

    code: str
    values: dict[str, int]


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
    """A :class:`FieldMapping` with its expressions compiled once, at collector start."""

    def __init__(self, mapping: FieldMapping, department_map: Mapping[str, str]) -> None:
        self.mapping = mapping
        self.units = compile_expression(mapping.units)
        self.code = compile_expression(mapping.code)
        self.fields = {name: compile_expression(e) for name, e in mapping.fields.items()}
        self.province = {name: compile_expression(e) for name, e in mapping.province.items()}
        self.optional = frozenset(mapping.optional)
        self.department_map = dict(department_map)

    def extract(self, payload: Any) -> Extracted:
        """Read every unit's counters; raise PayloadError on the first thing that is wrong."""
        found = self.units.search(payload)
        if not isinstance(found, list):
            kind = "nothing" if found is None else type(found).__name__
            raise PayloadError(f"units ({self.mapping.units!r}) selected {kind}, expected a list")
        units: list[UnitCounts] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(found):
            here = f"units[{index}]"
            code = self._code(item, here)
            if code in seen:
                raise PayloadError(f"{here}: department {code!r} appears twice "
                                   f"(also units[{seen[code]}])")
            seen[code] = index
            values: dict[str, int] = {}
            for name, expression in self.fields.items():
                raw = expression.search(item) if isinstance(item, dict) else None
                where = f"{here} ({code}).{name} ({self.mapping.fields[name]!r})"
                if raw is None:
                    if name in self.optional:
                        continue
                    raise PayloadError(f"{where} is missing")
                values[name] = parse_count(raw, where)
            units.append(UnitCounts(code, values))
        province: dict[str, int] = {}
        for name, expression in self.province.items():
            raw = expression.search(payload)
            where = f"province.{name} ({self.mapping.province[name]!r})"
            if raw is None:
                if name in self.optional:
                    continue
                raise PayloadError(f"{where} is missing")
            province[name] = parse_count(raw, where)
        return Extracted(tuple(units), province)

    def _code(self, item: Any, here: str) -> str:
        raw = self.code.search(item) if isinstance(item, dict) else None
        if raw is None:
            raise PayloadError(f"{here}: the unit code ({self.mapping.code!r}) is missing")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise PayloadError(f"{here}: the unit code is {_show(raw)}, expected text")
        code = str(raw).strip()
        code = self.department_map.get(code, code)
        if not _CODE.match(code):
            raise PayloadError(f"{here}: the unit code {_show(raw)} is empty, longer than "
                               f"{MAX_CODE_LENGTH} characters or has control characters")
        return code
