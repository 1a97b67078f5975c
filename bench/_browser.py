"""Driving Layer Lab in a real browser (Playwright): the app's pages and the Draw page's
canvas. Shared by the end-to-end tests (tests/e2e), the browser bench and the screenshot
script; waits use Playwright's auto-waiting ``expect``, never fixed sleeps."""
from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import Page, expect

APP = "[data-testid=stApp]"
CANVAS = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"
BOX = (45, 35, 235, 245)         # where a digit is drawn on the 280×280 canvas: x0 y0 x1 y1
VIEWPORT = {"width": 1400, "height": 1000}
# On a loaded 2-core machine a first model load or compile takes many seconds, so every
# wait allows a minute (Playwright's default is 5 s).
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)

# Each digit as a person draws it: strokes of (x, y) points in a unit box, y downwards.
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5 + 0.3 * np.sin(t), 0.5 - 0.45 * np.cos(t))
         for t in np.linspace(0, -2.15 * np.pi, 40)]],
    1: [[(0.55, 0.03), (0.52, 0.5), (0.48, 0.97)]],
    2: [[(0.2, 0.25), (0.3, 0.1), (0.5, 0.04), (0.7, 0.1), (0.8, 0.25), (0.75, 0.45),
         (0.55, 0.65), (0.3, 0.85), (0.15, 0.96), (0.5, 0.95), (0.85, 0.95)]],
    3: [[(0.2, 0.12), (0.45, 0.03), (0.7, 0.08), (0.78, 0.22), (0.7, 0.38), (0.45, 0.48),
         (0.72, 0.56), (0.82, 0.72), (0.72, 0.9), (0.45, 0.97), (0.2, 0.9)]],
    4: [[(0.25, 0.03), (0.2, 0.55), (0.82, 0.55)], [(0.68, 0.05), (0.68, 0.97)]],
    5: [[(0.3, 0.05), (0.25, 0.45), (0.5, 0.4), (0.72, 0.5), (0.8, 0.7), (0.7, 0.9),
         (0.45, 0.97), (0.2, 0.9)], [(0.3, 0.05), (0.8, 0.05)]],
    6: [[(0.7, 0.03), (0.45, 0.25), (0.3, 0.5), (0.25, 0.75), (0.35, 0.93), (0.55, 0.97),
         (0.72, 0.85), (0.72, 0.65), (0.55, 0.55), (0.35, 0.6), (0.27, 0.72)]],
    7: [[(0.15, 0.08), (0.85, 0.08), (0.6, 0.5), (0.42, 0.97)]],
    8: [[(0.7, 0.12), (0.5, 0.03), (0.3, 0.12), (0.3, 0.3), (0.5, 0.45), (0.72, 0.62),
         (0.72, 0.85), (0.5, 0.97), (0.28, 0.85), (0.28, 0.62), (0.5, 0.45), (0.7, 0.3),
         (0.7, 0.12)]],
    9: [[(0.72, 0.2), (0.55, 0.04), (0.35, 0.07), (0.25, 0.25), (0.35, 0.42), (0.55, 0.45),
         (0.72, 0.3), (0.72, 0.2), (0.7, 0.6), (0.65, 0.97)]],
}


def canvas_points(stroke: list[tuple[float, float]],
                  step: float = 6.0) -> list[tuple[float, float]]:
    """A stroke in canvas pixels, densified so no two points are more than ``step`` apart."""
    x0, y0, x1, y1 = BOX
    pts = [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in stroke]
    out = [pts[0]]
    for (ax, ay), (bx, by) in zip(pts, pts[1:]):
        n = max(1, int(np.hypot(bx - ax, by - ay) // step))
        out += [(ax + (bx - ax) * k / n, ay + (by - ay) * k / n) for k in range(1, n + 1)]
    return out


def rasterize(digit: int, width: int = 20) -> np.ndarray:
    """The digit's strokes drawn white on a black 280×280 canvas with Pillow."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (280, 280), 0)
    draw = ImageDraw.Draw(img)
    for stroke in STROKES[digit]:
        pts = canvas_points(stroke)
        draw.line(pts, fill=255, width=width, joint="curve")
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return np.asarray(img)


# -- the app -----------------------------------------------------------------------------
def wait_idle(page: Page, timeout_s: float = 60) -> None:
    """Until the app's current script run has finished and every element is drawn (the
    browser loads an element's code the first time it is shown: a skeleton till then)."""
    expect(page.locator(APP)).to_have_attribute("data-test-script-state", "notRunning",
                                                 timeout=timeout_s * 1000)
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=timeout_s * 1000)


def open_app(page: Page, url: str, title: str, path: str = "") -> None:
    """Open ``url/path`` and wait for the page titled ``title`` to finish rendering."""
    page.goto(f"{url}/{path}")
    expect(page.locator("h1", has_text=title).first).to_be_visible()
    wait_idle(page)


def sidebar(page: Page):
    return page.get_by_test_id("stSidebar")


# -- the Draw page -----------------------------------------------------------------------
def open_draw(page: Page, url: str, model: str = "small_cnn (pretrained)") -> None:
    """Home, then the sidebar link to Draw & inspect, then ``model`` in its picker."""
    open_app(page, url, "Layer Lab")
    sidebar(page).get_by_role("link", name="Draw & inspect").click()
    expect(page.locator("h1", has_text="Draw & inspect")).to_be_visible()
    expect(page.locator(CANVAS)).to_be_visible()
    wait_idle(page)
    picker = page.locator(".st-key-draw_model [role=combobox]")
    picker.click()
    page.get_by_role("option", name=model).click()
    expect(picker).to_have_value(model)
    wait_idle(page)


def canvas_box(page: Page) -> dict:
    """The canvas' position once it is visible and no longer moving (Playwright's
    actionability checks, without clicking)."""
    canvas = page.locator(CANVAS)
    canvas.click(trial=True)
    return canvas.bounding_box()


def draw_stroke(page: Page, box: dict, stroke: list[tuple[float, float]],
                release: bool = True) -> None:
    """One stroke with the mouse; ``release=False`` keeps the button down at the end."""
    pts = canvas_points(stroke)
    page.mouse.move(box["x"] + pts[0][0], box["y"] + pts[0][1])
    page.mouse.down()
    for x, y in pts[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y)
    if release:
        page.mouse.up()


def update_caption(page: Page, n: int):
    """The Draw page's "Update n · …" caption, shown once the n-th input is predicted."""
    return page.get_by_text(re.compile(rf"^Update {n} ·"))


def reset_canvas(page: Page) -> None:
    """Clear the canvas with its toolbar's bin and wait for the empty page."""
    page.get_by_role("button", name="Reset canvas & history").click()
    expect(page.get_by_test_id("stMetric")).to_have_count(0)
    expect(page.get_by_text("Draw a digit in the box")).to_be_visible()
    wait_idle(page)


def predicted_digit(page: Page) -> str:
    metric = page.get_by_test_id("stMetric").filter(has_text="Digit")
    return metric.get_by_test_id("stMetricValue").inner_text()


def draw_digit(page: Page, digit: int, updates: int) -> int:
    """Draw ``digit`` stroke by stroke, each time waiting for its prediction; returns the
    new update count (``updates`` is the count before)."""
    box = canvas_box(page)
    for stroke in STROKES[digit]:
        draw_stroke(page, box, stroke)
        updates += 1
        expect(update_caption(page, updates)).to_be_visible()
    wait_idle(page)
    return updates
