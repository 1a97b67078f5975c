"""fp32 / fp16 / int8 .tflite files: accuracy kept, sizes ordered, every layer type
converts, reports cached, one job per workspace, and the Real cost page."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from core import quantize
from core.layers import LAYER_TYPES
from tests.waiting import wait_until

CNN_PRESETS = ["bulky_cnn", "small_cnn", "bonus_cnn", "keras_example", "fast_cnn",
               "frontier_10k", "frontier_3k"]


@pytest.fixture(scope="module")
def test_set(mnist):
    from core.data import to_float

    return to_float(mnist.x_test), np.asarray(mnist.y_test), to_float(
        mnist.x_train[:quantize.CALIBRATION_IMAGES])


def stack_of_every_type():
    """A small untrained model holding every layer type of core/layers.py."""
    import keras

    from core.deskew import Deskew

    inputs = keras.Input((28, 28, 1), name="image")
    x = Deskew(name="deskew1")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="act1")(x)
    x = keras.layers.SeparableConv2D(8, 3, name="sep1")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.AveragePooling2D(2, name="avg1")(x)
    x = keras.layers.Dropout(0.2, name="drop1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Flatten(name="flat")(x)          # a no-op on a vector, still converted
    x = keras.layers.Dense(16, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="every_type")


@pytest.mark.parametrize("name", CNN_PRESETS)
def test_int8_accuracy_within_half_a_point_of_fp32(name, test_set):
    from core import pretrained
    from core.evaluation import evaluate

    images, labels, calibration = test_set
    model = pretrained.load_model(name)
    fp32 = evaluate(model, images, labels).accuracy
    int8 = quantize.convert(model, "int8", calibration)
    accuracy = float((quantize.predict(int8, images) == labels).mean())
    assert abs(accuracy - fp32) <= 0.005, (name, fp32, accuracy)


def test_every_layer_type_converts_to_every_format(test_set):
    images, _, calibration = test_set
    model = stack_of_every_type()
    used = {type(layer).__name__ for layer in model.layers}
    assert set(LAYER_TYPES) <= used
    assert set(LAYER_TYPES) <= quantize.CHECKED_TYPES
    assert quantize.unchecked_layers(model) == []
    for fmt in quantize.FORMATS:
        content = quantize.convert(model, fmt, calibration)
        assert len(quantize.predict(content, images[:50], batch=20)) == 50


def test_report_sizes_ordered_accuracy_kept_and_cached(mnist, monkeypatch):
    from core import pretrained

    model = pretrained.load_model("small_cnn")
    report = quantize.measure(model, mnist)
    v = report.variants
    assert v["int8"].size_bytes < v["fp16"].size_bytes < v["fp32"].size_bytes
    assert v["fp32"].accuracy == pytest.approx(pretrained.load_record("small_cnn")
                                               .test_accuracy, abs=1e-4)
    for fmt in quantize.FORMATS:
        assert v[fmt].problem is None and v[fmt].p50_ms > 0
        assert len(report.tflite(fmt)) == v[fmt].size_bytes
        assert len(v[fmt].differ) == len(v[fmt].differ_pred)
    assert v["fp32"].differ == []
    weights = quantize.computed_weight_bytes(model)
    assert weights["fp32"] == model.count_params() * 4

    def refuse(*_a, **_k):
        raise AssertionError("a cached report must not convert again")

    monkeypatch.setattr(quantize, "convert", refuse)
    again = quantize.measure(model, mnist)
    assert again == report


def test_a_failed_conversion_is_a_sentence_and_the_rest_is_measured(mnist, monkeypatch):
    from core import pretrained

    real = quantize.convert

    def no_int8(model, fmt, calibration=None):
        if fmt == "int8":
            raise RuntimeError("op not supported: /secret/path")
        return real(model, fmt, calibration)

    monkeypatch.setattr(quantize, "convert", no_int8)
    report = quantize.measure(pretrained.load_model("keras_example"), mnist)
    problem = report.variants["int8"].problem
    assert problem.startswith("The converter could not make a int8 file")
    assert "/secret" not in problem and "Conv2D" in problem
    assert report.variants["fp16"].accuracy > 0.95
    assert report.tflite("int8") is None


def test_one_conversion_per_workspace(mnist):
    from core import pretrained
    from core.workspace import new_workspace_id

    gate = threading.Event()
    blocker = quantize._executor.submit(gate.wait)       # hold the one worker thread
    ws = new_workspace_id()
    try:
        job = quantize.submit(ws, pretrained.load_model("keras_example"), mnist)
        assert quantize.submit(ws, pretrained.load_model("keras_example"), mnist) is job
        with pytest.raises(quantize.ConversionBusy, match="still running"):
            quantize.submit(ws, pretrained.load_model("fast_cnn"), mnist)
        other = quantize.submit(new_workspace_id(), pretrained.load_model("fast_cnn"),
                                mnist)
        assert other is not job
    finally:
        gate.set()
    blocker.result()
    wait_until(lambda: job.done and other.done, 120)
    assert job.result().variants["int8"].accuracy > 0.95
    assert quantize.job_for(ws) is job


def test_cost_page_converts_a_preset(open_page):
    at = open_page("cost")
    assert not at.exception
    at.selectbox(key="cost_model").select("keras_example (pretrained)").run()
    at.button(key="cost_convert").click().run()
    job = quantize.job_for(at.session_state.workspace)
    wait_until(lambda: job is not None and job.done, 120)
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    report = job.result()
    assert list(table.index) == ["fp32", "fp16", "int8"]
    assert table.loc["int8", "predictions unlike fp32"] == len(report.variants["int8"].differ)
    assert table.loc["int8", "test accuracy"] == f"{report.variants['int8'].accuracy:.2%}"
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == [f"Download {f} .tflite"
                                               for f in quantize.FORMATS]
    assert not any(b.proto.disabled for b in buttons)
