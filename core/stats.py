"""Per-layer statistics of a spec: shapes, parameters, compute and memory.

Everything is computed from the spec by shape inference, so no model has to be built.
Conventions (shown in the app's legends):

* MACs: multiply-accumulates for one image, per layer type as :mod:`core.layers` defines
  them. Conv2D: out_h·out_w·filters·k²·in_channels; DepthwiseConv2D:
  out_h·out_w·k²·in_channels·multiplier; SeparableConv2D: that plus the pointwise
  out_h·out_w·in_channels·multiplier·filters; Dense: inputs·units; BatchNormalization: one
  per value (scale and shift, once folded); pooling, dropout, flatten and activations: 0.
* Weight memory: parameters × 4 / 2 / 1 bytes at fp32 / fp16 / int8.
* Adam training state: trainable parameters × 4 copies (weights, gradients, two moments)
  × 4 bytes, plus non-trainable weights once.
* Activation memory at batch B: B × (all layer outputs + input) × 4 bytes for inference
  with every output kept (as the inspector does); training about twice that (the
  forward values plus their gradients). :func:`core.spec.check_cost` caps that training
  figure at the batch size a run will use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.spec import LayerInfo, ModelSpec, activation_bytes, infer_shapes
from core.spec import shape_text  # noqa: F401 - pages import it from here

BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
MIB = 1024 * 1024


@dataclass(frozen=True)
class LayerRow:
    """One row of the per-layer table."""

    index: int
    name: str
    layer: str
    output_shape: tuple[int, ...]
    params: int
    trainable: int
    non_trainable: int
    macs: int
    activations: int          # output values for one image
    weight_bytes_fp32: int


@dataclass(frozen=True)
class Totals:
    """Whole-model figures."""

    params: int
    trainable: int
    non_trainable: int
    macs: int
    activations: int          # all layer outputs for one image, input excluded
    weight_bytes: dict[str, int]
    adam_training_bytes: int
    activation_bytes_inference: int
    activation_bytes_training: int
    batch_size: int


def layer_rows(infos: list[LayerInfo]) -> list[LayerRow]:
    """Table rows from inferred layers.

    >>> from core.presets import get_preset
    >>> [(r.name, r.layer, r.params) for r in layer_rows(infer_shapes(
    ...     get_preset("warmup_mlp").spec))][:2]
    [('flatten1', 'Flatten', 0), ('dense1', 'Dense 128', 100480)]
    """
    return [LayerRow(i.index, i.name, i.label, i.output_shape, i.total_params, i.trainable,
                     i.non_trainable, i.macs, math.prod(i.output_shape),
                     i.total_params * BYTES["fp32"]) for i in infos]


def totals(infos: list[LayerInfo], batch_size: int = 32) -> Totals:
    """Sums and memory estimates (see module docstring for the conventions).

    >>> from core.presets import get_preset
    >>> t = totals(infer_shapes(get_preset("keras_example").spec), batch_size=1)
    >>> t.params, t.macs, t.activation_bytes_inference
    (34826, 2440960, 161512)
    """
    trainable = sum(i.trainable for i in infos)
    non_trainable = sum(i.non_trainable for i in infos)
    params = trainable + non_trainable
    act_inf = activation_bytes(infos, batch_size)
    return Totals(
        params=params, trainable=trainable, non_trainable=non_trainable,
        macs=sum(i.macs for i in infos),
        activations=sum(math.prod(i.output_shape) for i in infos),
        weight_bytes={k: params * b for k, b in BYTES.items()},
        adam_training_bytes=(4 * trainable + non_trainable) * BYTES["fp32"],
        activation_bytes_inference=act_inf,
        activation_bytes_training=activation_bytes(infos, batch_size, training=True),
        batch_size=batch_size)


def summarize(spec: ModelSpec, batch_size: int = 32) -> tuple[list[LayerRow], Totals]:
    """(per-layer rows, totals) for a spec; raises SpecError if it is invalid.

    >>> from core.presets import get_preset
    >>> rows, t = summarize(get_preset("small_cnn").spec)
    >>> len(rows), t.params, t.batch_size
    (10, 108618, 32)
    """
    infos = infer_shapes(spec)
    return layer_rows(infos), totals(infos, batch_size)


def human_bytes(n: float) -> str:
    """Binary units, MiB from 0.1 MiB up.

    >>> human_bytes(1536), human_bytes(444_584), human_bytes(3 * 1024 ** 3)
    ('1.5 KiB', '0.42 MiB', '3.00 GiB')
    """
    if abs(n) >= 1024 ** 3:
        return f"{n / 1024 ** 3:,.2f} GiB"
    if abs(n) >= 0.1 * MIB:
        return f"{n / MIB:,.2f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,.0f} B"


def human_count(n: float) -> str:
    """Counts in k, M, G.

    >>> human_count(12_345_678), human_count(4_500), human_count(12)
    ('12.3 M', '4.5 k', '12')
    """
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f}"


def signed(n: float, unit: str = "") -> str:
    """A change with its sign, thousands separators and a true minus; zero is '±0'.

    >>> signed(12_544, " params"), signed(-3.4, "%"), signed(0, " params")
    ('+12,544 params', '−3%', '±0 params')
    """
    if round(n) == 0:
        return f"±0{unit}"
    return f"{n:+,.0f}{unit}".replace("-", "−")


def compare(before: Totals, after: Totals) -> str:
    """The change between two stacks, e.g. '+12,544 params, −3% MACs'.

    >>> from core.presets import get_preset
    >>> a, b = (totals(infer_shapes(get_preset(n).spec)) for n in ("small_cnn", "bonus_cnn"))
    >>> compare(a, b)
    '−15,296 params, +268% MACs'
    """
    parts = [signed(after.params - before.params, " params")]
    if before.macs:
        parts.append(signed(100.0 * (after.macs - before.macs) / before.macs, "% MACs"))
    return ", ".join(parts)
