"""Bidirectional-text controls in untrusted text: which they are, and removing them.

U+202E (RIGHT-TO-LEFT OVERRIDE) and its kin reorder how text *displays* without changing what
it is: an event title ``invoice‮gnp.exe`` reads as ``invoiceexe.png``, and the override
runs on into whatever is printed after it (the department, the time, the next column).

In HTML ioc isolates every piece of untrusted text instead (``<bdi>`` and
``unicode-bidi: isolate`` in the templates and styles), so the JSON API and the stored data
keep what was sent. Where nothing can be isolated, in plain text (Telegram, Zalo, e-mail
subjects and bodies, web/templates' ``<option>`` labels), the controls are removed with
``strip_bidi``: no Vietnamese text needs them.
"""

from __future__ import annotations

# LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI; LRM, RLM; ALM (Arabic letter mark).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                          "\u200e\u200f\u061c")
_TABLE = {ord(c): None for c in BIDI_CONTROLS}


def strip_bidi(text: str) -> str:
    """``text`` without bidirectional formatting controls (everything else kept)."""
    return text.translate(_TABLE)
