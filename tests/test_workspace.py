"""The workspace id is a secret (issue 12 §3): made by the server with 128 random bits,
only its own format accepted, never rendered as markdown, never adopted from a link
without asking; and a viewer's "clear cache" message leaves the shared caches alone."""
from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import LayerLabError
from core.runs import Run, RunStore, new_run_id
from core.workspace import (IssuedIds, check_workspace_id, is_workspace_id, label,
                            link_status, new_workspace_id)

APP = str(Path(__file__).resolve().parents[1] / "app.py")
# The attack as reported: a phishing link and an external image through ?ws=.
PAYLOAD = ("x` **Your session expired.** [Click here…](https://evil.example/login) "
           "![t](https://evil.example/pixel.png)")


# -- core/workspace.py -------------------------------------------------------------------
def test_ids_have_128_random_bits_in_one_strict_format():
    ids = {new_workspace_id() for _ in range(2_000)}
    assert len(ids) == 2_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", ws) for ws in ids)
    # every hex digit is used in every position: the ids are not a counter or a clock
    assert all(len({ws[i] for ws in ids}) == 16 for i in range(32))
    good = next(iter(ids))
    for bad in ("1a2b3c4d",                         # the old 32-bit ids
                good.upper(), good + "\n", good[:-1], good + "0", " " + good,
                "../../" + good[6:], PAYLOAD, None, 123, ["x"]):
        assert not is_workspace_id(bad), bad
    assert check_workspace_id(good) == good


def test_a_refused_id_is_not_repeated_in_the_sentence():
    with pytest.raises(LayerLabError, match="not valid") as err:
        check_workspace_id(PAYLOAD)
    assert "evil" not in str(err.value) and "](" not in str(err.value)


def test_label_is_short_stable_and_reveals_nothing():
    ws = new_workspace_id()
    assert label(ws) == label(ws) and re.fullmatch(r"ws-[0-9a-f]{6}", label(ws))
    assert ws[:6] not in label(ws) and label(ws) != label(new_workspace_id())


def test_link_status_asks_only_a_well_formed_id_whether_it_is_known():
    asked = []

    def known(ws: str) -> bool:
        asked.append(ws)
        return False

    assert link_status(PAYLOAD, known) == "malformed" and asked == []
    ws = new_workspace_id()
    assert link_status(ws, known) == "unknown" and asked == [ws]


def test_issued_ids_refuse_malformed_ones():
    with pytest.raises(LayerLabError):
        IssuedIds().add("x` [a](b)")


# -- the app -----------------------------------------------------------------------------
def elements(node) -> list:
    """Every rendered element under an AppTest node (blocks walked recursively)."""
    children = getattr(node, "children", None)
    if not children:
        return [node]
    return [e for child in children.values() for e in elements(child)]


