"""The network drawn (core.diagram, pages.diagram_view): one box per layer sized by its
output, labels with type, shape and parameters, PNG/SVG files, and the Models and Builder
pages drawing it (AppTest)."""
from __future__ import annotations

import itertools

import pytest

from core.diagram import (COLOURS, INPUT, MAX_HEIGHT, box_size, boxes, faces, layout,
                          shade, wrap)
from core.layers import LAYERS
from core.presets import PRESETS
from core.spec import ModelSpec, infer_shapes

SOFTMAX = {"type": "Dense", "units": 10, "activation": "softmax"}


@pytest.mark.parametrize("name", list(PRESETS))
def test_one_box_per_layer_after_the_input_left_to_right_without_overlap(name):
    spec = PRESETS[name].spec
    placed = boxes(spec)
    infos = infer_shapes(spec)
    assert len(placed) == len(spec.layers) + 1
    assert placed[0].type == INPUT and placed[0].shape == (28, 28, 1)
    assert [(b.index, b.name, b.shape, b.params) for b in placed[1:]] == \
        [(i.index, i.name, i.output_shape, i.total_params) for i in infos]
    for left, right in itertools.pairwise(placed):
        assert right.x >= left.x + left.width + left.depth


def test_box_sizes_grow_with_the_output_and_stay_visible_and_bounded():
    sides = [1, 2, 3, 5, 7, 13, 14, 26, 28]
    heights = [box_size((s, 5, 8))[1] for s in sides]
    depths = [box_size((5, s, 8))[2] for s in sides]
    widths = [box_size((5, 5, c))[0] for c in [1, 8, 16, 32, 64, 128, 512]]
    bars = [box_size((n,))[1] for n in [1, 10, 64, 128, 784, 1600, 9216]]
    for sizes in (heights, depths, widths, bars):
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)   # strictly growing
    # the input map and a deep 1×1 map both show, in every direction, and nothing is huge
    for shape in [(28, 28, 1), (1, 1, 512), (1, 1, 1), (10,)]:
        assert all(size >= 3 for size in box_size(shape)[:2])
    assert all(size <= MAX_HEIGHT for size in box_size((10 ** 4, 10 ** 4, 10 ** 4)))
    assert box_size((1,))[2] == 0 and box_size((10 ** 6,))[1] == MAX_HEIGHT   # vectors: bars


