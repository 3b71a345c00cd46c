"""docs/configuration.md documents every config key, and nothing but config keys.

The habit comes from Datasette: a test fails as soon as a setting is added without being
documented. The config models are walked recursively (ConfigFile's sections, the list item
models, the CollectorConfig base and every collector type's Config model), and each key must
be the first cell of a table row, written as `key`, under its own section heading:

    ## `storage`                            <- ConfigFile.storage (a model)
    ## `departments[]`                      <- ConfigFile.departments (a list of models)
    ## `collectors[]` — common keys         <- CollectorConfig
    ## `collectors[]` type: `http`          <- COLLECTOR_TYPES["http"].Config, own keys only

A section runs from its "## " heading to the next "## " heading (headings inside fenced code
blocks do not count). Keys of a nested model are documented in their section as `parent.child`
(`parent[].child` for a list of models). The Default cell must show the model's real default.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from collectors.registry import COLLECTOR_TYPES
from ioc.config_types import CollectorConfig, format_duration, parse_duration
from service.config import ConfigFile, parse_config

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "configuration.md"
DEMO_CONFIG = ROOT / "config.yaml"

# ConfigFile.collectors is a list of raw mappings, validated per type; its sections are built
# from CollectorConfig and COLLECTOR_TYPES instead of from its annotation.
COLLECTORS_KEY = "collectors"
COLLECTORS_COMMON_HEADING = "`collectors[]` — common keys"
TABLE_HEADER = ["Key", "Type", "Default", "Description"]
KEY_CELL = re.compile(r"^`([A-Za-z_][A-Za-z0-9_]*(?:(?:\[\])?\.[A-Za-z_][A-Za-z0-9_]*)*)`$")
SEPARATOR_ROW = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


# --------------------------------------------------------------------------------------------
# The models


@dataclass(frozen=True)
class Section:
    ident: str  # short name for test ids: storage, departments[], collectors[http]
    heading: str  # text after "## " in the doc
    model: type[BaseModel]
    exclude: frozenset[str] = field(default=frozenset())  # keys documented in another section

    def keys(self) -> dict[str, FieldInfo]:
        return {key: info for key, info in model_keys(self.model) if key not in self.exclude}


def model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside an annotation (through Optional/Union/list), and whether it is a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        for arg in get_args(annotation):
            model, _ = model_of(arg)
            if model is not None:
                return model, True
        return None, False
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            model, many = model_of(arg)
            if model is not None:
                return model, many
    return None, False


def model_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every key of ``model``, nested models' keys spelled ``parent.child``/``parent[].child``."""
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)  # `for`, `continue`: the spelling in YAML
        yield key, info
        nested, many = model_of(info.annotation)
        if nested is not None:
            yield from model_keys(nested, key + ("[]." if many else "."))


def config_sections() -> list[Section]:
    sections: list[Section] = []
    for name, info in ConfigFile.model_fields.items():
        if name == COLLECTORS_KEY:
            continue
        model, many = model_of(info.annotation)
        if model is None:
            continue  # reported by test_every_top_level_key_is_a_modelled_section
        ident = name + ("[]" if many else "")
        sections.append(Section(ident, f"`{ident}`", model))
    sections.append(Section("collectors[]", COLLECTORS_COMMON_HEADING, CollectorConfig))
    base = frozenset(CollectorConfig.model_fields)
    for kind in sorted(COLLECTOR_TYPES):
        sections.append(Section(f"collectors[{kind}]", f"`collectors[]` type: `{kind}`",
                                COLLECTOR_TYPES[kind].Config, exclude=base))
    return sections


SECTIONS = config_sections()
SECTION_BY_HEADING = {section.heading: section for section in SECTIONS}


def render_default(info: FieldInfo) -> str | None:
    """How the Default cell must spell the model's default; None when any text will do."""
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None or isinstance(value, BaseModel):
        return None  # "defaults to another key" or a whole section: described in words
    if any(getattr(meta, "func", None) is parse_duration for meta in info.metadata):
        return f"`{format_duration(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict | tuple):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value}`"


# --------------------------------------------------------------------------------------------
# The document


@dataclass(frozen=True)
class Row:
    line: int
    cells: dict[str, str]  # column header -> cell text
    first: str  # first cell, whatever the header


