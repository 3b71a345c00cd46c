"""The canonical label text is the series key, so it must read back into the same labels."""

from __future__ import annotations

import pytest

from ioc.model import canonical_labels, make_labels
from ioc.store.schema import parse_canonical_labels

CASES = [
    {},
    {"job": "web"},
    {"tỉnh": "Thừa Thiên Huế", "đơn_vị": "Sở Y tế"},
    {"a": 'x",b="y'},            # looks like two labels once unescaped
    {"a": "ends with backslash\\", "b": "\\\\"},
    {"a": '\\"', "b": "\\n is not a newline", "c": "real\nnewline"},
    {"a": "", "b": "=", "c": ",", "d": '"'},
    {"k=v": "name containing an equals sign"},
]


@pytest.mark.parametrize("mapping", CASES)
def test_canonical_text_parses_back_to_the_same_labels(mapping: dict[str, str]) -> None:
    labels = make_labels(mapping)
    assert parse_canonical_labels(canonical_labels(labels)) == labels


@pytest.mark.parametrize("bad", ['job="web', "job=web", 'a="1",', 'a="1"b="2"'])
def test_text_that_is_not_canonical_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="canonical"):
        parse_canonical_labels(bad)
