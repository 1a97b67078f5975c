"""Cross-page consistency in a real browser: what one page shows or sends is what the next
page describes (issue 13 §4): a digit clicked on Errors keeps the model, the Draw panels describe
the canvas, and a selected region belongs to one projection map."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from bench._browser import (draw_digit, open_app, open_draw, predicted_digit, sidebar,
                            update_caption, wait_idle)

pytestmark = pytest.mark.browser
SLOW_MS = 240_000            # an evaluation or a t-SNE map on a loaded 2-core machine


def open_page(page: Page, url: str, name: str) -> None:
    """Home, then the sidebar link to ``name``."""
    open_app(page, url, "Layer Lab")
    sidebar(page).get_by_role("link", name=name, exact=True).click()
    expect(page.locator("h1", has_text=name)).to_be_visible()
    wait_idle(page)


def pick(page: Page, widget_key: str, option: str) -> None:
    """Choose ``option`` in the selectbox with ``widget_key``."""
    box = page.locator(f".st-key-{widget_key} [role=combobox]")
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)
    wait_idle(page, SLOW_MS / 1000)


def test_errors_inspect_opens_draw_with_the_model_of_the_mistake(small_cnn, server, page):
    open_page(page, server.url, "Errors")
    pick(page, "err_model", "bulky_cnn (pretrained)")
    expect(page.get_by_text("Images in a cell")).to_be_visible(timeout=SLOW_MS)
    # the cell's digits are one chart: pictures drawn from their data URLs, clicked
    pictures = page.locator("[class*=st-key-err_cell_gallery] svg g.mark-image image")
    expect(pictures.first).to_be_visible(timeout=SLOW_MS)
    assert pictures.first.get_attribute("href").startswith("data:image/png;base64,")
    assert pictures.count() > 1
    pictures.first.click()
    expect(page.locator("h1", has_text="Draw & inspect")).to_be_visible()
    expect(page.locator(".st-key-draw_model [role=combobox]")).to_have_value(
        "bulky_cnn (pretrained)")
    expect(page.get_by_text(re.compile(r"sent from the Errors page \(bulky_cnn"))) \
        .to_be_visible()
    expect(page.get_by_test_id("stMetric").filter(has_text="Digit")).to_be_visible()


def test_stroke_width_change_clears_the_panels_with_the_canvas(small_cnn, server, page):
    """A new stroke width empties the canvas: no prediction of the erased digit stays;
    the next drawing is read afresh."""
    open_draw(page, server.url)
    updates = draw_digit(page, 7, 0)
    expect(page.get_by_test_id("stMetric").filter(has_text="Digit")).to_be_visible()
    slider = page.locator(".st-key-draw_stroke").get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    expect(page.get_by_test_id("stMetric")).to_have_count(0)
    expect(page.get_by_text("Draw a digit in the box")).to_be_visible()
    expect(page.get_by_role("heading", name="Feature maps")).to_have_count(0)
    draw_digit(page, 1, updates)
    expect(update_caption(page, updates + 1)).to_be_visible()
    assert predicted_digit(page) == "1"


def drag_region(page: Page) -> None:
    """Drag a rectangle over the middle of the projection map."""
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.scroll_into_view_if_needed()
    plot = chart.locator("canvas, svg").first                  # the plot, not the legend
    expect(plot).to_be_visible(timeout=SLOW_MS)
    box = plot.bounding_box()
    if box is None:        # Vega replaced the plot between the two calls: the caller retries
        raise AssertionError("the map's plot was being redrawn")
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.3, y0 + box["height"] * 0.3, steps=15)
    page.mouse.up()


def test_projection_selection_belongs_to_one_map(server, page):
    region = page.get_by_role("heading", name=re.compile(r"images in the selected region"))
    open_page(page, server.url, "Projections")
    page.get_by_text("t-SNE", exact=True).click()
    slider = page.locator(".st-key-proj_points_test").get_by_role("slider")
    slider.focus()
    slider.press("Home")                                      # 1,000 points: quicker
    wait_idle(page)
    page.get_by_role("button", name="Compute the t-SNE map").click()
    knn = page.get_by_text("10-NN accuracy in 2-D")
    expect(knn).to_be_visible(timeout=SLOW_MS)
    page.get_by_text("PCA", exact=True).click()
    wait_idle(page)
    expect(knn).to_be_visible()
    for attempt in range(3):      # a drag while Vega is still re-drawing the map is lost
        try:
            drag_region(page)
            expect(region).to_be_visible(timeout=15_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    page.get_by_text("t-SNE", exact=True).click()
    wait_idle(page)
    expect(knn).to_be_visible()
    expect(region).to_have_count(0)
