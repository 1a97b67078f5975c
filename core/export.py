"""Export a spec as a standalone, readable Keras script that rebuilds the same model.

Each layer is written as its Keras class with only the arguments that differ from Keras'
own defaults (read from :data:`core.layers.LAYERS`); the first one is positional when
Keras requires it, as in keras-io's examples: ``layers.Conv2D(32, kernel_size=3, ...)``.
"""
from __future__ import annotations

from core.layers import LAYERS, REQUIRED
from core.spec import INPUT_SHAPE, LayerInfo, ModelSpec, infer_shapes, model_name


def layer_code(info: LayerInfo) -> str:
    """The Keras call that builds one inferred layer.

    >>> from core.presets import get_preset
    >>> [layer_code(i) for i in infer_shapes(get_preset("keras_example").spec)][::2]
    ["layers.Conv2D(32, kernel_size=3, activation='relu', name='conv1')", \
"layers.Conv2D(64, kernel_size=3, activation='relu', name='conv2')", \
"layers.Flatten(name='flatten1')", "layers.Dense(10, activation='softmax', name='dense1')"]
    """
    args: list[str] = []
    for n, (key, param) in enumerate(LAYERS[info.type].params.items()):
        value = info.params[key]
        if n == 0 and param.keras is REQUIRED:
            args.append(repr(value))
        elif param.keras is REQUIRED or value != param.keras:
            args.append(f"{key}={value!r}")
    args.append(f"name={info.name!r}")
    owner = "" if LAYERS[info.type].custom else "layers."   # Layer Lab's own: defined above
    return f"{owner}{info.type}({', '.join(args)})"


def custom_layer_lines(infos: list[LayerInfo]) -> list[str]:
    """The source of Layer Lab's own layers the stack uses (their code needs only Keras),
    so an exported script or notebook runs without Layer Lab; none for plain Keras stacks.

    >>> custom_layer_lines([])
    []
    >>> from core.presets import get_preset
    >>> lines = custom_layer_lines(infer_shapes(get_preset("frontier_1k").spec))
    >>> lines[0], "class Deskew(keras.layers.Layer):" in lines
    ('import functools', True)
    """
    if not any(LAYERS[info.type].custom for info in infos):
        return []
    import inspect  # noqa: PLC0415

    from core import deskew  # noqa: PLC0415 - imports Keras, only for such stacks

    source = [inspect.getsource(part) for part in deskew.SOURCE]
    return ["import functools", "", "from keras import ops", "", "",
            *"\n\n".join(source).splitlines(), "", ""]


def build_model_lines(spec: ModelSpec, infos: list[LayerInfo] | None = None) -> list[str]:
    """Source lines of ``def build_model()`` (after the source of any Layer Lab layer it
    uses): ``keras.Input`` first, then one named layer per line (shared by the Keras
    script and the notebook of :mod:`core.notebook`).

    >>> from core.presets import get_preset
    >>> lines = build_model_lines(get_preset("keras_example").spec)
    >>> lines[0], lines[-1]
    ('def build_model() -> keras.Model:', "    return keras.Model(inputs, x, name='keras_example')")
    """
    infos = infer_shapes(spec) if infos is None else infos
    return [*custom_layer_lines(infos), "def build_model() -> keras.Model:",
            f"    inputs = keras.Input(shape={INPUT_SHAPE!r}, name=\"image\")",
            "    x = inputs",
            *(f"    x = {layer_code(info)}(x)" for info in infos),
            f"    return keras.Model(inputs, x, name={model_name(spec.name)!r})"]


def to_keras_script(spec: ModelSpec) -> str:
    """Python source that builds ``spec`` with plain Keras and prints its summary.

    >>> from core.presets import get_preset
    >>> script = to_keras_script(get_preset("keras_example").spec)
    >>> "    x = layers.Dropout(0.5, name='dropout1')(x)" in script.splitlines()
    True
    """
    infos = infer_shapes(spec)
    total = sum(i.total_params for i in infos)
    # The name is the user's text: escaped, it cannot end the docstring and become code.
    title = spec.name.replace("\\", "\\\\").replace('"', '\\"')
    lines = [
        f'"""{title}: rebuilt from a Layer Lab spec ({total:,} parameters).',
        "",
        "Run with `python this_file.py`; needs only keras (TensorFlow backend).",
        '"""',
        "import keras",
        "from keras import layers",
        "",
        "",
        *build_model_lines(spec, infos),
        "",
        "",
        'if __name__ == "__main__":',
        "    model = build_model()",
        "    model.summary()",
        "",
    ]
    return "\n".join(lines)
