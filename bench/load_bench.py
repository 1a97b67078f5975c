"""Classroom load: 30 concurrent sessions go through the pages while 2 runs train in
two other (chromium) sessions; prints page-render p50/p95, errors, the peak memory of the
server with its child processes and the load average meanwhile (goals: 0 errors, p95 ≤ 2 s,
server RSS ≤ 3 GB on this machine), all from one run. The two runs train the Train page's
default preset for 30 epochs, so they outlast the sessions (the bench says whether both
still trained at the end, then stops them).

Two kinds of clients:

* ``--clients ws`` (default): websocket clients speaking Streamlit's own protocol, as the
  browser does. A render is a page request until the server's ``script_finished``; it
  measures the server alone.
* ``--clients chromium``: real headless chromium tabs clicking the sidebar; a render ends
  when the page's title is shown and the running indicator is gone. On a 2-core machine
  the ten browsers themselves compete with the server for the CPU.

``--no-train`` measures the same without the training runs, ``--trainers N`` with N.
``--train-in process`` has the server train each run in a worker process of its own
(``LAYERLAB_TRAIN_IN=process``, core/process_backend.py) instead of a thread; memory is
then also given as PSS, which counts the libraries the processes share once.
By default the sessions start as soon as the runs have started, so they meet the runs'
first seconds, when TensorFlow traces each train step (pure Python, holding the server's
interpreter lock); ``--steady`` starts them once every run has taken its first steps.
``--warm`` lets one session visit every page first and waits for the server to go idle
(its warm-up done), as when a teacher opens the app before the class arrives; by default
the sessions meet a server that has just started.
``--first-view`` has one session open Home only and waits for the server to go idle:
the server then visits its own pages (pages/self_visit.py), as when a teacher opens the
app once, on any page, before the class.
``--profile FILE`` records the server's Python with py-spy (where installed) while the
sessions run, as py-spy's raw (collapsed) stacks of the thread holding the interpreter
lock (``--gil``: the page views' one shared resource; a thread running TensorFlow's C++
without the lock is left out).
Usage: python bench/load_bench.py [sessions] [rounds] [--clients ws|chromium] [--no-train]
       [--trainers N] [--steady] [--warm] [--first-view] [--train-in thread|process] [--profile FILE]
       (defaults: 30 sessions, 2 rounds, 2 trainers, runs in threads of the server)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

import _util
from playwright.async_api import async_playwright

from pages.self_visit import connect, request_page  # the app's own client (one owner)

# the url paths a websocket session asks for in each round ("" is Home)
ROUND = ("models", "builder", "compare", "challenge", "draw", "errors", "")
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


TRAIN_EPOCHS_KEY = ".st-key-tr_ep_Preset_fast_cnn"   # the Train page's default preset


async def trainer(browser, url: str):
    """Another session (its own workspace) starts a real training run: the Train page's
    default preset and recipe, with the epochs slider at its end (30) so that the run
    outlasts the sessions; returns the page (see :func:`still_training`)."""
    page = await (await browser.new_context()).new_page()
    # setup, not timed: a busy 2-core machine may take well over playwright's 30 s
    await page.goto(url + "/train", wait_until="domcontentloaded", timeout=300_000)
    await page.locator("h1", has_text="Train").first.wait_for(timeout=300_000)
    slider = page.locator(TRAIN_EPOCHS_KEY).get_by_role("slider")
    # The slider's own value, not its "30" end label (always shown): once a run trained
    # the first preset's recipe instead (10 epochs), probably after a key press that
    # missed the slider.
    for _ in range(20):
        await slider.focus()
        await slider.press("End")
        if await slider.input_value() == "30":
            break
        await asyncio.sleep(0.5)
    else:
        raise SystemExit("The Train page's epochs slider did not reach 30.")
    await page.get_by_role("button", name="▶ Start").click()
    await page.get_by_text("Epoch").first.wait_for(timeout=300_000)
    return page


async def still_training(page) -> bool:
    """Whether the run of a :func:`trainer` page is still training (its Stop is on)."""
    return await page.get_by_role("button", name="■ Stop").is_enabled()


async def progress_text(page) -> str:
    """Where a :func:`trainer` page's run stands, as its progress bar says it ("Epoch 1/30
    · step 212/446…"), or "" when it shows none (queued or ended)."""
    bar = page.locator("[data-testid=stProgress]")
    return (await bar.first.inner_text()).strip() if await bar.count() else ""


