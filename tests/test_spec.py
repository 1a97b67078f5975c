"""Layer specs: exact preset counts (against Keras too), shapes, and validation messages."""
from __future__ import annotations

import json

import pytest

from core.errors import SpecError
from core.presets import PRESETS, get_preset
from core.spec import (MAX_ACTIVATION_BYTES, MAX_MACS, MAX_PARAMS, ModelSpec, activation_bytes,
                       check_cost, check_spec, default_layer, infer_shapes, model_name)

def test_output_shapes_bulky_and_small():
    bulky = [i.output_shape for i in infer_shapes(get_preset("bulky_cnn").spec)]
    assert bulky == [(26, 26, 32), (26, 26, 32), (24, 24, 32), (24, 24, 32), (12, 12, 32),
                     (12, 12, 32), (10, 10, 64), (10, 10, 64), (8, 8, 64), (8, 8, 64),
                     (4, 4, 64), (4, 4, 64), (1024,), (256,), (256,), (256,), (10,)]
    small = [i.output_shape for i in infer_shapes(get_preset("small_cnn").spec)]
    assert small == [(26, 26, 16), (13, 13, 16), (13, 13, 16), (11, 11, 32), (5, 5, 32),
                     (5, 5, 32), (800,), (128,), (128,), (10,)]


def test_layer_names_are_readable_and_unique():
    infos = infer_shapes(get_preset("bulky_cnn").spec)
    names = [i.name for i in infos]
    assert names[:4] == ["conv1", "bn1", "conv2", "bn2"]
    assert len(set(names)) == len(names)


def test_json_round_trip():
    for preset in PRESETS.values():
        text = preset.spec.to_json()
        again = ModelSpec.from_json(text)
        assert again.layers == preset.spec.layers
        assert again.name == preset.spec.name
        assert json.loads(text)["input_shape"] == [28, 28, 1]


def _stack(*layers):
    return ModelSpec("t", list(layers))


C = lambda f=8, k=3, **kw: {"type": "Conv2D", "filters": f, "kernel_size": k, **kw}  # noqa
D = lambda u, a="relu", **kw: {"type": "Dense", "units": u, "activation": a, **kw}  # noqa
P = lambda s=2: {"type": "MaxPooling2D", "pool_size": s}  # noqa
F = {"type": "Flatten"}
OUT = D(10, "softmax")

INVALID = [
    # (stack, substrings the message must contain)
    (_stack(), ["empty"]),
    (_stack(F, D(10, "relu")), ["last layer must be Dense with 10 units and softmax"]),
    (_stack(F, D(9, "softmax")), ["last layer", "layer 2"]),
    (_stack(C(), F, C(), F, OUT), ["Layer 3 (Conv2D) needs a 2-D feature map",
                                   "layer 2 (Flatten)", "Move it before the Flatten"]),
    (_stack(F, D(32), C(), F, OUT), ["Layer 3 (Conv2D)", "flat vector from layer 2 (Dense)"]),
    (_stack(F, P(), OUT), ["Layer 2 (MaxPooling2D)", "2-D feature map"]),
    (_stack(C(8, 3), P(), P(), P(), P(), P(), F, OUT),
     ["Layer 6 (MaxPooling2D 2×2) would shrink the 1×1 map to nothing"]),
    (_stack(C(8, 11), C(8, 11), C(8, 11), F, OUT), ["Layer 3 (Conv2D 11×11)", "8×8",
                                                     "nothing"]),
    (_stack(C(), {"type": "Dropout", "rate": 1.0}, F, OUT), ["Layer 2 (Dropout)", "rate=1.0",
                                                            "[0, 1)"]),
    (_stack(C(), {"type": "Dropout", "rate": -0.1}, F, OUT), ["Layer 2 (Dropout)", "rate"]),
    (_stack(C(0), F, OUT), ["Layer 1 (Conv2D)", "filters=0", "at least 1"]),
    (_stack(C(-4), F, OUT), ["Layer 1 (Conv2D)", "filters=-4"]),
    (_stack(F, D(0), OUT), ["Layer 2 (Dense)", "units=0"]),
    (_stack(C(8, 0), F, OUT), ["Layer 1 (Conv2D)", "kernel_size=0"]),
    (_stack({"type": "Lambda"}, F, OUT), ["Layer 1", "unknown type 'Lambda'"]),
    (_stack({"type": "Conv3D"}, F, OUT), ["unknown type 'Conv3D'", "Conv2D"]),
    (_stack(C(8, 3, dilation=2), F, OUT), ["Layer 1 (Conv2D)", "unknown parameter",
                                            "dilation"]),
    (_stack(C(), D(32), F, OUT), ["Layer 2 (Dense) gets a 2-D feature map", "26×26×8",
                                  "add a Flatten"]),
    (_stack(F, D(8192), D(8192), OUT), ["50,000,000", "parameters"]),
    (_stack(C("8"), F, OUT), ["Layer 1 (Conv2D)", "whole number for filters"]),
    (_stack(C(8, 3, padding="full"), F, OUT), ["Layer 1 (Conv2D)", "padding='full'",
                                               "valid, same"]),
    (_stack(C(8, 3, activation="swishy"), F, OUT), ["Layer 1 (Conv2D)", "activation"]),
    (_stack(F, D(10)), ["last layer"]),
    (_stack(F, {"type": "Dense"}, OUT), ["Layer 2 (Dense) needs the parameter units"]),
    (_stack("Conv2D", F, OUT), ["Layer 1 must be an object"]),
    (_stack(F, {"type": "GlobalAveragePooling2D"}, OUT), ["Layer 2 (GlobalAveragePooling2D)",
                                                          "2-D feature map"]),
    (_stack(C(2000), F, OUT), ["filters=2000", "most allowed is 1024"]),
    (_stack(*([F] * 101), OUT), ["102 layers", "at most 100"]),
    (_stack(C(), {"type": "Dropout", "rate": float("nan")}, F, OUT), ["Layer 2 (Dropout)",
                                                                     "number for rate"]),
    (_stack(F, D(10, "softmax", use_bias="yes")), ["true or false for use_bias"]),
]


