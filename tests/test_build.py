"""core.build: a validated spec becomes a functional keras.Model with readable layer names,
seeded weights and, on request, float16 compute everywhere but the softmax output."""
from __future__ import annotations

import numpy as np
import pytest

from core.build import build_model, make_layer, mixed_policy, model_policy
from core.errors import SpecError
from core.spec import ModelSpec, infer_shapes

SPEC = ModelSpec("tiny net", [{"type": "Conv2D", "filters": 4, "kernel_size": 3},
                              {"type": "BatchNormalization"},
                              {"type": "MaxPooling2D", "pool_size": 2},
                              {"type": "Flatten"},
                              {"type": "Dense", "units": 10, "activation": "softmax"}])


def test_the_model_is_functional_with_the_specs_names_and_shapes():
    model = build_model(SPEC)
    infos = infer_shapes(SPEC)
    assert model.name == "tiny_net" and model.inputs[0].name == "image"
    assert tuple(model.inputs[0].shape[1:]) == (28, 28, 1)
    assert [layer.name for layer in model.layers[1:]] == [i.name for i in infos]
    assert model.count_params() == sum(i.total_params for i in infos)
    out = model(np.zeros((2, 28, 28, 1), np.float32), training=False)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


def test_the_same_seed_gives_the_same_weights():
    a, b, c = build_model(SPEC, seed=3), build_model(SPEC, seed=3), build_model(SPEC, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_mixed_precision_keeps_the_softmax_output_in_float32():
    model = build_model(SPEC, mixed_precision=True)
    policies = [layer.dtype_policy.name for layer in model.layers[1:]]
    assert policies == ["mixed_float16"] * 4 + ["float32"]
    out = model(np.zeros((1, 28, 28, 1), np.float32), training=False)
    assert np.asarray(out).dtype == np.float32
    assert all(layer.dtype_policy.name == "float32" for layer in build_model(SPEC).layers[1:])


def test_a_named_policy_such_as_bfloat16_is_used_the_same_way():
    model = build_model(SPEC, mixed_precision="mixed_bfloat16")
    assert [layer.dtype_policy.name for layer in model.layers[1:]] == \
        ["mixed_bfloat16"] * 4 + ["float32"]
    assert model_policy(model) == "mixed_bfloat16" and model_policy(build_model(SPEC)) == "float32"
    out = model(np.zeros((1, 28, 28, 1), np.float32), training=False)
    assert np.asarray(out).dtype == np.float32


def test_a_cpu_gets_bfloat16_only_with_native_bfloat16_instructions():
    assert mixed_policy("CPU", bf16_cpu=False) is None      # emulated: slower than float32
    assert mixed_policy("CPU", bf16_cpu=True) == "mixed_bfloat16"
    assert mixed_policy("GPU", bf16_cpu=False) == "mixed_float16"


def test_an_invalid_spec_is_refused_before_keras_builds_anything():
    with pytest.raises(SpecError) as err:
        build_model(ModelSpec("bad", [{"type": "Flatten"}]))
    assert err.value.layer is not None and str(err.value).endswith(".")


def test_make_layer_passes_the_params_and_the_name():
    info = infer_shapes(SPEC)[0]
    layer = make_layer(info)
    assert type(layer).__name__ == "Conv2D" and layer.name == info.name == "conv1"
    assert layer.filters == 4 and tuple(layer.kernel_size) == (3, 3)
    assert make_layer(info, "mixed_float16").dtype_policy.name == "mixed_float16"
