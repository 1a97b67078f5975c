"""An idle session costs the server next to nothing: while nothing is in progress no page
asks the browser to rerun part of it every second or so. The Models page polled for an
import every second whether or not there was one: a class of 30 sitting on Models made
the server run 30 fragments a second."""
from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.browser
HEARTBEAT_S = 30          # pages/common.py: a session's workspace heartbeat
LIVE_BOARD = "challenge"  # the leaderboard's standings refresh by design (every 5 s)


async def fragment_reruns(url: str, query: str = "") -> tuple[dict[str, list[float]],
                                                               list[str]]:
    """Each page's self-rerun intervals (under the heartbeat's), visited in one session
    (``query``: the link's, e.g. ``ws=…`` to open a workspace)."""
    from pages.self_visit import connect, request_page

    conn = await connect(url.replace("http", "ws", 1) + "/_stcore/stream")
    pages: dict[str, str] = {}
    errors: list[str] = []
    try:
        await request_page(conn, "", pages, errors, query=query)
        polling = {}
        for path, page_hash in list(pages.items()):
            reruns: list[float] = []
            await request_page(conn, page_hash, pages, errors, reruns, query=query)
            polling[path or "home"] = [r for r in reruns if r < HEARTBEAT_S]
    finally:
        await conn.close()
    return polling, errors


def test_idle_pages_do_not_poll(server):
    polling, errors = asyncio.run(fragment_reruns(server.url))
    assert not errors
    assert len(polling) == 13 and polling[LIVE_BOARD] == [5.0]
    assert {page: every for page, every in polling.items()
            if every and page != LIVE_BOARD} == {}
