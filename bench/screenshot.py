"""Refresh the README's picture, docs/screenshot.png: the Draw & inspect page in chromium
(1400 px wide) with a 3 drawn and read by the pretrained small_cnn.

Usage: python bench/screenshot.py [output.png]   (default: docs/screenshot.png)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import _util
from _browser import draw_digit, open_draw, wait_idle
from playwright.sync_api import expect

DIGIT = 3
SIZE = {"width": 1400, "height": 1500}


def emoji_font_missing() -> bool:
    """True when fontconfig knows no emoji font: chromium would draw the icons as boxes."""
    try:
        fonts = subprocess.run(["fc-list"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "emoji" not in fonts.lower()


def main(out: Path) -> None:
    if emoji_font_missing():
        print("warning: no emoji font here, so the page icons come out as boxes; install "
              "one first (Debian: apt-get install fonts-noto-color-emoji)")
    with _util.app_in_chromium(SIZE) as (page, url):
        open_draw(page, url)
        draw_digit(page, DIGIT, 0)
        expect(page.get_by_role("heading", name="Feature maps")).to_be_visible()
        wait_idle(page)
        page.screenshot(path=str(out), animations="disabled")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else _util.ROOT / "docs" / "screenshot.png")
