"""core.stats against hand computation: parameters, MACs, memory, the change between stacks."""
from __future__ import annotations

from core.presets import get_preset
from core.spec import ModelSpec
from core.stats import compare, human_bytes, signed, summarize


def test_warmup_mlp_memory_matches_seed():
    rows, t = summarize(get_preset("warmup_mlp").spec, batch_size=32)
    assert t.params == 111_146
    assert t.weight_bytes == {"fp32": 444_584, "fp16": 222_292, "int8": 111_146}
    assert human_bytes(444_584) == "0.42 MiB"
    # Adam: weights + gradients + two moments, all trainable
    assert t.adam_training_bytes == 4 * 111_146 * 4
    # MACs: 784·128 + 128·64 + 64·32 + 32·10
    assert t.macs == 784 * 128 + 128 * 64 + 64 * 32 + 32 * 10
    assert [r.params for r in rows] == [0, 100_480, 8_256, 2_080, 330]
    # activations: outputs 784+128+64+32+10, plus the 784 input, × batch × 4 B
    assert t.activations == 784 + 128 + 64 + 32 + 10
    assert t.activation_bytes_inference == 32 * (1018 + 784) * 4
    assert t.activation_bytes_training == 2 * t.activation_bytes_inference


def test_conv_macs_and_bn_split_by_hand():
    rows, t = summarize(get_preset("bulky_cnn").spec)
    conv1, bn1, conv2 = rows[0], rows[1], rows[2]
    assert conv1.macs == 26 * 26 * 32 * 3 * 3 * 1
    assert conv2.macs == 24 * 24 * 32 * 3 * 3 * 32
    assert (bn1.trainable, bn1.non_trainable) == (64, 64)
    assert bn1.macs == 26 * 26 * 32
    assert t.non_trainable == 896
    assert rows[-1].macs == 256 * 10
    assert conv1.output_shape == (26, 26, 32)
    assert t.adam_training_bytes == (4 * 330_858 + 896) * 4


def test_compare_reports_change():
    _, a = summarize(get_preset("keras_example").spec)
    _, b = summarize(get_preset("small_cnn").spec)
    text = compare(a, b)
    assert text.startswith("+73,792 params")
    assert "MACs" in text and "−" in text


def test_separable_and_depthwise_rows_by_hand():
    spec = ModelSpec("sep", [
        {"type": "SeparableConv2D", "filters": 16, "kernel_size": 3, "depth_multiplier": 2},
        {"type": "DepthwiseConv2D", "kernel_size": 3, "strides": 2, "padding": "same",
         "use_bias": False},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 10, "activation": "softmax"}])
    rows, t = summarize(spec, batch_size=8)
    sep, dw = rows[0], rows[1]
    assert (sep.layer, sep.output_shape) == ("SeparableConv2D 16 3×3", (26, 26, 16))
    assert sep.params == 3 * 3 * 1 * 2 + 2 * 16 + 16                       # 66
    assert sep.macs == 26 * 26 * 3 * 3 * 2 + 26 * 26 * 2 * 16
    assert (dw.layer, dw.output_shape, dw.params) == ("DepthwiseConv2D 3×3", (13, 13, 16), 144)
    assert dw.macs == 13 * 13 * 3 * 3 * 16
    assert t.params == 66 + 144 + 16 * 10 + 10
    assert t.activation_bytes_training == 2 * 8 * (784 + 26 * 26 * 16 + 13 * 13 * 16 + 16
                                                   + 10) * 4


def test_no_change_is_neutral_and_signs_are_true_minus():
    _, a = summarize(get_preset("keras_example").spec)
    assert compare(a, a) == "±0 params, ±0% MACs"
    assert signed(-1_234, " params") == "−1,234 params"
