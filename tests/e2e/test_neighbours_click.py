"""Nearest neighbours on the map, in a real browser (issue 16 §4): on Projections (PCA of
the pretrained small_cnn's penultimate layer) a clicked dot, or an image number typed in,
lists its 10 nearest neighbours with readable thumbnails, labels and distances."""
from __future__ import annotations

import base64
import re
import struct

import pytest
from playwright.sync_api import Page, expect

from bench._browser import open_app, wait_idle
from tests.e2e.menus import pick

pytestmark = pytest.mark.browser
NUMBER = ".st-key-proj_nn_image input"
HEADING = re.compile(r"^The 10 nearest neighbours of test image #(\d+)$")


def open_map(page: Page, url: str) -> None:
    """Projections with small_cnn picked: its PCA map (computed on the page)."""
    open_app(page, url, "Projections", path="projections")
    pick(page, page.locator(".st-key-proj_model [role=combobox]"), "small_cnn (pretrained)")
    expect(page.get_by_test_id("stMetric").filter(has_text="Source")).to_contain_text(
        "· 128-D")
    wait_idle(page)


def png_size(data_url: str) -> tuple[int, int]:
    """Width and height of a PNG data URL (from its IHDR chunk)."""
    raw = base64.b64decode(data_url.split(",", 1)[1])
    return struct.unpack(">II", raw[16:24])


def neighbour_rows(page: Page) -> list[list[str]]:
    """The neighbour table's cells, read from the grid's accessible table."""
    table = page.get_by_test_id("stDataFrame").filter(has_text="data:image/png")
    rows = table.locator("tbody tr[role=row]")
    expect(rows).to_have_count(10)
    return [r.locator("td").all_inner_texts() for r in rows.all()]


def check_list(page: Page) -> int:
    """The listed neighbours: 10, nearest first, each with a ≥ 56 px thumbnail, a digit
    and a distance; returns the queried image #."""
    heading = page.get_by_role("heading", name=HEADING)
    expect(heading).to_be_visible()
    query = int(HEADING.match(heading.inner_text()).group(1))
    rows = neighbour_rows(page)
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    assert all(min(png_size(r[1])) >= 56 for r in rows)
    assert all(r[3] in "0123456789" and len(r[3]) == 1 for r in rows)
    distances = [float(r[4]) for r in rows]
    assert distances == sorted(distances) and distances[0] > 0
    assert query not in [int(r[2]) for r in rows]           # the point itself excluded
    return query


def test_a_clicked_dot_lists_its_ten_neighbours(small_cnn, server, page):
    open_map(page, server.url)
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.scroll_into_view_if_needed()
    dots = chart.locator("svg g.mark-symbol.role-mark path").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); "
        "return [r.x + r.width / 2, r.y + r.height / 2]; })")
    assert len(dots) == 2000
    x, y = max(dots)                       # the right-most dot: no other drawn over it
    expect(page.locator(NUMBER)).to_have_value("")
    page.mouse.click(x, y)
    expect(page.locator(NUMBER)).not_to_have_value("")
    wait_idle(page)
    query = check_list(page)
    expect(page.locator(NUMBER)).to_have_value(str(query))


def type_number(page: Page, number: int) -> None:
    field = page.locator(NUMBER)
    field.fill(str(number))
    field.press("Enter")
    expect(field).to_have_value(str(number))


def test_an_image_number_lists_its_ten_neighbours(small_cnn, server, page):
    from core.data import load_mnist
    from core.projections import select_indices

    labels = load_mnist().y_test
    on_map = select_indices(labels, 2000, seed=0)         # the page's default map
    seven = int(next(i for i in on_map if labels[i] == 7))
    away = int(next(i for i in range(len(labels)) if i not in set(on_map)))
    open_map(page, server.url)
    type_number(page, away)
    expect(page.get_by_text(f"Test image #{away} is not on this map")).to_be_visible()
    type_number(page, seven)
    expect(page.get_by_role("heading", name=f"The 10 nearest neighbours of test image "
                                            f"#{seven}")).to_be_visible()
    wait_idle(page)
    assert check_list(page) == seven
    # a 7 in the trained network's features: most of its neighbours are 7s too
    assert sum(r[3] == "7" for r in neighbour_rows(page)) >= 8
