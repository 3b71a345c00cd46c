"""The wall's "nothing that matters is clipped" check, run inside the page by Chromium.

Shared by the fit test (tests/web/test_wall_fit.py) and the screenshot script
(bench/screenshots.py), so every saved screenshot was checked the same way.
"""

from __future__ import annotations

from typing import Any

# In the page: every element of the header, tiles and panels whose content is larger than its
# box (scrollWidth > clientWidth or scrollHeight > clientHeight: text cut, hidden or spilling),
# and every element lying outside the tile or panel that holds it. An element cut on purpose
# is allowed only when it says so: it clips (overflow hidden), and its title attribute carries
# its whole text (a tooltip, and a test can see nothing was lost). Those are listed apart.
CLIPPED = """(exclude = []) => {
  const bad = [], ellipsized = [];
  const skipped = (el) => exclude.some(sel => el.closest(sel));
  const name = (el) => {
    const box = el.closest('.tile, .panel, header, .announcement');
    return (box ? (box.id || box.className) : 'page') + ' > ' + el.tagName.toLowerCase() +
      (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : '');
  };
  const visible = (el) => {
    for (let e = el; e; e = e.parentElement) if (e.hidden) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 || r.height > 0;
  };
  const roots = document.querySelectorAll('header.top, #announcement, main.wall');
  for (const root of roots) {
    if (!visible(root)) continue;
    for (const el of [root, ...root.querySelectorAll('*')]) {
      if (el instanceof SVGElement || !visible(el) || skipped(el)) continue;
      const style = getComputedStyle(el);
      if (style.display === 'inline') {
        // an inline piece of text: it must lie inside the tile or panel holding it, unless
        // its line cuts it on purpose (checked as that line's element)
        const line = getComputedStyle(el.parentElement);
        if (line.textOverflow === 'ellipsis' && line.overflowX === 'hidden') continue;
        const box = el.closest('.tile, .panel, header');
        if (!box) continue;
        const r = el.getBoundingClientRect(), o = box.getBoundingClientRect();
        if (r.left < o.left - 1 || r.right > o.right + 1 || r.top < o.top - 1 ||
            r.bottom > o.bottom + 1) bad.push(name(el) + ' (outside its box)');
        continue;
      }
      const clips = style.overflowX === 'hidden' || style.overflowY === 'hidden' ||
        style.overflow === 'hidden';
      // Where nothing is clipped, glyphs may reach a little past a tight line box (the
      // diacritics of "Ễ", "Ậ"): ink, not text out of place; what clips must hold them all.
      const ink = clips ? 1 : 1 + parseFloat(style.fontSize) * 0.15;
      const over = el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + ink;
      if (!over) continue;
      const text = el.textContent.replace(/\\s+/g, ' ').trim();
      const title = (el.getAttribute('title') || '').replace(/\\s+/g, ' ').trim();
      if (clips && title && title === text) ellipsized.push(el.id || name(el));
      else bad.push(name(el) + ` (${el.scrollWidth}x${el.scrollHeight} in ` +
                    `${el.clientWidth}x${el.clientHeight}): ` + text.slice(0, 60));
    }
  }
  const doc = document.documentElement;
  if (doc.scrollHeight > innerHeight + 1 || doc.scrollWidth > innerWidth + 1) bad.push('page');
  return {bad, ellipsized};
}"""


# Every panel is checked strictly: what is cut on purpose (a summary past three lines, a long
# list of departments) carries its whole text in its tooltip.
NOT_CHECKED: list[str] = []


async def keep_watching(browser: Any, url: str) -> Any:
    """A screen that stays connected while others come and go: with none connected, the feed
    restarts its stream at the next poll, and a screen rendered just before would reload."""
    page = await browser.new_page(viewport={"width": 800, "height": 600})
    await page.goto(url)
    await page.wait_for_function("() => document.getElementById('live').textContent !== ''")
    return page


async def open_wall(browser: Any, url: str, width: int, height: int) -> Any:
    """A page of ``url`` at ``width``×``height`` once its fonts are in and the stream is
    live (tiles as the server rendered them, then kept current)."""
    page = await browser.new_page(viewport={"width": width, "height": height})
    await page.goto(url)
    await page.wait_for_function("() => document.fonts.status === 'loaded'")
    return page
