"""Classroom load: 30 concurrent sessions go through the pages while 2 runs train in
two other (chromium) sessions; prints page-render p50/p95, errors and the server's memory
(goals: 0 errors, p95 ≤ 2 s, server RSS ≤ 3 GB on this machine), all from one run.

Two kinds of clients:

* ``--clients ws`` (default): websocket clients speaking Streamlit's own protocol, as the
  browser does. A render is a page request until the server's ``script_finished``; it
  measures the server alone.
* ``--clients chromium``: real headless chromium tabs clicking the sidebar; a render ends
  when the page's title is shown and the running indicator is gone. On a 2-core machine
  the ten browsers themselves compete with the server for the CPU.

``--no-train`` measures the same without the training runs, ``--trainers N`` with N.
Usage: python bench/load_bench.py [sessions] [rounds] [--clients ws|chromium] [--no-train]
       [--trainers N]          (defaults: 30 sessions, 2 rounds, 2 trainers)
"""
from __future__ import annotations

import argparse
import asyncio
import os
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
    """Another session (its own workspace) starts a real training run: the Train page's
    default preset and recipe."""
    page = await (await browser.new_context()).new_page()
    await page.goto(url + "/train", wait_until="domcontentloaded")
    await page.locator("h1", has_text="Train").first.wait_for(timeout=300_000)
    await page.get_by_role("button", name="▶ Start").click()
    await page.get_by_text("Epoch").first.wait_for(timeout=300_000)


async def peak_rss(pid: int, stop: asyncio.Event, peak: list[float]) -> None:
    """Keep ``peak[0]`` at the server's highest RSS (MiB), sampled twice a second."""
    while not stop.is_set():
        peak[0] = max(peak[0], _util.proc_rss_mb(pid))
        await asyncio.sleep(0.5)


def children_of(pid: int) -> list[int]:
    """The server's child processes (the embedding process that computes maps)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="utf-8") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def children_usage(pid: int) -> tuple[float, float]:
    """``(RSS in MiB, CPU seconds so far)`` of the server's child processes together."""
    rss = cpu = 0.0
    for child in children_of(pid):
        try:
            rss, cpu = rss + _util.proc_rss_mb(child), cpu + _util.proc_cpu_s(child)
        except OSError:
            pass
    return rss, cpu


by_page: dict[str, list[float]] = {}
first_by_page: dict[str, list[float]] = {}      # each session's first visit of a page
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
                if not rnd:
                    first_by_page.setdefault(path or "home", []).append(times[-1])
                if rnd:
                    warm.append(times[-1])
            except Exception as exc:  # a timeout or a dropped socket counts as an error
                errors.append(f"{path or 'home'}: {type(exc).__name__}")
    await conn.close()


async def main(sessions: int, rounds: int, trainers: int = 2,
               clients: str = "ws") -> None:
    proc, url = _util.start_app({"LAYERLAB_MAX_RUNS": "2"})
    try:
        _util.wait_healthy(url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True,
                args=_util.CHROMIUM_ARGS)
            # One after the other: two deep links at the same instant on a fresh server can
            # hit Streamlit's legacy multipage mode (see pages/common.py) and fail.
            for _ in range(trainers):
                await trainer(browser, url)
            rss_before = _util.proc_rss_mb(proc.pid)
            cpu_before = _util.proc_cpu_s(proc.pid)
            child_cpu_before = children_usage(proc.pid)[1]
            times, errors = [], []
            stop, peak = asyncio.Event(), [rss_before]
            sampler = asyncio.create_task(peak_rss(proc.pid, stop, peak))
            t0 = time.perf_counter()
            if clients == "chromium":
                await asyncio.gather(*(student(browser, url, rounds, times, errors)
                                       for _ in range(sessions)))
            else:
                await asyncio.gather(*(ws_student(url, rounds, times, errors)
                                       for _ in range(sessions)))
            wall = time.perf_counter() - t0
            server_cpu = _util.proc_cpu_s(proc.pid) - cpu_before
            stop.set()
            await sampler
            rss_peak = max(peak[0], _util.proc_rss_mb(proc.pid))
            children_rss, child_cpu = children_usage(proc.pid)
            child_cpu -= child_cpu_before
            rss_rounds = []                 # one more session visiting every page again
            for _ in range(10):
                await ws_student(url, 1, [], errors)
                rss_rounds.append(_util.proc_rss_mb(proc.pid))
            await browser.close()
        training = {0: "with no training", 1: "while a run trained"}.get(
            trainers, f"while {trainers} runs trained")
        print(f"{sessions} {clients} sessions × {rounds} rounds {training}: "
              f"{len(times)} renders in {wall:.0f} s (load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other work shares them)")
        if times:
            print(f"page render p50 {statistics.median(times):.2f} s, p95 "
                  f"{_util.percentile(times, 95):.2f} s, max {max(times):.2f} s "
                  f"(goal p95 ≤ 2 s)")
        print(f"errors: {len(errors)} {errors[:5]}")
        if warm:
            print(f"after the first round (warm): p50 {statistics.median(warm):.2f} s, p95 "
                  f"{_util.percentile(warm, 95):.2f} s over {len(warm)} renders")
        if first_by_page:
            print("first visits, per page p50 / max: " + ", ".join(
                f"{k} {statistics.median(v):.1f}/{max(v):.1f} s"
                for k, v in first_by_page.items()))
        if by_page:
            print("per page p50: " + ", ".join(f"{k} {statistics.median(v):.2f} s"
                                              for k, v in by_page.items()))
        print(f"server CPU {server_cpu:.0f} s over {wall:.0f} s wall "
              f"({100 * server_cpu / wall:.0f}% of one core); its child processes (the map "
              f"process's UMAP warm-up) {child_cpu:.0f} s")
        print(f"server RSS: {rss_before:.0f} MiB before the sessions, peak {rss_peak:.0f} MiB "
              f"during them (goal ≤ 3 GB: {'PASS' if rss_peak <= 3072 else 'FAIL'}); "
              f"its child processes {children_rss:.0f} MiB")
        print(f"RSS over 10 more sessions visiting every page: {rss_rounds[0]:.0f} → "
              f"{rss_rounds[-1]:.0f} MiB ({rss_rounds[-1] - rss_rounds[0]:+.0f} MiB; "
              f"goal: bounded, ≤ 100 MB)")
    finally:
        proc.terminate()
        proc.wait(30)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Classroom load on the app.")
    ap.add_argument("sessions", nargs="?", type=int, default=30)
    ap.add_argument("rounds", nargs="?", type=int, default=2)
    ap.add_argument("--clients", choices=["ws", "chromium"], default="ws")
    ap.add_argument("--trainers", type=int, default=2, help="sessions training a run")
    ap.add_argument("--no-train", action="store_true", help="the same as --trainers 0")
    return ap.parse_args(argv)


if __name__ == "__main__":
    opts = parse(sys.argv[1:])
    asyncio.run(main(opts.sessions, opts.rounds, 0 if opts.no_train else opts.trainers,
                     clients=opts.clients))