@pytest.mark.parametrize("stack,needles", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_stacks_explained(stack, needles):
    err = check_spec(stack)
    assert isinstance(err, SpecError)
    for needle in needles:
        assert needle in str(err), (needle, str(err))
    assert "Traceback" not in str(err)


def test_error_names_offending_layer_index():
    err = check_spec(_stack(C(), F, C(), F, OUT))
    assert err.layer == 3


def test_from_json_rejects_bad_documents():
    with pytest.raises(SpecError, match="not valid JSON"):
        ModelSpec.from_json("{nope")
    with pytest.raises(SpecError, match="\"layers\" list"):
        ModelSpec.from_json('{"name": "x"}')
    with pytest.raises(SpecError, match="unknown keys"):
        ModelSpec.from_json('{"layers": [], "code": "import os"}')
    with pytest.raises(SpecError, match="at most 1,000,000 bytes"):
        ModelSpec.from_json(" " * 1_000_001)
    with pytest.raises(SpecError, match="input shape"):
        ModelSpec.from_json('{"layers": [], "input_shape": [32, 32, 3]}')


def test_valid_custom_stack_with_same_padding_and_strides():
    spec = _stack(C(8, 5, padding="same", strides=2), {"type": "BatchNormalization"},
                  {"type": "Activation", "activation": "relu"},
                  {"type": "AveragePooling2D", "pool_size": 2},
                  {"type": "GlobalAveragePooling2D"}, OUT)
    infos = infer_shapes(spec)
    assert [i.output_shape for i in infos] == [(14, 14, 8), (14, 14, 8), (14, 14, 8),
                                               (7, 7, 8), (8,), (10,)]
    assert infos[0].trainable == 5 * 5 * 8 + 8


def test_spec_json_round_trip_via_default_layers():
    spec = ModelSpec("mine", [default_layer("Conv2D"), default_layer("BatchNormalization"),
                              default_layer("MaxPooling2D"), default_layer("Flatten"),
                              default_layer("Dropout"), {"type": "Dense", "units": 10,
                                                         "activation": "softmax"}])
    again = ModelSpec.from_json(spec.to_json())
    assert again.layers == spec.layers and again.name == "mine"


# ------------------------------------------------------------------ the last layer, named
@pytest.mark.parametrize("last,says,not_says", [
    (D(10, "relu"), ["layer 2 (Dense 10) uses the relu activation",
                     "set its activation to softmax"], ["units"]),
    (D(9, "softmax"), ["layer 2 (Dense) has 9 units", "set its units to 10"], ["activation"]),
    (D(9, "relu"), ["has 9 units and uses relu", "units to 10 and its activation to softmax"],
     []),
    ({"type": "Dropout", "rate": 0.5}, ["layer 2 is Dropout 0.5",
                                        "add a Dense layer with 10 units and softmax"], []),
])
def test_last_layer_message_names_the_actual_problem(last, says, not_says):
    message = str(check_spec(_stack(F, last)))
    tail = message.split(", but ", 1)[1]
    for needle in says:
        assert needle in message, message
    for needle in not_says:
        assert needle not in tail, message


# ------------------------------------------------------------------ compute and memory caps
BIG = C(512, 3, padding="same")
ATTACK = _stack(BIG, BIG, {"type": "GlobalAveragePooling2D"}, OUT)    # issue 12: 161 s, +3.9 GB
WIDE = _stack(C(1024, 1, padding="same"), {"type": "GlobalAveragePooling2D"}, OUT)


def test_heavy_stack_under_the_parameter_cap_is_refused_naming_the_layer():
    err = check_spec(ATTACK)
    assert isinstance(err, SpecError) and err.layer == 2
    macs = 28 * 28 * 512 * 9 * 1 + 28 * 28 * 512 * 9 * 512 + 512 * 10
    assert f"{macs:,}" == "1,853,305,856"
    assert str(err) == ("The stack needs 1,853,305,856 multiply-accumulates per image, over "
                        "the limit of 100,000,000 from layer 2 (Conv2D 512 3×3) on; use fewer "
                        "filters, or a stride or pooling before that layer.")
    # the parameters alone would pass: 5,120 + 2,359,808 + 5,130
    assert 2_370_058 < MAX_PARAMS


def test_parameter_cap_names_the_layer():
    err = check_spec(_stack(F, D(8192), D(8192), OUT))
    assert "from layer 3 (Dense 8192) on" in str(err) and err.layer == 3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_has_ample_headroom_under_the_caps(name):
    preset = PRESETS[name]
    infos = infer_shapes(preset.spec)
    assert sum(i.macs for i in infos) * 5 <= MAX_MACS
    assert activation_bytes(infos, 1024, training=True) * 2 <= MAX_ACTIVATION_BYTES
    check_cost(preset.spec, preset.recipe.batch_size)
    check_cost(infos, 1024)                       # the Train page's largest batch


def test_activation_memory_cap_depends_on_the_batch_size():
    check_cost(WIDE, 128)                          # 0.77 GiB: fine
    with pytest.raises(SpecError) as err:
        check_cost(infer_shapes(WIDE), 1024)
    assert str(err.value) == (
        "At batch size 1,024, training needs about 6.1 GiB of activation memory, over the "
        "limit of 2.0 GiB from layer 1 (Conv2D 1024 1×1) on; use a smaller batch size, fewer "
        "filters, or a stride or pooling earlier.")
    assert err.value.layer == 1
    with pytest.raises(SpecError, match="MACs|multiply-accumulates"):
        check_cost(ATTACK, 1)
    with pytest.raises(SpecError, match="batch size must be a whole number"):
        check_cost(WIDE, 0)


# ------------------------------------------------------------------ hostile documents
def test_deeply_nested_spec_is_one_sentence():
    text = '{"layers": ' + "[" * 200_000 + "]" * 200_000 + "}"
    with pytest.raises(SpecError) as err:
        ModelSpec.from_json(text)
    assert str(err.value).startswith("The spec is nested too deeply")
    assert str(err.value).count(".") == 1 and str(err.value).endswith(".")


def test_input_shape_that_is_not_a_list_is_one_sentence():
    with pytest.raises(SpecError) as err:
        ModelSpec.from_json('{"layers": [], "input_shape": 5}')
    assert str(err.value) == "The input shape must be [28, 28, 1] (MNIST), got 5."
    with pytest.raises(SpecError, match="description must be a string"):
        ModelSpec.from_json('{"layers": [], "description": {"a": 1}}')


def test_huge_values_are_clipped_in_messages():
    for layer in ({"type": "x" * 100_000}, {"type": "Dense", "units": [1] * 100_000},
                  {"type": "Dense", "units": 10, "y" * 100_000: 1}):
        message = str(check_spec(_stack(layer, OUT)))
        assert len(message) < 400, message[:200]


def test_model_name_is_one_function():
    from core.build import build_model
    from core.export import to_keras_script

    spec = _stack(F, OUT)
    spec.name = "my net-2!"
    assert model_name(spec.name) == "my_net_2"
    assert build_model(spec).name == "my_net_2"
    assert "name='my_net_2')" in to_keras_script(spec)
