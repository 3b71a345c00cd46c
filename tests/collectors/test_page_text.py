"""The content check reads a page as a person would (collectors.probe.text and conditions):
entities, tags, invisible characters, decomposed Vietnamese and letter case do not hide a
word, unaccented forms are found only where enabled, and a large page is read in slices."""

from __future__ import annotations

import unicodedata

import pytest

from collectors.probe.conditions import (
    DEFAULT_FORBIDDEN_KEYWORDS,
    ContentRules,
    Keywords,
    drain,
    forbidden_hits,
    page_title,
    read_page,
)
from collectors.probe.text import SLICE, visible, visible_slices

GAMBLING = Keywords.compile(DEFAULT_FORBIDDEN_KEYWORDS, unaccented=True)


@pytest.mark.parametrize("html,shown", [
    ("nh&agrave; c&aacute;i", "nhà cái"),
    ("t&agrave;i&nbsp;x&#7881;u", "tài xỉu"),
    ("t&#xE0;i&#160;x&#x1EC9;u", "tài xỉu"),
    ("nh<b></b>à cái", "nhà cái"),
    ("nh<span class='x'>à</span> c<a href=/>ái</a>", "nhà cái"),
    ("casino<br>bet", "casino bet"),
    ("<div>casino</div><p>bet</p>", "casino bet"),
    ("t\x00ài x\u200bỉu", "tài xỉu"),
    ("nổ\u00adhũ", "nổhũ"),
    ("l\u200dô \ufeffđề", "lô đề"),
    (unicodedata.normalize("NFD", "Lô Đề"), "Lô Đề"),
    ("  a\n\n\t b\u00a0\u00a0c  ", "a b c"),
    ("a &lt;b&gt; c", "a <b> c"),
    ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
])
def test_visible_text_is_what_a_browser_shows(html: str, shown: str) -> None:
    assert visible(html) == shown


@pytest.mark.parametrize("page", [
    "<p>Khuyến mãi nh&agrave; c&aacute;i uy tín</p>",
    "<p>NH&Agrave; C&Aacute;I</p>",
    "<p>nh<b></b>à cái</p>",
    "<p>nh\x00à c\u200cái</p>",
    "<p>" + unicodedata.normalize("NFD", "NHÀ CÁI") + "</p>",
    "<p>nhà\n   cái</p>",
    "<p>nha cai uy tin</p>",
    "<p>NHA&nbsp;CAI</p>",
])
def test_forbidden_keywords_are_seen_through_encodings(page: str) -> None:
    assert forbidden_hits(page, GAMBLING) in (["nhà cái"], ["nha cai"])


def test_unaccented_forms_only_where_the_page_has_no_diacritics() -> None:
    assert forbidden_hits("tai xiu, lo de, nha cai", GAMBLING) == ["tai xiu", "lo de", "nha cai"]
    # Accented text sharing the bare letters of a keyword is not that keyword.
    assert forbidden_hits("Người dân lo để dành tiền, tái xíu", GAMBLING) == []
    # Whole words only, in both forms.
    assert forbidden_hits("nhacai, lode, tai xiux, xbet, alphabet", GAMBLING) == []


def test_unaccented_matching_is_an_option() -> None:
    exact = Keywords.compile(DEFAULT_FORBIDDEN_KEYWORDS)
    assert forbidden_hits("nha cai, tai xiu", exact) == []
    assert forbidden_hits("nhà cái", exact) == ["nhà cái"]


def test_a_large_page_is_read_in_slices_and_no_word_is_cut() -> None:
    filler = "<p>Ủy ban nhân dân tỉnh &amp; văn bản</p>\n"
    page = filler * (4 * SLICE // len(filler))
    steps = 0
    generator = read_page(page)
    try:
        while True:
            next(generator)
            steps += 1
    except StopIteration as stop:
        text = stop.value
    assert steps >= 4
    assert text.visible == visible(page) and text.visible.startswith("Ủy ban")
    # A keyword at every offset around the slice and search-window ends is still found.
    for offset in range(-12, 12):
        head = "x " * ((SLICE + offset) // 2)
        for word in ("nh&agrave; c&aacute;i", "tai xiu", "casino"):
            assert forbidden_hits(head + word + " y", GAMBLING), (offset, word)
            assert not forbidden_hits(head + "z" + word.split(" ")[0], GAMBLING)


def test_a_run_with_no_cut_point_is_still_read_whole() -> None:
    page = "a" * (3 * SLICE) + " casino"
    assert len(list(visible_slices(page))) >= 3
    assert forbidden_hits(page, GAMBLING) == ["casino"]


def test_content_rules_match_the_page_as_sent_or_as_shown() -> None:
    page = drain(read_page('<h1 id="hdr">S&#7903; T&#432; ph&aacute;p</h1>{"ok": 1}'))
    assert ContentRules(contains=("Sở Tư pháp",)).check(page) is None
    assert ContentRules(contains=('<h1 id="hdr">', '"ok": 1')).check(page) is None
    assert ContentRules(contains=("sở tư pháp",), case_insensitive=True).check(page) is None
    assert ContentRules(contains=("sở tư pháp",)).check(page) is not None
    assert ContentRules(not_contains=("Tư pháp",)).check(page) == "body contains 'Tư pháp'"


def test_title_is_bounded_and_decoded() -> None:
    assert page_title("<title>S&#7903; <b>T&#432;</b> ph&aacute;p</title>") == "Sở Tư pháp"
    assert page_title("<title" * 50_000) is None
