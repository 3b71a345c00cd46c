"""A service's badge: a small shields-style SVG, "name | state", coloured by the state.

Written by hand (two rectangles and two texts) rather than with a badge library: the ones
on PyPI measure text with font files or fetch nothing but add a dependency for forty lines.
Every text is escaped for XML (``xml.sax.saxutils``), so a public name with ``<`` or ``&``
still makes a well-formed document. Widths are estimated from the characters (Verdana 11 px
averages about 7 px; wide letters count more), which is what shields does without fonts.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

# Badge colours: white text on each stays at or above 4.5:1 (tests/web/test_status_page.py).
COLOURS = {"operational": "#1a7f37", "partial": "#9a4c00", "major": "#b42318",
           "maintenance": "#175cd3", "unknown": "#555d66"}
LABEL_COLOUR = "#3d4451"
_WIDE = set("MWmw@%ĐƯƠ")
_NARROW = set("iljtf.,:;'|!() ")


def text_width(text: str) -> int:
    width = 0.0
    for ch in text:
        width += 10.0 if ch in _WIDE else 4.0 if ch in _NARROW else 7.0
    return int(width) + 10


def badge_svg(label: str, message: str, state: str) -> str:
    colour = COLOURS.get(state, COLOURS["unknown"])
    left, right = text_width(label), text_width(message)
    total = left + right
    title = escape(f"{label}: {message}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label={quoteattr(f"{label}: {message}")}>'
        f"<title>{title}</title>"
        f'<rect width="{left}" height="20" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        f'font-size="11">'
        f'<text x="{left / 2:g}" y="14">{escape(label)}</text>'
        f'<text x="{left + right / 2:g}" y="14">{escape(message)}</text>'
        f"</g></svg>"
    )


def unknown_badge_svg() -> str:
    """The 404 badge: still an image, so a page embedding a stale link shows something."""
    return badge_svg("status", "not found", "unknown")
