"""CPU of the http collector's content check on a 1 MiB page, and its longest slice.

The check (collectors.probe.conditions: visible text, folding, the forbidden keywords with
and without diacritics, the content rules) runs in slices with the event loop free between
them. This prints, per kind of page, the CPU of one whole check and the longest single
slice, which is the longest the check can hold the loop.

    python bench/content_check.py [--size 1048576] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.probe.conditions import (
    DEFAULT_FORBIDDEN_KEYWORDS,
    ContentRules,
    Keywords,
    read_page,
)


def pages(size: int) -> dict[str, str]:
    para = ("<p class=\"tin\">Ủy ban nhân dân tỉnh Hậu Giang thông báo lịch tiếp công dân "
            "tháng 12; <a href=\"/van-ban?id=42\">xem văn bản</a> &amp; phụ lục.</p>\n")
    return {
        "typical Vietnamese HTML": (para * (size // len(para) + 1))[:size],
        "all entities": ("nh&agrave; c&aacute;i &#7881; &nbsp;" * size)[:size],
        "all tags": ("<b>x</b><br><span class=a>y</span>" * size)[:size],
        "one long word": "a" * size,
        "decomposed Vietnamese": ("Lo\u0302 \u0111e\u0302\u0300 ta\u0300i xi\u0309u " * size)
        [:size],
    }


def run(steps: Generator[None, None, Any]) -> tuple[Any, float]:
    """Drain ``steps``; the result and the longest slice in seconds (thread CPU time)."""
    longest = 0.0
    while True:
        started = time.thread_time()
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value, max(longest, time.thread_time() - started)
        longest = max(longest, time.thread_time() - started)


def check(text: str, keywords: Keywords, rules: ContentRules) -> Callable[[], float]:
    def once() -> float:
        page, a = run(read_page(text))
        _, b = run(keywords.search(page))
        rules.check(page)
        return max(a, b)
    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    keywords = Keywords.compile(DEFAULT_FORBIDDEN_KEYWORDS, unaccented=True)
    assert keywords is not None
    rules = ContentRules(contains=("Hậu Giang",), not_contains=("Trang lỗi",))
    print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; page {args.size} "
          f"characters; best of {args.repeat}")
    print(f"{'page':<26} {'CPU ms':>8} {'longest slice ms':>17}")
    for name, text in pages(args.size).items():
        once = check(text, keywords, rules)
        best, slice_worst = float("inf"), 0.0
        for _ in range(args.repeat):
            started = time.thread_time()
            longest = once()
            best = min(best, time.thread_time() - started)
            slice_worst = max(slice_worst, longest)
        print(f"{name:<26} {best * 1000:>8.1f} {slice_worst * 1000:>17.2f}")


if __name__ == "__main__":
    main()
