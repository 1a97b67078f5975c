"""Refresh the README's picture, docs/screenshot.png: the Draw & inspect page in chromium
(1400 px wide) with a 3 drawn and read by the pretrained small_cnn.

Usage: python bench/screenshot.py [output.png]   (default: docs/screenshot.png)
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import _util
from _browser import draw_digit, open_draw, wait_idle
from playwright.sync_api import expect, sync_playwright

DIGIT = 3
SIZE = {"width": 1400, "height": 1500}


def main(out: Path) -> None:
    home = tempfile.mkdtemp(prefix="layerlab-shot-")
    proc, url = _util.start_app({"LAYERLAB_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        _util.wait_healthy(url, timeout=90, proc=proc)
        with sync_playwright() as pw:
            browser = _util.launch_chromium(pw)
            page = browser.new_page(viewport=SIZE)
            open_draw(page, url)
            draw_digit(page, DIGIT, 0)
            expect(page.get_by_role("heading", name="Feature maps")).to_be_visible()
            wait_idle(page)
            page.screenshot(path=str(out), animations="disabled")
            browser.close()
    finally:
        _util.stop_app(proc)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else _util.ROOT / "docs" / "screenshot.png")
