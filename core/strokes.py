"""Stroke width of a digit: measured from its ink, and redrawn at MNIST's when far off.

A pen 6 px wide on a 280-px canvas leaves hairlines once the digit is shrunk to 20 px, and
a 40-px pen leaves a blot; MNIST's writers used neither. The width is measured as four
times the mean distance from an ink pixel to the background (exact for a long band), less
the half pixel of the grid. A width outside the middle half of MNIST's widths is brought
to the nearest end of it (the least change that makes it typical; MNIST's own digits are
mostly left alone): thin strokes are dilated, thick ones are eroded, and the thick
strokes' centre lines are redrawn at the new width too, so that no part thinner than the
rest vanishes in the erosion. Ink far wider than any MNIST stroke is a blob (a filled
shape, a small digit drawn with a fat pen) and is left as drawn.

Widths are in the frame's pixels (the 28×28 digit, longer side 20 px). Measured on all
60,000 MNIST training digits through core.preprocess's working image:
``tests/test_strokes.py`` checks the numbers.

Pure NumPy + SciPy (scikit-learn's own dependency); no TensorFlow, no streamlit.
"""
from __future__ import annotations

import numpy as np

MNIST_RANGE = (2.0, 2.9)        # 25th/75th percentiles of MNIST's widths (median 2.4)
BLOB_WIDTH = 6.0                # wider (30% of the box; MNIST's 99.9th percentile) is a
                                # blob, not strokes: a filled shape, or a small digit drawn
                                # with a fat pen; eroding it to centre lines would lose it
LEVEL = 0.5                     # ink at least this bright is "inside" the stroke


def stroke_width(ink: np.ndarray, level: float = LEVEL) -> float:
    """The typical width, in pixels, of the strokes brighter than ``level`` (0 if none).

    >>> band = np.zeros((20, 210)); band[5:15, 5:205] = 1.0    # 10 px wide, 200 long
    >>> round(stroke_width(band), 1)                           # its ends count a little
    9.8
    >>> stroke_width(np.zeros((5, 5)))
    0.0
    """
    from scipy import ndimage  # noqa: PLC0415 - keep SciPy off light imports

    mask = np.asarray(ink) >= level
    if not mask.any():
        return 0.0
    inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return float(4 * (inside[mask].mean() - 0.5))


def thicken(ink: np.ndarray, by: float) -> np.ndarray:
    """The ink dilated by ``by`` pixels on each side (soft edges), the original kept.

    >>> line = np.zeros((9, 9)); line[4, 1:8] = 1.0
    >>> int((thicken(line, 2.0)[:, 4] > 0.5).sum())            # 1 px -> 5 px
    5
    """
    from scipy import ndimage  # noqa: PLC0415

    ink = np.asarray(ink, dtype=np.float32)
    outside = ndimage.distance_transform_edt(ink < LEVEL)
    grown = np.clip(by + 1.0 - outside, 0.0, 1.0).astype(np.float32)
    return np.maximum(ink, grown)


def thin(ink: np.ndarray, to: float) -> np.ndarray:
    """The ink with its strokes redrawn ``to`` pixels wide: eroded, and its centre lines
    (the ridge of the distance to the background) drawn at that width.

    >>> band = np.zeros((30, 60)); band[5:25, 5:55] = 1.0      # 20 px wide
    >>> float(thin(band, 6.0)[:, 30].sum())
    6.5
    """
    from scipy import ndimage  # noqa: PLC0415

    ink = np.asarray(ink, dtype=np.float32)
    mask = ink >= LEVEL
    inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    # The ridge: pixels no closer to the background than their neighbours (the centre
    # line; two pixels wide where the stroke's width is even).
    ridge = mask & (inside >= ndimage.maximum_filter(inside, 3))
    if not ridge.any():
        return ink
    # Erode as deep as the typical ridge is high, so both ways agree on a uniform stroke.
    cut = max(0.0, float(np.median(inside[ridge])) - to / 2)
    eroded = np.where(mask, np.clip(inside - cut, 0.0, 1.0), 0.0)
    near = ndimage.distance_transform_edt(~ridge)
    drawn = np.clip(to / 2 + 0.25 - near, 0.0, 1.0)   # ±½ px: ridges are 1 or 2 px
    # Within the old outline: a ridge pixel near the edge (at a corner) draws no bump.
    return np.maximum(eroded, np.minimum(drawn, ink)).astype(np.float32)


def match_width(ink: np.ndarray, pixels_per_frame_px: float,
                extent: float) -> tuple[np.ndarray, float]:
    """``(ink, width)``: the strokes brought into MNIST_RANGE when they are outside it
    (blobs wider than BLOB_WIDTH are left alone), and the width they had (frame pixels).

    ``pixels_per_frame_px`` is how many of ``ink``'s pixels become one pixel of the 28×28
    frame. ``extent`` is the ink's longer side in pixels: a dilation pushes the stroke
    ends out (an erosion pulls them in) and the digit is then scaled back to 20 px, which
    changes the width again, so the target is corrected for it.

    >>> band = np.zeros((220, 40)); band[10:210, 18:22] = 1.0  # 1 frame px at 4 px/px
    >>> out, width = match_width(band, 4.0, 200.0)
    >>> round(width, 1), round(stroke_width(out) / 4, 1)        # up to MNIST's 2.0
    (1.0, 2.0)
    >>> match_width(band, 1.6, 200.0)[0] is band                # 2.5 frame px: kept
    True
    """
    width = stroke_width(ink) / pixels_per_frame_px
    low, high = MNIST_RANGE
    if width <= 0 or low <= width <= high or width > BLOB_WIDTH:
        return ink, width
    measured = width * pixels_per_frame_px
    target = min(max(width, low), high) * pixels_per_frame_px
    target *= (extent - measured) / max(extent - target, 1.0)
    if target > measured:
        return thicken(ink, (target - measured) / 2), width
    return thin(ink, target), width
