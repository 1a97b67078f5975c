"""core.compare: aligned layer diffs and recipe diffs of two runs."""
from __future__ import annotations

from core.compare import diff_recipes, diff_specs, spec_lines
from core.presets import PRESETS


def test_diff_two_known_specs():
    rows = diff_specs(PRESETS["keras_example"].spec, PRESETS["bonus_cnn"].spec)
    status = [r[0] for r in rows]
    assert status.count("added") == 1 and status.count("changed") == 1
    assert ("changed", "Dropout(rate=0.5)", "Dense(units=64, activation=relu)") in rows
    assert rows[4] == ("added", "", "Conv2D(filters=64, kernel_size=3, strides=1, "
                                    "padding=valid, activation=relu)")
    assert diff_recipes(PRESETS["keras_example"].recipe.to_dict(),
                        PRESETS["bonus_cnn"].recipe.to_dict()) == [
        ("learning_rate", 0.001, 0.002), ("schedule", "constant", "one_cycle"),
        ("epochs", 15, 10)]


def test_new_layer_types_diff_readably():
    base = [{"type": "Conv2D", "filters": 8, "kernel_size": 3},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Dense", "units": 10, "activation": "softmax"}]
    light = [{"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 8},
             *base[1:]]
    sep = [{"type": "SeparableConv2D", "filters": 8, "kernel_size": 5, "padding": "same"},
           *base[1:]]
    assert spec_lines({"layers": light})[0] == ("DepthwiseConv2D(kernel_size=3, strides=1, "
                                                "padding=valid, depth_multiplier=8, "
                                                "activation=relu)")
    rows = diff_specs({"layers": base}, {"layers": sep})
    assert rows[0] == ("changed", "Conv2D(filters=8, kernel_size=3, strides=1, padding=valid, "
                                  "activation=relu)",
                       "SeparableConv2D(filters=8, kernel_size=5, strides=1, padding=same, "
                       "depth_multiplier=1, activation=relu)")
    assert [r[0] for r in rows[1:]] == ["same", "same"]
