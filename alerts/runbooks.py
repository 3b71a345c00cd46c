"""The default rules' runbooks: what a firing alert means and what to do, in both languages.

Kept as data (``alerts/runbooks.yaml``) next to the rules they explain and served by ioc at
``/runbooks/{rule}``, so the default rules' ``runbook_url`` opens a page wherever ioc runs,
with no wiki to set up first. A province with its own runbooks points ``runbook_url`` there.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import Field

from ioc.config_types import StrictModel

RUNBOOKS = "runbooks.yaml"
LANGS = ("vi", "en")


class RunbookText(StrictModel):
    title: str = Field(min_length=1)
    meaning: str = Field(min_length=1)
    steps: list[str] = Field(min_length=1)


class Runbook(StrictModel):
    vi: RunbookText
    en: RunbookText

    def text(self, lang: str) -> RunbookText:
        return self.en if lang == "en" else self.vi


class RunbookFile(StrictModel):
    runbooks: dict[str, Runbook]


@cache
def runbooks() -> dict[str, Runbook]:
    """Every shipped runbook by rule name (read and validated once per process)."""
    text = resources.files("alerts").joinpath(RUNBOOKS).read_text("utf-8")
    return RunbookFile.model_validate(yaml.safe_load(text)).runbooks


def find_runbook(rule: str) -> tuple[str, Runbook] | None:
    """The runbook of ``rule`` (letter case ignored, as people type links), or None."""
    wanted = rule.casefold()
    for name, runbook in runbooks().items():
        if name.casefold() == wanted:
            return name, runbook
    return None
