"""Stroke width: measured on shapes of known width, set by dilation or erosion, and the
MNIST constants checked against MNIST itself. No TensorFlow needed."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.preprocess import preprocess
from core.strokes import (BLOB_WIDTH, MNIST_RANGE, match_width, stroke_width, thicken,
                          thin)


def ring(width: int, size: int = 200) -> np.ndarray:
    """A circle 150 px across drawn with a pen ``width`` px wide, soft-edged."""
    img = Image.new("L", (size * 4, size * 4), 0)
    ImageDraw.Draw(img).ellipse([100, 100, 700, 700], outline=255, width=width * 4)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), np.float32) / 255


@pytest.mark.parametrize("width", [3, 6, 12, 24])
def test_the_width_of_a_drawn_ring_is_measured(width):
    assert stroke_width(ring(width)) == pytest.approx(width, rel=0.12, abs=0.5)


@pytest.mark.parametrize("start,goal", [(4, 12), (24, 8), (12, 5)])
def test_strokes_are_set_to_the_width_asked_for(start, goal):
    ink = ring(start)
    out = thicken(ink, (goal - start) / 2) if goal > start else thin(ink, goal)
    assert stroke_width(out) == pytest.approx(goal, rel=0.15, abs=0.75), start
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_thinning_keeps_a_part_thinner_than_the_rest():
    """A plain erosion would remove the thin bar; its centre line is redrawn instead."""
    ink = np.zeros((120, 200), np.float32)
    ink[20:50, 20:180] = 1                                    # 30 px wide
    ink[50:110, 95:105] = 1                                   # 10 px wide, hanging below
    out = thin(ink, 8)
    assert (out[60:105, 95:105].max(axis=1) > 0.5).all()      # the whole thin bar is there
    assert (out[20:50, 60] > 0.5).sum() <= 10                 # the thick one is 8-ish px


def test_match_width_keeps_typical_strokes_and_moves_the_others():
    low, high = MNIST_RANGE
    band = np.zeros((240, 60), np.float32)
    band[20:220, 20:30] = 1                                    # 10 px; at 4 px/px: 2.5
    same, width = match_width(band, 4.0, 200.0)
    assert same is band and width == pytest.approx(2.5, abs=0.1)
    for ppf, near in ((10.0, low), (2.0, high)):              # 1.0 and 5.0 frame px
        out, width = match_width(band, ppf, 200.0)
        assert not np.array_equal(out, band)
        after = stroke_width(out) / ppf * 200 / (200 + (stroke_width(out) - 10))
        assert after == pytest.approx(near, abs=0.3), (ppf, after)
    assert match_width(np.zeros((9, 9)), 4.0, 80.0)[1] == 0.0   # no ink: nothing to do


def test_a_blob_is_left_as_drawn():
    """A filled disk eroded to its centre would be a dot; it is not strokes at all."""
    yy, xx = np.mgrid[:100, :100]
    disk = ((yy - 50) ** 2 + (xx - 50) ** 2 <= 40 ** 2).astype(np.float32)
    out, width = match_width(disk, 4.0, 80.0)
    assert width > BLOB_WIDTH and out is disk


def test_mnist_range_is_the_middle_half_of_mnists_widths(mnist):
    """Measured as core.preprocess measures a drawing, on a random sample (strided ones
    vary with the order of the file)."""
    sample = np.random.default_rng(0).choice(len(mnist.x_train), 1000, replace=False)
    widths = [preprocess(digit).stroke[0] for digit in mnist.x_train[sample]]
    quartiles = np.quantile(widths, [0.25, 0.75])
    assert quartiles == pytest.approx(MNIST_RANGE, abs=0.1), quartiles