def test_wider_layers_draw_wider_boxes_in_a_stack():
    def first_conv(filters):
        spec = ModelSpec("t", [{"type": "Conv2D", "filters": filters, "kernel_size": 3},
                               {"type": "Flatten"}, SOFTMAX])
        return boxes(spec)[1]
    widths = [first_conv(f).width for f in (4, 16, 64)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert first_conv(4).height == first_conv(64).height        # same 26×26 map


def test_labels_name_the_type_shape_and_parameters_with_thousands_separators():
    spec = ModelSpec("t", [{"type": "Conv2D", "filters": 32, "kernel_size": 3},
                           {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"},
                           {"type": "Dense", "units": 128}, SOFTMAX])
    captions = [b.caption for b in boxes(spec)]
    assert captions[0] == "Input\n28×28×1\n0 params"
    assert captions[1] == "Conv2D 32 3×3\n26×26×32\n320 params"
    assert captions[3] == "Flatten\n5,408\n0 params"
    assert captions[4] == f"Dense 128\n128\n{5408 * 128 + 128:,} params"   # 692,352
    assert captions[5] == "Dense 10\n10\n1,290 params"


def test_every_layer_type_has_its_own_colour():
    assert set(LAYERS) <= set(COLOURS)
    assert len({COLOURS[t] for t in LAYERS}) == len(LAYERS)


def _area(rows):
    """The area under an area mark's columns (trapezoids between y and y2)."""
    return sum((b["x"] - a["x"]) * ((a["y2"] - a["y"]) + (b["y2"] - b["y"])) / 2
               for a, b in itertools.pairwise(rows))


def test_faces_are_the_boxes_front_top_and_side_with_the_right_areas():
    spec = ModelSpec("t", [{"type": "Conv2D", "filters": 32, "kernel_size": 3},
                           {"type": "Flatten"}, SOFTMAX])
    placed = boxes(spec)
    rows = faces(placed)
    conv = placed[1]
    by_face = {f: [r for r in rows if r["face"] == f] for f in {r["face"] for r in rows}}
    assert set(by_face) == {"0 front", "0 top", "0 side", "1 front", "1 top", "1 side",
                            "2 front", "3 front"}       # flat vectors are bars, no depth
    assert _area(by_face["1 front"]) == pytest.approx(conv.width * conv.height)
    assert _area(by_face["1 top"]) == pytest.approx(conv.width * conv.depth)
    assert _area(by_face["1 side"]) == pytest.approx(conv.depth * conv.height)
    front, top, side = (by_face[f"1 {f}"][0]["colour"] for f in ("front", "top", "side"))
    assert front == conv.colour and top == shade(front, 1.35) and side == shade(front, 0.75)


def test_shade_lightens_towards_white_and_darkens_towards_black():
    assert shade("#808080", 0.5) == "#404040" and shade("#808080", 2.0) == "#ffffff"
    assert shade("#808080", 1.5) == "#c0c0c0" and shade("#808080", 1.0) == "#808080"


def test_layout_refuses_nothing_but_boxes_refuses_an_invalid_stack():
    from core.errors import SpecError

    with pytest.raises(SpecError, match="last layer"):
        boxes(ModelSpec("t", [{"type": "Flatten"}]))
    assert len(layout([])) == 1                                  # the input alone


def test_a_short_stack_is_drawn_larger_and_a_long_one_in_rows_within_the_page():
    from pages.diagram_view import WIDTH, network_chart

    def drawn(spec):
        chart = network_chart(boxes(spec)).to_dict()
        x0, x1 = chart["layer"][0]["encoding"]["x"]["scale"]["domain"]
        rows = {(r["y"] + r["y2"]) / 2 for r in chart["datasets"][chart["layer"][0]["data"]["name"]]
                if r["face"].endswith("front")}
        zoom = chart["width"] / (x1 - x0)
        return chart["width"], zoom, chart["layer"][1]["mark"]["fontSize"], len(rows)

    width, zoom, font, rows = drawn(ModelSpec("t", [{"type": "Flatten"}, SOFTMAX]))
    assert zoom == pytest.approx(1.5, abs=0.01) and font == 15.0 and width <= WIDTH
    assert rows == 1
    long = ModelSpec("t", [{"type": "Flatten"}] + [{"type": "Dropout", "rate": 0.1}] * 30
                     + [SOFTMAX])
    width, zoom, font, rows = drawn(long)
    assert rows > 1 and WIDTH - 2 <= width <= WIDTH            # rows filling the page
    assert 1.0 <= zoom <= 1.5 and font == pytest.approx(10 * zoom, abs=0.1)
    placed = wrap(boxes(long), 300, 100)
    assert len(placed) == 33 and len({b.y for b in placed}) > 3
    assert all(b.x + b.width + b.depth <= 300 for b in placed)


@pytest.fixture(scope="module")
def pictures():
    from pages.diagram_view import network_file

    text = PRESETS["keras_example"].spec.to_json()
    return network_file(text, "png"), network_file(text, "svg")


def test_the_picture_downloads_as_png_and_svg(pictures):
    png, svg = pictures
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    page = svg.decode("utf-8")
    assert page.startswith("<svg")
    for label in ("Conv2D 32 3×3", "26×26×32", "18,496 params", "MaxPooling2D 2×2",
                  "1,600", "16,010 params"):
        assert label in page


# -- the pages ----------------------------------------------------------------------------
def drawn_layers(at) -> set[int]:
    """The layers (0 = input) in the page's network picture, read from the chart's data."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    for chart in at.get("vega_lite_chart"):
        for dataset in chart.proto.datasets:
            df = convert_arrow_bytes_to_pandas_df(dataset.data.data)
            if "face" in df.columns:
                return set(df["layer"])
    raise AssertionError("no network picture on the page")


def test_models_page_draws_the_chosen_preset(open_page):
    at = open_page("models")
    assert not at.exception
    name = at.selectbox(key="models_preset").value
    assert drawn_layers(at) == set(range(len(PRESETS[name].spec.layers) + 1))
    at.selectbox(key="models_preset").set_value("frontier_3k").run()
    assert drawn_layers(at) == set(range(len(PRESETS["frontier_3k"].spec.layers) + 1))
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the picture (PNG)" in labels and "Download the picture (SVG)" in labels


def test_builder_picture_gains_a_box_when_a_layer_is_added(open_page):
    at = open_page("builder", timeout=60)
    assert not at.exception
    before = drawn_layers(at)
    assert before == set(range(len(PRESETS["keras_example"].spec.layers) + 1))
    at.selectbox(key="builder_new_type").set_value("Dense").run()
    at.button(key="builder_add").click().run()
    assert not at.exception
    assert drawn_layers(at) == set(range(len(before) + 1))


def test_an_invalid_stack_gets_a_sentence_instead_of_a_picture():
    from streamlit.testing.v1 import AppTest

    def page():
        from core.spec import ModelSpec
        from pages.diagram_view import show_network

        show_network(ModelSpec("t", [{"type": "Flatten"}]), key="t")

    at = AppTest.from_function(page).run()
    assert not at.exception and not at.get("vega_lite_chart")
    assert at.caption[0].value.startswith("The picture appears once the stack is valid: "
                                          "The last layer must be Dense")
