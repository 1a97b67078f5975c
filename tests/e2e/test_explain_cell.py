"""One number, explained, in a real browser (issue 16 §1): on Draw & inspect a cell picked
by row, column and channel is recomputed from its inputs, and the value equals the
model's own — for the pretrained small_cnn and for a stack altered in the Builder and
trained for one short epoch. The model's value is also computed here, apart from the app."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from bench._browser import open_app, open_draw, sidebar, wait_idle
from tests.e2e.menus import pick

pytestmark = pytest.mark.browser
TEST_IMAGE = 0                       # the Draw page's first test image (a 7)


def choose(page: Page, key: str, option: str | re.Pattern) -> None:
    """Pick ``option`` (a label's start or a pattern) in the selectbox whose key is ``key``
    (or starts with ``key``: a key ending in "_")."""
    box = page.locator((f"[class*=st-key-{key}]" if key.endswith("_") else f".st-key-{key}")
                       + " [role=combobox]")
    pick(page, box, option)


def type_number(page: Page, key_prefix: str, value: int) -> None:
    field = page.locator(f"[class*=st-key-{key_prefix}] input")
    field.fill(str(value))
    field.press("Enter")
    expect(field).to_have_value(str(value))
    wait_idle(page)


def layer_output(model, name: str) -> np.ndarray:
    """``name``'s output for the test image, computed here with Keras."""
    import keras

    from core.data import load_mnist, to_float

    x = to_float(load_mnist().x_test[TEST_IMAGE:TEST_IMAGE + 1])        # (1, 28, 28, 1)
    upto = keras.Model(model.inputs, model.get_layer(name).output)
    return np.asarray(upto(x, training=False))[0]


def metric(page: Page, label: str) -> float:
    box = page.get_by_test_id("stMetric").filter(has_text=label)
    return float(box.get_by_test_id("stMetricValue").inner_text())


# Waits until a metric shows a value near ``want`` (the page prints 6 significant digits).
SHOWS = """([label, want]) => {
    const box = [...document.querySelectorAll('[data-testid=stMetric]')]
        .find(e => e.innerText.startsWith(label));
    const value = box && parseFloat(box.querySelector('[data-testid=stMetricValue]').innerText);
    return Math.abs(value - want) <= 1e-5 * Math.abs(want) + 1e-6;
}"""


def explain(page: Page, layer: str, cell: tuple[int, int, int], want: float) -> None:
    """Pick ``layer`` and ``cell`` in the section; the model's value the page shows must
    become ``want`` (computed here), and the value recomputed from the inputs equal it."""
    choose(page, "draw_x_layer", re.compile("^" + re.escape(layer) + " "))
    for key, value in zip(("row", "col", "ch"), cell):
        type_number(page, f"draw_x_{key}_{layer}", value)
    page.wait_for_function(SHOWS, arg=["The model's own value", want])
    wait_idle(page)
    expect(page.get_by_test_id("stMetric").filter(has_text="Match")).to_contain_text("✓ equal")
    assert metric(page, "Recomputed here") == pytest.approx(want, rel=1e-5, abs=1e-6)


def use_test_image(page: Page) -> None:
    page.get_by_text("Test set", exact=True).click()
    expect(page.get_by_text(f"Test image #{TEST_IMAGE} · true label")).to_be_visible()
    wait_idle(page)


def largest_cell(out: np.ndarray) -> tuple[int, int, int]:
    """The cell with the largest value: a nonzero one, so the check cannot pass on 0 = 0."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(out), out.shape))


def test_a_preset_cell_explained_equals_the_model(small_cnn, server, page):
    from core import pretrained

    out = layer_output(pretrained.load_model("small_cnn"), "conv2")
    cell = largest_cell(out)
    open_draw(page, server.url)
    use_test_image(page)
    assert out[cell] > 0
    explain(page, "conv2", cell, float(out[cell]))


def build_and_train(page: Page, url: str, name: str) -> None:
    """In the Builder, insert a BatchNormalization after the first layer of the starting
    stack (keras_example), then train it for one epoch on 1,000 images."""
    open_app(page, url, "Builder", path="builder")
    choose(page, "builder_new_type", "BatchNormalization")
    type_number(page, "builder_new_pos", 2)
    page.get_by_role("button", name="+ Add layer").click()
    expect(page.locator("[class*=st-key-builder_pick_]").get_by_text(
        "2. BatchNormalization", exact=True)).to_be_visible()
    wait_idle(page)
    page.get_by_role("button", name="🏋️ Train this").click()
    expect(page.locator("h1", has_text="Train")).to_be_visible()
    wait_idle(page)
    epochs = page.locator("[class*=st-key-tr_ep_] input[type=range]")
    epochs.focus()
    epochs.press("Home")
    expect(epochs).to_have_value("1")
    wait_idle(page)
    choose(page, "tr_sub_", "1,000")
    name_box = page.locator("[class*=st-key-tr_name_] input")
    name_box.fill(name)
    name_box.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="▶ Start").click()
    expect(page.get_by_text(re.compile(r"^Finished: test accuracy"))).to_be_visible(
        timeout=180_000)


def test_a_builder_stack_cell_explained_equals_the_model(server, page):
    from core.runs import RunStore

    build_and_train(page, server.url, "bn_stack")
    sidebar(page).get_by_role("link", name="Draw & inspect").click()
    expect(page.locator("h1", has_text="Draw & inspect")).to_be_visible()
    choose(page, "draw_model", re.compile(r"^bn_stack · run "))
    use_test_image(page)
    runs = [r for r in RunStore(Path(server.log).parent / "runs").list_runs()
            if r.name == "bn_stack"]
    assert len(runs) == 1
    model = RunStore(Path(server.log).parent / "runs").load_model(runs[0].id)
    bn = next(layer.name for layer in model.layers
              if type(layer).__name__ == "BatchNormalization")
    out = layer_output(model, bn)
    cell = (5, 7, int(np.argmax(np.abs(out[5, 7]))))
    assert out[cell] != 0
    explain(page, bn, cell, float(out[cell]))
    expect(page.get_by_text(re.compile(r"moving (mean|average)", re.I)).first).to_be_visible()
