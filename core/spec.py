"""Layer specs: a model as plain, JSON-serialisable data, validated before Keras is touched.

A spec is a name plus an ordered list of layers; each layer is a dict with a ``type``
and that type's parameters, e.g. ``{"type": "Conv2D", "filters": 32, "kernel_size": 3}``.

Which layer types exist and what their parameters are is :data:`core.layers.LAYERS`'s
alone; this module checks a stack against that table.

:func:`infer_shapes` walks the stack in pure Python (output shapes, parameters, MACs), so
validation and statistics need no TensorFlow; :func:`check_cost` adds the memory a batch
would need.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from core.errors import SpecError
from core.layers import (ACTIVATIONS, LAYER_TYPES, LAYERS, PADDINGS, Param,  # noqa: F401
                         WindowTooLarge, layer_label)

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
MAX_LAYERS = 100
MAX_PARAMS = 50_000_000
# Compute and memory caps: a valid but heavy stack (two Conv2D 512 'same', 1.85 G MACs per
# image, 6.1 GiB of activations at batch 1,024) held a class server for minutes. The
# heaviest preset, bulky_cnn, needs 10.0 M MACs and 0.9 GiB at batch 1,024 (0.11 GiB at its
# recipe's 128), so both caps leave it ample room.
MAX_MACS = 100_000_000                     # multiply-accumulates per image
MAX_ACTIVATION_BYTES = 2 * 1024 ** 3       # training activations at the chosen batch size
MAX_JSON_BYTES = 1_000_000


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
        """Build from parsed JSON; structural problems raise SpecError.

        >>> ModelSpec.from_dict({"layers": [], "input_shape": 5})
        Traceback (most recent call last):
        ...
        core.errors.SpecError: The input shape must be [28, 28, 1] (MNIST), got 5.
        """
        if not isinstance(data, dict):
            raise SpecError("A model spec must be a JSON object with a \"layers\" list.")
        unknown = sorted(map(str, set(data) - {"name", "description", "input_shape",
                                               "layers"}))
        if unknown:
            raise SpecError(f"The spec has unknown keys {_show(unknown)}; only name, "
                            f"description, input_shape and layers are allowed.")
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise SpecError("A model spec needs a \"layers\" list.")
        shape = data.get("input_shape", list(INPUT_SHAPE))
        if not isinstance(shape, list) or shape != list(INPUT_SHAPE):
            raise SpecError(f"The input shape must be {list(INPUT_SHAPE)} (MNIST), "
                            f"got {_show(shape)}.")
        name, description = data.get("name", "custom"), data.get("description") or ""
        if not isinstance(name, str) or not name.strip():
            raise SpecError("The spec's name must be a non-empty string.")
        if not isinstance(description, str):
            raise SpecError("The spec's description must be a string.")
        return cls(name=name.strip()[:64], layers=list(layers), description=description[:500])

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelSpec":
        """Parse JSON text (size-limited) into a spec."""
        if len(text) > MAX_JSON_BYTES:
            raise SpecError(f"The spec file is {len(text):,} bytes; specs are at most "
                            f"{MAX_JSON_BYTES:,} bytes. Upload a spec exported by Layer Lab.")
        try:
            data = json.loads(text)
        except RecursionError:
            raise SpecError("The spec is nested too deeply to be a layer stack; export one "
                            "from the Builder or Models page to see the format.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpecError(f"The spec is not valid JSON ({_clip(str(exc))}). Export one "
                            f"from the Builder or Models page to see the format.") from None
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
        """E.g. 'Conv2D 32 3×3', 'MaxPooling2D 2×2', 'Dense 128' (the table's template)."""
        return layer_label({"type": self.type, **self.params})


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as text, with thousands separators.

    >>> shape_text((13, 13, 32)), shape_text((1600,))
    ('13×13×32', '1,600')
    """
    return "×".join(f"{s:,}" for s in shape)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _show(value: Any) -> str:
    """A user's value in a message, short whatever they sent.

    >>> _show("x" * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…"
    """
    try:
        return _clip(repr(value), 40)
    except RecursionError:                 # nested deeper than repr will go
        return "a deeply nested value"


def _checked(where: str, key: str, param: Param, value: Any) -> Any:
    """One parameter's value, checked against its Param; raises SpecError (sans layer)."""
    if value is None:
        if param.same_as:
            return None
        raise SpecError(f"{where} needs the parameter {key}.")
    if param.kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} needs a whole number for {key}, got {_show(value)}.")
        if value < param.low:
            raise SpecError(f"{where} has {key}={_show(value)}; it must be at least "
                            f"{param.low:,}.")
        if value > param.high:
            raise SpecError(f"{where} has {key}={_show(value)}; the most allowed is "
                            f"{param.high}.")
    elif param.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise SpecError(f"{where} needs a number for {key}, got {_show(value)}.")
        if not param.low <= value < param.high:
            raise SpecError(f"{where} has {key}={value}; it must be in "
                            f"[{param.low:g}, {param.high:g}), e.g. 0.25.")
        value = float(value)
    elif param.kind == "choice":
        if not isinstance(value, str) or value not in param.low:
            raise SpecError(f"{where} has {key}={_show(value)}; choose one of: "
                            f"{', '.join(param.low)}.")
    elif not isinstance(value, bool):
        raise SpecError(f"{where} needs true or false for {key}, got {_show(value)}.")
    return value


def _normalise_layer(i: int, layer: Any) -> tuple[str, dict[str, Any]]:
    """Check one layer's type and parameters; return (type, params with defaults)."""
    if not isinstance(layer, dict):
        raise SpecError(f"Layer {i} must be an object like {{\"type\": \"Dense\", "
                        f"\"units\": 10}}, got {type(layer).__name__}.", layer=i)
    ltype = layer.get("type")
    if not isinstance(ltype, str) or ltype not in LAYERS:
        raise SpecError(f"Layer {i} has unknown type {_show(ltype)}. Use one of: "
                        f"{', '.join(LAYER_TYPES)}.", layer=i)
    schema = LAYERS[ltype].params
    unknown = sorted(map(str, set(layer) - set(schema) - {"type", "name"}))
    if unknown:
        allowed = ", ".join(schema) or "no parameters"
        raise SpecError(f"Layer {i} ({ltype}) has unknown parameter(s) "
                        f"{_clip(', '.join(unknown))}; it takes {allowed}.", layer=i)
    try:
        return ltype, {key: _checked(f"Layer {i} ({ltype})", key, param,
                                     layer.get(key, param.default))
                       for key, param in schema.items()}
    except SpecError as err:
        raise SpecError(str(err), layer=i) from None


def _infer_one(i: int, ltype: str, params: dict, shape: tuple, prev: str) -> tuple:
    """(out, trainable, non_trainable, macs) of layer ``i``, or a sentence naming it."""
    entry = LAYERS[ltype]
    if entry.needs == 3 and len(shape) != 3:
        raise SpecError(f"Layer {i} ({ltype}) needs a 2-D feature map but gets a flat "
                        f"vector from {prev}. Move it before the Flatten.", layer=i)
    if entry.needs == 1 and len(shape) != 1:
        raise SpecError(f"Layer {i} ({ltype}) gets a 2-D feature map ({shape_text(shape)}) "
                        f"from {prev}; add a Flatten or GlobalAveragePooling2D before it.",
                        layer=i)
    try:
        return entry.infer(shape, params)
    except WindowTooLarge as err:
        (h, w), k = err.size, err.window
        raise SpecError(f"Layer {i} ({ltype} {k}×{k}) would shrink the {h}×{w} map to "
                        f"nothing. {err.advice}", layer=i) from None


def infer_shapes(spec: ModelSpec) -> list[LayerInfo]:
    """Walk the stack: shapes, parameters and MACs per layer. Raises SpecError.

    >>> stack = [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]
    >>> [(i.name, i.output_shape, i.total_params) for i in infer_shapes(ModelSpec("t", stack))]
    [('flatten1', (784,), 0), ('dense1', (10,), 7850)]
    """
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
        ltype, params = _normalise_layer(i, raw)
        out, trainable, non_trainable, macs = _infer_one(i, ltype, params, shape, prev)
        counters[ltype] = counters.get(ltype, 0) + 1
        infos.append(LayerInfo(i, f"{LAYERS[ltype].prefix}{counters[ltype]}", ltype, params,
                               shape, out, trainable, non_trainable, macs))
        shape, prev = out, f"layer {i} ({ltype})"
    _check_output(infos[-1])
    _check_size(infos)
    return infos


def _check_output(last: LayerInfo) -> None:
    """The stack ends in Dense 10 softmax; otherwise say exactly what is off."""
    units, activation = last.params.get("units"), last.params.get("activation")
    if last.type != "Dense":
        problem = (f"layer {last.index} is {last.label}; add a Dense layer with "
                   f"{NUM_CLASSES} units and softmax after it")
    elif units != NUM_CLASSES and activation != "softmax":
        problem = (f"layer {last.index} (Dense) has {units:,} units and uses {activation}; "
                   f"set its units to {NUM_CLASSES} and its activation to softmax")
    elif units != NUM_CLASSES:
        problem = (f"layer {last.index} (Dense) has {units:,} units; set its units to "
                   f"{NUM_CLASSES}, one per digit")
    elif activation != "softmax":
        problem = (f"layer {last.index} ({last.label}) uses the {activation} activation; set "
                   f"its activation to softmax so it outputs probabilities")
    else:
        return
    raise SpecError(f"The last layer must be Dense with {NUM_CLASSES} units and softmax, "
                    f"but {problem}.", layer=last.index)


def _refuse_over(infos: list[LayerInfo], total_of: Callable[[list[LayerInfo]], int],
                 cap: int, sentence: Callable[[int, str], str]) -> None:
    """Raise ``sentence(total, 'layer i (label)')`` naming the layer that crosses ``cap``."""
    total = total_of(infos)
    if total <= cap:
        return
    layer = next(info for k, info in enumerate(infos, 1) if total_of(infos[:k]) > cap)
    raise SpecError(sentence(total, f"layer {layer.index} ({layer.label})"), layer=layer.index)


def _check_size(infos: list[LayerInfo]) -> None:
    """Parameters and multiply-accumulates per image under their caps."""
    _refuse_over(infos, lambda part: sum(i.total_params for i in part), MAX_PARAMS,
                 lambda n, at: f"The stack has {n:,} parameters, over the limit of "
                               f"{MAX_PARAMS:,} from {at} on; use fewer filters or units, "
                               f"or pool before the Dense layers.")
    _refuse_over(infos, lambda part: sum(i.macs for i in part), MAX_MACS,
                 lambda n, at: f"The stack needs {n:,} multiply-accumulates per image, over "
                               f"the limit of {MAX_MACS:,} from {at} on; use fewer filters, "
                               f"or a stride or pooling before that layer.")


def activation_bytes(infos: Iterable[LayerInfo], batch_size: int, *,
                     training: bool = False) -> int:
    """fp32 bytes of the input and every layer output for a batch (training: ×2, gradients).

    >>> activation_bytes([], 2)          # the input alone: 2 images × 784 values × 4 B
    6272
    """
    values = math.prod(INPUT_SHAPE) + sum(math.prod(i.output_shape) for i in infos)
    return (2 if training else 1) * batch_size * values * 4


def check_cost(spec_or_infos: ModelSpec | list[LayerInfo], batch_size: int) -> None:
    """Refuse (SpecError) a stack too heavy for this server at ``batch_size``.

    Checks parameters, multiply-accumulates per image and the training activation memory
    at that batch size, each sentence naming the layer that crosses the limit.

    >>> from core.presets import get_preset
    >>> check_cost(get_preset("bulky_cnn").spec, batch_size=1024)     # fits: no error
    >>> wide = ModelSpec("wide", [
    ...     {"type": "Conv2D", "filters": 1024, "kernel_size": 1, "padding": "same"},
    ...     {"type": "GlobalAveragePooling2D"},
    ...     {"type": "Dense", "units": 10, "activation": "softmax"}])
    >>> check_cost(wide, batch_size=1024)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    core.errors.SpecError: At batch size 1,024, ... from layer 1 (Conv2D 1024 1×1) on; ...
    """
    infos = infer_shapes(spec_or_infos) if isinstance(spec_or_infos, ModelSpec) \
        else list(spec_or_infos)
    _check_size(infos)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError(f"The batch size must be a whole number of at least 1, got "
                        f"{_show(batch_size)}.")
    _refuse_over(infos, lambda part: activation_bytes(part, batch_size, training=True),
                 MAX_ACTIVATION_BYTES,
                 lambda n, at: f"At batch size {batch_size:,}, training needs about "
                               f"{n / 1024 ** 3:.1f} GiB of activation memory, over the "
                               f"limit of {MAX_ACTIVATION_BYTES / 1024 ** 3:.1f} GiB from "
                               f"{at} on; use a smaller batch size, fewer filters, or a "
                               f"stride or pooling earlier.")


def _scalar(value: Any, key: str, where: str) -> Any:
    """Keras' (3, 3) as 3; a non-square window is refused."""
    if isinstance(value, (list, tuple)):
        if not value or any(v != value[0] for v in value):
            raise SpecError(f"{where} has {key}={_show(value)}; Layer Lab supports only "
                            f"square windows and equal strides.")
        return value[0]
    return value


def layer_from_keras(class_name: str, config: dict[str, Any], name: str = "") -> dict:
    """A spec layer from a Keras layer's class name and config, read through the table.

    Parameters equal to the table's defaults are left out; settings the table cannot
    express (dilation, groups, channels first …) are refused with a sentence.

    >>> layer_from_keras("MaxPooling2D", {"pool_size": (2, 2), "strides": (2, 2),
    ...                                   "padding": "valid", "data_format": "channels_last"})
    {'type': 'MaxPooling2D'}
    >>> layer_from_keras("Conv2D", {"filters": 8, "kernel_size": (3, 3), "dilation_rate": 2})
    Traceback (most recent call last):
    ...
    core.errors.SpecError: Layer Conv2D uses dilation_rate=2, which Layer Lab does not support.
    """
    where = f"Layer {_clip(name or class_name, 40)}"
    entry = LAYERS.get(class_name) if isinstance(class_name, str) else None
    if entry is None:
        raise SpecError(f"{where} is a {_clip(str(class_name), 40)}, which Layer Lab does not "
                        f"support; only plain stacks of {', '.join(LAYER_TYPES)}.")
    for key, want in entry.keras_fixed.items():
        have = _scalar(config.get(key, want), key, where)
        if have != want:
            raise SpecError(f"{where} uses {key}={_show(have)}, which Layer Lab does not "
                            f"support.")
    layer: dict[str, Any] = {"type": class_name}
    for key, param in entry.params.items():
        value = _scalar(config.get(key), key, where)
        if param.same_as and value == _scalar(config.get(param.same_as), key, where):
            value = None                      # Keras stores "same as pool size" explicitly
        if value != param.default:
            layer[key] = value
    return layer


def check_spec(spec: ModelSpec) -> SpecError | None:
    """The first problem with a spec, or None when it is valid.

    >>> print(check_spec(ModelSpec("t", [])))
    The stack is empty. Add layers, ending with Dense 10 softmax.
    """
    try:
        infer_shapes(spec)
    except SpecError as err:
        return err
    return None


def default_layer(ltype: str) -> dict[str, Any]:
    """A new layer of ``ltype`` with sensible starting parameters.

    >>> default_layer("Conv2D")
    {'type': 'Conv2D', 'filters': 16, 'kernel_size': 3}
    """
    if ltype not in LAYERS:
        raise SpecError(f"Unknown layer type {_show(ltype)}. Use one of: "
                        f"{', '.join(LAYER_TYPES)}.")
    return {"type": ltype, **LAYERS[ltype].new}


def model_name(name: str) -> str:
    """A spec's name as a Keras model name (letters, digits and underscores).

    >>> model_name("my net-2!"), model_name("!!")
    ('my_net_2', 'model')
    """
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return cleaned.strip("_") or "model"
