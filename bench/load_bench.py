"""Classroom load: 10 concurrent chromium sessions click through the pages while a run
trains in another session; prints page-render p50/p95 and errors (goal: 0 errors,
p95 ≤ 2 s on this machine).

A "render" is a sidebar click until the page's title is shown and Streamlit's
running-indicator is gone. Usage: python bench/load_bench.py [sessions] [rounds]
"""
from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import time

import _util
from playwright.async_api import async_playwright

PAGES = [("Models", "Models"), ("Builder", "Builder"), ("Compare", "Compare"),
         ("Challenge", "Parameter-budget challenge"), ("Home", "Layer Lab")]


async def settle(page, title: str) -> None:
    await page.locator("h1", has_text=title).first.wait_for(timeout=60_000)
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget] button')"
        " && !document.querySelector('[data-testid=stSkeleton]')", timeout=60_000)


async def student(browser, url: str, rounds: int, times: list, errors: list) -> None:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    await page.goto(url, wait_until="domcontentloaded")
    await settle(page, "Layer Lab")
    for _ in range(rounds):
        for link, title in PAGES:
            t0 = time.perf_counter()
            try:
                await page.locator("[data-testid=stSidebarNav] a", has_text=link).first.click()
                await settle(page, title)
                times.append(time.perf_counter() - t0)
                if await page.locator("[data-testid=stException]").count():
                    errors.append(f"exception on {link}")
            except Exception as exc:  # a timeout counts as an error
                errors.append(f"{link}: {type(exc).__name__}")
    await ctx.close()


async def trainer(browser, url: str) -> None:
    """Another session starts a real training run (keras_example, 10,000 images)."""
    page = await (await browser.new_context()).new_page()
    await page.goto(url + "/train", wait_until="domcontentloaded")
    await page.locator("h1", has_text="Train").first.wait_for(timeout=60_000)
    await page.get_by_role("button", name="▶ Start").click()
    await page.get_by_text("Epoch").first.wait_for(timeout=120_000)


async def main(sessions: int, rounds: int) -> None:
    proc, url = _util.start_app({"LAYERLAB_MAX_RUNS": "2"})
    try:
        _util.wait_healthy(url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True,
                args=_util.CHROMIUM_ARGS)
            await trainer(browser, url)
            rss_before = _util.proc_rss_mb(proc.pid)
            times, errors = [], []
            t0 = time.perf_counter()
            await asyncio.gather(*(student(browser, url, rounds, times, errors)
                                   for _ in range(sessions)))
            wall = time.perf_counter() - t0
            await browser.close()
        print(f"{sessions} sessions × {rounds} rounds × {len(PAGES)} pages while a run "
              f"trained: {len(times)} renders in {wall:.0f} s")
        if times:
            print(f"page render p50 {statistics.median(times):.2f} s, p95 "
                  f"{_util.percentile(times, 95):.2f} s, max {max(times):.2f} s "
                  f"(goal p95 ≤ 2 s)")
        print(f"errors: {len(errors)} {errors[:5]}")
        print(f"server RSS: {rss_before:.0f} MiB before the sessions, "
              f"{_util.proc_rss_mb(proc.pid):.0f} MiB after")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 2))
