"""Real cost in a real browser: pick a preset, press Convert, and the fp32 / fp16 / int8
table arrives from the background job with a download per file (issue 17 §3)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from bench._browser import open_app, sidebar, wait_idle

pytestmark = pytest.mark.browser
SLOW_MS = 240_000            # three conversions and 30,000 test predictions on a busy machine


def test_convert_a_preset_shows_the_cost_table(server, page):
    open_app(page, server.url, "Layer Lab")
    sidebar(page).get_by_role("link", name="Real cost", exact=True).click()
    expect(page.locator("h1", has_text="Real cost")).to_be_visible()
    box = page.locator(".st-key-cost_model [role=combobox]")
    box.click()
    page.get_by_role("option", name="keras_example (pretrained)", exact=True).click()
    expect(box).to_have_value("keras_example (pretrained)")
    wait_idle(page)
    page.get_by_role("button", name="Convert").click()
    table = page.get_by_test_id("stDataFrame")
    expect(table).to_be_visible(timeout=SLOW_MS)
    for fmt in ("fp32", "fp16", "int8"):
        expect(page.get_by_role("button", name=f"Download {fmt} .tflite")).to_be_enabled()
    expect(page.get_by_text("Latency is the median of 200 single-image runs")).to_be_visible()
