"""Annotations in two languages: ``summary`` in the default language (Vietnamese), which
notifications use, and ``summary_en`` beside it for screens in English."""

from __future__ import annotations

import re

import pytest

from alerts.rules import (
    RuleConfig,
    compile_rule,
    default_rules_text,
    human_duration,
    localized,
    parse_rule_text,
    translated_key,
)
from ioc.model import make_labels

VIETNAMESE = re.compile(r"[ăâđêôơưàáạảãầấậẩẫằắặẳẵèéẹẻẽềếệểễìíịỉĩòóọỏõồốộổỗờớợởỡùúụủũừứựửữỳýỵỷỹ]",
                        re.IGNORECASE)


@pytest.mark.parametrize(("key", "expected"), [
    ("summary", ("summary", "")), ("summary_en", ("summary", "en")),
    ("runbook_url", ("runbook_url", "")), ("_en", ("_en", "")), ("title_en", ("title", "en")),
])
def test_a_key_names_its_language_by_suffix(key: str, expected: tuple[str, str]) -> None:
    assert translated_key(key) == expected


@pytest.mark.parametrize(("lang", "annotations", "expected"), [
    ("vi", {"summary": "mất", "summary_en": "down"}, "mất"),
    ("en", {"summary": "mất", "summary_en": "down"}, "down"),
    ("en", {"summary": "mất"}, "mất"),               # no translation: the default text
    ("en", {"summary": "mất", "summary_en": ""}, "mất"),  # an empty one renders to nothing
    ("fr", {"summary": "mất", "summary_en": "down"}, "mất"),
    ("en", {}, ""),
])
def test_the_screens_language_with_the_default_as_fallback(
        lang: str, annotations: dict[str, str], expected: str) -> None:
    assert localized(annotations, "summary", lang) == expected


def test_every_default_rule_speaks_both_languages() -> None:
    rules, issues = parse_rule_text(default_rules_text(), "default_rules.yaml")
    assert issues == [] and rules
    for rule, source in rules:
        notes = rule.annotations
        for key in ("title", "summary", "description"):
            assert notes.get(key) and notes.get(f"{key}_en"), (source, key)
            assert VIETNAMESE.search(notes[key]), (source, key)  # the default is Vietnamese
            english = re.sub(r"\{\{.*?\}\}", "", notes[f"{key}_en"])
            assert not VIETNAMESE.search(english), (source, key, english)


def test_english_annotations_render_with_english_durations() -> None:
    rules, _ = parse_rule_text(default_rules_text(), "default_rules.yaml")
    cert = next(r for r, _ in rules if r.name == "CertificateExpiringSoon")
    rule = compile_rule(cert, department_names={"STP": "Sở Tư pháp"})
    notes = dict(rule.render(make_labels(target="stp-portal", department="STP"), 93784.0))
    assert notes["summary"] == "Chứng thư số của stp-portal sắp hết hạn"
    assert notes["summary_en"] == "The certificate of stp-portal expires soon"
    assert "1 ngày 2 giờ" in notes["description"]
    assert "1 day 2 hours" in notes["description_en"]


def test_durations_in_both_languages() -> None:
    assert human_duration(93784) == "1 ngày 2 giờ"
    assert human_duration(93784, "en") == "1 day 2 hours"
    assert human_duration(7260, "en") == "2 hours 1 minute"
    assert human_duration(0, "en") == "0 seconds" and human_duration(0) == "0 giây"


def test_a_translation_is_only_an_extra_key() -> None:
    """Older rule files and stored alerts keep their shape: annotations stay a flat mapping
    of strings, so Alertmanager receives them as before (with the translation beside)."""
    cfg = RuleConfig.model_validate({"name": "Down", "metric": "ioc_target_up", "op": "==",
                                     "threshold": 0, "annotations": {"summary": "mất"}})
    assert cfg.annotations == {"summary": "mất"}
