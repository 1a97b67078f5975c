"""Turn a validated :class:`~core.spec.ModelSpec` into a ``keras.Model``.

Each layer is the Keras class named by its type, called with the spec's parameters as
keyword arguments (:data:`core.layers.LAYERS` guarantees the names match).

Mixed precision: every layer but the softmax output computes in a 16-bit float while the
weights stay float32. Which 16-bit float depends on the device (:func:`mixed_policy`):
float16 on a GPU; bfloat16 on a CPU whose instructions multiply it natively
(AVX512-BF16, AMX), where ``fast_cnn`` trained measurably faster; none elsewhere, where
bfloat16 would be emulated and slower than float32.
"""
from __future__ import annotations

import functools
from typing import Any

from core.layers import LAYERS
from core.spec import INPUT_SHAPE, LayerInfo, ModelSpec, infer_shapes, model_name

# /proc/cpuinfo flags of a CPU with native bfloat16 dot products.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def make_layer(info: LayerInfo, dtype: str | None = None) -> Any:
    """The Keras layer for one inferred layer (explicit, readable name).

    ``dtype`` is a Keras dtype policy name such as ``"mixed_bfloat16"``.
    """
    import keras  # noqa: PLC0415 - keep TensorFlow off the import path of light pages

    extra = {"dtype": dtype} if dtype else {}
    return layer_class(info.type)(**info.params, name=info.name, **extra)


def layer_class(layer_type: str) -> Any:
    """The Keras class of a layer type: Keras' own, or Layer Lab's (:mod:`core.deskew`).

    >>> layer_class("Dense").__name__, layer_class("Deskew").__module__
    ('Dense', 'core.deskew')
    """
    import keras  # noqa: PLC0415

    if LAYERS[layer_type].custom:
        from core import deskew  # noqa: PLC0415 - Keras at import time

        return getattr(deskew, layer_type)
    return getattr(keras.layers, layer_type)


def register_layers() -> None:
    """Make Layer Lab's own layers known to Keras, so ``load_model`` (safe mode) can
    rebuild a saved model that uses them; call it before loading any ``.keras`` file."""
    from core import deskew  # noqa: F401,PLC0415 - registers "layerlab>Deskew"


def build_model(spec: ModelSpec, seed: int | None = None,
                mixed_precision: bool | str | None = False) -> Any:
    """A functional ``keras.Model`` for ``spec`` (validated first; raises SpecError).

    ``mixed_precision``: True for float16, or a policy name (``"mixed_bfloat16"``);
    every layer but the softmax output then computes in it.
    """
    import keras  # noqa: PLC0415

    policy = "mixed_float16" if mixed_precision is True else mixed_precision or None
    infos = infer_shapes(spec)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for info in infos:
        x = make_layer(info, policy if info is not infos[-1] else None)(x)
    return keras.Model(inputs, x, name=model_name(spec.name))


def model_policy(model: Any) -> str:
    """The dtype policy the model computes in: its first layer's (the output layer is
    always float32), e.g. ``"float32"`` or ``"mixed_bfloat16"``."""
    import keras  # noqa: PLC0415

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    return layers[0].dtype_policy.name if layers else "float32"


@functools.lru_cache(maxsize=1)
def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (reads /proc/cpuinfo; False where
    it cannot be read).

    >>> cpu_has_bfloat16("flags : fpu avx512f avx512_bf16 avx512_vnni")
    True
    >>> cpu_has_bfloat16("flags : fpu avx2 fma")
    False
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    flags = {word for line in cpuinfo.splitlines() if line.startswith("flags")
             for word in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def mixed_policy(device_kind: str, bf16_cpu: bool | None = None) -> str | None:
    """The Keras policy a mixed-precision recipe computes in on this device, or None
    (float32) where 16-bit compute would not be faster.

    >>> mixed_policy("GPU"), mixed_policy("CPU", bf16_cpu=True), mixed_policy("CPU", False)
    ('mixed_float16', 'mixed_bfloat16', None)
    """
    if device_kind == "GPU":
        return "mixed_float16"
    if bf16_cpu if bf16_cpu is not None else cpu_has_bfloat16():
        return "mixed_bfloat16"
    return None
