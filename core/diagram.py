"""The network drawn: a layer stack as a row of boxes, as plain data for a chart.

Like visualkeras's layered view, each layer is a box sized by its output shape: a feature
map h×w×c is a box whose height follows h, whose thickness along the row follows the
channels c and whose slanted depth follows w; a flat vector is a thin bar whose height
follows its length. Sizes grow with the logarithm of the shape, so a 28×28×1 map and a
1×1×512 one are both visible and neither fills the picture. Every box is labelled with its
type, its output shape and its parameters.

Coordinates are in pixels, x to the right and y up; each box's front face is centred on
y = 0 and its depth goes up and to the right. :func:`faces` turns the boxes into polygons
(front, top and side faces) for an area chart; nothing here draws or imports a toolkit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from core.layers import LAYERS
from core.spec import INPUT_SHAPE, LayerInfo, ModelSpec, infer_shapes, shape_text
from core.wording import plural

INPUT = "Input"
# One colour per layer type, by family (convolutions blue, pooling orange, dense green...).
COLOURS: dict[str, str] = {
    INPUT: "#bab0ac",
    "Conv2D": "#4c78a8", "SeparableConv2D": "#6b9bd1", "DepthwiseConv2D": "#2f5d8a",
    "MaxPooling2D": "#f58518", "AveragePooling2D": "#ffbf79",
    "GlobalAveragePooling2D": "#e45756",
    "BatchNormalization": "#b279a2", "Dropout": "#9d9d9d", "Flatten": "#9d755d",
    "Dense": "#54a24b", "Activation": "#ff9da6", "Deskew": "#72b7b2",
}
GAP = 18            # pixels between one box and the next
LABEL_ROOM = 64     # a layer's least room along the row, so labels (alternating) fit
BAR_WIDTH = 10      # a flat vector's thickness
MAX_HEIGHT = 150    # the tallest box, whatever the shape


@dataclass(frozen=True)
class Box:
    """One layer (or the input) as a box: where it sits and how large it is, in pixels."""

    index: int                  # 0 for the input, then the layer's 1-based index
    name: str
    type: str
    label: str                  # e.g. "Conv2D 32 3×3"
    shape: tuple[int, ...]      # the output shape
    params: int
    macs: int
    x: float                    # the front face's left edge
    width: float                # thickness along the row (channels, or a bar)
    height: float               # the front face's height (map size or vector length)
    depth: float                # the slanted depth, drawn up and to the right (map width)
    colour: str
    y: float = 0.0              # the front face's centre (rows below the first are lower)

    @property
    def caption(self) -> str:
        """Type, shape and parameters on three lines.

        >>> boxes(ModelSpec("t", [{"type": "Flatten"},
        ...     {"type": "Dense", "units": 10, "activation": "softmax"}]))[2].caption
        'Dense 10\\n10\\n7,850 params'
        """
        return f"{self.label}\n{shape_text(self.shape)}\n{plural(self.params, 'param')}"


def log_size(n: int, low: float, per_doubling: float, high: float = MAX_HEIGHT) -> float:
    """``low`` for n = 1, ``per_doubling`` more each time n doubles, at most ``high``
    (to a tenth of a pixel).

    >>> log_size(1, 8, 10), log_size(4, 8, 10), log_size(10 ** 9, 8, 10, high=100)
    (8.0, 28.0, 100.0)
    """
    return round(float(min(high, low + per_doubling * math.log2(max(n, 1)))), 1)


def box_size(shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(width, height, depth) of a box for an output shape: a map h×w×c or a vector n.

    Larger outputs give larger boxes: height follows h (or n), width the channels, depth w.

    >>> box_size((28, 28, 1)), box_size((1, 1, 512))
    ((4.0, 60.1, 15.0), (58.0, 12.0, 3.0))
    >>> box_size((10,)), box_size((1600,))
    ((10.0, 38.9, 0.0), (10.0, 102.6, 0.0))
    """
    if len(shape) == 3:
        h, w, c = shape
        return (log_size(c, 4, 6, high=72), log_size(h, 12, 10),
                log_size(w, 3, 2.5, high=MAX_HEIGHT / 3))
    return float(BAR_WIDTH), log_size(math.prod(shape), 10, 8.7), 0.0


