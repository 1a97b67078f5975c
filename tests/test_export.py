"""core.export: the standalone Keras script rebuilds the same model and reads like keras-io."""
from __future__ import annotations

import ast
import subprocess
import sys

from core.export import to_keras_script
from core.presets import get_preset
from core.spec import ModelSpec, model_name
from core.stats import summarize


def test_generated_script_rebuilds_same_model(tmp_path):
    spec = get_preset("bulky_cnn").spec
    script = tmp_path / "bulky.py"
    script.write_text(to_keras_script(spec) + "\n"
                      "m = build_model()\n"
                      "print('PARAMS', m.count_params())\n"
                      "for l in m.layers[1:]:\n"
                      "    print('SHAPE', l.name, tuple(l.output.shape[1:]))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "PARAMS 331754" in out
    rows, _ = summarize(spec)
    for r in rows:
        assert f"SHAPE {r.name} {r.output_shape}" in out


def test_script_is_readable():
    text = to_keras_script(get_preset("keras_example").spec)
    assert "layers.Conv2D(32, kernel_size=3, activation='relu', name='conv1')" in text
    assert "layers.Dropout(0.5, name='dropout1')" in text
    assert "keras.Input(shape=(28, 28, 1)" in text
    assert "Lambda" not in text


def test_script_writes_only_what_differs_from_keras_defaults():
    text = to_keras_script(get_preset("fast_cnn").spec)
    # linear is Keras' default activation, valid its default padding, 2 its pool size
    assert ("layers.Conv2D(16, kernel_size=5, strides=2, padding='same', use_bias=False, "
            "name='conv1')") in text
    assert "layers.MaxPooling2D(name='maxpool1')" in text
    assert "layers.BatchNormalization(name='bn1')" in text
    assert "layers.Activation('relu', name='act1')" in text


def test_hostile_spec_name_cannot_become_code():
    name = 'x""" ; import os; os.system("echo pwned") #\\'
    spec = ModelSpec(name, [{"type": "Flatten"},
                            {"type": "Dense", "units": 10, "activation": "softmax"}])
    script = to_keras_script(spec)
    tree = ast.parse(script)
    assert [type(node).__name__ for node in tree.body] == [
        "Expr", "Import", "ImportFrom", "FunctionDef", "If"]
    assert ast.get_docstring(tree).startswith(name + ": rebuilt")     # kept, as text
    assert f"keras.Model(inputs, x, name={model_name(name)!r})" in script
    assert model_name(name).isidentifier()
