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


def test_sidebar_lists_every_page_and_opens_one(server, page):
    open_app(page, server.url, "Layer Lab")
    bar = sidebar(page)
    for name in PAGES:
        expect(bar.get_by_role("link", name=name, exact=True)).to_be_visible()
    bar.get_by_role("link", name="Models", exact=True).click()
    expect(page.locator("h1", has_text="Models")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/models\?ws=\w+$"))
