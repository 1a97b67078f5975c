"""Cold start: time from `streamlit run app.py` to the Home page rendered in chromium
(goal ≤ 3 s; TensorFlow and UMAP stay off that path), and the idle server's memory.

Usage: python bench/coldstart_bench.py [repeats]
"""
from __future__ import annotations

import statistics
import sys
import time

import _util
from playwright.sync_api import sync_playwright


def one_start(pw) -> tuple[float, float, float]:
    browser = _util.launch_chromium(pw)            # the browser is not the server's cost
    page = browser.new_page()
    t0 = time.perf_counter()
    proc, url = _util.start_app()
    try:
        health = _util.wait_healthy(url)
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("Learn how a neural network sees").wait_for(timeout=60_000)
        rendered = time.perf_counter() - t0
        time.sleep(2)
        rss = _util.proc_rss_mb(proc.pid)
        return rendered, health, rss
    finally:
        proc.terminate()
        proc.wait(30)
        browser.close()


def main(repeats: int = 3) -> None:
    with sync_playwright() as pw:
        results = [one_start(pw) for _ in range(repeats)]
    rendered = [r[0] for r in results]
    print(f"cold start to Home rendered: median {statistics.median(rendered):.2f} s "
          f"(runs: {', '.join(f'{r:.2f}' for r in rendered)}; goal ≤ 3 s)")
    print(f"server healthy after: median {statistics.median(r[1] for r in results):.2f} s")
    print(f"idle server RSS after Home: median {statistics.median(r[2] for r in results):.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
