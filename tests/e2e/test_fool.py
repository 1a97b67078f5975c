""""How little it takes to fool it" in a real browser: draw a digit, pick a target, click,
and see the perturbed digit read as the target, with the sentence that a person still
reads the original."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from bench._browser import draw_digit, open_draw, predicted_digit, wait_idle

pytestmark = pytest.mark.browser
SLOW_MS = 120_000            # a PGD search on a loaded 2-core machine


def test_draw_section_fools_the_model_into_the_picked_digit(small_cnn, server, page):
    open_draw(page, server.url, model="frontier_3k (pretrained)")
    draw_digit(page, 7, 0)
    read = predicted_digit(page)
    target = "0" if read != "0" else "1"
    box = page.locator(".st-key-draw_fool_target [role=combobox]")
    box.scroll_into_view_if_needed()
    box.click()
    page.get_by_role("option", name=target, exact=True).click()
    expect(box).to_have_value(target)
    wait_idle(page)
    page.get_by_role("button", name="Find the smallest change").click()
    now = page.get_by_test_id("stMetric").filter(has_text="Now reads")
    expect(now.get_by_test_id("stMetricValue")).to_have_text(target, timeout=SLOW_MS)
    expect(page.get_by_text(re.compile(rf"a person still reads the original {read}\."))) \
        .to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