def _input_box() -> Box:
    width, height, depth = box_size(INPUT_SHAPE)
    return Box(0, "input", INPUT, INPUT, INPUT_SHAPE, 0, 0, 0.0, width, height, depth,
               COLOURS[INPUT])


def layout(infos: list[LayerInfo]) -> list[Box]:
    """The input and one box per layer, left to right, each with room for its label.

    >>> spec = ModelSpec("t", [{"type": "Flatten"},
    ...     {"type": "Dense", "units": 10, "activation": "softmax"}])
    >>> [(b.type, b.x, b.shape) for b in layout(infer_shapes(spec))]
    [('Input', 0.0, (28, 28, 1)), ('Flatten', 64.0, (784,)), ('Dense', 128.0, (10,))]
    """
    placed = [_input_box()]
    for info in infos:
        last = placed[-1]
        x = last.x + max(last.width + last.depth + GAP, LABEL_ROOM)
        width, height, depth = box_size(info.output_shape)
        placed.append(Box(info.index, info.name, info.type, info.label, info.output_shape,
                          info.total_params, info.macs, x, width, height, depth,
                          COLOURS.get(info.type, COLOURS[INPUT])))
    return placed


def boxes(spec: ModelSpec) -> list[Box]:
    """The boxes of a spec (raises SpecError, as :func:`core.spec.infer_shapes` does)."""
    return layout(infer_shapes(spec))


def wrap(placed: list[Box], width: float, pitch: float) -> list[Box]:
    """The row broken into rows at most ``width`` wide (a box wider than that alone on
    its row), each row ``pitch`` below the one before and starting again at x = 0.

    >>> spec = ModelSpec("t", [{"type": "Flatten"}, {"type": "Dropout", "rate": 0.5},
    ...     {"type": "Dense", "units": 10, "activation": "softmax"}])
    >>> [(b.x, b.y) for b in wrap(boxes(spec), 150, 100)]
    [(0.0, 0.0), (64.0, 0.0), (128.0, 0.0), (0.0, -100.0)]
    """
    out, start, row = [], 0.0, 0
    for b in placed:
        if out and b.x + b.width + b.depth - start > width:
            start, row = b.x, row + 1
        out.append(replace(b, x=b.x - start, y=0.0 - row * pitch))
    return out


def shade(colour: str, factor: float) -> str:
    """A hex colour made lighter (factor > 1, towards white) or darker (< 1).

    >>> shade("#4c78a8", 0.5), shade("#4c78a8", 1.5), shade("#ffffff", 2)
    ('#263c54', '#a6bcd4', '#ffffff')
    """
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    if factor <= 1:
        rgb = [round(v * factor) for v in rgb]
    else:
        rgb = [round(v + (255 - v) * min(factor - 1, 1)) for v in rgb]
    return "#" + "".join(f"{v:02x}" for v in rgb)


def faces(placed: list[Box]) -> list[dict]:
    """Each box's front, top and side faces as rows of an area chart (x, y, y2 per corner
    column), grouped by ``face``; the top is lighter and the side darker than the front.

    >>> rows = faces([_input_box()])
    >>> [(r["face"], r["x"], r["y"], r["y2"]) for r in rows if r["face"] == "0 side"]
    [('0 side', 4.0, -30.05, 30.05), ('0 side', 19.0, -15.05, 45.05)]
    """
    rows = []
    for b in placed:
        left, right, d = b.x, b.x + b.width, b.depth
        bottom, top = b.y - b.height / 2, b.y + b.height / 2
        # The top face is a parallelogram: between its lower edge (front, then right
        # slant) and its upper edge (left slant, then back), evaluated at its corners.
        top_xs = sorted({left, right, left + d, right + d})
        polygons = {   # corner columns (x, lower y, upper y), sorted by x
            "front": ([(left, bottom, top), (right, bottom, top)], 1.0),
            "top": ([(x, top + max(0.0, x - right), top + min(d, x - left))
                     for x in top_xs], 1.35),
            "side": ([(right, bottom, top), (right + d, bottom + d, top + d)], 0.75),
        }
        for face, (corners, factor) in polygons.items():
            if d == 0 and face != "front":
                continue
            rows += [{"face": f"{b.index} {face}", "layer": b.index, "name": b.name,
                      "x": x, "y": y, "y2": y2, "colour": shade(b.colour, factor)}
                     for x, y, y2 in corners]
    return rows
