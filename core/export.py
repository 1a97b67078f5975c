"""Export a spec as a standalone, readable Keras script that rebuilds the same model."""
from __future__ import annotations

from core.spec import INPUT_SHAPE, ModelSpec, infer_shapes

_DEFAULTS_SKIPPED = {("padding", "valid"), ("strides", 1), ("use_bias", True), ("strides", None)}


def _layer_code(info) -> str:
    p = info.params
    args: list[str] = []
    if info.type == "Conv2D":
        args = [str(p["filters"]), f"kernel_size={p['kernel_size']}"]
        extra = ("strides", "padding", "activation", "use_bias")
    elif info.type in ("MaxPooling2D", "AveragePooling2D"):
        args = [f"pool_size={p['pool_size']}"]
        extra = ("strides", "padding")
    elif info.type == "Dense":
        args = [str(p["units"])]
        extra = ("activation", "use_bias")
    elif info.type == "Dropout":
        args = [repr(p["rate"])]
        extra = ()
    elif info.type == "Activation":
        args = [repr(p["activation"])]
        extra = ()
    else:
        extra = ()
    for key in extra:
        value = p[key]
        if (key, value) not in _DEFAULTS_SKIPPED:
            args.append(f"{key}={value!r}")
    args.append(f"name={info.name!r}")
    return f"layers.{info.type}({', '.join(args)})"


def to_keras_script(spec: ModelSpec) -> str:
    """Python source that builds ``spec`` with plain Keras and prints its summary."""
    infos = infer_shapes(spec)
    total = sum(i.total_params for i in infos)
    lines = [
        f'"""{spec.name}: rebuilt from a Layer Lab spec ({total:,} parameters).',
        "",
        "Run with `python this_file.py`; needs only keras (TensorFlow backend).",
        '"""',
        "import keras",
        "from keras import layers",
        "",
        "",
        "def build_model() -> keras.Model:",
        f"    inputs = keras.Input(shape={INPUT_SHAPE!r}, name=\"image\")",
        "    x = inputs",
    ]
    for info in infos:
        lines.append(f"    x = {_layer_code(info)}(x)")
    model_name = "".join(c if c.isalnum() or c == "_" else "_" for c in spec.name) or "model"
    lines += [
        f"    return keras.Model(inputs, x, name={model_name!r})",
        "",
        "",
        'if __name__ == "__main__":',
        "    model = build_model()",
        "    model.summary()",
        "",
    ]
    return "\n".join(lines)
