"""Deskewing: a layer with no weights that straightens a slanted digit before the network
reads it.

A handwritten 1 leans; a network with a thousand weights spends some of them learning that a
leaning 1 and an upright one are the same digit. Deskewing, a classic MNIST step (LeCun et
al.'s table of results lists deskewed variants), removes the slant instead: it reads the
ink's centre of mass and how far the columns drift from row to row (the image's second
moments, ``alpha = cov(row, col) / var(row)``), then shears each row sideways by
``alpha · (row - middle)`` so the digit stands upright, centred on the frame's middle. It
learns nothing and adds no parameter; the same arithmetic runs on every image, in training,
in the Draw page and in an exported model.

The resampling is bilinear, written as two sideways shifts by a fractional number of
pixels (every column of an image by the same amount, to centre it vertically; then each
row by its own, to undo the slant), each a blend of two gathered neighbours, rather than
TensorFlow's image-transform op: the same numbers (tests/test_deskew.py), every Keras
backend, and a ``.tflite`` file that TensorFlow Lite's built-in operations can run (the
image-transform op has no built-in kernel there). On TensorFlow the layer runs it as one
XLA-compiled function: about a quarter of the time of the same operations one by one, which
is what the Draw page and evaluation pay (the rest of a model stays uncompiled; XLA makes
the whole train step slower on this CPU). A fit needs it once, not once an epoch:
:func:`core.training.training_images` straightens the training images before the epochs
and :func:`straightened_beforehand` lets the layer pass those batches on.

This module imports Keras at import time; :mod:`core.build` and the model loaders import it
only where a model is built or loaded. Its functions and :class:`Deskew` use nothing but
Keras (and TensorFlow when that is Keras' backend), so :mod:`core.export` copies their
source (:data:`SOURCE`) into exported scripts and notebooks.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import keras
from keras import ops


def shift_columns(images, shift):
    """``images`` (N, H, W, C) moved sideways, row by row: output (n, r, c) reads column
    ``c + shift[n, r]``, blending the two columns around it; zero beyond the edges."""
    width = images.shape[2]
    floor = ops.floor(shift)
    frac = (shift - floor)[:, :, None, None]
    first = ops.arange(width, dtype="float32")[None, None, :] + floor[:, :, None]

    def read(column):
        inside = ops.cast((column >= 0) & (column <= width - 1), images.dtype)
        index = ops.cast(ops.clip(column, 0, width - 1), "int32")
        return ops.take_along_axis(images, index[..., None], axis=2) * inside[..., None]

    return (1 - frac) * read(first) + frac * read(first + 1)


def deskew_images(images):
    """Shear each image of ``images`` (N, H, W, C) upright about its centre of mass.

    The slant is clipped to two columns a row, so a few stray dots cannot fold a digit
    over itself; a blank image stays blank.
    """
    height, width = images.shape[1], images.shape[2]
    x = ops.cast(images, "float32")
    rows = ops.arange(height, dtype="float32")
    cols = ops.arange(width, dtype="float32")
    ink = ops.sum(x, axis=-1)                                            # (N, H, W)
    total = ops.sum(ink, axis=(1, 2)) + 1e-6
    mid_row = ops.sum(ink * rows[None, :, None], axis=(1, 2)) / total
    mid_col = ops.sum(ink * cols[None, None, :], axis=(1, 2)) / total
    d_row = rows[None, :, None] - mid_row[:, None, None]
    d_col = cols[None, None, :] - mid_col[:, None, None]
    var_row = ops.sum(ink * d_row * d_row, axis=(1, 2))
    slant = ops.clip(ops.sum(ink * d_row * d_col, axis=(1, 2)) / (var_row + 1e-6), -2.0, 2.0)
    # Output row r reads input row r + (centre of mass - middle): the digit is centred.
    # The same shift for every column, so it is shift_columns on the transposed image.
    down = ops.broadcast_to((mid_row - (height - 1) / 2)[:, None], (ops.shape(x)[0], width))
    centred = ops.transpose(shift_columns(ops.transpose(x, (0, 2, 1, 3)), down), (0, 2, 1, 3))
    # Output (r, c) reads column c + slant·(r - middle) + (centre of mass - middle).
    across = slant[:, None] * (rows[None, :] - (height - 1) / 2) \
        + (mid_col - (width - 1) / 2)[:, None]                               # (N, H)
    return ops.cast(shift_columns(centred, across), images.dtype)


@functools.cache
def compiled_deskew():
    """:func:`deskew_images` as one XLA-compiled TensorFlow function, or None on another
    backend (where it runs as it is)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf  # noqa: PLC0415

    return tf.function(deskew_images, jit_compile=True, reduce_retracing=True)


# Saved .keras files name it "layerlab>Deskew"; loading one needs this module imported.
@keras.saving.register_keras_serializable(package="layerlab")
class Deskew(keras.layers.Layer):
    """Straighten slanted digits (no weights): :func:`deskew_images` as a Keras layer.

    ``given_straight`` (False unless a trainer sets it): training batches arrive already
    straightened, so in training the layer passes them on as they are.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.given_straight = False

    def call(self, inputs, training=None):
        if training and self.given_straight:
            return inputs
        compiled = compiled_deskew()
        out = deskew_images(inputs) if compiled is None else compiled(inputs)
        # Nothing before it learns, so training needs no gradient through it (TensorFlow
        # would otherwise keep what one needs); saliency maps (training=False) do.
        return ops.stop_gradient(out) if training else out

    def compute_output_shape(self, input_shape):
        return input_shape


def leading_deskew(model: Any) -> Deskew | None:
    """``model``'s Deskew layer when it is the model's first step, else None."""
    steps = [layer for layer in model.layers
             if not isinstance(layer, keras.layers.InputLayer)]
    return steps[0] if steps and isinstance(steps[0], Deskew) else None


def deskew_all(images, batch: int = 2048):
    """``images`` (uint8 ``(N, 28, 28)`` or floats in [0, 1]) as float32 ``(N, 28, 28, 1)``,
    straightened, a batch at a time: what a leading Deskew layer would give each of them.

    >>> import numpy as np
    >>> deskew_all(np.zeros((3, 28, 28), np.uint8)).shape
    (3, 28, 28, 1)
    """
    import numpy as np  # noqa: PLC0415

    from core.data import to_float  # noqa: PLC0415

    run = compiled_deskew() or deskew_images
    out = np.empty((len(images), *images.shape[1:3], 1), np.float32)
    for start in range(0, len(images), batch):
        out[start:start + batch] = np.asarray(run(to_float(images[start:start + batch])))
    return out


@contextlib.contextmanager
def straightened_beforehand(model: Any, layer: Deskew | None) -> Iterator[None]:
    """While inside, ``layer`` (``model``'s leading Deskew, or None: nothing changes)
    passes training batches on as they are, since the trainer straightened its images
    once before the epochs instead of once an epoch; inference still straightens.

    Keras keeps the train step it traced, so on the way out it is dropped: a later
    ``fit`` traces one that straightens again.
    """
    if layer is None:
        yield
        return
    layer.given_straight = True
    try:
        yield
    finally:
        layer.given_straight = False
        model.train_function = None


# What core.export copies into a script or notebook, in order: Keras alone runs it.
SOURCE = (shift_columns, deskew_images, compiled_deskew, Deskew)
