"""core.notebook_code, the fixed parts of the generated code: each piece compiles, covers
the app's settings, and computes what the app computes (the data selection, the
batch-norm refit; the schedules against lr_at are in tests/test_notebook.py)."""
from __future__ import annotations

import ast

import numpy as np
import pytest

from core import notebook_code as nc
from core.notebook_code import BATCH_NORM_CODE, DATA_CODE
from core.presets import get_preset
from core.recipe import OPTIMIZERS, SCHEDULES, Recipe


@pytest.mark.parametrize("piece", ["SETUP_CODE", "DATA_CODE", "STEP_CALLBACK",
                                   "BATCH_NORM_CODE", "CURVES_CODE", "EVALUATION_CODE"])
def test_every_fixed_piece_is_valid_python(piece):
    ast.parse(getattr(nc, piece))


def test_there_is_code_for_every_schedule_and_optimizer_a_recipe_allows():
    assert set(nc.SCHEDULES) == set(SCHEDULES)
    assert set(nc.OPTIMIZERS) == set(OPTIMIZERS)
    for name, code in nc.SCHEDULES.items():
        assert [f.name for f in ast.parse(code).body] == ["learning_rate_at"], name
    for name, code in nc.OPTIMIZERS.items():
        call = ast.parse(code.format(rate=0.01), mode="eval").body
        assert ast.unparse(call.func).lower() == f"keras.optimizers.{name}"
        assert call.args[0].value == 0.01                  # the recipe's rate, first


def test_generated_data_is_the_apps_selection(mnist):
    from core.data import to_float
    from core.training import prepare_data

    for recipe in (Recipe(train_subset=1234, validation_split=0.15, seed=7),
                   Recipe(train_subset=1234, validation_split=0.15, seed=7, split_seed=2)):
        ns: dict = {"TRAIN_IMAGES": 1234, "VALIDATION_SPLIT": 0.15, "SEED": 7,
                    "SPLIT_SEED": recipe.data_seed}
        exec("import os\nimport numpy as np\nimport keras\n" + DATA_CODE, ns)
        app = prepare_data(recipe)
        # the app keeps its training images as pixels and scales a batch at a time
        for ours, theirs in (("x_train", to_float(app.x_train)), ("y_train", app.y_train),
                             ("x_val", app.x_val), ("y_val", app.y_val),
                             ("x_test", app.x_test), ("y_test", app.y_test)):
            assert ns[ours].dtype == theirs.dtype and np.array_equal(ns[ours], theirs), ours


def test_generated_teacher_targets_equal_the_apps(mnist):
    """The notebook's blended targets from the downloaded teacher file are the app's."""
    import keras

    from core.pretrained import CACHED_DIR
    from core.training import prepare_data

    recipe = Recipe(train_subset=1000, validation_split=0.1, seed=1, teacher="fast_cnn",
                    distill_weight=0.3, distill_temperature=2.0)
    ns: dict = {"TRAIN_IMAGES": 1000, "VALIDATION_SPLIT": 0.1, "SEED": 1, "SPLIT_SEED": 1,
                "TEACHER_FILE": str(CACHED_DIR / "fast_cnn.keras"), "DISTILL_WEIGHT": 0.3,
                "DISTILL_TEMPERATURE": 2.0}
    exec("import os\nimport numpy as np\nimport keras\n" + DATA_CODE + nc.TEACHER_CODE, ns)
    app = prepare_data(recipe)
    assert ns["targets"].dtype == app.y_soft.dtype
    np.testing.assert_allclose(ns["targets"], app.y_soft, atol=2e-5)


