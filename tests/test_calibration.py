"""Batch-norm statistics re-estimated from data, in the engine too; the short-recipe warning."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from core.calibration import (MIN_STEPS, calibration_sample, recalibrate_batch_norm,
                              short_recipe_warning, training_steps)
from core.data import to_float
from core.recipe import Recipe
from core.spec import ModelSpec
from core.training import TrainingJob, prepare_data

BN_SPEC = ModelSpec("tiny_bn", [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "linear",
     "use_bias": False},
    {"type": "BatchNormalization"},
    {"type": "Activation", "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Dropout", "rate": 0.5},
    {"type": "Conv2D", "filters": 6, "kernel_size": 3},
    {"type": "BatchNormalization"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"}])


def bn_layers(model):
    import keras

    return [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]


def inference_input_moments(model, layer, images):
    """Mean and variance per channel of what ``layer`` receives at prediction time."""
    import keras

    x = np.asarray(keras.Model(model.input, layer.input)(images, training=False),
                   dtype=np.float64)
    return x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))


def test_moving_statistics_become_the_population_statistics_layer_by_layer():
    from core.build import build_model

    rng = np.random.default_rng(0)
    images = (rng.random((300, 28, 28, 1)) * 3 + 1).astype(np.float32)  # mean far from 0
    model = build_model(BN_SPEC, seed=0)
    first, second = bn_layers(model)
    # Before: Keras' initial statistics (0, 1), far from what the layers receive.
    mean, _ = inference_input_moments(model, first, images)
    assert not np.allclose(first.moving_mean.numpy(), mean, atol=0.05)

    assert recalibrate_batch_norm(model, images, max_images=1000, batch_size=64) == 2
    for layer in (first, second):     # the second is measured after the first was fixed
        mean, var = inference_input_moments(model, layer, images)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-3, atol=1e-6)
    # So in inference mode the first layer's output has mean beta (0) and std gamma (1).
    import keras
    out = np.asarray(keras.Model(model.input, first.output)(images, training=False))
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=0.01)


def test_models_without_batch_norm_and_frozen_layers_are_left_alone():
    from core.build import build_model

    images = np.random.default_rng(1).random((64, 28, 28, 1)).astype(np.float32)
    plain = build_model(ModelSpec("plain", [BN_SPEC.layers[0], {"type": "Flatten"},
                                            BN_SPEC.layers[-1]]), seed=0)
    before = [w.copy() for w in plain.get_weights()]
    assert recalibrate_batch_norm(plain, images) == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, plain.get_weights()))

    model = build_model(BN_SPEC, seed=0)
    first, second = bn_layers(model)
    first.trainable = False
    assert recalibrate_batch_norm(model, images) == 1
    np.testing.assert_array_equal(first.moving_mean.numpy(), 0.0)
    assert not np.allclose(second.moving_mean.numpy(), 0.0)


def test_a_short_run_predicts_with_calibrated_statistics():
    """The engine re-estimates at epoch end: validation and test see fitting statistics."""
    recipe = Recipe(epochs=1, batch_size=64, learning_rate=3e-3, train_subset=2000)
    data = prepare_data(recipe, test_limit=1000)
    job = TrainingJob(BN_SPEC, recipe, data=data).start()
    job.join(timeout=300)
    done = [e for e in job.drain() if e["kind"] == "done"][0]
    assert done["status"] == "finished", done["message"]
    sample = to_float(data.x_train[calibration_sample(len(data.x_train))])
    for layer in bn_layers(job.model):
        mean, var = inference_input_moments(job.model, layer, sample)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-3, atol=1e-5)
    run = done["run"]
    assert run.history["val_accuracy"][-1] > 0.75 and run.test_accuracy > 0.75


def test_a_stop_mid_epoch_calibrates_the_last_weights():
    recipe = Recipe(epochs=20, batch_size=32, learning_rate=3e-3, train_subset=2000)
    data = prepare_data(recipe, test_limit=1000)
    job = TrainingJob(BN_SPEC, recipe, data=data).start()
    seen, t0 = [], time.time()
    while not any(e["kind"] == "batch" and e["step"] >= 5 for e in seen):
        assert time.time() - t0 < 120, "no batch events"
        seen += job.drain()
        time.sleep(0.02)
    job.stop()
    job.join(timeout=60)
    done = [e for e in seen + job.drain() if e["kind"] == "done"][0]
    assert done["status"] == "stopped" and done["run"].epochs_done == 0
    first = bn_layers(job.model)[0]
    mean, _ = inference_input_moments(
        job.model, first, to_float(data.x_train[calibration_sample(len(data.x_train))]))
    np.testing.assert_allclose(first.moving_mean.numpy(), mean, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("subset,split,batch,epochs", [
    (1000, 0.05, 512, 1), (10_000, 0.05, 128, 1), (10_000, 0.1, 128, 2),
    (5000, 0.2, 32, 1), (3000, 0.0, 100, 3)])
def test_training_steps_match_the_engine(subset, split, batch, epochs):
    # The engine holds out validation images per class (rounding each class), so the
    # estimate may miss by a few images: at most one batch per epoch.
    recipe = Recipe(train_subset=subset, validation_split=split, batch_size=batch,
                    epochs=epochs)
    n = len(prepare_data(recipe, test_limit=100).x_train)
    assert abs(training_steps(recipe) - math.ceil(n / batch) * epochs) <= epochs


def test_warning_names_the_steps_and_the_way_out_only_when_too_short():
    two_steps = Recipe(batch_size=512, epochs=1, train_subset=1000, validation_split=0.05)
    text = short_recipe_warning(two_steps)
    assert text is not None and "only 2 optimizer steps" in text
    assert "950 training images in batches of 512, 1 epoch)" in text
    assert "more images or epochs, or a smaller batch size" in text
    # one step is singular; more epochs of the same recipe get past the threshold
    assert "only 1 optimizer step " in short_recipe_warning(two_steps.replace(batch_size=1024))
    assert short_recipe_warning(two_steps.replace(epochs=MIN_STEPS // 2)) is None
    assert short_recipe_warning(two_steps.replace(epochs=MIN_STEPS // 2 - 1)) is not None
    # the presets' own recipes, and a 10,000-image epoch of each, are long enough
    from core.presets import PRESETS
    for preset in PRESETS.values():
        assert short_recipe_warning(preset.recipe) is None
        assert short_recipe_warning(preset.recipe.replace(epochs=1, train_subset=10_000)) \
            is None
