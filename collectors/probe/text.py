"""A page's text as a person reads it, for the checks that look for words.

Injected gambling text rarely arrives as plain words: CMS output writes letters as HTML
entities (``nh&agrave; c&aacute;i``, ``t&agrave;i&nbsp;x&#7881;u``), markup can sit inside
a word (``nh<b></b>à cái``), invisible characters (NUL, zero-width space, soft hyphen) split
it, and Vietnamese arrives both precomposed (NFC) and decomposed (NFD). ``visible`` undoes
all of that the way a browser shows the page:

1. tags removed: inline ones (``<b>``, ``<span>``, ``<a>``, …) with nothing, so a word split
   by them is whole again; others (``<p>``, ``<br>``, ``<div>``, …) with a space, since a
   browser breaks the line there. What is inside ``<script>``, ``<style>`` and comments
   stays: spam hides there too, and a check should see it;
2. HTML entities decoded (``&nbsp;`` becomes a space);
3. control and format characters dropped (NUL, zero-width space/joiners, soft hyphen, the
   byte-order mark, direction marks), keeping line breaks and tabs;
4. Unicode NFC; whitespace runs collapsed to one space.

``fold`` then case-folds for the keyword checks, and ``strip_marks`` removes diacritics
(``nhà cái`` -> ``nha cai``, ``đ`` -> ``d``) from the keywords for their unaccented form.

Pages are up to ``max_body_bytes`` (1 MiB by default) and a check must not hold the event
loop: the work is done in slices of ``SLICE`` characters (each a few milliseconds at most,
bench/content_check.py), cut where no tag or entity can straddle the cut, and
``visible_slices`` yields between slices so the caller can let the loop run. Every step is
linear in the page's size. Pattern compilation is not here: this module only prepares text.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator

SLICE = 32 * 1024
_LOOKBACK = 1024   # how far back from a slice's end a safe cut is looked for

_INLINE_TAGS = ("a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn",
                "em", "font", "i", "ins", "kbd", "mark", "nobr", "q", "s", "samp", "small",
                "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var", "wbr")
_INLINE = re.compile(rf"</?(?:{'|'.join(_INLINE_TAGS)})(?:[\s/][^<>]*)?>", re.IGNORECASE)
_TAG = re.compile(r"<[a-zA-Z/!?][^<>]*>")
_SPACES = re.compile(r"\s{2,}|[^\S ]")  # runs, and single whitespace other than " "
_KEEP = frozenset("\t\n\r\f\v")


# Unicode's format characters (category Cf, 14.0) and the combining grapheme joiner: none
# shows anything, all can sit inside a word.
_FORMAT_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2),
    (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064),
    (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)


def _invisible_pattern() -> re.Pattern[str]:
    """Control characters (Cc) but the whitespace ones, and the format characters."""
    controls = [c for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in _KEEP]
    ranges = [(c, c) for c in controls] + list(_FORMAT_RANGES)
    return re.compile("[" + "".join(
        re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        for low, high in ranges) + "]+")


def _strip_table() -> dict[int, str]:
    """Latin letters with diacritics -> the base letter (one character for one)."""
    table: dict[int, str] = {0x0111: "d", 0x0110: "D"}  # đ Đ do not decompose
    for code in [*range(0x00C0, 0x0250), *range(0x1E00, 0x1F00)]:
        base = "".join(c for c in unicodedata.normalize("NFD", chr(code))
                       if not unicodedata.combining(c))
        if len(base) == 1 and base != chr(code):
            table[code] = base
    return table


_INVISIBLE = _invisible_pattern()
_STRIP = _strip_table()


def _cut(text: str, start: int) -> int:
    """Where the slice beginning at ``start`` ends: after a ``>`` or a space, or before a
    ``&``, so no tag or entity straddles two slices (a hard cut only in a run of 1 KiB
    with none of them, where no entity can be)."""
    end = start + SLICE
    if end >= len(text):
        return len(text)
    low = end - _LOOKBACK
    for found in (text.rfind(">", low, end), text.rfind(" ", low, end),
                  text.rfind("\n", low, end)):
        if found >= 0:
            return found + 1
    amp = text.rfind("&", low, end)
    return amp if amp > start else end


def _visible_piece(raw: str) -> str:
    piece = _TAG.sub(" ", _INLINE.sub("", raw)) if "<" in raw else raw
    if "&" in piece:
        piece = html.unescape(piece)
    piece = _SPACES.sub(" ", piece)
    if not piece.isprintable():  # a fast scan; the character class only where needed
        piece = _SPACES.sub(" ", _INVISIBLE.sub("", piece))
    if not piece.isascii():
        piece = unicodedata.normalize("NFC", piece)
    return piece


def visible_slices(text: str) -> Iterator[str]:
    """The visible text of ``text`` in pieces, one per slice of work (see the module)."""
    start = 0
    previous_space = True   # leading whitespace is dropped
    while start < len(text):
        end = _cut(text, start)
        piece = _visible_piece(text[start:end])
        start = end
        if previous_space and piece.startswith(" "):
            piece = piece[1:]
        if piece:
            previous_space = piece.endswith(" ")
            yield piece


def visible(text: str) -> str:
    """The whole visible text at once (tests, titles and short strings)."""
    return "".join(visible_slices(text)).strip()


def fold(text: str) -> str:
    """Case-folded, in NFC again where folding decomposed a letter."""
    folded = text.casefold()
    return folded if folded.isascii() else unicodedata.normalize("NFC", folded)


def strip_marks(text: str) -> str:
    """Diacritics removed letter for letter (for keywords, not pages: it is slow on MiBs)."""
    return text.translate(_STRIP)
