"""Drawing digits: the stroke set read offline, then drawn with the mouse in chromium on
the Draw & inspect page, where the pretrained small_cnn must read at least 8 of 10.

The stroke-to-prediction timing is measured by bench/browser_bench.py."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from bench._browser import (STROKES, draw_digit, open_draw, predicted_digit, rasterize,
                            reset_canvas)


def test_stroke_set_reads_offline_with_small_cnn(small_cnn):
    """The same strokes, drawn with Pillow instead of a browser, through the page's
    preprocessing: a check of the stroke set itself and of preprocessing + model."""
    from core import pretrained
    from core.inspector import inspector_for
    from core.preprocess import preprocess

    inspector = inspector_for(pretrained.load_model("small_cnn"))
    read = {d: inspector.run(preprocess(rasterize(d), min_extent=0.1).digit).top
            for d in STROKES}
    correct = sum(d == r for d, r in read.items())
    assert correct >= 9, read


@pytest.mark.browser
def test_small_cnn_reads_digits_drawn_with_the_mouse(small_cnn, server, page):
    open_draw(page, server.url)
    read: dict[int, str] = {}
    updates = 0
    for digit in STROKES:
        if updates:
            reset_canvas(page)
        updates = draw_digit(page, digit, updates)
        read[digit] = predicted_digit(page)
    expect(page.get_by_role("heading", name="Feature maps")).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
    correct = sum(str(d) == r for d, r in read.items())
    assert correct >= 8, f"small_cnn read {read} ({correct}/10 correct)"
