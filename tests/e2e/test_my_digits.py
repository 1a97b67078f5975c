"""The personal set in a real browser: a drawn digit added on Draw & inspect is in the
workspace's set on the My digits page, under the label it was given."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from bench._browser import draw_digit, open_draw, predicted_digit, wait_idle

pytestmark = pytest.mark.browser
SLOW_MS = 240_000            # a model evaluation on a loaded 2-core machine


def test_a_drawn_digit_added_is_shown_on_my_digits(small_cnn, server, page):
    open_draw(page, server.url)
    draw_digit(page, 7, 0)
    label = predicted_digit(page)
    expect(page.locator(".st-key-draw_personal_label [role=combobox]")).to_have_value(label)
    page.get_by_role("button", name="Add to my digits").click()
    expect(page.get_by_text(f"Added as a {label}; your set holds 1 digit.")).to_be_visible()
    page.get_by_role("link", name="See them on My digits").click()
    expect(page.locator("h1", has_text="My digits")).to_be_visible()
    wait_idle(page, SLOW_MS / 1000)
    expect(page.get_by_role("heading", name="Your set · 1 digit")).to_be_visible()
    expect(page.get_by_text(re.compile(rf"^{label} · 1 digit$"))).to_be_visible()
    expect(page.get_by_test_id("stMetric").filter(has_text="Accuracy on your digits")) \
        .to_be_visible(timeout=SLOW_MS)
