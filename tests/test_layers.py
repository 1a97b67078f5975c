"""core.layers: every entry of the layer table builds, exports and imports the same model.

Adding a layer type is one entry in ``LAYERS`` plus a test here: the table-wide tests below
pick it up, and its exact counts are checked against Keras' own.
"""
from __future__ import annotations

import numpy as np
import pytest

from core.build import build_model
from core.export import to_keras_script
from core.layers import LAYERS
from core.modelio import spec_from_keras
from core.spec import ModelSpec, default_layer, infer_shapes

OUT = {"type": "Dense", "units": 10, "activation": "softmax"}


def varied(ltype: str) -> dict:
    """A layer of ``ltype`` whose every parameter differs from the table's default."""
    layer = default_layer(ltype)
    for key, param in LAYERS[ltype].params.items():
        current = layer.get(key, param.default)
        if param.kind == "int":
            layer[key] = 1 if param.same_as else current + 1
        elif param.kind == "float":
            layer[key] = 0.3
        elif param.kind == "choice":
            layer[key] = next(c for c in param.low if c not in (current, "softmax"))
        else:
            layer[key] = not current
    return layer


def stack(layer: dict) -> ModelSpec:
    """The smallest valid stack around ``layer``."""
    if LAYERS[layer["type"]].needs == 1:
        return ModelSpec(layer["type"], [{"type": "Flatten"}, layer, OUT])
    tail = [] if layer["type"] in ("Flatten", "GlobalAveragePooling2D") else [{"type": "Flatten"}]
    return ModelSpec(layer["type"], [layer, *tail, OUT])


def keras_counts(model) -> tuple[int, int]:
    return (int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            int(sum(np.prod(w.shape) for w in model.non_trainable_weights)))


def assert_matches_keras(spec: ModelSpec, model) -> None:
    infos = infer_shapes(spec)
    assert model.count_params() == sum(i.total_params for i in infos)
    assert keras_counts(model) == (sum(i.trainable for i in infos),
                                   sum(i.non_trainable for i in infos))
    for info in infos:
        assert tuple(model.get_layer(info.name).output.shape[1:]) == info.output_shape


@pytest.mark.parametrize("make", [default_layer, varied], ids=["defaults", "varied"])
@pytest.mark.parametrize("ltype", sorted(LAYERS))
def test_every_layer_type_builds_exports_and_imports(ltype, make):
    spec = stack(make(ltype))
    model = build_model(spec)
    assert_matches_keras(spec, model)
    # the exported script builds the same model
    namespace: dict = {}
    exec(compile(to_keras_script(spec), "exported.py", "exec"), namespace)
    exported = namespace["build_model"]()
    assert_matches_keras(spec, exported)
    assert [l.get_config() for l in exported.layers] == [l.get_config() for l in model.layers]
    # importing the Keras model gives back the same normalised stack
    again = spec_from_keras(model, spec.name)
    assert [(i.type, i.params) for i in infer_shapes(again)] == \
        [(i.type, i.params) for i in infer_shapes(spec)]


def test_every_entry_is_a_keras_class_taking_its_parameters():
    import inspect

    import keras

    from core.build import layer_class

    for ltype, entry in LAYERS.items():
        cls = layer_class(ltype)
        assert issubclass(cls, keras.layers.Layer), ltype
        # Keras' own class unless the entry says it is Layer Lab's (core/deskew.py)
        assert (getattr(keras.layers, ltype, None) is cls) != entry.custom, ltype
        accepted = inspect.signature(cls).parameters
        assert set(entry.params) <= set(accepted), ltype
        for key, param in entry.params.items():
            if param.kind == "int":
                assert param.low <= (param.ui_high or param.high) <= param.high, (ltype, key)


SEP_STACK = ModelSpec("separable", [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3},
    {"type": "SeparableConv2D", "filters": 16, "kernel_size": 3, "strides": 2,
     "padding": "same", "depth_multiplier": 2},
    {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "use_bias": False},
    {"type": "GlobalAveragePooling2D"}, OUT])


def test_separable_and_depthwise_counts_by_hand():
    conv, sep, dw, gap, dense = infer_shapes(SEP_STACK)
    assert sep.output_shape == (13, 13, 16)
    # depthwise 3·3·8·2, pointwise (8·2)·16, bias 16
    assert (sep.trainable, sep.non_trainable) == (144 + 256 + 16, 0)
    assert sep.macs == 13 * 13 * 3 * 3 * 16 + 13 * 13 * 16 * 16            # 67,600
    assert dw.output_shape == (11, 11, 32)
    assert (dw.trainable, dw.macs) == (3 * 3 * 32, 11 * 11 * 3 * 3 * 32)    # 288, 34,848
    assert [i.name for i in (sep, dw)] == ["sepconv1", "dwconv1"]
    assert [i.label for i in (sep, dw)] == ["SeparableConv2D 16 3×3", "DepthwiseConv2D 3×3"]
    assert sum(i.total_params for i in (conv, sep, dw, gap, dense)) == 80 + 416 + 288 + 330


def test_separable_and_depthwise_counts_match_keras():
    model = build_model(SEP_STACK)
    assert model.count_params() == 1_114
    assert_matches_keras(SEP_STACK, model)


def test_import_refuses_what_the_table_cannot_express():
    import keras

    from core.errors import LayerLabError

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.SeparableConv2D(8, 3, dilation_rate=2)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    with pytest.raises(LayerLabError, match="dilation_rate=2, which Layer Lab does not"):
        spec_from_keras(model)
    x = keras.layers.Conv2D(8, (3, 5))(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    with pytest.raises(LayerLabError, match=r"kernel_size=\(3, 5\); Layer Lab supports only"):
        spec_from_keras(model)
