"""Layer specs: a model as plain, JSON-serialisable data, validated before Keras is touched.

A spec is a name plus an ordered list of layers; each layer is a dict with a ``type``
and that type's parameters, e.g. ``{"type": "Conv2D", "filters": 32, "kernel_size": 3}``.
:func:`infer_shapes` walks the stack in pure Python (output shapes, parameters, MACs), so
validation and statistics need no TensorFlow. :func:`core.build.build_model` turns a valid
spec into a ``keras.Model``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from core.errors import SpecError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
MAX_LAYERS = 100
MAX_PARAMS = 50_000_000
MAX_JSON_BYTES = 1_000_000
ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu", "gelu",
               "silu", "leaky_relu")
PADDINGS = ("valid", "same")

# type -> {param: (kind, default, low, high)}; default None means required.
# kind: "int", "float", "choice" (low holds the choices), "bool".
_SCHEMA: dict[str, dict[str, tuple]] = {
    "Conv2D": {"filters": ("int", None, 1, 1024), "kernel_size": ("int", 3, 1, 11),
               "strides": ("int", 1, 1, 4), "padding": ("choice", "valid", PADDINGS, None),
               "activation": ("choice", "relu", ACTIVATIONS, None),
               "use_bias": ("bool", True, None, None)},
    "MaxPooling2D": {"pool_size": ("int", 2, 1, 8), "strides": ("int", None, 1, 8),
                     "padding": ("choice", "valid", PADDINGS, None)},
    "AveragePooling2D": {"pool_size": ("int", 2, 1, 8), "strides": ("int", None, 1, 8),
                         "padding": ("choice", "valid", PADDINGS, None)},
    "GlobalAveragePooling2D": {},
    "BatchNormalization": {},
    "Dropout": {"rate": ("float", None, 0.0, 1.0)},
    "Flatten": {},
    "Dense": {"units": ("int", None, 1, 8192),
              "activation": ("choice", "relu", ACTIVATIONS, None),
              "use_bias": ("bool", True, None, None)},
    "Activation": {"activation": ("choice", None, ACTIVATIONS, None)},
}
LAYER_TYPES = tuple(_SCHEMA)
# Optional parameters whose default is "same as another parameter".
_OPTIONAL_NONE = {("MaxPooling2D", "strides"), ("AveragePooling2D", "strides")}
_NAME_PREFIX = {"Conv2D": "conv", "MaxPooling2D": "maxpool", "AveragePooling2D": "avgpool",
                "GlobalAveragePooling2D": "gap", "BatchNormalization": "bn",
                "Dropout": "dropout", "Flatten": "flatten", "Dense": "dense",
                "Activation": "act"}


@dataclass
class ModelSpec:
    """A named, ordered layer stack."""

    name: str
    layers: list[dict[str, Any]]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "input_shape": list(INPUT_SHAPE), "layers": [dict(l) for l in self.layers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> "ModelSpec":
        """Build from parsed JSON; structural problems raise SpecError."""
        if not isinstance(data, dict):
            raise SpecError("A model spec must be a JSON object with a \"layers\" list.")
        unknown = set(data) - {"name", "description", "input_shape", "layers"}
        if unknown:
            raise SpecError(f"The spec has unknown keys {sorted(unknown)}; only name, "
                            f"description, input_shape and layers are allowed.")
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise SpecError("A model spec needs a \"layers\" list.")
        if "input_shape" in data and list(data["input_shape"]) != list(INPUT_SHAPE):
            raise SpecError(f"The input shape must be {list(INPUT_SHAPE)} (MNIST), "
                            f"got {data['input_shape']}.")
        name = data.get("name", "custom")
        if not isinstance(name, str) or not name.strip():
            raise SpecError("The spec's name must be a non-empty string.")
        return cls(name=name.strip()[:64], layers=list(layers),
                   description=str(data.get("description", ""))[:500])

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelSpec":
        """Parse JSON text (size-limited) into a spec."""
        if len(text) > MAX_JSON_BYTES:
            raise SpecError(f"The spec file is {len(text):,} bytes; specs are at most "
                            f"{MAX_JSON_BYTES:,} bytes. Upload a spec exported by Layer Lab.")
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpecError(f"The spec is not valid JSON ({exc}). Export one from the "
                            f"Builder or Models page to see the format.") from None
        return cls.from_dict(data)


@dataclass
class LayerInfo:
    """One layer after shape inference."""

    index: int                      # 1-based
    name: str
    type: str
    params: dict[str, Any]          # normalised parameters (defaults filled in)
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0

    @property
    def total_params(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def label(self) -> str:
        """E.g. 'Conv2D 32 3×3', 'MaxPooling2D 2×2', 'Dense 128'."""
        p = self.params
        if self.type == "Conv2D":
            return f"Conv2D {p['filters']} {p['kernel_size']}×{p['kernel_size']}"
        if self.type in ("MaxPooling2D", "AveragePooling2D"):
            return f"{self.type} {p['pool_size']}×{p['pool_size']}"
        if self.type == "Dense":
            return f"Dense {p['units']}"
        if self.type == "Dropout":
            return f"Dropout {p['rate']:g}"
        if self.type == "Activation":
            return f"Activation {p['activation']}"
        return self.type


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def _normalise_layer(i: int, layer: Any) -> tuple[str, dict[str, Any]]:
    """Check one layer's type and parameters; return (type, params with defaults)."""
    if not isinstance(layer, dict):
        raise SpecError(f"Layer {i} must be an object like {{\"type\": \"Dense\", "
                        f"\"units\": 10}}, got {type(layer).__name__}.", layer=i)
    ltype = layer.get("type")
    if not isinstance(ltype, str) or ltype not in _SCHEMA:
        raise SpecError(f"Layer {i} has unknown type {ltype!r}. Use one of: "
                        f"{', '.join(LAYER_TYPES)}.", layer=i)
    schema = _SCHEMA[ltype]
    unknown = sorted(set(layer) - set(schema) - {"type", "name"})
    if unknown:
        allowed = ", ".join(schema) or "no parameters"
        raise SpecError(f"Layer {i} ({ltype}) has unknown parameter(s) "
                        f"{', '.join(unknown)}; it takes {allowed}.", layer=i)
    params: dict[str, Any] = {}
    for key, (kind, default, low, high) in schema.items():
        value = layer.get(key, default)
        if value is None:
            if (ltype, key) in _OPTIONAL_NONE:
                params[key] = None
                continue
            raise SpecError(f"Layer {i} ({ltype}) needs the parameter {key}.", layer=i)
        if kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"Layer {i} ({ltype}) needs a whole number for {key}, "
                                f"got {value!r}.", layer=i)
            if value < low:
                raise SpecError(f"Layer {i} ({ltype}) has {key}={value}; it must be at "
                                f"least {low}.", layer=i)
            if value > high:
                raise SpecError(f"Layer {i} ({ltype}) has {key}={value}; the most "
                                f"allowed is {high}.", layer=i)
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise SpecError(f"Layer {i} ({ltype}) needs a number for {key}, "
                                f"got {value!r}.", layer=i)
            if not low <= value < high:
                raise SpecError(f"Layer {i} ({ltype}) has {key}={value}; it must be in "
                                f"[{low:g}, {high:g}), e.g. 0.25.", layer=i)
            value = float(value)
        elif kind == "choice":
            if value not in low:
                raise SpecError(f"Layer {i} ({ltype}) has {key}={value!r}; choose one "
                                f"of: {', '.join(low)}.", layer=i)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise SpecError(f"Layer {i} ({ltype}) needs true or false for {key}, "
                                f"got {value!r}.", layer=i)
        params[key] = value
    return ltype, params


