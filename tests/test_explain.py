"""One number, explained: the recomputed value equals the model's own for every preset,
batch norm's affine step, the pooling winner, Dense contributions, and the sandbox."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import LayerLabError
from core.explain import (batchnorm_cell, conv_cell, dense_unit, explain_cell, explainable,
                          input_field, not_explained, plan_grid, pool_cell, window_plan)
from core.layers import _spatial
from core.pretrained import available, load_model

PRESETS = available()


def _cells(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Corners (where 'same' padding shows) and the middle, channels spread out."""
    last = tuple(s - 1 for s in shape)
    middle = tuple(s // 2 for s in shape)
    first = tuple(0 for _ in shape)
    mixed = tuple(s - 1 if i % 2 == 0 else 0 for i, s in enumerate(shape))
    return [first, last, middle, mixed]


def _first_conv(model) -> str:
    return next(name for name, kind, _ in explainable(model) if kind == "Conv2D")


@pytest.mark.parametrize("name", PRESETS)
def test_every_explained_cell_equals_the_model(name, mnist):
    model = load_model(name)
    digit = mnist.x_test[7]
    layers = explainable(model)
    assert layers, name
    for layer, kind, shape in layers:
        for cell in _cells(shape):
            e = explain_cell(model, digit, layer, cell)
            assert e.type == kind
            np.testing.assert_allclose(e.value, e.model_value, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} {layer} {cell}")
            assert e.matches


def test_conv_presets_cover_same_padding_and_strides():
    """The check above must reach a strided 'same' convolution, or it proves less."""
    assert "fast_cnn" in PRESETS
    model = load_model("fast_cnn")
    stem = model.get_layer(_first_conv(model)).get_config()
    assert stem["padding"] == "same" and stem["strides"][0] == 2


def test_conv_products_and_receptive_field(mnist):
    model = load_model("fast_cnn")
    e = explain_cell(model, mnist.x_test[0], _first_conv(model), (0, 0, 3))
    # a 5×5 stride-2 'same' window on 28 pads 1 before: the corner cell reaches row -1
    assert (e.top, e.left, e.size) == (-1, -1, 5)
    assert not e.inside[0].any() and e.inside[1:, 1:].all()
    np.testing.assert_allclose(e.products, e.patch * e.kernel)
    np.testing.assert_allclose(e.channel_sums.sum(), e.pre_activation)   # no bias here


def test_depthwise_cell_matches_keras():
    import keras

    rng = np.random.default_rng(0)
    layer = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                         activation="relu", bias_initializer="ones")
    x = rng.normal(size=(1, 7, 7, 3)).astype(np.float32)
    out = np.asarray(layer(x))[0]
    kernel, bias = layer.get_weights()
    for cell in [(0, 0, 0), (3, 3, 5), (2, 1, 3)]:
        e = conv_cell(x[0], kernel, bias, stride=2, padding="same", activation="relu",
                      cell=cell, depthwise=True)
        assert e.value == pytest.approx(float(out[cell]), abs=1e-5)


def test_separable_layers_are_named_in_a_sentence():
    from core.build import build_model
    from core.spec import ModelSpec

    model = build_model(ModelSpec("sep", [
        {"type": "SeparableConv2D", "filters": 4, "kernel_size": 3},
        {"type": "DepthwiseConv2D", "kernel_size": 3, "padding": "same", "strides": 2},
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]),
        seed=0)
    sentence = not_explained(model)
    assert sentence.startswith("sepconv1 (SeparableConv2D)") and sentence.endswith(".")
    assert [kind for _, kind, _ in explainable(model)] == ["DepthwiseConv2D", "Dense"]
    digit = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    for cell in [(0, 0, 0), (12, 12, 3), (6, 0, 2)]:
        assert explain_cell(model, digit, "dwconv1", cell).matches
    assert not_explained(load_model("small_cnn")) is None


def test_batchnorm_affine_step():
    x = np.full((2, 2, 2), 5.0)
    e = batchnorm_cell(x, gamma=np.array([1.0, 3.0]), beta=np.array([0.0, -1.0]),
                       mean=np.array([0.0, 1.0]), variance=np.array([1.0, 3.999]),
                       epsilon=0.001, cell=(1, 0, 1))
    assert e.value == pytest.approx(3.0 * (5 - 1) / 2 - 1)
    assert "moving mean" in e.steps[0]


def test_pooling_winner_and_average():
    x = np.zeros((4, 4, 2))
    x[2, 3, 1] = 9.0
    e = pool_cell(x, size=2, stride=2, padding="valid", kind="MaxPooling2D", cell=(1, 1, 1))
    assert e.winner == (2, 3) and e.value == 9.0
    avg = pool_cell(x, size=2, stride=2, padding="valid", kind="AveragePooling2D",
                    cell=(1, 1, 1))
    assert avg.value == pytest.approx(9.0 / 4) and avg.winner is None
    # 'same' padding on an odd map: the padded cells are not counted in the mean
    edge = pool_cell(np.ones((3, 3, 1)), size=2, stride=2, padding="same",
                     kind="AveragePooling2D", cell=(1, 1, 0))
    assert edge.value == 1.0 and int(edge.inside.sum()) == 1


