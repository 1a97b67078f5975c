"""pages/self_visit.py: the server's own visit of its pages
(tests/e2e/test_first_view_warms_pages.py runs it against a real server)."""
from __future__ import annotations

import doctest
import logging
import socket

from pages import self_visit


def test_examples_in_the_docstrings_run():
    result = doctest.testmod(self_visit)
    assert result.attempted >= 6 and result.failed == 0


def test_reached_on_the_loopback_under_the_base_path():
    assert self_visit.stream_url("0.0.0.0", 8501, "/class/lab") == \
        "ws://127.0.0.1:8501/class/lab/_stcore/stream"
    assert self_visit.stream_url("127.0.0.1", 9000, "", tls=True) == \
        "wss://127.0.0.1:9000/_stcore/stream"


def test_a_server_that_cannot_be_reached_is_logged_not_raised(monkeypatch, caplog):
    with socket.socket() as sock:           # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(self_visit, "START_DELAY_S", 0)
    with caplog.at_level(logging.WARNING, logger=self_visit.__name__):
        self_visit._run(self_visit.stream_url("127.0.0.1", port))
    assert "visit of its own pages stopped" in caplog.text


def test_started_once_per_process_and_not_when_turned_off(monkeypatch):
    monkeypatch.setattr(self_visit, "visit_thread", None)
    monkeypatch.setenv("LAYERLAB_WARM_UP_PAGES", "0")
    assert self_visit.start_once("ws://127.0.0.1:1/_stcore/stream") is None
    monkeypatch.setenv("LAYERLAB_WARM_UP_PAGES", "1")
    monkeypatch.setattr(self_visit, "START_DELAY_S", 0)
    monkeypatch.setattr(self_visit, "_run", lambda url: None)
    first = self_visit.start_once("ws://127.0.0.1:1/_stcore/stream")
    assert first is not None and self_visit.start_once("ws://other") is first
    first.join(5)


def test_the_visit_waits_for_a_quiet_second_and_gives_up_on_a_busy_server(monkeypatch):
    import asyncio

    monkeypatch.setattr(self_visit, "QUIET_S", 0.3)
    monkeypatch.setattr(self_visit, "GIVE_UP_S", 0.6)
    self_visit.note_page_view()
    assert asyncio.run(self_visit.wait_quiet()) is True        # quiet after 0.3 s

    async def busy() -> bool:                 # a student opens a page every 0.1 s
        async def students():
            for _ in range(20):
                self_visit.note_page_view()
                await asyncio.sleep(0.1)
        task = asyncio.create_task(students())
        await asyncio.sleep(0)            # the first student's view has started
        quiet = await self_visit.wait_quiet()
        task.cancel()
        return quiet

    assert asyncio.run(busy()) is False


def test_only_the_servers_own_token_marks_a_visit():
    token = self_visit._TOKEN
    assert self_visit.is_own(token)
    assert not self_visit.is_own(token[:-1]) and not self_visit.is_own("")


def test_a_sweep_module_half_way_through_its_import_is_no_live_sweep(monkeypatch):
    """Found by the server's own visit: a session opening Sweep on a fresh server imports
    core.sweep while every other session's page view asked the half-imported module for
    its ``live`` sweeps (AttributeError shown to 11–33 of 420 views under load)."""
    import sys
    import types

    from pages.common import sweep_live

    monkeypatch.setitem(sys.modules, "core.sweep", types.ModuleType("core.sweep"))
    assert sweep_live("ws-1") is False
    half = types.ModuleType("core.sweep")
    half.live = lambda ws: object() if ws == "ws-1" else None
    monkeypatch.setitem(sys.modules, "core.sweep", half)
    assert sweep_live("ws-1") is True and sweep_live("ws-2") is False
