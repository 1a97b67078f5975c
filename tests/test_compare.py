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


def test_recipe_values_read_as_on_the_train_page():
    from core.compare import display_value, recipe_changes

    assert display_value("train_subset", None) == "all 60,000"
    assert display_value("train_subset", 5000) == "5,000"
    assert display_value("batch_size", 1024) == "1,024"
    assert display_value("augment", False) == "off"
    assert display_value("learning_rate", 3e-3) == "0.003"
    full = PRESETS["fast_cnn"].recipe.to_dict()
    quick = {**full, "train_subset": 5000, "epochs": 2}
    assert recipe_changes(full, quick) == ["epochs: 1 → 2",
                                           "training images: all 60,000 → 5,000"]
    older = {k: v for k, v in full.items() if k != "label_smoothing"}     # before the setting
    assert recipe_changes(older, {**older, "label_smoothing": 0.0}) == []
    assert recipe_changes(full, {**full, "label_smoothing": 0.0}) == ["label smoothing: 0.1 → 0"]
    assert not any("None" in line for line in recipe_changes(full, quick))


def test_smoothing_keeps_the_curve_length_and_flattens_it():
    from core.compare import smooth

    curve = [0.90, 0.99, 0.95, 0.99, 0.96]
    assert smooth(curve, 0.0) == curve
    flat = smooth(curve, 0.8)
    assert len(flat) == len(curve) and flat[0] == curve[0]
    assert max(flat) - min(flat) < max(curve) - min(curve)


def test_external_points_are_other_peoples_figures_with_their_source():
    from core.compare import EXTERNAL, EXTERNAL_POINTS, external_rows

    rows = external_rows()
    assert [(r["params"], r["test accuracy"]) for r in rows] == [
        (697, 0.9903), (1_936, 0.9910), (4_900, 0.9907), (7_000, 0.9940), (19_900, 0.9954)]
    for point, row in zip(EXTERNAL_POINTS, rows):
        assert row["kind"] == EXTERNAL == "external, not trained here"
        assert row["source"].startswith(point.claim) and point.source in row["source"]
        assert EXTERNAL in row["run"] and row["name"].startswith("ext.")
    # the wording stays honest: the selected-on-test record and the lower bound say so
    assert "selected on the test set" in rows[0]["source"]
    assert rows[3]["claim"].startswith(">") and "lower bound" in rows[3]["source"]
    assert len({r["name"] for r in rows}) == len(rows)


def test_label_sides_keep_near_points_names_apart_and_fixed_sides_fixed():
    from core.compare import label_sides

    far = {"params": 111_146, "test accuracy": 0.9735, "name": "warmup_mlp"}
    a = {"params": 34_138, "test accuracy": 0.9923, "name": "fast_cnn"}
    b = {"params": 34_826, "test accuracy": 0.9921, "name": "keras_example"}
    assert label_sides([a, b, far]) == ["above", "below", "above"]
    # a fixed side is kept and placed first: the free name takes the other side
    high = {**b, "test accuracy": 0.9928, "side": "above"}
    assert label_sides([a, high, far]) == ["below", "above", "above"]
    # names that end at their point (the largest model's) are boxed to its left
    right = {"params": 40_000, "test accuracy": 0.9922, "name": "x" * 12, "align": "right"}
    assert label_sides([a, right, far])[:2] == ["above", "below"]
    assert label_sides([{**a, "params": 3_000}, right, far])[:2] == ["above", "above"]
    # with no room either side a name still goes somewhere (above)
    c = {**a, "name": "third"}
    assert label_sides([a, b, c, far])[2] == "above"
