"""Server CPU per page view: one websocket session on a warm server asks for each page of
the load bench's round (bench/load_bench.py) ``--reps`` times, and the server's CPU
seconds are read before and after. Thirty sessions share the server's one interpreter
lock, so a page view under a class's load waits on the others' CPU: this is the figure
the load bench's p50 and p95 scale with, measured without their noise.

With ``--against DIR`` a second server runs another checkout side by side (``--against
.`` with ``--env-b K=V`` runs this one again with an environment of its own); the two
are asked in turn, which one goes first alternating round by round, and the ratio B/A is
printed per page and over all pages, both measured in the same run on the same machine.
An A/A run (``--against .``) shows the noise: about ±3% over all pages here, ±10% for
one page. The servers start with their own warm-ups off (``LAYERLAB_WARM_UP_*=0``), so
nothing runs beside the views.

Usage: python bench/page_cost_bench.py [--reps N] [--rounds R] [--against DIR]
       [--env-b K=V ...]      (defaults: 20 views a page a round, 4 rounds)
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

import _util

from load_bench import ROUND as PATHS  # the pages a load bench session goes through
from pages.self_visit import connect, request_page  # the app's own client (one owner)

QUIET = {"LAYERLAB_WARM_UP_PAGES": "0", "LAYERLAB_WARM_UP_MAPS": "0",
         "LAYERLAB_WARM_UP_ERRORS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}


async def warm_session(url: str):
    """A websocket session that has opened every page of the round three times (imports,
    models and per-content caches warm); ``(connection, pages by url path)``."""
    conn = await connect(url.replace("http", "ws", 1) + "/_stcore/stream")
    pages: dict[str, str] = {}
    await request_page(conn, "", pages, [])
    for _ in range(3):
        for path in PATHS:
            await request_page(conn, pages[path], pages, [])
    return conn, pages


async def views_cpu_ms(pid: int, conn, page_hash: str, reps: int, errors: list) -> float:
    """The server's CPU milliseconds per view over ``reps`` views of one page."""
    before = _util.proc_cpu_s(pid)
    for _ in range(reps):
        await request_page(conn, page_hash, {}, errors)
    return 1000 * (_util.proc_cpu_s(pid) - before) / reps


async def measure(servers: list, reps: int, rounds: int) -> tuple[list[dict], list]:
    """Per server, each page's CPU ms per view (the mean of ``rounds``), asked in turn."""
    sessions = [await warm_session(url) for _, url in servers]
    await asyncio.sleep(8)                       # the warm-up views' stragglers
    found: list[dict[str, list[float]]] = [{p: [] for p in PATHS} for _ in servers]
    errors: list[str] = []
    for rnd in range(rounds):
        for path in PATHS:
            order = range(len(servers)) if rnd % 2 == 0 else reversed(range(len(servers)))
            for i in order:
                conn, pages = sessions[i]
                found[i][path].append(await views_cpu_ms(servers[i][0].pid, conn,
                                                         pages[path], reps, errors))
    for conn, _ in sessions:
        await conn.close()
    return [{p: statistics.mean(v) for p, v in f.items()} for f in found], errors


def report(costs: list[dict], reps: int, rounds: int) -> None:
    """Print each page's figure (and B/A with two servers)."""
    print(f"server CPU per warm page view, one session, {reps} views × {rounds} rounds a page")
    for path in PATHS:
        line = f"{path or 'home':10s} A {costs[0][path]:5.1f} ms"
        if len(costs) > 1:
            line += f"   B {costs[1][path]:5.1f} ms   B/A {costs[1][path] / costs[0][path]:.2f}"
        print(line)
    totals = [sum(c.values()) for c in costs]
    print(f"a round of the {len(PATHS)} pages: A {totals[0]:.0f} ms" + (
        f", B {totals[1]:.0f} ms, B/A {totals[1] / totals[0]:.2f}" if len(costs) > 1 else ""))


async def main(reps: int, rounds: int, against: Path | None, env_b: dict) -> None:
    roots = [None] + ([against.resolve()] if against else [])
    servers = []
    try:
        for i, root in enumerate(roots):
            servers.append(_util.start_app({**QUIET, **(env_b if i else {})}, root=root))
        for proc, url in servers:
            _util.wait_healthy(url, timeout=300, proc=proc)
        costs, errors = await measure(servers, reps, rounds)
        report(costs, reps, rounds)
        print(f"errors: {len(errors)} {errors[:3]}")
    finally:
        for proc, _ in servers:
            _util.stop_app(proc)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Server CPU per page view, optionally A/B.")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--against", type=Path, help="a second checkout, run side by side (B)")
    ap.add_argument("--env-b", action="append", default=[], metavar="K=V",
                    help="an environment variable for server B only")
    return ap.parse_args(argv)


if __name__ == "__main__":
    opts = parse()
    asyncio.run(main(opts.reps, opts.rounds, opts.against,
                     dict(kv.split("=", 1) for kv in opts.env_b)))
