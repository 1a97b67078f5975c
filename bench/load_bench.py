"""Classroom load: 10 concurrent sessions go through the pages while a run trains in
another (chromium) session; prints page-render p50/p95 and errors (goal: 0 errors,
p95 ≤ 2 s on this machine).

Two kinds of clients:

* ``--clients ws`` (default): websocket clients speaking Streamlit's own protocol, as the
  browser does. A render is a page request until the server's ``script_finished``; it
  measures the server alone.
* ``--clients chromium``: real headless chromium tabs clicking the sidebar; a render ends
  when the page's title is shown and the running indicator is gone. On a 2-core machine
  the ten browsers themselves compete with the server for the CPU.

``--no-train`` measures the same without the training run.
Usage: python bench/load_bench.py [sessions] [rounds] [--clients ws|chromium] [--no-train]
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


by_page: dict[str, list[float]] = {}
warm: list[float] = []           # renders after each session's first round


async def ws_student(url: str, rounds: int, times: list, errors: list) -> None:
    """One websocket session: load the app, then request each page in turn."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.asyncio.client import connect

    conn = await connect(url.replace("http", "ws") + "/_stcore/stream",
                         subprotocols=["streamlit"], max_size=2**26)
    pages: dict[str, str] = {}

    async def request(page_hash: str) -> None:
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = page_hash
        await conn.send(msg.SerializeToString())
        while True:
            raw = await asyncio.wait_for(conn.recv(), timeout=120)
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "navigation":
                pages.update({p.url_pathname or "": p.page_script_hash
                              for p in fwd.navigation.app_pages})
            elif kind == "delta" and fwd.delta.new_element.WhichOneof("type") == "exception":
                errors.append(f"exception: {fwd.delta.new_element.exception.message[:80]}")
            elif kind == "script_finished":
                return

    await request("")
    for rnd in range(rounds):
        for path in ("models", "builder", "compare", "challenge", "draw", "errors", ""):
            t0 = time.perf_counter()
            try:
                await request(pages[path])
                times.append(time.perf_counter() - t0)
                by_page.setdefault(path or "home", []).append(times[-1])
                if rnd:
                    warm.append(times[-1])
            except Exception as exc:  # a timeout or a dropped socket counts as an error
                errors.append(f"{path or 'home'}: {type(exc).__name__}")
    await conn.close()


async def main(sessions: int, rounds: int, train: bool = True,
               clients: str = "ws") -> None:
    proc, url = _util.start_app({"LAYERLAB_MAX_RUNS": "2"})
    try:
        _util.wait_healthy(url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True,
                args=_util.CHROMIUM_ARGS)
            if train:
                await trainer(browser, url)
            rss_before = _util.proc_rss_mb(proc.pid)
            cpu_before = _util.proc_cpu_s(proc.pid)
            times, errors = [], []
            t0 = time.perf_counter()
            if clients == "chromium":
                await asyncio.gather(*(student(browser, url, rounds, times, errors)
                                       for _ in range(sessions)))
            else:
                await asyncio.gather(*(ws_student(url, rounds, times, errors)
                                       for _ in range(sessions)))
            wall = time.perf_counter() - t0
            server_cpu = _util.proc_cpu_s(proc.pid) - cpu_before
            rss_rounds = []                 # one more session visiting every page again
            for _ in range(10):
                await ws_student(url, 1, [], errors)
                rss_rounds.append(_util.proc_rss_mb(proc.pid))
            await browser.close()
        print(f"{sessions} {clients} sessions × {rounds} rounds "
              f"{'while a run trained' if train else 'with no training'}: "
              f"{len(times)} renders in {wall:.0f} s")
        if times:
            print(f"page render p50 {statistics.median(times):.2f} s, p95 "
                  f"{_util.percentile(times, 95):.2f} s, max {max(times):.2f} s "
                  f"(goal p95 ≤ 2 s)")
        print(f"errors: {len(errors)} {errors[:5]}")
        if warm:
            print(f"after the first round (warm): p50 {statistics.median(warm):.2f} s, p95 "
                  f"{_util.percentile(warm, 95):.2f} s over {len(warm)} renders")
        if by_page:
            print("per page p50: " + ", ".join(f"{k} {statistics.median(v):.2f} s"
                                              for k, v in by_page.items()))
        print(f"server CPU {server_cpu:.0f} s over {wall:.0f} s wall "
              f"({100 * server_cpu / wall:.0f}% of one core)")
        print(f"server RSS: {rss_before:.0f} MiB before the sessions, "
              f"{_util.proc_rss_mb(proc.pid):.0f} MiB after")
        print(f"RSS over 10 more sessions visiting every page: {rss_rounds[0]:.0f} → "
              f"{rss_rounds[-1]:.0f} MiB ({rss_rounds[-1] - rss_rounds[0]:+.0f} MiB; "
              f"goal: bounded, ≤ 100 MB)")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    kind = sys.argv[sys.argv.index("--clients") + 1] if "--clients" in sys.argv else "ws"
    args = [a for a in args if a != kind]
    asyncio.run(main(int(args[0]) if args else 10, int(args[1]) if len(args) > 1 else 2,
                     train="--no-train" not in sys.argv, clients=kind))