async def stepping(pages: list, timeout_s: float = 600) -> None:
    """Wait until every :func:`trainer` page's run has taken a step of its first epoch
    (its train step traced and running), or ``timeout_s`` passed."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        texts = [await progress_text(page) for page in pages]
        if all(re.search(r"step [1-9]", text) for text in texts):
            return
        await asyncio.sleep(0.5)


async def stop_training(page) -> None:
    """Press Stop on a :func:`trainer` page (no need to wait for the run to end)."""
    if await still_training(page):
        await page.get_by_role("button", name="■ Stop").click()


async def ended(pages: list, timeout_s: float = 120) -> None:
    """Wait until no :func:`trainer` page's run is training (a stopped run still
    evaluates the test set, in its worker process with ``--train-in process``), or
    ``timeout_s`` passed: memory measured after that is the server's own."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if not any([await still_training(page) for page in pages]):
            return
        await asyncio.sleep(0.5)


def pss_mb(pid: int) -> float:
    """A process's proportional set size (MiB): its share of pages it shares with others
    (TensorFlow's libraries mapped by the server and each training worker count once in
    a sum of these, and as many times as there are processes in a sum of RSS)."""
    return _util.proc_field_mb(pid, "smaps_rollup", "Pss")


def server_pss_mb(pid: int) -> float:
    """PSS of the server and its child processes together (MiB)."""
    total = pss_mb(pid)
    for child in children_of(pid):
        try:
            total += pss_mb(child)
        except OSError:
            pass
    return total


def server_rss_mb(pid: int) -> float:
    """RSS of the server and its child processes together (MiB): the training runs'
    worker processes and the maps' embedding process are its children."""
    return _util.proc_rss_mb(pid) + children_usage(pid)[0]


async def sample(pid: int, stop: asyncio.Event, peak: list[float],
                 loads: list[float]) -> None:
    """Keep ``peak[0]`` at the highest RSS of the server and its children (MiB) and
    collect the 1-minute load average, sampled twice a second."""
    while not stop.is_set():
        peak[0] = max(peak[0], server_rss_mb(pid))
        peak[1] = max(peak[1], server_pss_mb(pid))
        loads.append(os.getloadavg()[0])
        await asyncio.sleep(0.5)


def children_of(pid: int) -> list[int]:
    """The server's child processes (training workers, the embedding process that
    computes maps), whichever of its threads started them: Linux lists a child under
    the thread that forked it."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="utf-8") as fh:
                found += [int(c) for c in fh.read().split()]
        except OSError:
            continue
    return found


def children_usage(pid: int) -> tuple[float, float]:
    """``(RSS in MiB, CPU seconds so far)`` of the server's child processes together."""
    rss = cpu = 0.0
    for child in children_of(pid):
        try:
            rss, cpu = rss + _util.proc_rss_mb(child), cpu + _util.proc_cpu_s(child)
        except OSError:
            pass
    return rss, cpu


