"""Home and Train fit narrow and wide windows: no text is cut off and nothing runs off the
right edge. The screenshots are kept in test-artifacts/ for a look."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from bench._browser import open_app, sidebar

pytestmark = pytest.mark.browser
# Text cut off at the right (a label wider than its box, with or without "…"), or a
# horizontal scroll bar on the page.
CLIPPED = """() => [...document.querySelectorAll('[data-testid=stMain],'
    + ' [data-testid=stMain] *, [data-testid=stSidebarUserContent] *')]
  .filter(el => (el.innerText || '').trim() && el.scrollWidth > el.clientWidth + 1
          && (el.dataset.testid === 'stMain' || getComputedStyle(el).textOverflow === 'ellipsis'
              || ['P', 'A', 'H1', 'H2', 'H3', 'CODE'].includes(el.tagName)))
  .map(el => (el.dataset.testid || el.tagName) + ': ' + el.innerText.slice(0, 40))"""


@pytest.mark.parametrize("width", [1024, 1440])
@pytest.mark.parametrize("title,path", [("Layer Lab", ""), ("Train", "train")])
def test_page_fits_the_window(server, page, artifacts, width, title, path):
    page.set_viewport_size({"width": width, "height": 900})
    open_app(page, server.url, title, path=path)
    expect(sidebar(page).get_by_role("heading", name="🔬 Layer Lab")).to_be_visible()
    page.screenshot(path=str(artifacts / f"layout_{path or 'home'}_{width}.png"))
    assert page.evaluate(CLIPPED) == []


@pytest.mark.parametrize("width", [1024, 1440])
def test_draw_prediction_fits_the_window(server, page, artifacts, width):
    """The prediction's figures next to the 28×28 input: "100.0%" read "100.…" at 1024 px."""
    from bench._browser import draw_digit, open_draw, predicted_digit

    page.set_viewport_size({"width": width, "height": 900})
    open_draw(page, server.url, "frontier_1k (pretrained)")
    draw_digit(page, 7, 0)
    assert predicted_digit(page) == "7"
    expect(page.get_by_test_id("stMetricValue").nth(1)).to_contain_text("%")
    page.screenshot(path=str(artifacts / f"layout_draw_{width}.png"))
    assert page.evaluate(CLIPPED) == []
