"""One number, explained: how a single output value of a layer is computed for a digit.

For a convolution cell (row, column, channel) of a layer's output: the receptive field on
the layer's input, the kernel slice, the element-wise products, their sum per input
channel, the bias, the activation and the value. The same for a batch-norm cell (the
affine step with the moving statistics), a pooling cell (the winner, or the average) and
a Dense unit (its contributions from the previous layer). The arithmetic is plain NumPy
in float64; TensorFlow is used only to read a layer's input and output for the digit
(a sub-model from ``model.inputs``, built once per model and layer), so a test can check
that the explained value is the model's own.

Axis convention: maps are (rows, columns, channels), as Keras' channels_last; windows
are (k, k, channels). 'same' padding follows TensorFlow: the padding total is split with
the smaller half on the top/left. The sandbox (:func:`window_plan`) uses the shape rule
of :mod:`core.layers`. No streamlit here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import LayerLabError
from core.layers import KERNEL, PADDINGS, STRIDES, _spatial

CONV_TYPES = ("Conv2D", "DepthwiseConv2D")
POOL_TYPES = ("MaxPooling2D", "AveragePooling2D")
EXPLAINED = (*CONV_TYPES, "BatchNormalization", *POOL_TYPES, "Dense")
SANDBOX_MAX = 32                 # the sandbox's largest input side (a grid one can read)
TOP_CONTRIBUTIONS = 10

_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: max(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)),
    "tanh": math.tanh,
    "elu": lambda x: x if x > 0 else math.expm1(x),
    "selu": lambda x: 1.0507009873554805 * (x if x > 0 else
                                            1.6732632423543772 * math.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x / (1.0 + math.exp(-x)),
    "leaky_relu": lambda x: x if x > 0 else 0.2 * x,
}


def activate(name: str, x: float) -> float:
    """One scalar through a Keras activation by name (softmax needs the whole vector).

    >>> activate("relu", -2.0), activate("linear", -2.0), round(activate("tanh", 1.0), 4)
    (0.0, -2.0, 0.7616)
    """
    if name not in _ACTIVATIONS:
        raise LayerLabError(f"The activation {name!r} cannot be explained cell by cell; "
                            "pick another layer.")
    return float(_ACTIVATIONS[name](float(x)))


# -- windows -----------------------------------------------------------------------------
def pad_before(size: int, k: int, stride: int, padding: str) -> int:
    """Rows (or columns) of zeros TensorFlow adds before the map for 'same' padding.

    >>> pad_before(28, 5, 2, "same"), pad_before(28, 3, 1, "same")
    (1, 1)
    >>> pad_before(28, 3, 1, "valid")
    0
    """
    if padding != "same":
        return 0
    out = _spatial(size, k, stride, "same")
    return max((out - 1) * stride + k - size, 0) // 2


def window(x: np.ndarray, row: int, col: int, k: int, stride: int,
           padding: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The k×k window of map ``x`` (h, w, c) under output cell (row, col): the values
    (padding read as 0), a mask of the cells inside the map, and the window's top-left
    corner in map coordinates (negative inside the padding).

    >>> x = np.arange(16.).reshape(4, 4, 1)
    >>> vals, inside, top, left = window(x, 0, 0, 3, 1, "same")
    >>> vals[..., 0].tolist(), int(inside.sum()), top, left
    ([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 4.0, 5.0]], 4, -1, -1)
    """
    h, w, c = x.shape
    top = row * stride - pad_before(h, k, stride, padding)
    left = col * stride - pad_before(w, k, stride, padding)
    vals = np.zeros((k, k, c), np.float64)
    inside = np.zeros((k, k), bool)
    rows = range(max(top, 0), min(top + k, h))
    cols = range(max(left, 0), min(left + k, w))
    if len(rows) and len(cols):
        vals[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = \
            x[rows.start:rows.stop, cols.start:cols.stop]
        inside[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = True
    return vals, inside, top, left


# -- results -----------------------------------------------------------------------------
@dataclass
class CellExplanation:
    """How one output value came about; ``model_value`` is what the model computed."""

    layer: str
    type: str
    cell: tuple[int, ...]                       # (row, col, channel) or (unit,)
    value: float                                # the value recomputed here
    model_value: float = float("nan")
    steps: list[str] = field(default_factory=list)   # the arithmetic, one line each
    pre_activation: float = float("nan")        # conv and Dense: sum + bias
    top: int = 0                                # receptive field on the layer's input
    left: int = 0
    size: int = 1
    inside: np.ndarray | None = None            # (k, k) cells inside the map
    patch: np.ndarray | None = None             # (k, k, c_in) input values (0 in padding)
    kernel: np.ndarray | None = None            # (k, k, c_in) weights
    products: np.ndarray | None = None          # (k, k, c_in) patch × kernel
    channel_sums: np.ndarray | None = None      # (c_in,) products summed per channel
    contributions: np.ndarray | None = None     # Dense: weight × input, one per input
    picture: np.ndarray | None = None           # Dense after Flatten: (h, w) map of them
    winner: tuple[int, int] | None = None       # max pooling: the winning input cell
    source: np.ndarray | None = None            # the layer's whole input for this digit

    @property
    def matches(self) -> bool:
        """Whether the recomputed value equals the model's (float32 rounding allowed)."""
        return bool(np.isclose(self.value, self.model_value, rtol=1e-5, atol=1e-5))


def _check_cell(out_shape: tuple[int, ...], cell: tuple[int, ...], name: str) -> None:
    if len(cell) != len(out_shape) or any(not 0 <= int(i) < n
                                          for i, n in zip(cell, out_shape)):
        bounds = " × ".join(str(n) for n in out_shape)
        raise LayerLabError(f"That cell is outside {name}'s output ({bounds}); pick row, "
                            "column and channel within it.")


# -- the arithmetic (pure NumPy) ----------------------------------------------------------
def conv_cell(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, *, stride: int,
              padding: str, activation: str, cell: tuple[int, int, int],
              depthwise: bool = False, name: str = "conv") -> CellExplanation:
    """One Conv2D (or DepthwiseConv2D) output cell from the layer input ``x`` (h, w, c)
    and its kernel (k, k, c_in, filters or multiplier).

    >>> x = np.arange(16.).reshape(4, 4, 1)
    >>> e = conv_cell(x, np.ones((3, 3, 1, 1)), np.array([0.5]), stride=1,
    ...               padding="valid", activation="relu", cell=(0, 0, 0))
    >>> e.value, e.channel_sums.tolist(), e.steps[-1]
    (45.5, [45.0], 'relu(45.5) = 45.5')
    """
    k = kernel.shape[0]
    patch, inside, top, left = window(np.asarray(x, np.float64), cell[0], cell[1], k,
                                      stride, padding)
    weights = np.asarray(kernel, np.float64)
    if depthwise:                       # output channel = input channel × multiplier + m
        c_in, m = divmod(cell[2], kernel.shape[3])
        patch, weights = patch[..., c_in:c_in + 1], weights[:, :, c_in:c_in + 1, m]
    else:
        weights = weights[..., cell[2]]
    products = patch * weights
    sums = products.sum(axis=(0, 1))
    b = float(bias[cell[2]]) if bias is not None else 0.0
    pre = float(sums.sum()) + b
    value = activate(activation, pre)
    steps = [f"sum of {products.size} products = {sums.sum():.6g}"
             + (f" ({len(sums)} input channels)" if len(sums) > 1 else ""),
             f"+ bias {b:.6g} = {pre:.6g}", f"{activation}({pre:.6g}) = {value:.6g}"]
    return CellExplanation(name, "DepthwiseConv2D" if depthwise else "Conv2D",
                           tuple(cell), value, steps=steps, pre_activation=pre, top=top,
                           left=left, size=k,
                           inside=inside, patch=patch, kernel=weights, products=products,
                           channel_sums=sums)


def batchnorm_cell(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                   variance: np.ndarray, epsilon: float, cell: tuple[int, ...],
                   name: str = "bn") -> CellExplanation:
    """One batch-norm value at inference: γ·(x − moving mean)/√(moving variance + ε) + β.

    >>> e = batchnorm_cell(np.array([[[3.0]]]), np.array([2.0]), np.array([1.0]),
    ...                    np.array([1.0]), np.array([4.0]), 0.0, (0, 0, 0))
    >>> e.value
    3.0
    """
    c = cell[-1]
    v = float(np.asarray(x, np.float64)[cell])
    g, b, mu, var = (float(a[c]) for a in (gamma, beta, mean, variance))
    scale = g / math.sqrt(var + epsilon)
    value = (v - mu) * scale + b
    steps = [f"input {v:.6g} − moving mean {mu:.6g} = {v - mu:.6g}",
             f"÷ √(moving variance {var:.6g} + ε {epsilon:g}) × γ {g:.6g} "
             f"= {(v - mu) * scale:.6g}", f"+ β {b:.6g} = {value:.6g}"]
    return CellExplanation(name, "BatchNormalization", tuple(cell), value, steps=steps)


def pool_cell(x: np.ndarray, *, size: int, stride: int, padding: str, kind: str,
              cell: tuple[int, int, int], name: str = "pool") -> CellExplanation:
    """One max- or average-pooling cell: the winner, or the mean of the cells inside the
    map (padding is never counted, as in TensorFlow).

    >>> e = pool_cell(np.arange(16.).reshape(4, 4, 1), size=2, stride=2, padding="valid",
    ...               kind="MaxPooling2D", cell=(1, 0, 0))
    >>> e.value, e.winner
    (13.0, (3, 1))
    """
    patch, inside, top, left = window(np.asarray(x, np.float64), cell[0], cell[1], size,
                                      stride, padding)
    values = patch[..., cell[2]]
    if kind == "MaxPooling2D":
        masked = np.where(inside, values, -np.inf)
        r, c = np.unravel_index(int(np.argmax(masked)), masked.shape)
        value = float(masked[r, c])
        winner = (top + int(r), left + int(c))
        steps = [f"the largest of {int(inside.sum())} values is {value:.6g}, at row "
                 f"{winner[0]}, column {winner[1]}"]
    else:
        value, winner = float(values[inside].mean()), None
        steps = [f"the mean of {int(inside.sum())} values is {value:.6g}"]
    return CellExplanation(name, kind, tuple(cell), value, steps=steps, top=top, left=left,
                           size=size, inside=inside, patch=patch[..., cell[2]:cell[2] + 1],
                           winner=winner)


def dense_unit(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, *,
               activation: str, unit: int, map_shape: tuple[int, ...] | None = None,
               name: str = "dense") -> CellExplanation:
    """One Dense unit: every input × its weight, their sum, the bias and the activation.
    ``map_shape`` (h, w, c): the input was a flattened map, so the contributions are also
    given as an (h, w) picture (summed over channels). Softmax needs every unit's logit.

    >>> e = dense_unit(np.array([1.0, 2.0]), np.array([[3.0], [-1.0]]), np.array([0.5]),
    ...                activation="relu", unit=0)
    >>> e.contributions.tolist(), e.value
    ([3.0, -2.0], 1.5)
    """
    xs = np.asarray(x, np.float64).ravel()
    contributions = xs * np.asarray(weights, np.float64)[:, unit]
    b = float(bias[unit]) if bias is not None else 0.0
    pre = float(contributions.sum()) + b
    if activation == "softmax":          # needs every unit's logit
        logits = xs @ np.asarray(weights, np.float64) + (0.0 if bias is None else bias)
        probs = np.exp(logits - logits.max())
        value = float(probs[unit] / probs.sum())
    else:
        value = activate(activation, pre)
    order = np.argsort(-np.abs(contributions))[:TOP_CONTRIBUTIONS]
    steps = [f"sum of {len(xs)} contributions = {contributions.sum():.6g} (largest: "
             + ", ".join(f"input {int(i)}: {contributions[i]:+.4g}" for i in order[:3])
             + ")",
             f"+ bias {b:.6g} = {pre:.6g}",
             (f"{activation}({pre:.6g}) = {value:.6g}" if activation != "softmax" else
              f"softmax over all {weights.shape[1]} logits: e^{pre:.4g} / Σ e^logit "
              f"= {value:.6g}")]
    picture = None
    if map_shape is not None and len(map_shape) == 3:
        picture = contributions.reshape(map_shape).sum(axis=-1)
    return CellExplanation(name, "Dense", (unit,), value, steps=steps, pre_activation=pre,
                           contributions=contributions, picture=picture)


# -- the sandbox (pure) ------------------------------------------------------------------
@dataclass(frozen=True)
class WindowPlan:
    """Where a k×k window lands on a size×size input: output side, formula, positions."""

    size: int
    kernel: int
    stride: int
    padding: str
    out: int
    formula: str
    pad: int                                    # padding before (top/left)
    positions: list[tuple[int, int]]            # top-left corners, row by row


def window_plan(size: int, kernel: int, stride: int, padding: str) -> WindowPlan:
    """The output side and each window position, by the shape rule of :mod:`core.layers`.

    >>> p = window_plan(5, 3, 2, "valid")
    >>> p.out, p.formula, p.positions
    (2, '⌊(5 − 3) / 2⌋ + 1 = 2', [(0, 0), (0, 2), (2, 0), (2, 2)])
    >>> window_plan(5, 3, 2, "same").formula
    '⌈5 / 2⌉ = 3'
    >>> window_plan(2, 3, 1, "valid")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    core.errors.LayerLabError: A 3×3 kernel does not fit a 2×2 input without padding: ...
    """
    if padding not in PADDINGS:
        raise LayerLabError(f"Padding must be one of {', '.join(PADDINGS)}.")
    for label, value, low, high in (("input size", size, 1, SANDBOX_MAX),
                                    ("kernel", kernel, KERNEL.low, KERNEL.high),
                                    ("stride", stride, STRIDES.low, STRIDES.high)):
        if not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise LayerLabError(f"The {label} must be a whole number from {low} to {high}.")
    if padding == "valid" and kernel > size:
        raise LayerLabError(f"A {kernel}×{kernel} kernel does not fit a {size}×{size} "
                            f"input without padding: use padding 'same', a kernel of at "
                            f"most {size}, or a larger input.")
    out = _spatial(size, kernel, stride, padding)
    formula = (f"⌈{size} / {stride}⌉ = {out}" if padding == "same"
               else f"⌊({size} − {kernel}) / {stride}⌋ + 1 = {out}")
    pad = pad_before(size, kernel, stride, padding)
    starts = [i * stride - pad for i in range(out)]
    return WindowPlan(size, kernel, stride, padding, out, formula, pad,
                      [(r, c) for r in starts for c in starts])


def plan_grid(plan: WindowPlan, step: int) -> np.ndarray:
    """A small picture code of the sandbox at one step: 0 outside the input (padding),
    1 an input cell, 2 a cell under the window (padded frame of ``plan.pad`` cells).

    >>> plan_grid(window_plan(4, 3, 1, "valid"), 3).tolist()[1]
    [1, 2, 2, 2]
    """
    extra = max((plan.out - 1) * plan.stride + plan.kernel - plan.size - plan.pad, 0)
    n = plan.size + plan.pad + extra
    grid = np.zeros((n, n), np.uint8)
    grid[plan.pad:plan.pad + plan.size, plan.pad:plan.pad + plan.size] = 1
    r, c = plan.positions[step % len(plan.positions)]
    grid[r + plan.pad:r + plan.pad + plan.kernel,
         c + plan.pad:c + plan.pad + plan.kernel] = 2
    return grid


# -- reading a real model (TensorFlow, once per model and layer) --------------------------
def explainable(model: Any) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, type, output shape) of the layers whose cells can be explained."""
    return [(layer.name, type(layer).__name__,
             tuple(int(d) for d in layer.output.shape[1:]))
            for layer in model.layers if type(layer).__name__ in EXPLAINED]


def not_explained(model: Any) -> str | None:
    """A sentence about the model's SeparableConv2D layers (not explained cell by cell),
    or None when it has none."""
    names = [layer.name for layer in model.layers
             if type(layer).__name__ == "SeparableConv2D"]
    if not names:
        return None
    return (f"{', '.join(names)} (SeparableConv2D) cannot be picked here: each is a "
            "depthwise k×k step on every channel followed by a 1×1 convolution across "
            "them, two sums in one layer. A DepthwiseConv2D followed by a 1×1 Conv2D "
            "computes the same thing, and both of those can be explained.")


def layer_io(model: Any, name: str, digit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The layer's input and output for one digit (no batch axis), float32."""
    import keras  # noqa: PLC0415 - heavy, only when a cell is explained

    from core.data import to_float  # noqa: PLC0415
    from core.model_cache import cached  # noqa: PLC0415

    layer = model.get_layer(name)

    def build() -> Any:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        return keras.Model(inputs, [layer.input, layer.output], name=f"explain_{name}")

    sub = cached(model, f"explain:{name}", build)
    x_in, x_out = sub(to_float(digit), training=False)
    return np.asarray(x_in)[0], np.asarray(x_out)[0]


def explain_cell(model: Any, digit: np.ndarray, name: str,
                 cell: tuple[int, ...]) -> CellExplanation:
    """How ``name``'s output ``cell`` is computed for ``digit``, beside the model's own."""
    layer = model.get_layer(name)
    kind = type(layer).__name__
    if kind not in EXPLAINED:
        raise LayerLabError(f"{name} is a {kind} layer: only convolution, batch-norm, "
                            "pooling and Dense cells can be explained.")
    x_in, x_out = layer_io(model, name, digit)
    _check_cell(x_out.shape, tuple(cell), name)
    cfg = layer.get_config()
    weights = [np.asarray(w) for w in layer.get_weights()]
    if kind in CONV_TYPES:
        act = cfg.get("activation", "linear")
        result = conv_cell(x_in, weights[0], weights[1] if cfg["use_bias"] else None,
                           stride=int(cfg["strides"][0]), padding=cfg["padding"],
                           activation=act, cell=tuple(cell),
                           depthwise=kind == "DepthwiseConv2D", name=name)
    elif kind == "BatchNormalization":
        gamma, beta, mean, var = weights
        result = batchnorm_cell(x_in, gamma, beta, mean, var, float(cfg["epsilon"]),
                                tuple(cell), name=name)
    elif kind in POOL_TYPES:
        result = pool_cell(x_in, size=int(cfg["pool_size"][0]),
                           stride=int(cfg["strides"][0]), padding=cfg["padding"],
                           kind=kind, cell=tuple(cell), name=name)
    else:
        result = _dense(model, layer, x_in, weights, cfg, int(cell[0]))
    result.model_value = float(x_out[tuple(cell)])
    result.source = x_in
    return result


def _dense(model: Any, layer: Any, x_in: np.ndarray, weights: list[np.ndarray],
           cfg: dict, unit: int) -> CellExplanation:
    """A Dense unit, with the picture when the previous layer flattened a map."""
    map_shape = None
    index = model.layers.index(layer)
    if index > 0 and type(model.layers[index - 1]).__name__ == "Flatten":
        map_shape = tuple(int(d) for d in model.layers[index - 1].input.shape[1:])
    return dense_unit(x_in, weights[0], weights[1] if cfg["use_bias"] else None,
                      activation=cfg.get("activation", "linear"), unit=unit,
                      map_shape=map_shape, name=layer.name)


def input_field(model: Any, name: str, row: int,
                col: int) -> tuple[int, int, int, int] | None:
    """The rows and columns of the model's input that output cell (row, col) of ``name``
    depends on, (top, left, bottom, right) inclusive and clipped to the input; None when
    it depends on the whole input (a Dense layer, anything after Flatten or Deskew)."""
    layers = list(model.layers)
    index = layers.index(model.get_layer(name))
    rows, cols = (row, row), (col, col)
    for layer in reversed(layers[:index + 1]):
        kind = type(layer).__name__
        # Deskew reads the whole digit's moments before it moves a pixel.
        if kind in ("Dense", "Flatten", "GlobalAveragePooling2D", "Deskew"):
            return None
        cfg = layer.get_config()
        k = cfg.get("kernel_size", cfg.get("pool_size"))
        if k is None:                       # batch norm, activation, dropout: cell by cell
            continue
        k, s, h, w = int(k[0]), int(cfg["strides"][0]), *layer.input.shape[1:3]
        top, left = pad_before(h, k, s, cfg["padding"]), pad_before(w, k, s, cfg["padding"])
        rows = (rows[0] * s - top, rows[1] * s - top + k - 1)
        cols = (cols[0] * s - left, cols[1] * s - left + k - 1)
    h, w = model.inputs[0].shape[1:3]
    return max(rows[0], 0), max(cols[0], 0), min(rows[1], h - 1), min(cols[1], w - 1)
