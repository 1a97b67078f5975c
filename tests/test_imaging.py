"""Pictures from arrays: colour tables, colour maps, overlays and image grids."""
from __future__ import annotations

import numpy as np

from core.imaging import (anchors, colorize, enlarge, labelled_grid, lut, overlay, tile_grid,
                          unit, upsample)


def test_colour_helpers():
    assert lut("viridis").shape == (256, 3) and lut("viridis").dtype == np.uint8
    assert tuple(lut("viridis")[0]) == (0x44, 0x01, 0x54)
    mid = colorize(np.array([[0.0]]), -1.0, 1.0, "diverging")[0, 0]
    assert all(v > 230 for v in mid)                            # zero is (near) white
    rgb = colorize(np.arange(6).reshape(2, 3), 0, 5, "viridis", scale=4)
    assert rgb.shape == (8, 12, 3)
    assert colorize(np.ones((2, 2)), 1, 1).shape == (2, 2, 3)   # flat map: no division by 0
    assert len(anchors("heat")) >= 5
    grid = tile_grid(np.zeros((10, 5, 5, 3), np.uint8), cols=4, pad=2)
    assert grid.shape == (3 * 5 + 2 * 2, 4 * 5 + 3 * 2, 3)
    assert enlarge(np.zeros((28, 28)), 112).shape == (112, 112)
    assert enlarge(np.zeros((300, 300)), 112).shape == (300, 300)
    tiles = [np.full((28, 28), 255, np.uint8)] * 7
    grid = labelled_grid(tiles, [("a", "b")] * 7, [False] * 6 + [True], cols=6, side=84)
    pad = 12
    assert grid.shape == (2 * (84 + 32 + pad) + pad, 6 * (84 + pad) + pad, 3)
    top = pad + (84 + 32 + pad) - 2                             # row 2's frame, top edge
    assert tuple(grid[top, pad + 40]) == (214, 39, 40)          # the alert frame is red
    over = overlay(np.full((28, 28), 255, np.uint8), np.zeros((28, 28)), scale=2)
    assert over.shape == (56, 56, 3) and over.max() < 255        # the digit is dimmed


def test_map_scaling_and_resizing():
    np.testing.assert_allclose(unit(np.array([[0.0, 3.0], [-1.0, 6.0]])),
                               [[0.0, 0.5], [-1 / 6, 1.0]])
    assert not unit(np.full((2, 2), -1.0)).any()                 # nothing positive: zeros
    big = upsample(np.array([[0.0, 1.0], [0.0, 1.0]]), (28, 28))
    assert big.shape == (28, 28) and big.dtype == np.float32
    assert big[:, 0].max() < big[:, -1].min()                    # left stays darker
