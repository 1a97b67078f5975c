"""The table of layer types: one entry per type, the single owner of what a layer is.

Each :class:`LayerType` holds its parameters (:class:`Param`: kind, default, range, the
Builder's slider end, Keras' own default), its name prefix, its short label, how it changes
the shape (output shape, parameters and MACs, in a small function per type) and what an
imported Keras config must hold. The table's key is the Keras class that builds the layer
and every parameter is that class's keyword argument, so building (:mod:`core.build`),
exporting (:mod:`core.export`), importing (:func:`core.modelio.spec_from_keras`),
validating (:mod:`core.spec`) and the Builder's widgets all read this one table: a new
layer type is one entry in :data:`LAYERS` plus a test.

MACs (multiply-accumulates for one image): Conv2D out_h·out_w·filters·k²·in_channels;
DepthwiseConv2D out_h·out_w·k²·in_channels·multiplier; SeparableConv2D that plus the 1×1
pointwise step out_h·out_w·in_channels·multiplier·filters; Dense inputs·units;
BatchNormalization one per value (scale and shift, once folded); Deskew (Layer Lab's own,
:mod:`core.deskew`) 4·H·W·C for its two bilinear shifts plus 5·H·W for the moments; the
rest 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu", "gelu",
               "silu", "leaky_relu")
PADDINGS = ("valid", "same")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()   # Keras has no default for this argument


@dataclass(frozen=True)
class Param:
    """One parameter of a layer type: how it is checked, defaulted, shown and exported."""

    kind: str                 # "int", "float", "choice" or "bool"
    default: Any = None       # None: the spec must give it (unless ``same_as``)
    low: Any = None           # smallest int/float; for "choice", the choices
    high: Any = None          # largest int; for "float", the excluded upper bound
    ui_high: Any = None       # the Builder slider's end (None: ``high``)
    keras: Any = REQUIRED     # Keras' default, left out of exported code
    same_as: str = ""         # None is allowed and means "the value of this parameter"


@dataclass(frozen=True)
class LayerType:
    """One row of the layer table (its key is the Keras class name)."""

    prefix: str                       # layer names: conv1, conv2, ...
    infer: Callable                   # (shape, params) -> (out, trainable, non_trainable, macs)
    params: dict[str, Param] = field(default_factory=dict)
    label: str = ""                   # str.format template over the params; "" = the type
    needs: int = 0                    # input rank required: 3 a feature map, 1 a vector
    new: dict[str, Any] = field(default_factory=dict)          # a new layer in the Builder
    keras_fixed: dict[str, Any] = field(default_factory=dict)  # Keras config an import needs
    custom: bool = False      # Layer Lab's own class (core/deskew.py), not in keras.layers
    about: str = ""           # what a layer without settings does, for the Builder


class WindowTooLarge(Exception):
    """A window does not fit the map (turned into a sentence naming the layer)."""

    def __init__(self, window: int, size: tuple[int, int], advice: str) -> None:
        super().__init__(advice)
        self.window, self.size, self.advice = window, size, advice


def _spatial(size: int, window: int, stride: int, padding: str) -> int:
    """Output length of a sliding window: ``_spatial(28, 3, 1, 'valid')`` is 26.

    >>> _spatial(28, 3, 1, "valid"), _spatial(28, 5, 2, "same"), _spatial(2, 3, 1, "valid")
    (26, 14, 0)
    """
    if padding == "same":
        return math.ceil(size / stride)
    return (size - window) // stride + 1 if size >= window else 0


def _window(shape: tuple, k: int, s: int, padding: str, advice: str) -> tuple[int, int]:
    h, w, _ = shape
    oh, ow = _spatial(h, k, s, padding), _spatial(w, k, s, padding)
    if oh < 1 or ow < 1:
        raise WindowTooLarge(k, (h, w), advice)
    return oh, ow


_CONV_ADVICE = "Use padding 'same', a smaller kernel, or fewer pooling layers before it."


def _conv(shape: tuple, p: dict) -> tuple:
    """Conv2D: k²·in·filters weights (+ bias); MACs out_h·out_w·filters·k²·in.

    >>> _conv((28, 28, 1), {"filters": 32, "kernel_size": 3, "strides": 1,
    ...     "padding": "valid", "use_bias": True})
    ((26, 26, 32), 320, 0, 194688)
    """
    k, f, c = p["kernel_size"], p["filters"], shape[2]
    oh, ow = _window(shape, k, p["strides"], p["padding"], _CONV_ADVICE)
    return (oh, ow, f), k * k * c * f + (f if p["use_bias"] else 0), 0, oh * ow * f * k * k * c


def _depthwise(shape: tuple, p: dict) -> tuple:
    """DepthwiseConv2D: one k×k filter per input channel and multiplier.

    >>> _depthwise((14, 14, 8), {"kernel_size": 3, "strides": 2, "padding": "same",
    ...     "depth_multiplier": 1, "use_bias": False})
    ((7, 7, 8), 72, 0, 3528)
    """
    k, out_c = p["kernel_size"], shape[2] * p["depth_multiplier"]
    oh, ow = _window(shape, k, p["strides"], p["padding"], _CONV_ADVICE)
    return (oh, ow, out_c), k * k * out_c + (out_c if p["use_bias"] else 0), 0, \
        oh * ow * k * k * out_c


def _separable(shape: tuple, p: dict) -> tuple:
    """SeparableConv2D: a depthwise k×k step (no bias) then a 1×1 pointwise one.

    >>> _separable((28, 28, 8), {"filters": 16, "kernel_size": 3, "strides": 1,
    ...     "padding": "valid", "depth_multiplier": 2, "use_bias": True})
    ((26, 26, 16), 416, 0, 270400)
    """
    (oh, ow, mid), depthwise, _, macs = _depthwise(shape, {**p, "use_bias": False})
    f = p["filters"]
    return (oh, ow, f), depthwise + mid * f + (f if p["use_bias"] else 0), 0, \
        macs + oh * ow * mid * f


def _pool(shape: tuple, p: dict) -> tuple:
    k = p["pool_size"]
    oh, ow = _window(shape, k, p["strides"] or k, p["padding"],
                     "Remove it or use a smaller pool.")
    return (oh, ow, shape[2]), 0, 0, 0


def _dense(shape: tuple, p: dict) -> tuple:
    n, u = shape[0], p["units"]
    return (u,), n * u + (u if p["use_bias"] else 0), 0, n * u


def _batchnorm(shape: tuple, p: dict) -> tuple:
    """Scale and shift train; the moving mean and variance do not; one MAC per value."""
    c = shape[-1]
    return shape, 2 * c, 2 * c, math.prod(shape)


def _unchanged(shape: tuple, p: dict) -> tuple:
    return shape, 0, 0, 0


def _deskew(shape: tuple, p: dict) -> tuple:
    """Deskew: no weights; MACs of its two bilinear shifts (two neighbours blended per
    value each) and the moments' five sums.

    >>> _deskew((28, 28, 1), {})
    ((28, 28, 1), 0, 0, 7056)
    """
    h, w, c = shape
    return shape, 0, 0, 2 * 2 * h * w * c + 5 * h * w


def _int(default: Any, low: int, high: int, ui_high: int | None = None,
         keras: Any = REQUIRED, same_as: str = "") -> Param:
    return Param("int", default, low, high, ui_high, keras, same_as)


FILTERS = _int(None, 1, 1024, ui_high=256)
KERNEL = _int(3, 1, 11, ui_high=7)
STRIDES = _int(1, 1, 4, ui_high=3, keras=1)
DEPTH_MULTIPLIER = _int(1, 1, 16, ui_high=4, keras=1)
POOL = _int(2, 1, 8, ui_high=4, keras=2)             # MaxPooling2D's default in Keras
POOL_STRIDES = _int(None, 1, 8, ui_high=3, keras=None, same_as="pool_size")
PADDING = Param("choice", "valid", PADDINGS, keras="valid")
ACTIVATION = Param("choice", "relu", ACTIVATIONS, keras="linear")   # Keras: None = linear
USE_BIAS = Param("bool", True, keras=True)
_CHANNELS_LAST = {"data_format": "channels_last"}
_CONV_FIXED = {**_CHANNELS_LAST, "dilation_rate": 1}
_POOLING = LayerType("", _pool, {"pool_size": POOL, "strides": POOL_STRIDES,
                                 "padding": PADDING}, needs=3, new={"pool_size": 2},
                     keras_fixed=_CHANNELS_LAST)

LAYERS: dict[str, LayerType] = {
    "Conv2D": LayerType(
        "conv", _conv, {"filters": FILTERS, "kernel_size": KERNEL, "strides": STRIDES,
                        "padding": PADDING, "activation": ACTIVATION, "use_bias": USE_BIAS},
        "Conv2D {filters} {kernel_size}×{kernel_size}", needs=3,
        new={"filters": 16, "kernel_size": 3}, keras_fixed={**_CONV_FIXED, "groups": 1}),
    "SeparableConv2D": LayerType(
        "sepconv", _separable,
        {"filters": FILTERS, "kernel_size": KERNEL, "strides": STRIDES, "padding": PADDING,
         "depth_multiplier": DEPTH_MULTIPLIER, "activation": ACTIVATION, "use_bias": USE_BIAS},
        "SeparableConv2D {filters} {kernel_size}×{kernel_size}", needs=3,
        new={"filters": 16, "kernel_size": 3}, keras_fixed=_CONV_FIXED),
    "DepthwiseConv2D": LayerType(
        "dwconv", _depthwise,
        {"kernel_size": KERNEL, "strides": STRIDES, "padding": PADDING,
         "depth_multiplier": DEPTH_MULTIPLIER, "activation": ACTIVATION, "use_bias": USE_BIAS},
        "DepthwiseConv2D {kernel_size}×{kernel_size}", needs=3, new={"kernel_size": 3},
        keras_fixed=_CONV_FIXED),
    "MaxPooling2D": replace(_POOLING, prefix="maxpool",
                            label="MaxPooling2D {pool_size}×{pool_size}"),
    "AveragePooling2D": replace(       # unlike MaxPooling2D, Keras requires its pool_size
        _POOLING, prefix="avgpool", label="AveragePooling2D {pool_size}×{pool_size}",
        params={**_POOLING.params, "pool_size": replace(POOL, keras=REQUIRED)}),
    "GlobalAveragePooling2D": LayerType(
        "gap", lambda shape, p: ((shape[2],), 0, 0, 0), needs=3,
        keras_fixed={**_CHANNELS_LAST, "keepdims": False}),
    "BatchNormalization": LayerType(
        "bn", _batchnorm, keras_fixed={"axis": -1, "center": True, "scale": True,
                                       "renorm": False}),
    "Dropout": LayerType(
        "dropout", _unchanged, {"rate": Param("float", None, 0.0, 1.0, ui_high=0.9)},
        "Dropout {rate:g}", new={"rate": 0.25}, keras_fixed={"noise_shape": None}),
    "Flatten": LayerType("flatten", lambda shape, p: ((math.prod(shape),), 0, 0, 0),
                         keras_fixed=_CHANNELS_LAST),
    "Dense": LayerType(
        "dense", _dense, {"units": _int(None, 1, 8192, ui_high=1024),
                          "activation": ACTIVATION, "use_bias": USE_BIAS},
        "Dense {units}", needs=1, new={"units": 64, "activation": "relu"},
        keras_fixed={"quantization_config": None}),
    "Activation": LayerType(
        "act", _unchanged, {"activation": Param("choice", None, ACTIVATIONS)},
        "Activation {activation}", new={"activation": "relu"}),
    "Deskew": LayerType(
        "deskew", _deskew, needs=3, custom=True,
        about="Straightens a slanted digit and centres it (no weights to learn); put it "
              "first."),
}
LAYER_TYPES = tuple(LAYERS)


def layer_label(layer: dict[str, Any]) -> str:
    """A layer's short label from the table's template, defaults filled in; the type
    alone while a value the template needs is unset or the type is unknown.

    >>> layer_label({"type": "Conv2D", "filters": 32, "kernel_size": 3})
    'Conv2D 32 3×3'
    >>> layer_label({"type": "Dense"}), layer_label({"type": "Flatten"})
    ('Dense', 'Flatten')
    """
    kind = LAYERS.get(layer.get("type"))
    if kind is None or not kind.label:
        return str(layer.get("type"))
    values = {name: layer.get(name, p.default) for name, p in kind.params.items()}
    for name, p in kind.params.items():
        if values[name] is None and p.same_as:
            values[name] = values.get(p.same_as)
    if any(v is None for v in values.values()):
        return str(layer["type"])
    try:
        return kind.label.format(**values)
    except (KeyError, ValueError, IndexError):
        return str(layer["type"])
