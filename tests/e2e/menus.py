"""Setting Streamlit widgets by key from a browser test (not a test module): a
selectbox's option, a slider's value, a text field.

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


def choose(page: Page, key: str, option: str | re.Pattern) -> None:
    """Pick ``option`` (a label's start, or a pattern) in the selectbox whose key is ``key``."""
    pick(page, page.locator(f".st-key-{key} [role=combobox]"), option)


def set_slider(page: Page, key: str, value: int) -> None:
    """Move the slider ``key`` to ``value`` with the arrow keys, as a person would."""
    thumb = page.locator(f".st-key-{key} input[type=range]")
    now = int(thumb.input_value())
    thumb.focus()
    for _ in range(abs(value - now)):
        thumb.press("ArrowRight" if value > now else "ArrowLeft")
    expect(thumb).to_have_value(str(value))
    wait_idle(page)


def set_text(page: Page, key: str, text: str) -> None:
    """Type ``text`` into the text field ``key`` and submit it."""
    field = page.locator(f".st-key-{key} input")
    field.fill(text)
    field.press("Enter")
    wait_idle(page)