def test_generated_taught_loss_takes_targets_or_digits():
    import keras
    import tensorflow as tf

    ns: dict = {"keras": keras, "tf": tf}
    exec(nc.TAUGHT_LOSS_CODE.replace("{smoothing}", ""), ns)
    probs = np.array([[0.7, 0.2, 0.1] + [0.0] * 7, [0.1, 0.1, 0.8] + [0.0] * 7], "float32")
    digits = np.array([0, 1])
    onehot = np.eye(10, dtype="float32")[digits]
    by_digit = np.asarray(ns["taught_crossentropy"](digits, probs))
    np.testing.assert_allclose(by_digit, np.asarray(ns["taught_crossentropy"](onehot, probs)))
    np.testing.assert_allclose(by_digit, -np.log([0.7, 0.1]), rtol=1e-5)
    assert np.asarray(ns["accuracy"](digits, probs)).tolist() == [1.0, 0.0]
    assert np.asarray(ns["accuracy"](onehot, probs)).tolist() == [1.0, 0.0]


def test_generated_batch_norm_refit_equals_the_apps():
    import keras

    from core.build import build_model
    from core.calibration import recalibrate_batch_norm

    spec = get_preset("fast_cnn").spec
    images = np.random.default_rng(1).random((1300, 28, 28, 1), dtype=np.float32)
    ours, theirs = build_model(spec, seed=2), build_model(spec, seed=2)
    ns: dict = {"keras": keras, "layers": keras.layers, "np": np}
    exec(BATCH_NORM_CODE, ns)
    ns["recalibrate_batch_norm"](ours, images)
    assert recalibrate_batch_norm(theirs, images) == 3
    for a, b in zip(ours.layers, theirs.layers):
        if isinstance(a, keras.layers.BatchNormalization):
            assert float(np.abs(a.moving_mean.numpy()).max()) > 0    # really refitted
            np.testing.assert_allclose(a.moving_mean.numpy(), b.moving_mean.numpy(),
                                       rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a.moving_variance.numpy(),
                                       b.moving_variance.numpy(), rtol=1e-5, atol=1e-6)


def test_generated_batches_are_the_apps_in_the_same_order():
    """The generated make_dataset gives the app's batches, epoch after epoch (the
    app's labels are one-hot when it smooths them)."""
    import keras
    import tensorflow as tf

    from core.notebook import dataset_code
    from core.training import make_dataset

    rng = np.random.default_rng(3)
    x = rng.random((300, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 300).astype(np.int32)
    recipe = Recipe(batch_size=64, seed=5, label_smoothing=0.1)
    ns: dict = {"tf": tf, "keras": keras, "layers": keras.layers, "SEED": 5,
                "BATCH_SIZE": 64}
    exec(dataset_code(recipe), ns)
    ours, theirs = ns["make_dataset"](x, y), make_dataset(x, y, recipe)
    for _ in range(2):                                   # the order changes per epoch
        pairs = list(zip(ours, theirs))
        assert len(pairs) == 5
        for (xa, ya), (xb, yb) in pairs:
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), np.argmax(yb.numpy(), axis=1))
    first = [b.numpy() for b, _ in ours.take(1)][0]
    assert not np.array_equal(first, x[:64])             # really shuffled


def test_generated_smoothed_loss_equals_the_apps():
    import keras
    import tensorflow as tf

    from core.training import make_loss

    recipe = Recipe(label_smoothing=0.2)
    ns: dict = {"tf": tf, "keras": keras, "LABEL_SMOOTHING": 0.2}
    exec(nc.SMOOTHED_LOSS_CODE, ns)
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, 32)
    logits = 6 * np.eye(10)[digits] + rng.normal(size=(32, 10))     # confident, mostly right
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    theirs = float(make_loss(recipe)(np.eye(10, dtype=np.float32)[digits], probs))
    ours = float(keras.ops.mean(ns["smoothed_crossentropy"](digits, probs)))
    plain = float(keras.losses.SparseCategoricalCrossentropy()(digits, probs))
    assert ours == pytest.approx(theirs, rel=1e-6) and ours > plain + 0.1   # smoothed
    assert make_loss(Recipe()) == "sparse_categorical_crossentropy"
