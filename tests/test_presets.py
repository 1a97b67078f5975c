"""The preset networks: exact parameter counts (by hand and against Keras), the layer
helpers, and the sentence for an unknown name."""
from __future__ import annotations

import pytest

from core.errors import LayerLabError
from core.presets import PRESETS, cbr, conv, get_preset
from core.spec import infer_shapes

EXPECTED = {  # name: (total, trainable, non-trainable)
    "warmup_mlp": (111_146, 111_146, 0),
    "bulky_cnn": (331_754, 330_858, 896),
    "small_cnn": (108_618, 108_618, 0),
    "bonus_cnn": (93_322, 93_322, 0),
    "keras_example": (34_826, 34_826, 0),
    "fast_cnn": (34_138, 33_914, 224),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_counts_from_spec(name):
    infos = infer_shapes(get_preset(name).spec)
    total = sum(i.total_params for i in infos)
    trainable = sum(i.trainable for i in infos)
    assert (total, trainable, total - trainable) == EXPECTED[name]
    assert get_preset(name).expected_params == EXPECTED[name][0]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_counts_match_keras(name):
    import numpy as np

    from core.build import build_model

    model = build_model(get_preset(name).spec)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    non_trainable = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    infos = infer_shapes(get_preset(name).spec)
    assert model.count_params() == sum(i.total_params for i in infos)
    assert trainable == sum(i.trainable for i in infos)
    assert non_trainable == sum(i.non_trainable for i in infos)
    if name in EXPECTED:
        assert (model.count_params(), trainable, non_trainable) == EXPECTED[name]
    # per-layer output shapes agree with Keras
    for info in infos:
        assert tuple(model.get_layer(info.name).output.shape[1:]) == info.output_shape
    assert model.inputs[0].shape[1:] == (28, 28, 1)


def test_every_presets_stated_count_is_its_specs_count():
    for name, preset in PRESETS.items():
        assert sum(i.total_params for i in infer_shapes(preset.spec)) == \
            preset.expected_params, name
        assert preset.spec.name == name and 0.95 < preset.target_accuracy < 1


def test_unknown_preset_is_refused_with_the_known_names():
    with pytest.raises(LayerLabError) as err:
        get_preset("huge_cnn")
    message = str(err.value)
    assert message.startswith("There is no preset called 'huge_cnn'.")
    assert all(name in message for name in PRESETS) and message.endswith(".")


def test_cbr_is_a_biasless_linear_conv_then_batch_norm_then_relu():
    block = cbr(12, 5)
    assert block[0] == conv(12, 5, activation="linear", use_bias=False)
    assert [layer["type"] for layer in block] == ["Conv2D", "BatchNormalization", "Activation"]
    assert block[2]["activation"] == "relu"
