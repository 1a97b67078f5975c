"""Short runs that still work: batch-norm statistics that fit the weights, and a warning
for recipes too short to learn anything.

Why: Keras' ``BatchNormalization`` predicts with an exponential moving average of the
batch statistics (momentum 0.99), which starts at mean 0, variance 1 and forgets that
start only after a few hundred steps. A 75-step run (1 epoch on 10,000 images) predicts
with statistics half-way between the start and the truth, so a network that is 55%
right in training guesses at test time. :func:`recalibrate_batch_norm` replaces the
moving statistics with the exact statistics of each layer's input over a sample of
training images, layer by layer in inference mode (dropout off, earlier layers already
recalibrated), which is what the layer sees when it predicts. The training engine calls
it at the end of every epoch, also the partial one of a Stop, so validation curves,
checkpoints and the final model agree. Models without batch normalisation are untouched.

:func:`short_recipe_warning` is the sentence the Train page shows before Start when a
recipe makes too few optimizer steps for any network to learn.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from core.data import to_float
from core.recipe import Recipe

MNIST_TRAIN_IMAGES = 60_000
# fast_cnn, the quickest learner, reaches 29% after 2 steps, 60% after 5, 83% after 10
# and 94% after 19 (calibrated, measured on 10,000 images or fewer); slower presets need more.
MIN_STEPS = 10
# Test accuracy stops changing from 512 images up (bulky_cnn, frontier_3k after 1 epoch on
# 10,000), and the cost grows with the sample: about 1.5 s per call for bulky_cnn on 2 cores.
CALIBRATION_IMAGES = 1024
CALIBRATION_BATCH = 256


def training_steps(recipe: Recipe, n_images: int = MNIST_TRAIN_IMAGES) -> int:
    """Optimizer steps a recipe makes: batches per epoch times epochs.

    ``n_images`` is the size of the training set before the recipe's subset and
    validation split are taken. The engine holds out validation images class by class,
    so its count may differ by a few images (at most a step per epoch).

    >>> training_steps(Recipe(batch_size=512, epochs=1, train_subset=1000,
    ...                       validation_split=0.05))
    2
    >>> training_steps(Recipe(batch_size=128, epochs=2, validation_split=0.1))
    844
    """
    used = min(recipe.train_subset or n_images, n_images)
    train = used - round(used * recipe.validation_split)
    return math.ceil(train / recipe.batch_size) * recipe.epochs


def short_recipe_warning(recipe: Recipe,
                         n_images: int = MNIST_TRAIN_IMAGES) -> str | None:
    """A sentence saying the recipe is too short to learn, or None when it is long enough.

    >>> print(short_recipe_warning(Recipe(batch_size=512, epochs=1, train_subset=1000,
    ...                                   validation_split=0.05)))
    This recipe makes only 2 optimizer steps (950 training images in batches of 512, 1 epoch), too few for a network to learn much: expect a model far below its usual accuracy (chance is 10%). Use more images or epochs, or a smaller batch size, for at least 10 steps.
    >>> short_recipe_warning(Recipe(batch_size=128, epochs=1, train_subset=10_000)) is None
    True
    """
    steps = training_steps(recipe, n_images)
    if steps >= MIN_STEPS:
        return None
    used = min(recipe.train_subset or n_images, n_images)
    train = used - round(used * recipe.validation_split)
    epochs = f"{recipe.epochs} epoch" + ("s" if recipe.epochs != 1 else "")
    step_word = "step" if steps == 1 else "steps"
    return (f"This recipe makes only {steps:,} optimizer {step_word} ({train:,} training "
            f"images in batches of {recipe.batch_size:,}, {epochs}), too few for a "
            f"network to learn much: expect a model far below its usual accuracy (chance "
            f"is 10%). Use more images or epochs, or a smaller batch size, for at least "
            f"{MIN_STEPS} steps.")


def channel_moments(batches: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance per channel, the last axis, over all batches.

    >>> mean, var = channel_moments([np.array([[0.0, 1.0], [2.0, 1.0]]),
    ...                              np.array([[4.0, 1.0]])])
    >>> mean.tolist(), var.round(4).tolist()
    ([2.0, 1.0], [2.6667, 0.0])
    """
    count, total, squares = 0, 0.0, 0.0
    for batch in batches:
        flat = np.asarray(batch, dtype=np.float64)
        flat = flat.reshape(-1, flat.shape[-1])
        count += len(flat)
        total = total + flat.sum(axis=0)
        squares = squares + np.square(flat).sum(axis=0)
    if not count:
        raise ValueError("channel_moments needs at least one value per channel.")
    mean = total / count
    return mean, np.maximum(squares / count - np.square(mean), 0.0)


def calibration_sample(n: int, size: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n, size)`` distinct images, the same for the same seed.

    >>> calibration_sample(5, 10).tolist()
    [0, 1, 2, 3, 4]
    >>> len(calibration_sample(60_000, 2048)), len(set(calibration_sample(60_000).tolist()))
    (2048, 1024)
    """
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def batch_norm_layers(model: Any) -> list[Any]:
    """The model's trainable BatchNormalization layers in graph order (frozen ones keep
    their statistics, as Keras does when it trains them)."""
    import keras  # noqa: PLC0415 - keep TensorFlow off the import path of light pages

    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recalibrate_batch_norm(model: Any, images: np.ndarray, *,
                           max_images: int = CALIBRATION_IMAGES,
                           batch_size: int = CALIBRATION_BATCH, seed: int = 0) -> int:
    """Set every batch-norm layer's moving mean and variance to the exact statistics of
    its input over (a sample of) ``images`` (uint8 pixels or floats in [0, 1]), first
    layer first; return how many layers.

    Each layer is measured in inference mode after the layers before it have been
    recalibrated, so after the call every layer normalises what it actually receives at
    prediction time. Cost: one inference pass per layer over at most ``max_images``.
    """
    import keras  # noqa: PLC0415

    layers = batch_norm_layers(model)
    if not layers or not len(images):
        return 0
    sample = to_float(images[calibration_sample(len(images), max_images, seed)])
    for layer in layers:
        probe = keras.Model(model.input, layer.input)    # the layer's input, inference mode
        mean, var = channel_moments(
            np.moveaxis(np.asarray(probe(sample[i:i + batch_size], training=False)),
                        layer.axis, -1)
            for i in range(0, len(sample), batch_size))
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(var.astype(np.float32))
    from core.evaluation import forget_fingerprint  # noqa: PLC0415

    forget_fingerprint(model)           # new weights without an optimizer step
    return len(layers)
