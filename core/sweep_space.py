"""What a sweep may vary, and how one set of values turns a starting stack into a trial.

A *space* is plain JSON kept with the sweep: for each knob the user ticked, its range
(``{"low": .., "high": ..}``) or its choices (``{"choices": [..]}``); a knob left out keeps
the starting stack's own value. :data:`KNOBS` is the one table of knobs: their labels,
kinds and the widest range a sweep may ask for. :func:`default_space` proposes ranges
around a start; :func:`suggest` asks an Optuna trial for values; :func:`apply` makes the
trial's spec and recipe from the start (pure, no Keras).

The stack is read as *prefix · conv blocks · head*: a block starts at each convolution and
holds the layers after it (batch norm, activation, pooling, dropout) up to the next
convolution; the head starts at the Flatten or GlobalAveragePooling2D. More blocks repeat
the last one at 'same' padding, stride 1 and without its pooling, so the map keeps its
size and the stack stays valid; fewer blocks drop the last ones.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from core.errors import SpecError
from core.recipe import Recipe
from core.spec import ModelSpec, check_cost, infer_shapes

CONVS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
POOLS = ("MaxPooling2D", "AveragePooling2D")
HEAD_STARTS = ("Flatten", "GlobalAveragePooling2D")
MAX_TRIAL_EPOCHS = 5          # a sweep's default trials: short, many of them


@dataclass(frozen=True)
class Knob:
    """One thing a sweep may vary: how the page labels it and the widest range allowed."""

    label: str
    kind: str                      # "float", "int" or "choice"
    bounds: tuple[Any, Any]        # the widest low/high (for choices: each choice's)
    log: bool = False              # sampled on a log scale
    help: str = ""
    steps: tuple = ()              # the values the page's slider offers (int knobs: all)


WIDTHS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2,
         0.5, 1.0)


KNOBS: dict[str, Knob] = {
    "width": Knob("Width (× filters)", "float", (0.125, 4.0), log=True,
                  help="Multiplies the filters of every convolution.", steps=WIDTHS),
    "blocks": Knob("Number of conv blocks", "int", (1, 8),
                   help="Extra blocks repeat the last one at 'same' padding without its "
                        "pooling; fewer blocks drop the last ones."),
    "kernel": Knob("Kernel size", "choice", (1, 11),
                   help="The kernel of every convolution larger than 1×1.",
                   steps=(1, 3, 5, 7, 9, 11)),
    "dense": Knob("Dense units (× units)", "float", (0.125, 4.0), log=True,
                  help="Multiplies the units of every Dense layer but the output.",
                  steps=WIDTHS),
    "dropout": Knob("Dropout", "float", (0.0, 0.8),
                    help="The rate of every Dropout layer (one is added before the output "
                         "when the stack has none).",
                    steps=tuple(round(0.1 * i, 1) for i in range(9))),
    "batch_norm": Knob("Batch normalisation", "choice", (False, True),
                       help="On: a BatchNormalization after every convolution; off: none.",
                       steps=(True, False)),
    "learning_rate": Knob("Learning rate", "float", (1e-5, 1.0), log=True, steps=RATES),
    "batch_size": Knob("Batch size", "choice", (8, 2048),
                       steps=(8, 16, 32, 64, 128, 256, 512, 1024, 2048)),
    "epochs": Knob("Epochs", "int", (1, 30)),
}


# -- reading a stack --------------------------------------------------------------------
def split_stack(layers: list[dict]) -> tuple[list[dict], list[list[dict]], list[dict]]:
    """(prefix, conv blocks, head) of a layer list.

    >>> from core.presets import get_preset
    >>> prefix, blocks, head = split_stack(get_preset("small_cnn").spec.layers)
    >>> len(prefix), [len(b) for b in blocks], [l["type"] for l in head][:2]
    (0, [3, 3], ['Flatten', 'Dense'])
    """
    types = [layer.get("type") for layer in layers]
    head_at = next((i for i, t in enumerate(types) if t in HEAD_STARTS),
                   next((i for i, t in enumerate(types) if t == "Dense"), len(layers)))
    starts = [i for i, t in enumerate(types[:head_at]) if t in CONVS]
    if not starts:
        return list(layers[:head_at]), [], list(layers[head_at:])
    bounds = starts + [head_at]
    blocks = [list(layers[a:b]) for a, b in zip(bounds, bounds[1:])]
    return list(layers[:starts[0]]), blocks, list(layers[head_at:])


def _hidden_dense(layers: list[dict]) -> list[int]:
    """Indexes of the Dense layers before the output one."""
    dense = [i for i, layer in enumerate(layers) if layer.get("type") == "Dense"]
    return dense[:-1]


def count_params(spec: ModelSpec) -> int:
    """Parameters of a spec (trainable and not), from shape inference; SpecError if invalid.

    >>> from core.presets import get_preset
    >>> count_params(get_preset("fast_cnn").spec)
    34138
    """
    return sum(info.total_params for info in infer_shapes(spec))


# -- the default space ------------------------------------------------------------------
def _around(values: list[int], low: int, high: int) -> list[int]:
    return sorted({v for v in values if low <= v <= high})


def default_space(spec: ModelSpec, recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Every knob that applies to this start, with a range around its own values.

    >>> from core.presets import get_preset
    >>> p = get_preset("fast_cnn")
    >>> space = default_space(p.spec, p.recipe)
    >>> sorted(space)  # doctest: +NORMALIZE_WHITESPACE
    ['batch_norm', 'batch_size', 'blocks', 'dropout', 'epochs', 'kernel', 'learning_rate',
     'width']
    >>> space["blocks"], space["epochs"], space["batch_size"]
    ({'low': 2, 'high': 4}, {'low': 1, 'high': 2}, {'choices': [64, 128, 256]})
    """
    _, blocks, _ = split_stack(spec.layers)
    has_conv = bool(blocks)
    space: dict[str, dict[str, Any]] = {}
    if any(layer.get("type") in ("Conv2D", "SeparableConv2D") for layer in spec.layers):
        space["width"] = {"low": 0.25, "high": 1.5}
    if has_conv:
        most = KNOBS["blocks"].bounds[1]
        space["blocks"] = {"low": min(max(1, len(blocks) - 1), most),
                           "high": min(len(blocks) + 1, most)}
        space["kernel"] = {"choices": [3, 5]}
    if _hidden_dense(spec.layers):
        space["dense"] = {"low": 0.25, "high": 2.0}
    space["dropout"] = {"low": 0.0, "high": 0.5}
    if has_conv:
        space["batch_norm"] = {"choices": [True, False]}
    lr = float(recipe.learning_rate)
    space["learning_rate"] = {"low": max(1e-5, lr / 5), "high": min(1.0, lr * 3)}
    b = recipe.batch_size
    space["batch_size"] = {"choices": _around([b // 2, b, b * 2], 16, 1024) or [b]}
    top = min(recipe.epochs, MAX_TRIAL_EPOCHS)
    # a one-epoch start may still try two: a range of one value would vary nothing
    space["epochs"] = {"low": max(1, top - 1), "high": max(top, min(2, MAX_TRIAL_EPOCHS))}
    return space


DEFAULT_ON = ("width", "blocks", "kernel", "learning_rate", "epochs")


# -- checking a space (it comes from a form or from storage) ----------------------------
def _check_range(name: str, knob: Knob, rng: Any) -> dict[str, Any]:
    lo_bound, hi_bound = knob.bounds
    if knob.kind == "choice":
        choices = rng.get("choices") if isinstance(rng, dict) else None
        if not isinstance(choices, list) or not choices or len(choices) > 16:
            raise SpecError(f"{knob.label}: choose between 1 and 16 values.")
        for c in choices:
            ok = isinstance(c, bool) if isinstance(lo_bound, bool) else \
                isinstance(c, int) and not isinstance(c, bool) and lo_bound <= c <= hi_bound
            if not ok:
                raise SpecError(f"{knob.label}: {c!r} is not an allowed value.")
        return {"choices": list(dict.fromkeys(choices))}
    low = rng.get("low") if isinstance(rng, dict) else None
    high = rng.get("high") if isinstance(rng, dict) else None
    number = int if knob.kind == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, number) or not math.isfinite(v)
           for v in (low, high)):
        raise SpecError(f"{knob.label}: the range needs two numbers.")
    if not lo_bound <= low <= high <= hi_bound:
        raise SpecError(f"{knob.label}: choose a range within {lo_bound:g}–{hi_bound:g}, "
                        f"the low end first (got {low:g}–{high:g}).")
    return {"low": low, "high": high}


def check_space(space: Any) -> dict[str, dict[str, Any]]:
    """The space, checked (SpecError with a sentence for the first bad knob).

    >>> check_space({"width": {"low": 0.5, "high": 1.0}})
    {'width': {'low': 0.5, 'high': 1.0}}
    >>> check_space({"width": {"low": 2.0, "high": 1.0}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    core.errors.SpecError: Width (× filters): choose a range within 0.125–4, the low end ...
    """
    if not isinstance(space, dict):
        raise SpecError("A sweep's space must map knobs to ranges.")
    unknown = sorted(map(str, set(space) - set(KNOBS)))
    if unknown:
        raise SpecError(f"Unknown knob(s) {', '.join(unknown)}; known: {', '.join(KNOBS)}.")
    return {name: _check_range(name, KNOBS[name], rng) for name, rng in space.items()}


# -- sampling -----------------------------------------------------------------------------
def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per knob from an Optuna trial (define-by-run, same names every trial)."""
    values: dict[str, Any] = {}
    for name, rng in space.items():
        knob = KNOBS[name]
        if knob.kind == "choice":
            values[name] = trial.suggest_categorical(name, rng["choices"])
        elif knob.kind == "int":
            values[name] = trial.suggest_int(name, rng["low"], rng["high"])
        else:
            values[name] = trial.suggest_float(name, rng["low"], rng["high"],
                                               log=knob.log and rng["low"] > 0)
    return values


# -- applying values to the start -------------------------------------------------------
def _extra_block(block: list[dict]) -> list[dict]:
    """The last block again, keeping the map's size: 'same' padding, stride 1, no pool."""
    out = []
    for layer in copy.deepcopy(block):
        if layer["type"] in POOLS:
            continue
        if layer["type"] in CONVS:
            layer.update(padding="same", strides=1)
        out.append(layer)
    return out


def with_blocks(layers: list[dict], n: int) -> list[dict]:
    """The stack with ``n`` conv blocks (see the module's docstring).

    >>> from core.presets import conv, pool, FLAT, OUT
    >>> [l["type"][:4] for l in with_blocks([conv(8), pool(), FLAT, OUT], 2)]
    ['Conv', 'MaxP', 'Conv', 'Flat', 'Dens']
    >>> [l["type"][:4] for l in with_blocks([conv(8), pool(), conv(8), FLAT, OUT], 1)]
    ['Conv', 'MaxP', 'Flat', 'Dens']
    """
    prefix, blocks, head = split_stack(layers)
    if not blocks:
        return copy.deepcopy(layers)
    kept = blocks[:n] + [_extra_block(blocks[-1]) for _ in range(n - len(blocks))]
    return copy.deepcopy(prefix + [layer for block in kept for layer in block] + head)


def _scaled(value: int, factor: float) -> int:
    return max(1, round(value * factor))


def _widen(layers: list[dict], width: float) -> None:
    for layer in layers:
        if layer["type"] in ("Conv2D", "SeparableConv2D"):
            layer["filters"] = _scaled(layer["filters"], width)


def _dense_units(layers: list[dict], factor: float) -> None:
    for i in _hidden_dense(layers):
        layers[i]["units"] = _scaled(layers[i]["units"], factor)


def _kernel(layers: list[dict], k: int) -> None:
    for layer in layers:
        if layer["type"] in CONVS and layer.get("kernel_size", 3) > 1:
            layer["kernel_size"] = k


def _dropout(layers: list[dict], rate: float) -> list[dict]:
    """Every Dropout at ``rate``; with none, one before the output when rate > 0."""
    drops = [layer for layer in layers if layer["type"] == "Dropout"]
    for layer in drops:
        layer["rate"] = round(float(rate), 3)
    if drops or rate <= 0:
        return layers
    return layers[:-1] + [{"type": "Dropout", "rate": round(float(rate), 3)}] + layers[-1:]


def _batch_norm(layers: list[dict], on: bool) -> list[dict]:
    """On: a BatchNormalization right after each convolution that lacks one. Off: none,
    and layers that dropped their bias for a batch norm get it back."""
    if not on:
        out = [layer for layer in layers if layer["type"] != "BatchNormalization"]
        for layer in out:
            if layer.get("use_bias") is False:
                layer["use_bias"] = True
        return out
    out = []
    for i, layer in enumerate(layers):
        out.append(layer)
        following = layers[i + 1]["type"] if i + 1 < len(layers) else ""
        if layer["type"] in CONVS and following != "BatchNormalization":
            out.append({"type": "BatchNormalization"})
    return out


def apply(spec: ModelSpec, recipe: Recipe, values: dict[str, Any], *,
          name: str | None = None) -> tuple[ModelSpec, Recipe]:
    """The trial's spec and recipe: the start changed by ``values``; SpecError if the
    result is not a valid stack or recipe, or is too heavy for this server.

    >>> from core.presets import get_preset
    >>> p = get_preset("fast_cnn")
    >>> spec, recipe = apply(p.spec, p.recipe, {"width": 0.5, "epochs": 2})
    >>> count_params(spec), recipe.epochs
    (11314, 2)
    """
    layers = copy.deepcopy(spec.layers)
    if "blocks" in values:
        layers = with_blocks(layers, int(values["blocks"]))
    if "width" in values:
        _widen(layers, float(values["width"]))
    if "kernel" in values:
        _kernel(layers, int(values["kernel"]))
    if "dense" in values:
        _dense_units(layers, float(values["dense"]))
    if "dropout" in values:
        layers = _dropout(layers, float(values["dropout"]))
    if "batch_norm" in values:
        layers = _batch_norm(layers, bool(values["batch_norm"]))
    changes = {key: values[key] for key in ("learning_rate", "batch_size", "epochs")
               if key in values}
    out_recipe = recipe.replace(**changes) if changes else recipe
    out = ModelSpec(name or spec.name, layers, spec.description)
    check_cost(out, out_recipe.batch_size)           # valid, and light enough to train
    return out, out_recipe