def _spatial(size: int, window: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - window) // stride + 1 if size >= window else 0


def infer_shapes(spec: ModelSpec) -> list[LayerInfo]:
    """Walk the stack: shapes, parameters and MACs per layer. Raises SpecError."""
    layers = spec.layers
    if not layers:
        raise SpecError("The stack is empty. Add layers, ending with Dense 10 softmax.")
    if len(layers) > MAX_LAYERS:
        raise SpecError(f"The stack has {len(layers):,} layers; at most {MAX_LAYERS} are "
                        f"allowed. Remove layers.")
    shape: tuple[int, ...] = INPUT_SHAPE
    infos: list[LayerInfo] = []
    counters: dict[str, int] = {}
    prev = "the input"
    for i, raw in enumerate(layers, start=1):
        ltype, p = _normalise_layer(i, raw)
        counters[ltype] = counters.get(ltype, 0) + 1
        name = f"{_NAME_PREFIX[ltype]}{counters[ltype]}"
        spatial = len(shape) == 3
        trainable = non_trainable = macs = 0
        if ltype in ("Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D") \
                and not spatial:
            raise SpecError(f"Layer {i} ({ltype}) needs a 2-D feature map but gets a flat "
                            f"vector from {prev}. Move it before the Flatten.", layer=i)
        if ltype == "Conv2D":
            h, w, c = shape
            k, s = p["kernel_size"], p["strides"]
            oh, ow = _spatial(h, k, s, p["padding"]), _spatial(w, k, s, p["padding"])
            if oh < 1 or ow < 1:
                raise SpecError(f"Layer {i} (Conv2D {k}×{k}) would shrink the {h}×{w} map "
                                f"to nothing. Use padding 'same', a smaller kernel, or "
                                f"fewer pooling layers before it.", layer=i)
            f = p["filters"]
            trainable = k * k * c * f + (f if p["use_bias"] else 0)
            macs = oh * ow * f * k * k * c
            out = (oh, ow, f)
        elif ltype in ("MaxPooling2D", "AveragePooling2D"):
            h, w, c = shape
            ps = p["pool_size"]
            s = p["strides"] or ps
            oh, ow = _spatial(h, ps, s, p["padding"]), _spatial(w, ps, s, p["padding"])
            if oh < 1 or ow < 1:
                raise SpecError(f"Layer {i} ({ltype} {ps}×{ps}) would shrink the {h}×{w} "
                                f"map to nothing. Remove it or use a smaller pool.", layer=i)
            out = (oh, ow, c)
        elif ltype == "GlobalAveragePooling2D":
            out = (shape[2],)
        elif ltype == "Flatten":
            out = (math.prod(shape),)
        elif ltype == "Dense":
            if spatial:
                raise SpecError(f"Layer {i} (Dense) gets a 2-D feature map "
                                f"({_shape_text(shape)}) from {prev}; add a Flatten or "
                                f"GlobalAveragePooling2D before it.", layer=i)
            n_in, u = shape[0], p["units"]
            trainable = n_in * u + (u if p["use_bias"] else 0)
            macs = n_in * u
            out = (u,)
        elif ltype == "BatchNormalization":
            c = shape[-1]
            trainable, non_trainable = 2 * c, 2 * c
            macs = math.prod(shape)  # one multiply-add per value once folded
            out = shape
        else:  # Dropout, Activation
            out = shape
        infos.append(LayerInfo(i, name, ltype, p, shape, out, trainable, non_trainable, macs))
        shape = out
        prev = f"layer {i} ({ltype})"
    last = infos[-1]
    if not (last.type == "Dense" and last.params["units"] == NUM_CLASSES
            and last.params["activation"] == "softmax"):
        raise SpecError(f"The last layer must be Dense with {NUM_CLASSES} units and softmax; "
                        f"layer {last.index} is {last.label}.", layer=last.index)
    total = sum(info.total_params for info in infos)
    if total > MAX_PARAMS:
        raise SpecError(f"The stack has {total:,} parameters; the limit is {MAX_PARAMS:,}. "
                        f"Use fewer filters/units or pool before the Dense layers.")
    return infos


