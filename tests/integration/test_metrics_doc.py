"""docs/metrics.md is what ``python -m service.metrics_doc`` prints: it cannot drift."""

from __future__ import annotations

from pathlib import Path

from ioc.metrics import SAMPLE_LABELS, SAMPLE_METRICS
from service.metrics_doc import app_families, render

DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


def test_metrics_doc_matches_the_code() -> None:
    assert DOC.read_text(encoding="utf-8") == render(app_families()), (
        "docs/metrics.md is out of date: run "
        "`.venv/bin/python -m service.metrics_doc > docs/metrics.md`")


def test_every_sample_metric_declares_help_and_labels() -> None:
    assert set(SAMPLE_METRICS) == set(SAMPLE_LABELS)


def test_families_follow_the_naming_conventions() -> None:
    for family in app_families():
        assert family.name.startswith("ioc_"), family.name
        assert family.help and not family.help.startswith("Sample metric"), family.name
        if family.type == "counter":
            assert family.name.endswith("_total"), family.name
        if family.name.endswith("_info"):
            assert family.type == "gauge", family.name
        if "duration" in family.name or "lag" in family.name:
            assert family.name.endswith("_seconds"), family.name
