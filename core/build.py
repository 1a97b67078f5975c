"""Turn a validated :class:`~core.spec.ModelSpec` into a ``keras.Model``.

Each layer is the Keras class named by its type, called with the spec's parameters as
keyword arguments (:data:`core.layers.LAYERS` guarantees the names match).
"""
from __future__ import annotations

from typing import Any

from core.spec import INPUT_SHAPE, LayerInfo, ModelSpec, infer_shapes, model_name


def make_layer(info: LayerInfo, dtype: str | None = None) -> Any:
    """The Keras layer for one inferred layer (explicit, readable name).

    ``dtype`` is a Keras dtype policy name such as ``"mixed_float16"`` (GPU only).
    """
    import keras  # noqa: PLC0415 - keep TensorFlow off the import path of light pages

    extra = {"dtype": dtype} if dtype else {}
    return getattr(keras.layers, info.type)(**info.params, name=info.name, **extra)


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
    return keras.Model(inputs, x, name=model_name(spec.name))
