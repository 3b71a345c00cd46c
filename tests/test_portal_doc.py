"""docs/integrations/portal.md stays true: its examples parse, and `ioc check` and `ioc try`
say what the walkthrough shows.

Blocks of the walkthrough are marked with HTML comments: `<!-- step NAME -->` before a YAML
list of collector blocks, `<!-- check NAME -->` before the `ioc check` output for step NAME,
`<!-- output NAME -->` before the `ioc try --lang en` output for it. The saved payload is
served locally in place of the documented URL. A shown output may leave lines out (`…`):
the lines it shows must appear in the real output, in that order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from ioc.trace_text import render
from service.config import Config, ConfigError, parse_config
from service.try_command import try_targets
from tests.test_try import normalise, utf8_json

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "integrations" / "portal.md"
PAYLOAD = json.loads((ROOT / "tests" / "data" / "backlog" / "opencps_vi.json")
                     .read_text(encoding="utf-8"))
URL = "https://motcua.example.gov.vn/o/rest/v2/thongke/hoso"
PATH = "/o/rest/v2/thongke/hoso"
DEPARTMENTS = [{"code": c, "name": c} for c in ("HTTT-TTHC", "STTTT", "STP", "SYT", "DVC")]
MARKED = re.compile(r"<!-- (step|check|output) ([a-z]+) -->\n```[a-z]*\n(.*?)```", re.DOTALL)
FENCED = re.compile(r"^```([a-z]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


class AnyEnv(dict[str, str]):
    """Every ${VAR} of the examples set, as an operator's environment would have them."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return "example-secret"


def marked() -> dict[tuple[str, str], str]:
    text = DOC.read_text(encoding="utf-8")
    return {(kind, name): body for kind, name, body in MARKED.findall(text)}


def step_config(name: str, url: str = URL) -> Config:
    blocks = yaml.safe_load(marked()[("step", name)])
    raw = {"storage": {"url": "sqlite+aiosqlite:///:memory:"}, "departments": DEPARTMENTS,
           "collectors": [{**b, "url": b["url"].replace(URL, url)} for b in blocks]}
    return parse_config(raw, env={}, source="config.yaml")


def check_text(err: ConfigError) -> str:
    """What `ioc check` prints for a refused config (service.cli._print_issues)."""
    return "\n".join([f"{err.source}: {len(err.issues)} error(s)",
                      *(f"  - {issue}" for issue in err.issues)]) + "\n"


def assert_shown(shown: str, real: str) -> None:
    lines = iter(real.splitlines())
    for line in shown.splitlines():
        if line.strip() == "…":
            continue
        assert any(candidate == line for candidate in lines), \
            f"{line!r} is not in the output (in this order):\n{real}"


def test_the_walkthrough_has_its_steps() -> None:
    found = marked()
    assert {name for kind, name in found if kind == "step"} == \
        {"unquoted", "strict", "optional", "fixed"}
    assert {("check", "unquoted"), ("output", "strict"), ("output", "optional"),
            ("output", "fixed")} <= set(found)


def test_every_example_parses() -> None:
    text = DOC.read_text(encoding="utf-8")
    seen = {"json": 0, "yaml": 0}
    for language, body in FENCED.findall(text):
        if language == "json":
            json.loads(body)
        elif language == "yaml":
            blocks = yaml.safe_load(body)
            assert isinstance(blocks, list)
            raw = {"departments": DEPARTMENTS, "collectors": blocks}
            if "Tiếp Nhận.TongSo" in body:  # step 1 shows a refused mapping on purpose
                with pytest.raises(ConfigError):
                    parse_config(raw, env=AnyEnv())
            else:
                parse_config(raw, env=AnyEnv())
        else:
            continue
        seen[language] += 1
    assert seen["json"] >= 4 and seen["yaml"] >= 6


def test_check_says_what_the_walkthrough_shows() -> None:
    with pytest.raises(ConfigError) as info:
        step_config("unquoted")
    assert_shown(marked()[("check", "unquoted")], check_text(info.value))


@pytest.fixture
async def portal(aiohttp_server: Callable[..., Any]) -> str:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(PAYLOAD, dumps=utf8_json, headers={"Server": "ioc-doc"})

    app = web.Application()
    app.router.add_get(PATH, stats)
    server = await aiohttp_server(app)
    return str(server.make_url(PATH))


async def tried(name: str, url: str) -> str:
    config = step_config(name, url)
    (trace,) = await try_targets(config, [config.collectors[0].name])
    return normalise(render(trace, "en").replace(url, URL))


@pytest.mark.parametrize("name", ["strict", "optional", "fixed"])
async def test_try_says_what_the_walkthrough_shows(portal: str, name: str) -> None:
    real = await tried(name, portal)
    assert_shown(normalise(marked()[("output", name)]), real)
    # step 3 ends on the unknown unit's note; step 4 fixed the map, so none is left
    assert ("\nNotes\n" in real) == (name == "optional")