def check_spec(spec: ModelSpec) -> SpecError | None:
    """The first problem with a spec, or None when it is valid."""
    try:
        infer_shapes(spec)
    except SpecError as err:
        return err
    return None


def validate(spec: ModelSpec) -> list[LayerInfo]:
    """Infer shapes, raising SpecError on the first problem (alias kept for clarity)."""
    return infer_shapes(spec)


def normalised_layers(spec: ModelSpec) -> list[dict[str, Any]]:
    """The stack with every default filled in (used for builds, diffs and exports)."""
    return [{"type": info.type, **info.params} for info in infer_shapes(spec)]


_NEW_LAYER_DEFAULTS: dict[str, dict[str, Any]] = {
    "Conv2D": {"filters": 16, "kernel_size": 3},
    "MaxPooling2D": {"pool_size": 2},
    "AveragePooling2D": {"pool_size": 2},
    "GlobalAveragePooling2D": {},
    "BatchNormalization": {},
    "Dropout": {"rate": 0.25},
    "Flatten": {},
    "Dense": {"units": 64, "activation": "relu"},
    "Activation": {"activation": "relu"},
}


def default_layer(ltype: str) -> dict[str, Any]:
    """A new layer of ``ltype`` with sensible starting parameters."""
    if ltype not in _NEW_LAYER_DEFAULTS:
        raise SpecError(f"Unknown layer type {ltype!r}. Use one of: {', '.join(LAYER_TYPES)}.")
    return {"type": ltype, **_NEW_LAYER_DEFAULTS[ltype]}


def layer_choices(ltype: str) -> dict[str, tuple]:
    """The parameter schema of a layer type: {param: (kind, default, low, high)}."""
    return dict(_SCHEMA[ltype])
