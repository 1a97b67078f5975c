"""A just-started server opens its own pages once after its first page view
(pages/self_visit.py), so a class's first views find the pages' caches filled: here a
session that only ever asks for Home is followed by the caches of Models, Compare and
Errors, which Home does not use, as Streamlit's own metrics endpoint reports them."""
from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

pytestmark = pytest.mark.browser
# cached functions only the Models, Compare and Errors pages call (not Home)
OTHER_PAGES_CACHES = ('cache="pages.diagram_view.network_spec"',
                      'cache="__main__.frontier_spec"', 'cache="__main__.evaluation_of"')


@pytest.fixture
def pages_warm_up(monkeypatch):
    """The server started next visits its own pages (the tests' default is not to)."""
    monkeypatch.setenv("LAYERLAB_WARM_UP_PAGES", "1")


def filled(url: str) -> set[str]:
    """The cached functions named in the server's metrics, of those looked for."""
    with urllib.request.urlopen(url + "/_stcore/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {name for name in OTHER_PAGES_CACHES if name in text}


async def home_only(url: str) -> list[str]:
    """One session that asks for Home and nothing else; the errors it showed."""
    from pages.self_visit import connect, request_page

    errors: list[str] = []
    async with connect(url.replace("http", "ws", 1) + "/_stcore/stream") as conn:
        await request_page(conn, "", {}, errors)
    return errors


@pytest.mark.usefixtures("pages_warm_up")
def test_the_first_page_view_warms_every_page(fresh_server):
    assert asyncio.run(home_only(fresh_server.url)) == []
    assert filled(fresh_server.url) == set()        # Home alone fills none of them
    deadline = time.monotonic() + 150
    while filled(fresh_server.url) != set(OTHER_PAGES_CACHES) and time.monotonic() < deadline:
        time.sleep(1)
    assert filled(fresh_server.url) == set(OTHER_PAGES_CACHES)
    log = fresh_server.log_text()
    assert "own visit" not in log and "visit of its own pages stopped" not in log


def test_no_visit_when_turned_off(fresh_server):
    assert asyncio.run(home_only(fresh_server.url)) == []
    time.sleep(8)                  # well past the visit's start delay (3 s)
    assert filled(fresh_server.url) == set()
