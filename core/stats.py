"""Per-layer statistics of a spec: shapes, parameters, compute and memory.

Everything is computed from the spec by shape inference, so no model has to be built.
Conventions (shown in the app's legends):

* MACs: multiply-accumulates for one image. Conv2D: out_h·out_w·filters·k²·in_channels;
  Dense: inputs·units; BatchNormalization: one per value (scale and shift, once folded);
  pooling, dropout, flatten and activations: 0.
* Weight memory: parameters × 4 / 2 / 1 bytes at fp32 / fp16 / int8.
* Adam training state: trainable parameters × 4 copies (weights, gradients, two moments)
  × 4 bytes, plus non-trainable weights once.
* Activation memory at batch B: B × (all layer outputs + input) × 4 bytes for inference
  with every output kept (as the inspector does); training about twice that (the
  forward values plus their gradients).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.spec import INPUT_SHAPE, LayerInfo, ModelSpec, infer_shapes

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
    """Table rows from inferred layers."""
    return [LayerRow(i.index, i.name, i.label, i.output_shape, i.total_params, i.trainable,
                     i.non_trainable, i.macs, math.prod(i.output_shape),
                     i.total_params * BYTES["fp32"]) for i in infos]


def totals(infos: list[LayerInfo], batch_size: int = 32) -> Totals:
    """Sums and memory estimates (see module docstring for the conventions)."""
    trainable = sum(i.trainable for i in infos)
    non_trainable = sum(i.non_trainable for i in infos)
    params = trainable + non_trainable
    activations = sum(math.prod(i.output_shape) for i in infos)
    act_inf = batch_size * (activations + math.prod(INPUT_SHAPE)) * BYTES["fp32"]
    return Totals(
        params=params, trainable=trainable, non_trainable=non_trainable,
        macs=sum(i.macs for i in infos), activations=activations,
        weight_bytes={k: params * b for k, b in BYTES.items()},
        adam_training_bytes=(4 * trainable + non_trainable) * BYTES["fp32"],
        activation_bytes_inference=act_inf, activation_bytes_training=2 * act_inf,
        batch_size=batch_size)


def summarize(spec: ModelSpec, batch_size: int = 32) -> tuple[list[LayerRow], Totals]:
    """(per-layer rows, totals) for a spec; raises SpecError if it is invalid."""
    infos = infer_shapes(spec)
    return layer_rows(infos), totals(infos, batch_size)


def human_bytes(n: float) -> str:
    """Binary units: 1536 -> '1.5 KiB'; 444584 -> '0.42 MiB' (MiB from 0.1 MiB up)."""
    if abs(n) >= 1024 ** 3:
        return f"{n / 1024 ** 3:,.2f} GiB"
    if abs(n) >= 0.1 * MIB:
        return f"{n / MIB:,.2f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,.0f} B"


def human_count(n: float) -> str:
    """12_345_678 -> '12.3 M'; 4_500 -> '4.5 k'."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f}"


def shape_text(shape: tuple[int, ...]) -> str:
    """(13, 13, 32) -> '13×13×32'."""
    return "×".join(str(s) for s in shape)


def compare(before: Totals, after: Totals) -> str:
    """'+12,544 params, −3% MACs' — the change between two stacks."""
    dp = after.params - before.params
    parts = [f"{dp:+,} params".replace("-", "−")]
    if before.macs:
        pct = 100.0 * (after.macs - before.macs) / before.macs
        parts.append(f"{pct:+.0f}% MACs".replace("-", "−"))
    return ", ".join(parts)
