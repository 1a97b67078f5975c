"""Navigation in a real browser: every run goes through app.py, its sidebar included."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from bench._browser import open_app, sidebar

pytestmark = pytest.mark.browser
PAGES = ["Home", "Models", "Builder", "Train", "Compare", "Challenge", "Real cost",
         "Draw & inspect", "My digits", "Data", "Projections", "Errors"]


def test_deep_link_on_a_fresh_server_gets_the_sidebar(fresh_server, page):
    """The first request of a new server opens /train: Streamlit's legacy mode (a folder
    named pages/) would run pages/train.py alone; pages/common.py routes it via app.py."""
    open_app(page, fresh_server.url, "Train", path="train")
    bar = sidebar(page)
    expect(bar.get_by_role("heading", name="🔬 Layer Lab")).to_be_visible()
    expect(bar.get_by_text("Workspace:")).to_be_visible()
    expect(bar.get_by_role("link", name="Train")).to_be_visible()
    for legacy in ("common", "widgets", "app"):           # the legacy mode's own menu
        expect(bar.get_by_role("link", name=legacy, exact=True)).to_have_count(0)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    assert "Traceback" not in fresh_server.log_text()


def test_a_class_opening_a_fresh_server_at_once_gets_no_error(fresh_server, monkeypatch):
    """30 sessions open a new server at the same moment (a class after a restart). The
    first run's rerun out of Streamlit's legacy mode was raised inside pages/common.py's
    import, failing it; sessions waiting on that import took the half-run module
    ("cannot import name 'device_label'"): 10 of 30 saw an error page."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "bench"))
    from load_bench import ws_student          # the load bench's own client

    times, errors = [], []

    async def class_at_once() -> None:
        await asyncio.gather(*(ws_student(fresh_server.url, 1, times, errors)
                               for _ in range(30)))

    # a thread of its own: playwright's sync API may hold this thread's event loop
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, class_at_once()).result(timeout=600)
    assert errors == [] and len(times) == 30 * 7
    assert "Traceback" not in fresh_server.log_text()


def test_sidebar_lists_every_page_and_opens_one(server, page):
    open_app(page, server.url, "Layer Lab")
    bar = sidebar(page)
    for name in PAGES:
        expect(bar.get_by_role("link", name=name, exact=True)).to_be_visible()
    bar.get_by_role("link", name="Models", exact=True).click()
    expect(page.locator("h1", has_text="Models")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/models\?ws=\w+$"))


def test_the_server_runs_its_event_loop_on_uvloop(server, page):
    """Streamlit serves on uvloop where it is installed (requirements.txt). Every message
    a page view sends wakes the server's event loop, and asyncio's own loop wrote a byte
    to a socket for each, under the interpreter lock (bench/page_cost_bench.py measures
    the difference)."""
    from pathlib import Path

    open_app(page, server.url, "Layer Lab")
    maps = Path(f"/proc/{server.pid}/maps").read_text(encoding="utf-8")
    assert "uvloop" in maps, "the server did not load uvloop: pip install uvloop"