def test_dense_contributions_sum_to_the_pre_activation(mnist):
    model = load_model("small_cnn")
    dense = next(name for name, kind, _ in explainable(model) if kind == "Dense")
    e = explain_cell(model, mnist.x_test[1], dense, (5,))
    bias = float(model.get_layer(dense).get_weights()[1][5])
    assert e.contributions.sum() + bias == pytest.approx(e.pre_activation)
    # after Flatten: the contributions as a picture of the previous map
    assert e.picture is not None and e.picture.shape == (5, 5)
    assert e.picture.sum() == pytest.approx(e.contributions.sum())
    assert e.matches


def test_softmax_unit_is_a_probability():
    e = dense_unit(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [0.0, 1.0]]), None,
                   activation="softmax", unit=1)
    assert e.value == pytest.approx(np.exp(2) / (np.exp(1) + np.exp(2)))


def test_a_cell_outside_the_map_is_refused(mnist):
    model = load_model("small_cnn")
    with pytest.raises(LayerLabError, match="outside"):
        explain_cell(model, mnist.x_test[0], _first_conv(model), (26, 0, 0))
    with pytest.raises(LayerLabError, match="only convolution"):
        flatten = next(layer.name for layer in model.layers
                       if type(layer).__name__ == "Flatten")
        explain_cell(model, mnist.x_test[0], flatten, (0,))


def test_receptive_field_on_the_input():
    model = load_model("small_cnn")
    convs = [name for name, kind, _ in explainable(model) if kind == "Conv2D"]
    assert input_field(model, convs[0], 5, 7) == (5, 7, 7, 9)
    # conv 3×3 → pool 2 → conv 3×3: 8 input pixels wide, moving 2 per cell
    assert input_field(model, convs[1], 0, 1) == (0, 2, 7, 9)
    dense = next(name for name, kind, _ in explainable(model) if kind == "Dense")
    assert input_field(model, dense, 0, 0) is None
    stem = _first_conv(load_model("fast_cnn"))     # 'same', stride 2: clipped at the edge
    assert input_field(load_model("fast_cnn"), stem, 0, 0) == (0, 0, 3, 3)


# -- the sandbox -------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_sandbox_matches_the_layer_table(padding):
    for size in range(1, 20):
        for k in range(1, 8):
            for s in range(1, 4):
                if padding == "valid" and k > size:
                    continue
                plan = window_plan(size, k, s, padding)
                assert plan.out == _spatial(size, k, s, padding)
                assert plan.formula.endswith(f"= {plan.out}")
                assert len(plan.positions) == plan.out ** 2


def test_sandbox_step_through():
    plan = window_plan(6, 3, 2, "same")
    assert (plan.out, plan.pad) == (3, 0)   # total padding 1, all of it after
    assert plan.positions[:3] == [(0, 0), (0, 2), (0, 4)]
    grid = plan_grid(plan, 2)
    assert grid.shape == (7, 7)
    assert (grid[0:3, 4:7] == 2).all() and grid[6, 6] == 0
    assert int((grid == 2).sum()) == 9


@pytest.mark.parametrize("args, words", [
    ((3, 5, 1, "valid"), "does not fit"),
    ((0, 3, 1, "valid"), "input size"),
    ((10, 12, 1, "same"), "kernel"),
    ((10, 3, 9, "same"), "stride"),
    ((10, 3, 1, "full"), "Padding"),
])
def test_sandbox_refuses_with_a_sentence(args, words):
    with pytest.raises(LayerLabError, match=words) as err:
        window_plan(*args)
    assert str(err.value).endswith(".")


# -- the Draw & inspect section (AppTest) ------------------------------------------------
def test_draw_section_explains_a_cell_and_the_sandbox_refuses(open_page, mnist):
    from core.workspace import new_workspace_id

    at = open_page("draw", state={"workspace": new_workspace_id()}, run=False)
    at.session_state["draw_image"] = mnist.x_test[3]          # a digit sent to the page
    at.session_state["draw_image_index"] = 3
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "One number, explained" in [h.value for h in at.subheader]

    def values() -> dict[str, str]:
        return {m.label: m.value for m in at.metric}

    layers = at.selectbox(key="draw_x_layer").options
    assert len(layers) >= 4                               # convs, pools, the Dense layers
    for label in layers:
        at.selectbox(key="draw_x_layer").set_value(label.split(" ")[0]).run()
        assert not at.exception, [e.value for e in at.exception]
        shown = values()
        assert shown["Recomputed here"] == shown["The model's own value"], label
        assert shown["Match"] == "✓ equal", label
    # a corner cell of the first convolution
    first = layers[0].split(" ")[0]
    at.selectbox(key="draw_x_layer").set_value(first).run()
    at.number_input(key=f"draw_x_row_{first}").set_value(0).run()
    at.number_input(key=f"draw_x_ch_{first}").set_value(2).run()
    assert values()["Match"] == "✓ equal"
    assert "relu(" in " ".join(t.value for t in at.text)
    # the sandbox: a formula, then a refusal in a sentence
    assert "⌊(7 − 3) / 2⌋ + 1 = 3" in " ".join(t.value for t in at.text)
    at.number_input(key="draw_sb_size").set_value(5).run()
    at.number_input(key="draw_sb_k").set_value(7).run()
    assert not at.exception
    assert any("does not fit a 5×5 input" in e.value for e in at.error)
