"""Small pictures from arrays: colour maps, heat-map overlays and image grids.

Plain NumPy (and Pillow for resizing and text) so pages can turn activations, filters
and saliency maps into small RGB images cheaply. Images are uint8; maps are floats.
"""
from __future__ import annotations

import numpy as np

# Colour maps: anchor colours, linearly interpolated to 256 entries.
_ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89",
                "#35b779", "#6ece58", "#b5de2b", "#fde725"],
    "diverging": ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7",
                  "#f4a582", "#d6604d", "#b2182b"],
    "heat": ["#000004", "#420a68", "#932667", "#dd513a", "#fca50a", "#fcffa4"],
}
ALERT_RGB = (214, 39, 40)          # the red of a wrong prediction
# Gaps between tiles on a diverging map: not white (its zero), not red or blue (its ends)
SEPARATOR = (110, 110, 110)


def _hex(c: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)``.

    >>> _hex("#ff8000")
    (255, 128, 0)
    """
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 colour table for ``viridis``, ``diverging`` or ``heat``.

    >>> table = lut("viridis")
    >>> table.shape, table[0].tolist(), table[-1].tolist()
    ((256, 3), [68, 1, 84], [253, 231, 37])
    """
    anchors_rgb = np.array([_hex(c) for c in _ANCHORS[name]], np.float64)
    pos = np.linspace(0, 1, len(anchors_rgb))
    x = np.linspace(0, 1, 256)
    return np.stack([np.interp(x, pos, anchors_rgb[:, i]) for i in range(3)], 1).round() \
        .astype(np.uint8)


def anchors(name: str) -> list[str]:
    """The colour map's anchor colours (for a matching chart legend).

    >>> anchors("heat")[0]
    '#000004'
    """
    return list(_ANCHORS[name])


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "viridis",
             scale: int = 1) -> np.ndarray:
    """Map values to RGB uint8 with a colour table; ``scale`` enlarges each pixel.

    >>> colorize(np.arange(6).reshape(2, 3), 0, 5, scale=4).shape
    (8, 12, 3)
    >>> colorize(np.ones((2, 2)), 1, 1).shape              # a flat map: no division by 0
    (2, 2, 3)
    """
    v = np.asarray(values, np.float32)
    span = vmax - vmin if vmax > vmin else 1.0
    idx = np.clip(((v - vmin) / span * 255).round(), 0, 255).astype(np.uint8)
    rgb = lut(cmap)[idx]
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    return rgb


def overlay(digit: np.ndarray, heat: np.ndarray, scale: int = 8,
            alpha: float = 0.6) -> np.ndarray:
    """The digit in gray with a heat map (values in [0, 1]) blended on top, RGB uint8.

    >>> over = overlay(np.full((28, 28), 255, np.uint8), np.zeros((28, 28)), scale=2)
    >>> over.shape, int(over.max())                      # the digit is dimmed
    ((56, 56, 3), 140)
    """
    base = np.repeat(np.asarray(digit, np.float32)[..., None], 3, axis=2) * 0.55
    colour = colorize(heat, 0.0, 1.0, "heat").astype(np.float32)
    a = alpha * np.clip(np.asarray(heat, np.float32), 0, 1)[..., None] ** 0.7
    rgb = (base * (1 - a) + colour * a).round().astype(np.uint8)
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def tile_grid(tiles: np.ndarray, cols: int = 8, pad: int = 2,
              pad_value: int | tuple[int, int, int] = 255) -> np.ndarray:
    """Tiles (N, h, w, 3) uint8 -> one grid image, row by row, ``pad`` px apart, the gaps
    filled with ``pad_value`` (a gray level or an RGB colour such as :data:`SEPARATOR`).

    >>> tile_grid(np.zeros((10, 5, 5, 3), np.uint8), cols=4, pad=2).shape
    (19, 26, 3)
    >>> tile_grid(np.zeros((2, 5, 5, 3), np.uint8), pad=1, pad_value=SEPARATOR)[0, 5].tolist()
    [110, 110, 110]
    """
    tiles = np.asarray(tiles, np.uint8)
    n, h, w = tiles.shape[:3]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3),
                   pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = tiles[i]
    return grid


def enlarge(image: np.ndarray, target: int = 112) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the longer side nears
    ``target`` (small images stay crisp instead of being blurred by the browser).

    >>> enlarge(np.zeros((28, 28)), 112).shape, enlarge(np.zeros((300, 300)), 112).shape
    ((112, 112), (300, 300))
    """
    image = np.asarray(image)
    factor = max(1, target // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def png_bytes(image: np.ndarray, optimize: bool = False) -> bytes:
    """A uint8 image (values clipped to 0–255) encoded as PNG.

    >>> png_bytes(np.zeros((2, 2), np.uint8))[:4]
    b'\x89PNG'
    """
    import io  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    buf = io.BytesIO()
    Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8)).save(
        buf, format="PNG", optimize=optimize)
    return buf.getvalue()


def labelled_grid(tiles: list[np.ndarray], labels: list[tuple[str, str]],
                  alert: list[bool], cols: int = 6, side: int = 84) -> np.ndarray:
    """Gray digit tiles in one RGB image, each with two lines of text underneath (e.g.
    the variant and the prediction); ``alert`` tiles get a red second line and frame.
    One image instead of many keeps a page's per-stroke media requests down.

    >>> tiles = [np.full((28, 28), 255, np.uint8)] * 7
    >>> grid = labelled_grid(tiles, [("a", "b")] * 7, [False] * 6 + [True])
    >>> grid.shape
    (268, 588, 3)
    """
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    try:
        font = ImageFont.load_default(size=12)
    except (TypeError, OSError):            # Pillow without FreeType: the bitmap font
        font = ImageFont.load_default()
    pad, text_h = 12, 32
    rows = -(-len(tiles) // cols)
    width = cols * (side + pad) + pad
    height = rows * (side + text_h + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (tile, (top, bottom), bad) in enumerate(zip(tiles, labels, alert)):
        r, c = divmod(i, cols)
        x, y = pad + c * (side + pad), pad + r * (side + text_h + pad)
        img = Image.fromarray(np.asarray(tile, np.uint8)).convert("RGB") \
            .resize((side, side), Image.Resampling.NEAREST)
        canvas.paste(img, (x, y))
        if bad:
            draw.rectangle((x - 2, y - 2, x + side + 1, y + side + 1), outline=ALERT_RGB,
                           width=2)
        draw.text((x + side / 2, y + side + 3), top, fill=(80, 80, 80), font=font,
                  anchor="ma")
        draw.text((x + side / 2, y + side + 17), bottom, font=font, anchor="ma",
                  fill=ALERT_RGB if bad else (20, 20, 20))
    return np.asarray(canvas)


# -- maps -----------------------------------------------------------------------------------
def unit(a: np.ndarray) -> np.ndarray:
    """Scaled so the largest value is 1 (all zeros when nothing is positive), float32.

    >>> unit(np.array([0.0, 2.0, 4.0])).tolist()
    [0.0, 0.5, 1.0]
    >>> unit(np.zeros(3)).tolist()
    [0.0, 0.0, 0.0]
    """
    a = np.asarray(a, dtype=np.float32)
    top = float(a.max(initial=0.0))
    return a / top if top > 0 else np.zeros_like(a)


def upsample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a small 2-D map to ``size`` (rows, cols), float32.

    >>> upsample(np.ones((3, 3)), (28, 28)).shape
    (28, 28)
    """
    from PIL import Image  # noqa: PLC0415

    img = Image.fromarray(np.asarray(a, np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float32)
