"""Choosing in a Streamlit selectbox from a browser test (not a test module).

A click on the box now and then leaves its menu closed (the box only takes the focus),
more often right after the page re-ran; the arrow key then opens it, as it would for a
person trying again."""
from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from bench._browser import wait_idle

RETRY_MS = 3_000


def open_menu(box: Locator) -> None:
    """Open a selectbox's menu: a click, else the arrow key."""
    box.scroll_into_view_if_needed()
    box.click()
    try:
        expect(box).to_have_attribute("aria-expanded", "true", timeout=RETRY_MS)
    except AssertionError:
        box.press("ArrowDown")
        expect(box).to_have_attribute("aria-expanded", "true")


def pick(page: Page, box: Locator, option: str | re.Pattern) -> None:
    """Choose ``option`` (a label's start, or a pattern) in ``box`` and wait for the rerun."""
    name = option if isinstance(option, re.Pattern) else re.compile("^" + re.escape(option))
    open_menu(box)
    page.get_by_role("option", name=name).first.click()
    expect(box).to_have_value(name)
    wait_idle(page)