@dataclass
class DocSection:
    heading: str
    line: int
    rows: list[Row] = field(default_factory=list)
    bad_headers: list[tuple[int, list[str]]] = field(default_factory=list)


def split_row(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def parse_doc(text: str) -> list[DocSection]:
    """The "## " sections of the doc with the body rows of their tables."""
    sections: list[DocSection] = []
    lines = text.splitlines()
    in_fence = False
    header: list[str] | None = None
    for index, line in enumerate(lines):
        number = index + 1
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if line.startswith("## "):
            sections.append(DocSection(line[3:].strip(), number))
            header = None
            continue
        if not sections:
            continue
        if not line.lstrip().startswith("|"):
            header = None
            continue
        if SEPARATOR_ROW.match(line.strip()):
            continue
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if SEPARATOR_ROW.match(following):
            header = split_row(line)
            if header != TABLE_HEADER:
                sections[-1].bad_headers.append((number, header))
            continue
        cells = split_row(line)
        columns = header or []
        sections[-1].rows.append(Row(number, dict(zip(columns, cells, strict=False)), cells[0]))
    return sections


@pytest.fixture(scope="module")
def doc_sections() -> list[DocSection]:
    assert DOC.is_file(), f"{DOC} is missing"
    return parse_doc(DOC.read_text(encoding="utf-8"))


def is_config_heading(heading: str) -> bool:
    return heading.startswith("`")


def find_section(doc_sections: list[DocSection], heading: str) -> DocSection | None:
    found = [s for s in doc_sections if s.heading == heading]
    assert len(found) <= 1, f"heading '## {heading}' appears {len(found)} times"
    return found[0] if found else None


# --------------------------------------------------------------------------------------------
# Every key is documented, in its section, with its real default


KEY_CASES = [
    pytest.param(section, key, info, id=f"{section.ident}.{key}")
    for section in SECTIONS
    for key, info in section.keys().items()
]


@pytest.mark.parametrize(("section", "key", "info"), KEY_CASES)
def test_key_is_documented(doc_sections: list[DocSection], section: Section, key: str,
                           info: FieldInfo) -> None:
    doc = find_section(doc_sections, section.heading)
    assert doc is not None, (
        f"docs/configuration.md has no '## {section.heading}' section "
        f"(for {section.model.__name__})")
    rows = [row for row in doc.rows if row.first == f"`{key}`"]
    assert rows, (
        f"`{key}` ({section.model.__name__}.{key}) is not documented: add a table row "
        f"'| `{key}` | type | default | description |' under '## {section.heading}' "
        f"(line {doc.line})")
    row = rows[0]
    for column in TABLE_HEADER[1:]:
        assert row.cells.get(column), f"line {row.line}: `{key}` has an empty {column} cell"
    expected = render_default(info)
    if expected is not None:
        assert expected in row.cells["Default"], (
            f"line {row.line}: the default of `{key}` is {expected}, "
            f"the doc says {row.cells['Default']!r}")


def test_every_top_level_key_is_a_modelled_section() -> None:
    unmodelled = [name for name, info in ConfigFile.model_fields.items()
                  if name != COLLECTORS_KEY and model_of(info.annotation)[0] is None]
    assert not unmodelled, (
        f"top-level keys {unmodelled} are not section models; teach tests/test_docs.py "
        "where they are documented")


# --------------------------------------------------------------------------------------------
# Nothing stale: every documented key exists


def test_config_headings_are_config_sections(doc_sections: list[DocSection]) -> None:
    headings = [s.heading for s in doc_sections if is_config_heading(s.heading)]
    unknown = [h for h in headings if h not in SECTION_BY_HEADING]
    duplicated = sorted({h for h in headings if headings.count(h) > 1})
    missing = [s.heading for s in SECTIONS if s.heading not in headings]
    assert not unknown, f"'## `…`' headings that are not config sections: {unknown}"
    assert not duplicated, f"headings used twice: {duplicated}"
    assert not missing, f"config sections without a heading: {missing}"


def test_every_documented_key_exists(doc_sections: list[DocSection]) -> None:
    problems: list[str] = []
    for doc in doc_sections:
        section = SECTION_BY_HEADING.get(doc.heading)
        if section is None:
            continue  # prose sections may have tables of anything
        for number, header in doc.bad_headers:
            problems.append(f"line {number}: table header {header}, expected {TABLE_HEADER}")
        allowed = section.keys()
        seen: set[str] = set()
        for row in doc.rows:
            match = KEY_CELL.match(row.first)
            if match is None:
                problems.append(f"line {row.line}: first cell {row.first!r} is not a `key`")
                continue
            key = match.group(1)
            if key not in allowed:
                problems.append(
                    f"line {row.line}: `{key}` is documented under '## {doc.heading}' but "
                    f"{section.model.__name__} has no such key (keys: {', '.join(allowed)})")
            if key in seen:
                problems.append(f"line {row.line}: `{key}` is documented twice")
            seen.add(key)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# The demo config and the doc's own examples


def documented_keys(doc_sections: list[DocSection], heading: str) -> set[str]:
    doc = find_section(doc_sections, heading)
    return set() if doc is None else {row.first.strip("`") for row in doc.rows}


def test_demo_config_keys_are_documented(doc_sections: list[DocSection]) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    problems: list[str] = []
    for top, value in raw.items():
        if top not in ConfigFile.model_fields:
            problems.append(f"config.yaml: top-level key {top!r} is not in ConfigFile")
            continue
        headings = [s.heading for s in SECTIONS if s.ident.split("[")[0] == top]
        if not any(find_section(doc_sections, h) for h in headings):
            problems.append(f"config.yaml: top-level key {top!r} has no section in the doc")
            continue
        blocks = value if isinstance(value, list) else [value]
        for index, block in enumerate(blocks):
            if not isinstance(block, dict):
                continue
            heading = headings[0]
            if top == COLLECTORS_KEY:
                specific = f"`collectors[]` type: `{block.get('type')}`"
                keys = documented_keys(doc_sections, COLLECTORS_COMMON_HEADING) \
                    | documented_keys(doc_sections, specific)
                heading = f"{COLLECTORS_COMMON_HEADING} / {specific}"
            else:
                keys = documented_keys(doc_sections, heading)
            for key in block:
                if key not in keys:
                    where = f"{top}[{index}]" if isinstance(value, list) else top
                    problems.append(f"config.yaml: {where}.{key} is not documented "
                                    f"under '## {heading}'")
    assert not problems, "\n".join(problems)


def test_yaml_examples_are_valid_config() -> None:
    """The doc's ```yaml examples, merged, form a valid config: they use only real keys."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(encoding="utf-8"),
                        flags=re.MULTILINE | re.DOTALL)
    assert blocks, "no ```yaml examples found"
    merged: dict[str, Any] = {}
    for block in blocks:
        data = yaml.safe_load(block)
        assert isinstance(data, dict), f"example is not a mapping:\n{block}"
        merged.update(data)
    env = {"IOC_DB_PASSWORD": "p:ss#word", "IOC_SIM_TOKEN": "sim-token",
           "IOC_REPORT_LINK_SECRET": "report-link-secret-0123456789"}
    config = parse_config(merged, env=env, source="docs/configuration.md")
    assert config.collectors
    assert set(merged) >= set(ConfigFile.model_fields), "every section has an example"


def test_parse_doc_sections_and_rows() -> None:
    text = "\n".join([
        "## Intro",
        "| Unit | Meaning |",
        "| --- | --- |",
        "| `s` | seconds |",
        "## `storage`",
        "```yaml",
        "## not a heading",
        "```",
        "| Key | Type | Default | Description |",
        "|---|---|---|---|",
        "| `retention` | duration | `30d` | a \\| b |",
        "",
        "## Next",
    ])
    sections = parse_doc(text)
    assert [s.heading for s in sections] == ["Intro", "`storage`", "Next"]
    (row,) = sections[1].rows
    assert row.first == "`retention`"
    assert row.cells["Default"] == "`30d`"
    assert row.cells["Description"] == "a \\| b"
    assert sections[0].bad_headers == [(2, ["Unit", "Meaning"])]


def test_model_keys_walks_nested_models() -> None:
    class Inner(BaseModel):
        depth: int = 1

    class Outer(BaseModel):
        one: Inner = Inner()
        many: list[Inner] = []
        maybe: Inner | None = None

    assert [key for key, _ in model_keys(Outer)] == [
        "one", "one.depth", "many", "many[].depth", "maybe", "maybe.depth"]
