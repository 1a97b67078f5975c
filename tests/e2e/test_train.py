"""The Train page in a real browser: the user's recipe outlives a page switch, a reload or
a second tab re-attaches to the workspace's live run (Stop works there), and two tabs of
one workspace cannot start two runs."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from bench._browser import open_app, sidebar, wait_idle
from tests.e2e.menus import choose, set_slider, set_text
from tests.e2e.test_idle_polling import fragment_reruns

pytestmark = pytest.mark.browser
RUNNING = re.compile(r"Epoch \d+/\d+ · step")


def start_long_run(page: Page, name: str) -> None:
    """On the open Train page, a keras_example run of 30 epochs on 10,000 images: minutes,
    long enough to watch."""
    choose(page, "train_preset", "keras_example")
    set_slider(page, "tr_ep_Preset_keras_example", 30)
    choose(page, "tr_sub_Preset_keras_example", "10,000")
    set_text(page, "tr_name_Preset_keras_example", name)
    page.get_by_role("button", name="▶ Start").click()
    expect(page.get_by_text(RUNNING)).to_be_visible()


def stop_from(page: Page) -> None:
    page.get_by_role("button", name="■ Stop").click()
    expect(page.get_by_text(re.compile("Stopped"))).to_be_visible()


def test_the_recipe_is_kept_across_a_page_switch(server, page):
    open_app(page, server.url, "Train", path="train")
    set_slider(page, "tr_ep_Preset_fast_cnn", 7)
    choose(page, "tr_sub_Preset_fast_cnn", "1,000")
    set_text(page, "tr_name_Preset_fast_cnn", "persist_test")
    sidebar(page).get_by_role("link", name="Builder", exact=True).click()
    expect(page.locator("h1", has_text="Builder")).to_be_visible()
    wait_idle(page)
    sidebar(page).get_by_role("link", name="Train", exact=True).click()
    expect(page.locator("h1", has_text="Train")).to_be_visible()
    wait_idle(page)
    expect(page.locator(".st-key-tr_ep_Preset_fast_cnn input[type=range]")).to_have_value("7")
    expect(page.locator(".st-key-tr_sub_Preset_fast_cnn [role=combobox]")
           ).to_have_value("1,000")
    expect(page.locator(".st-key-tr_name_Preset_fast_cnn input")).to_have_value("persist_test")


def test_a_reload_and_a_second_tab_reattach_and_stop_works_there(server, page):
    open_app(page, server.url, "Train", path="train")
    start_long_run(page, "reattach_me")
    link = page.url
    page.reload()                                       # F5 during the run
    expect(page.get_by_text(RUNNING)).to_be_visible()
    expect(page.get_by_text("reattach_me")).to_be_visible()     # its recipe, read-only
    other = page.context.browser.new_context().new_page()      # another tab, same link
    try:
        other.goto(link)
        expect(other.get_by_text(RUNNING)).to_be_visible()
        expect(other.get_by_role("button", name="▶ Start")).to_be_disabled()
        stop_from(other)
    finally:
        other.context.close()
    expect(page.get_by_text(re.compile("Stopped by you"))).to_be_visible()


def test_two_tabs_of_one_workspace_cannot_start_two_runs(server, page):
    open_app(page, server.url, "Train", path="train")
    second = page.context.new_page()                    # opened before the first starts
    try:
        second.goto(page.url)
        expect(second.locator("h1", has_text="Train")).to_be_visible()
        wait_idle(second)
        start_long_run(page, "first_tab")
        second.get_by_role("button", name="▶ Start").click()   # its page predates the run
        expect(second.get_by_text(RUNNING)).to_be_visible()    # it shows the first's run
        expect(second.get_by_text("first_tab")).to_be_visible()
        expect(second.get_by_role("button", name="▶ Start")).to_be_disabled()
        stop_from(second)
    finally:
        second.close()


def test_a_tab_watching_a_run_polls_it_once_a_second(server, page):
    """Each watching tab's live view reruns on the server, which every page view of the
    class shares (one interpreter lock): twice a second cost about 6% of it a tab."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit

    open_app(page, server.url, "Train", path="train")
    start_long_run(page, "watched")
    try:
        # in a thread of its own: Playwright's sync API holds this thread's event loop
        with ThreadPoolExecutor(1) as pool:
            polling, errors = pool.submit(asyncio.run, fragment_reruns(
                server.url, urlsplit(page.url).query)).result(timeout=180)
        assert not errors
        assert polling["train"] and min(polling["train"]) >= 1.0, polling
    finally:
        stop_from(page)
