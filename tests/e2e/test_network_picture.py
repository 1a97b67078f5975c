"""The network drawn, in a real browser (issue 16 §3): a labelled box per layer on Models
and on the Builder; a Builder change redraws it (a new box, a changed label) and the SVG
download carries the change."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from bench._browser import open_app, wait_idle
from tests.e2e.menus import choose

pytestmark = pytest.mark.browser
CAPTION = "Each box is one layer's output"


def picture(page: Page) -> Locator:
    """The network chart: the Vega chart just before the picture's caption."""
    expect(page.get_by_text(CAPTION)).to_be_visible()
    return page.get_by_test_id("stVegaLiteChart").filter(
        has=page.locator("svg text", has_text=re.compile(r"^Input"))).first


def labels(chart: Locator) -> Locator:
    """One text mark per box: type, output shape and parameters."""
    return chart.locator("svg text")


def test_models_draws_the_preset_and_redraws_another(server, page):
    from core.presets import PRESETS

    open_app(page, server.url, "Models", path="models")
    chart = picture(page)
    first = page.locator(".st-key-models_preset [role=combobox]").input_value().split(" ")[0]
    expect(labels(chart)).to_have_count(len(PRESETS[first].spec.layers) + 1)   # + input
    choose(page, "models_preset", "fast_cnn")
    chart = picture(page)
    expect(labels(chart)).to_have_count(len(PRESETS["fast_cnn"].spec.layers) + 1)
    expect(labels(chart).filter(has_text=re.compile(r"^BatchNormalization"))).to_have_count(3)


def download_svg(page: Page) -> str:
    with page.expect_download() as got:
        page.locator(".st-key-builder_network_svg button").click()
    return open(got.value.path(), encoding="utf-8").read()


def test_the_builder_picture_follows_the_stack(server, page):
    open_app(page, server.url, "Builder", path="builder")
    chart = picture(page)
    expect(labels(chart).filter(has_text="Conv2D 32 3×3")).to_have_count(1)
    wait_idle(page)                # every label drawn before they are counted
    count = labels(chart).count()
    assert count >= 3
    before = download_svg(page)
    assert before.startswith("<svg") and "Conv2D 32 3×3" in before
    # a new layer: one more box, labelled
    choose(page, "builder_new_type", "BatchNormalization")
    page.get_by_role("button", name="+ Add layer").click()
    expect(labels(chart)).to_have_count(count + 1)
    expect(labels(chart).filter(has_text=re.compile(r"^BatchNormalization"))).to_have_count(1)
    # an altered layer: the first Conv2D's filters 32 -> 33, its label and shape follow
    # (the new layer is the one being edited: pick the first in the list)
    page.locator("[class*=st-key-builder_pick_]").get_by_text("1. Conv2D 32 3×3").click()
    wait_idle(page)
    filters = page.locator("[class*=st-key-b_][class*=_filters] input[type=range]").first
    filters.focus()
    filters.press("ArrowRight")
    expect(labels(chart).filter(has_text="Conv2D 33 3×3")).to_have_count(1)
    expect(labels(chart).filter(has_text="26×26×33")).to_have_count(1)
    wait_idle(page)
    after = download_svg(page)
    assert "Conv2D 33 3×3" in after and "BatchNormalization" in after
    assert "BatchNormalization" not in before
