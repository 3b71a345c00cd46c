"""The province's units, read from the packaged ``province.yaml``.

The simulator serves one site per unit. The list lives in package data (not in code) so the
demo and the tests share exactly the names a real operator would see, and it is loaded with
:mod:`importlib.resources` so it works from a wheel as well as from a source tree.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import yaml

UnitKind = Literal["department", "district", "shared"]

# YAML section -> Unit.kind. Order matters: it is the order units are listed in.
_SECTIONS: tuple[tuple[str, UnitKind], ...] = (
    ("departments", "department"),
    ("districts", "district"),
    ("shared_systems", "shared"),
)


@dataclass(frozen=True, slots=True)
class Unit:
    """One department, district committee or shared system that has a website."""

    code: str
    name: str
    kind: UnitKind

    @property
    def path(self) -> str:
        """The unit's home page on the simulator (relative to its base URL)."""
        return f"/{self.code}/"


def load_province_data() -> dict[str, object]:
    """Parse the packaged YAML; kept separate so callers needing the header can reuse it.
    Parsed once per process (every simulator start and demo config reads it); each caller
    gets its own copy."""
    return copy.deepcopy(_parsed_province())


@functools.cache
def _parsed_province() -> dict[str, object]:
    text = resources.files(__package__).joinpath("province.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("province.yaml: top level must be a mapping")
    return data


def units() -> list[Unit]:
    """All units in a stable order: departments, then districts, then shared systems.

    Loaded afresh on each call (it is tiny) so there is no module-level cache to go stale.
    """
    data = load_province_data()
    result: list[Unit] = []
    seen: set[str] = set()
    for section, kind in _SECTIONS:
        # the YAML file's shape is checked by tests/collectors/test_portal_sim.py, not here
        entries: list[dict[str, object]] = data.get(section) or []  # type: ignore[assignment]
        for entry in entries:
            code, name = str(entry["code"]), str(entry["name"])
            if code in seen:
                raise ValueError(f"province.yaml: duplicate unit code {code!r}")
            seen.add(code)
            result.append(Unit(code=code, name=name, kind=kind))
    return result


def province_name() -> str:
    """The province's display name, used in page titles."""
    province = load_province_data().get("province")
    if isinstance(province, dict) and province.get("name"):
        return str(province["name"])
    return "Tỉnh Hậu Giang"
