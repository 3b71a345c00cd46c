"""Screenshots of the wall for docs/screenshots/: every scene of tests/web/wall_scenes.py
(calm demo, one critical alert acknowledged, 35 departments down with the province's longest
names and one 10 KB name), at 1920×1080 and 3840×2160, in Vietnamese and English, taken in
Debian's headless Chromium (Playwright) from a real running ioc polling its simulator.

Each page is checked for text cut or spilling out of its box (tests/web/test_wall_fit.py's
check) before it is saved; PNGs are quantised to 256 colours (a 4K screen is ~0.3 MB).

    .venv/bin/python bench/screenshots.py [--out docs/screenshots] [--scene calm ...]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image
from playwright.async_api import async_playwright

from tests.web.wall_fit import CLIPPED, NOT_CHECKED, keep_watching, open_wall
from tests.web.wall_scenes import SCENES, scene

SIZES = ((1920, 1080), (3840, 2160))
LANGS = ("vi", "en")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def file_name(scene_name: str, width: int, height: int, lang: str) -> str:
    """``wall-1920x1080-vi.png`` for the calm demo (the name README links), else
    ``wall-<scene>-1920x1080-vi.png``."""
    middle = "" if scene_name == "calm" else f"{scene_name}-"
    return f"wall-{middle}{width}x{height}-{lang}.png"


def compress(path: Path) -> None:
    """256 colours, optimised: the wall is flat colour and text."""
    with Image.open(path) as image:
        quantised = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                  dither=Image.Dither.NONE)
    quantised.save(path, optimize=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--scene", action="append", choices=SCENES,
                        help="only this scene (repeatable); default: all")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    problems = 0
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=args.chromium, args=ARGS)
        try:
            for scene_name in args.scene or SCENES:
                with tempfile.TemporaryDirectory() as tmp:
                    async with scene(scene_name, Path(tmp)) as app:
                        keeper = await keep_watching(browser, app.url + "/")
                        for width, height in SIZES:
                            for lang in LANGS:
                                page = await open_wall(browser, f"{app.url}/?lang={lang}",
                                                       width, height)
                                if scene_name == "critical-acked":
                                    await page.wait_for_selector("#panel-alerts .handled")
                                clipped = (await page.evaluate(CLIPPED, NOT_CHECKED))["bad"]
                                if clipped:
                                    problems += 1
                                    print(f"{scene_name} {width}x{height} {lang}: clipped "
                                          f"{clipped}", file=sys.stderr)
                                path = args.out / file_name(scene_name, width, height, lang)
                                await page.screenshot(path=str(path))
                                await page.close()
                                compress(path)
                                print(f"{path} ({path.stat().st_size / 1000:.0f} kB)")
                        await keeper.close()
        finally:
            await browser.close()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