def opened(ws: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if ws is not None:
        at.query_params["ws"] = ws
    at.run()
    assert not at.exception
    return at


def test_markdown_payload_in_the_link_is_refused_and_never_rendered():
    at = opened(PAYLOAD)
    rendered = [str(e.proto) for e in elements(at._tree)]
    assert rendered and not any("evil.example" in r or "Click here" in r for r in rendered)
    assert "not valid" in at.warning[0].value          # refused with a sentence
    ws = at.session_state["workspace"]
    assert is_workspace_id(ws) and at.query_params["ws"] == ws
    assert at.title[0].value.endswith("Layer Lab")     # the app went on, in a new workspace


def test_the_sidebar_shows_a_label_as_text_and_the_id_only_in_the_link_box():
    at = opened(None)
    ws = at.session_state["workspace"]
    assert is_workspace_id(ws)
    sidebar = elements(at.sidebar)
    outside_box = [str(e.proto) for e in sidebar if e.type != "code"]
    assert not any(ws in text for text in outside_box)
    assert label(ws) in [t.value for t in at.sidebar.text]
    assert not any(label(ws) in m.value for m in [*at.sidebar.markdown, *at.sidebar.caption])
    box = at.sidebar.expander[0]
    assert box.label == "Copy my link" and box.code[0].value.endswith(f"?ws={ws}")


def test_an_unknown_id_is_asked_about_and_opened_only_on_request():
    link = new_workspace_id()
    at = opened(link)
    assert "workspace" not in at.session_state
    assert at.subheader[0].value == "Open the workspace in this link?"
    assert not at.title                                   # no page ran behind the question
    at.button(key="ws_open_link").click().run()
    assert at.session_state["workspace"] == link and not at.exception
    assert at.title[0].value.endswith("Layer Lab")


def test_an_unknown_id_can_be_declined_for_a_new_workspace():
    link = new_workspace_id()
    at = opened(link)
    at.button(key="ws_start_new").click().run()
    ws = at.session_state["workspace"]
    assert is_workspace_id(ws) and ws != link and not at.exception


def test_a_workspace_with_runs_or_made_here_opens_without_asking():
    ws = new_workspace_id()
    RunStore().save_run(Run(id=new_run_id(), name="mine", spec={}, recipe={}, workspace=ws,
                            status="finished"))
    at = opened(ws)
    assert at.session_state["workspace"] == ws and at.title[0].value.endswith("Layer Lab")
    fresh = opened(None).session_state["workspace"]    # a reload of a workspace with no runs
    assert opened(fresh).session_state["workspace"] == fresh


# -- the shared caches -------------------------------------------------------------------
def _clear_cache_from_a_session() -> int:
    """Send a real ``clear_cache`` BackMsg through a real AppSession; how many times a
    cached function then had to compute again (0: the cache survived)."""
    import streamlit as st
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.script_data import ScriptData
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    calls = []

    @st.cache_data
    def shared(x: int) -> int:
        calls.append(x)
        return x

    async def session() -> None:
        app = AppSession(ScriptData(APP, is_hello=False), MemoryUploadedFileManager("/u"),
                         ScriptCache(), None, {})
        try:
            msg = BackMsg()
            msg.clear_cache = True
            app.handle_backmsg(msg)
        finally:
            app.shutdown()

    shared(1)
    asyncio.run(session())
    shared(1)
    shared.clear()
    return len(calls) - 1


def test_a_viewer_cannot_clear_the_shared_caches(monkeypatch):
    from streamlit.runtime.app_session import AppSession

    from pages import guards

    opened(None)                                   # app.py installs the guard
    assert AppSession._handle_clear_cache_request is guards._ignore_clear_cache
    assert _clear_cache_from_a_session() == 0
    # the hole it closes: Streamlit's own handler empties the cache for everyone
    monkeypatch.setattr(AppSession, "_handle_clear_cache_request", guards.streamlit_handler)
    assert _clear_cache_from_a_session() == 1


def test_the_guard_fails_loudly_if_streamlit_changes(monkeypatch):
    from streamlit.runtime.app_session import AppSession

    from pages import guards

    monkeypatch.delattr(AppSession, "_handle_clear_cache_request")
    with pytest.raises(RuntimeError, match="no longer handles 'clear_cache'"):
        guards.keep_caches_from_viewers()


# -- the real browser --------------------------------------------------------------------
@pytest.mark.browser
def test_markdown_payload_renders_no_link_or_image_in_chromium(tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from bench._util import launch_chromium, start_app, stop_app, wait_healthy

    proc, url = start_app({"LAYERLAB_HOME": str(tmp_path)}, log_path=tmp_path / "log")
    evil_requests = []
    try:
        wait_healthy(url, timeout=90, proc=proc)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                page = browser.new_page()
                page.on("request", lambda r: urlsplit(r.url).hostname == "evil.example"
                        and evil_requests.append(r.url))
                page.goto(f"{url}/?ws={quote(PAYLOAD)}")
                page.wait_for_selector("h1:has-text('Layer Lab')", timeout=60_000)
                page.wait_for_selector("[data-testid=stApp][data-test-script-state="
                                       "notRunning]", timeout=60_000)
                sidebar = page.locator("[data-testid=stSidebar]")
                assert page.locator("a[href*='evil.example']").count() == 0
                assert page.locator("img[src*='evil.example']").count() == 0
                assert "Click here" not in sidebar.inner_text()
                assert re.search(r"ws-[0-9a-f]{6}", sidebar.inner_text())
                page.wait_for_url(re.compile(r"ws=[0-9a-f]{32}$"), timeout=30_000)
            finally:
                browser.close()
    finally:
        stop_app(proc)
    assert evil_requests == []
