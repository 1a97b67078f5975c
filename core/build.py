"""Turn a validated :class:`~core.spec.ModelSpec` into a ``keras.Model``."""
from __future__ import annotations

from typing import Any

from core.spec import INPUT_SHAPE, LayerInfo, ModelSpec, infer_shapes


def make_layer(info: LayerInfo, dtype: str | None = None) -> Any:
    """The Keras layer for one inferred layer (explicit, readable name).

    ``dtype`` is a Keras dtype policy name such as ``"mixed_float16"`` (GPU only).
    """
    import keras  # noqa: PLC0415 - keep TensorFlow off the import path of light pages

    p, name = info.params, info.name
    kw = {"name": name, "dtype": dtype} if dtype else {"name": name}
    if info.type == "Conv2D":
        return keras.layers.Conv2D(p["filters"], p["kernel_size"], strides=p["strides"],
                                   padding=p["padding"], activation=p["activation"],
                                   use_bias=p["use_bias"], **kw)
    if info.type == "MaxPooling2D":
        return keras.layers.MaxPooling2D(p["pool_size"], strides=p["strides"],
                                         padding=p["padding"], **kw)
    if info.type == "AveragePooling2D":
        return keras.layers.AveragePooling2D(p["pool_size"], strides=p["strides"],
                                             padding=p["padding"], **kw)
    if info.type == "GlobalAveragePooling2D":
        return keras.layers.GlobalAveragePooling2D(**kw)
    if info.type == "BatchNormalization":
        return keras.layers.BatchNormalization(**kw)
    if info.type == "Dropout":
        return keras.layers.Dropout(p["rate"], **kw)
    if info.type == "Flatten":
        return keras.layers.Flatten(**kw)
    if info.type == "Dense":
        return keras.layers.Dense(p["units"], activation=p["activation"],
                                  use_bias=p["use_bias"], **kw)
    if info.type == "Activation":
        return keras.layers.Activation(p["activation"], **kw)
    raise AssertionError(f"unhandled layer type {info.type}")  # validated earlier


def build_model(spec: ModelSpec, seed: int | None = None, mixed_precision: bool = False) -> Any:
    """A functional ``keras.Model`` for ``spec`` (validated first; raises SpecError).

    With ``mixed_precision`` every layer but the softmax output computes in float16.
    """
    import keras  # noqa: PLC0415

    infos = infer_shapes(spec)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for info in infos:
        last = info is infos[-1]
        x = make_layer(info, "mixed_float16" if mixed_precision and not last else None)(x)
    return keras.Model(inputs, x, name=_model_name(spec.name))


def _model_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return cleaned.strip("_") or "model"