def machine_cpu() -> dict[int, tuple[str, float]]:
    """Every process's ``(command name, CPU seconds so far)`` by pid (Linux)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="utf-8") as fh:
                    name = fh.read().strip()
                found[int(entry)] = (name, _util.proc_cpu_s(int(entry)))
            except OSError:
                continue
    return found


def cpu_shares(before: dict, after: dict, server: int, children: list[int]) -> dict:
    """CPU seconds between two :func:`machine_cpu` readings: the server, its children,
    this bench's own clients, the chromium tabs (the runs' trainers) and the rest.

    >>> cpu_shares({1: ("python", 1.0)}, {1: ("python", 3.0), 2: ("chrome", 1.5)}, 1, [])
    {'server': 2.0, 'children': 0.0, 'bench clients': 0.0, 'chromium': 1.5, 'other': 0.0}
    """
    shares = dict.fromkeys(["server", "children", "bench clients", "chromium", "other"], 0.0)
    for pid, (name, cpu) in after.items():
        used = cpu - before.get(pid, (name, 0.0))[1]
        kind = ("server" if pid == server else "children" if pid in children else
                "bench clients" if pid == os.getpid() else
                "chromium" if "chrom" in name or "headless" in name else "other")
        shares[kind] = round(shares[kind] + used, 2)
    return shares


by_page: dict[str, list[float]] = {}
first_by_page: dict[str, list[float]] = {}      # each session's first visit of a page
warm: list[float] = []           # renders after each session's first round


async def ws_session(url: str):
    """A websocket connection to the app at ``url`` (http://host:port), as a browser's."""
    return await connect(url.replace("http", "ws", 1) + "/_stcore/stream")


async def ws_student(url: str, rounds: int, times: list, errors: list) -> None:
    """One websocket session: load the app, then request each page in turn."""
    conn = await ws_session(url)
    pages: dict[str, str] = {}

    async def request(page_hash: str) -> None:
        await request_page(conn, page_hash, pages, errors)

    await request("")
    for rnd in range(rounds):
        for path in ROUND:
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


async def server_idle(pid: int, timeout_s: float = 180, quiet_s: float = 6) -> float:
    """Wait until the server has used under a tenth of a core for ``quiet_s`` seconds
    (its background warm-up done: longer than the warm-up's own delay,
    core/page_warm_up.py); the seconds waited."""
    t0 = time.perf_counter()
    quiet_since, last = t0, _util.proc_cpu_s(pid)
    while time.perf_counter() - t0 < timeout_s:
        await asyncio.sleep(0.5)
        now = _util.proc_cpu_s(pid)
        if now - last > 0.05:
            quiet_since = time.perf_counter()
        last = now
        if time.perf_counter() - quiet_since >= quiet_s:
            break
    return time.perf_counter() - t0


def start_profile(pid: int, path: str | None):
    """py-spy recording the server's Python into ``path`` (None: no profile)."""
    if not path:
        return None
    if not shutil.which("py-spy"):
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return subprocess.Popen(["py-spy", "record", "-p", str(pid), "-r", "100", "-f", "raw",
                             "-o", path, "--nonblocking", "--gil"], stdout=subprocess.DEVNULL)


async def measure(url: str, pid: int, browser, sessions: int, rounds: int,
                  clients: str, profile: str | None = None) -> dict:
    """The sessions, all at once, with the server's memory, CPU and the load average
    sampled meanwhile: one run's figures."""
    times, errors, loads = [], [], []
    spy = start_profile(pid, profile)
    cpu_at_start = machine_cpu()
    rss_before = server_rss_mb(pid)
    cpu_before, child_cpu_before = _util.proc_cpu_s(pid), children_usage(pid)[1]
    stop, peak = asyncio.Event(), [rss_before, server_pss_mb(pid)]
    sampler = asyncio.create_task(sample(pid, stop, peak, loads))
    t0 = time.perf_counter()
    if clients == "chromium":
        await asyncio.gather(*(student(browser, url, rounds, times, errors)
                               for _ in range(sessions)))
    else:
        await asyncio.gather(*(ws_student(url, rounds, times, errors)
                               for _ in range(sessions)))
    wall = time.perf_counter() - t0
    server_cpu = _util.proc_cpu_s(pid) - cpu_before
    shares = cpu_shares(cpu_at_start, machine_cpu(), pid, children_of(pid))
    if spy:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    stop.set()
    await sampler
    children_rss, child_cpu = children_usage(pid)
    return {"times": times, "errors": errors, "wall": wall, "loads": loads or [0.0],
            "server_cpu": server_cpu, "child_cpu": child_cpu - child_cpu_before,
            "rss_before": rss_before, "rss_peak": max(peak[0], server_rss_mb(pid)),
            "pss_peak": max(peak[1], server_pss_mb(pid)),
            "children_rss": children_rss, "warm": list(warm), "shares": shares,
            "first_by_page": {k: list(v) for k, v in first_by_page.items()},
            "by_page": {k: list(v) for k, v in by_page.items()}}


def report(m: dict, sessions: int, rounds: int, clients: str, trainers: int,
           training_at_end: int) -> None:
    """Print one run's figures (see :func:`measure`)."""
    times, errors, wall = m["times"], m["errors"], m["wall"]
    warm, first_by_page, by_page = m["warm"], m["first_by_page"], m["by_page"]
    training = {0: "with no training", 1: "while a run trained"}.get(
        trainers, f"while {trainers} runs trained")
    print(f"{sessions} {clients} sessions × {rounds} rounds {training}: "
          f"{len(times)} renders in {wall:.0f} s; runs still training at the end: "
          f"{training_at_end} of {trainers}")
    print(f"load average (1 min) during the run: mean {statistics.mean(m['loads']):.1f}, "
          f"max {max(m['loads']):.1f} on {os.cpu_count()} cores (other work shares them)")
    if times:
        print(f"page render p50 {statistics.median(times):.2f} s, p95 "
              f"{_util.percentile(times, 95):.2f} s, max {max(times):.2f} s "
              f"(goal p95 ≤ 2 s: {'PASS' if _util.percentile(times, 95) <= 2 else 'FAIL'})")
    print(f"errors: {len(errors)} {errors[:5]} (goal 0: {'PASS' if not errors else 'FAIL'})")
    if warm:
        print(f"after the first round (warm): p50 {statistics.median(warm):.2f} s, p95 "
              f"{_util.percentile(warm, 95):.2f} s over {len(warm)} renders")
    if first_by_page:
        print("first visits, per page p50 / max: " + ", ".join(
            f"{k} {statistics.median(v):.1f}/{max(v):.1f} s" for k, v in first_by_page.items()))
    if by_page:
        print("per page p50: " + ", ".join(f"{k} {statistics.median(v):.2f} s"
                                          for k, v in by_page.items()))
    print(f"server CPU {m['server_cpu']:.0f} s over {wall:.0f} s wall "
          f"({100 * m['server_cpu'] / wall:.0f}% of one core, training included); its child "
          f"processes (training workers, the map process) {m['child_cpu']:.0f} s")
    print(f"the machine's CPU seconds meanwhile ({os.cpu_count()} cores × {wall:.0f} s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in m["shares"].items()))
    print(f"server RSS with its child processes: {m['rss_before']:.0f} MiB before the "
          f"sessions, peak {m['rss_peak']:.0f} MiB during them (goal ≤ 3 GB: "
          f"{'PASS' if m['rss_peak'] <= 3072 else 'FAIL'}); the children "
          f"{m['children_rss']:.0f} MiB at the end")
    print(f"server PSS with its child processes (shared pages counted once): peak "
          f"{m['pss_peak']:.0f} MiB")


async def main(sessions: int, rounds: int, trainers: int = 2,
               clients: str = "ws", steady: bool = False, train_in: str = "thread",
               profile: str | None = None, warm_first: bool = False,
               first_view: bool = False) -> None:
    proc, url = _util.start_app({"LAYERLAB_MAX_RUNS": "2", "LAYERLAB_TRAIN_IN": train_in})
    try:
        _util.wait_healthy(url, timeout=300, proc=proc)
        if warm_first or first_view:
            if warm_first:
                await ws_student(url, 1, [], [])
            else:                   # the server's own visit (pages/self_visit.py) does it
                async with await ws_session(url) as conn:
                    await request_page(conn, "", {}, [])
            waited = await server_idle(proc.pid)
            by_page.clear(), first_by_page.clear(), warm.clear()
            print(f"warm server: one session {'visited every page' if warm_first else 'opened Home'}"
                  f", then {waited:.0f} s until the server was idle")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True,
                args=_util.CHROMIUM_ARGS)
            # One after the other: two deep links at the same instant on a fresh server can
            # hit Streamlit's legacy multipage mode (see pages/common.py) and fail.
            training = [await trainer(browser, url) for _ in range(trainers)]
            if steady:
                await stepping(training)
                print("the sessions start once the runs are stepping: "
                      + "; ".join([await progress_text(page) for page in training]))
            m = await measure(url, proc.pid, browser, sessions, rounds, clients, profile)
            at_end = sum([await still_training(page) for page in training])
            stands = [await progress_text(page) for page in training]
            for page in training:
                await stop_training(page)
            await ended(training)
            rss_rounds = []                 # one more session visiting every page again
            for _ in range(10):
                await ws_student(url, 1, [], m["errors"])
                rss_rounds.append(server_rss_mb(proc.pid))
            await browser.close()
        report(m, sessions, rounds, clients, trainers, at_end)
        if stands:       # a run's first epoch includes TensorFlow tracing its train step
            print("the runs at the end of the sessions: "
                  + "; ".join(text.replace("\n", " ") or "no progress shown" for text in stands))
        print(f"RSS over 10 more sessions visiting every page (training stopped): "
              f"{rss_rounds[0]:.0f} → {rss_rounds[-1]:.0f} MiB "
              f"({rss_rounds[-1] - rss_rounds[0]:+.0f} MiB; goal: bounded, ≤ 100 MB)")
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
    ap.add_argument("--train-in", choices=["thread", "process"], default="thread",
                    help="where the server trains runs (LAYERLAB_TRAIN_IN)")
    ap.add_argument("--steady", action="store_true",
                    help="start the sessions once every run has taken its first steps")
    ap.add_argument("--warm", action="store_true",
                    help="one session visits every page first; wait for the server to idle")
    ap.add_argument("--first-view", action="store_true",
                    help="one session opens Home only (the server then visits its own "
                         "pages); wait for the server to idle")
    ap.add_argument("--profile", metavar="FILE",
                    help="record the server with py-spy during the sessions (raw stacks)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    opts = parse(sys.argv[1:])
    asyncio.run(main(opts.sessions, opts.rounds, 0 if opts.no_train else opts.trainers,
                     clients=opts.clients, steady=opts.steady, train_in=opts.train_in,
                     profile=opts.profile, warm_first=opts.warm,
                     first_view=opts.first_view))
