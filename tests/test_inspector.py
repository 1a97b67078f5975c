"""The inspector: one compiled call for probabilities and every layer's output, gradient
saliency, Grad-CAM, occlusion, filters and the robustness probe."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.data import to_float
from core.errors import LayerLabError
from core.inspector import (Inspection, Inspector, filter_images, inspector_for, on_worker,
                            robustness_variants)
from core.spec import ModelSpec

SPEC = ModelSpec("inspect_cnn", [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3},
    {"type": "BatchNormalization"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 16, "kernel_size": 3},
    {"type": "AveragePooling2D", "pool_size": 2},
    {"type": "Dropout", "rate": 0.25},
    {"type": "Flatten"},
    {"type": "Dense", "units": 32},
    {"type": "Dense", "units": 10, "activation": "softmax"}])


@pytest.fixture(scope="module")
def trained(mnist):
    """A small CNN with batch norm and dropout, trained briefly on 3,000 images."""
    import keras

    from core.build import build_model
    from core.data import stratified_subset

    model = build_model(SPEC, seed=1)
    idx = stratified_subset(mnist.y_train, 3000, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy")
    model.fit(to_float(mnist.x_train[idx]), mnist.y_train[idx], epochs=2, batch_size=64,
              verbose=0)
    return model


@pytest.fixture(scope="module")
def inspector(trained):
    return inspector_for(trained)


# -- the forward pass --------------------------------------------------------------------
def test_one_call_gives_probabilities_and_every_layer(trained, inspector, mnist):
    import keras

    x = mnist.x_test[0]
    result = inspector.run(x)
    expected = np.asarray(trained(to_float(x), training=False))[0]
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert abs(result.probabilities.sum() - 1) < 1e-5
    layers = [layer for layer in trained.layers
              if not isinstance(layer, keras.layers.InputLayer)]
    names = [layer.name for layer in layers]
    assert list(result.activations) == names
    for layer in layers:                               # each output = its own sub-model
        sub = keras.Model(trained.inputs[0], layer.output)
        want = np.asarray(sub(to_float(x), training=False))[0]
        np.testing.assert_allclose(result.activations[layer.name], want, atol=1e-4,
                                   err_msg=layer.name)
    kinds = {v.name: v.kind for v in inspector.layers}
    assert kinds == {"conv1": "conv", "bn1": "other", "maxpool1": "pool", "conv2": "conv",
                     "avgpool1": "pool", "dropout1": "other", "flatten1": "other",
                     "dense1": "dense", "dense2": "dense"}
    assert inspector.views("conv", "pool")[0].shape == (26, 26, 8)
    assert inspector.gradcam_layer == "conv2"
    assert len(inspector.feature_model.outputs) == len(names) + 2   # + probs + logits in


def test_inspector_is_cached_compiled_and_deterministic(trained, inspector, mnist):
    assert inspector_for(trained) is inspector
    a = inspector.run(mnist.x_test[1]).probabilities
    b = inspector.run(mnist.x_test[1]).probabilities
    np.testing.assert_array_equal(a, b)                # dropout off, batch norm frozen
    # float input in [0, 1] works the same as uint8
    c = inspector.run(mnist.x_test[1].astype(np.float32) / 255).probabilities
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_falls_back_when_xla_is_not_available(trained, mnist):
    fresh = Inspector(trained, jit_compile=True)

    def broken(_):
        raise RuntimeError("XLA is not available here")
    fresh._forward = broken
    result = fresh.run(mnist.x_test[2])
    assert fresh._jit is False
    np.testing.assert_allclose(result.probabilities,
                               np.asarray(trained(to_float(mnist.x_test[2])))[0], atol=1e-5)


def test_tensorflow_calls_run_on_one_long_lived_thread(inspector, mnist):
    seen = set()
    original = inspector._call_here

    def spy(x):
        seen.add(threading.current_thread().name)
        return original(x)
    inspector._call_here = spy
    try:
        threads = [threading.Thread(target=inspector.run, args=(mnist.x_test[i],))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        del inspector._call_here
    assert len(seen) == 1 and next(iter(seen)).startswith("layerlab-inspect")
    assert on_worker(lambda: on_worker(lambda: 7)) == 7          # nested calls: no deadlock


def test_single_image_path_is_fast_and_beats_predict(inspector, trained, mnist):
    x = mnist.x_test[3]
    times = []
    for _ in range(30):
        start = time.perf_counter()
        inspector.run(x)
        times.append(time.perf_counter() - start)
    predict = []
    for _ in range(5):
        start = time.perf_counter()
        trained.predict(to_float(x), verbose=0)
        predict.append(time.perf_counter() - start)
    assert np.median(times) < 0.05                              # loose: shared CI machines
    assert np.median(times) < np.median(predict)


def test_batched_probabilities_and_misclassified(inspector, trained, mnist):
    from core.evaluation import batched_probabilities

    probs = inspector.probabilities(mnist.x_test[:20])
    np.testing.assert_allclose(probs, batched_probabilities(trained, to_float(
        mnist.x_test[:20])), atol=1e-5)
    wrong = inspector.misclassified(mnist.x_test[:500], mnist.y_test[:500])
    preds = inspector.probabilities(mnist.x_test[:500]).argmax(axis=1)
    np.testing.assert_array_equal(wrong, np.flatnonzero(preds != mnist.y_test[:500]))
    assert inspector.misclassified(None, None) is wrong          # computed once, kept


def test_misclassified_follows_the_weights_not_the_object(mnist):
    """A resumed run trains the very same model object: the kept answer must not outlive
    its weights."""
    from core.build import build_model

    model = build_model(SPEC, seed=2)
    inspector = inspector_for(model)
    images, labels = mnist.x_test[:300], mnist.y_test[:300]
    first = inspector.misclassified(images, labels)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(to_float(mnist.x_train[:256]), mnist.y_train[:256], batch_size=32,
              verbose=0)                                      # trained further, in place
    again = inspector.misclassified(images, labels)
    want = np.flatnonzero(inspector.probabilities(images).argmax(axis=1) != labels)
    np.testing.assert_array_equal(again, want)
    assert again is not first


def test_uncertainty_sentences():
    def inspection(probs):
        return Inspection(np.asarray(probs, np.float32))
    sure = inspection([0.01] * 9 + [0.91])
    assert sure.top == 9 and sure.uncertainty() is None
    torn = inspection([0.45, 0.4] + [0.15 / 8] * 8)
    assert "torn between 0 (45%) and 1 (40%)" in torn.uncertainty()
    weak = inspection([0.5, 0.2, 0.1] + [0.2 / 7] * 7)
    assert "only 50%" in weak.uncertainty()


# -- what it looked at -------------------------------------------------------------------
def test_saliency_is_the_gradient_of_the_class_logit(inspector, trained, mnist):
    import tensorflow as tf

    x = mnist.x_test[4]
    expl = inspector.explain(x)
    assert expl.target == inspector.run(x).top
    import keras

    last = trained.layers[-1]
    head = keras.Model(trained.inputs[0], last.input)
    xt = tf.convert_to_tensor(to_float(x))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = tf.matmul(head(xt, training=False), last.kernel) + last.bias
        score = logits[0, expl.target]
    grad = np.abs(np.asarray(tape.gradient(score, xt)))[0, ..., 0]
    np.testing.assert_allclose(expl.saliency, grad / grad.max(), atol=1e-4)
    assert expl.saliency.shape == (28, 28) and expl.saliency.max() == pytest.approx(1.0)


def test_maps_point_at_the_ink(inspector, mnist):
    """Saliency, Grad-CAM and occlusion put more weight on the digit than on the empty
    background, for most test digits."""
    wins = {"saliency": 0, "gradcam": 0, "occlusion": 0}
    for i in range(12):
        x = mnist.x_test[i]
        expl = inspector.explain(x, occlusion=True, smooth=4)
        ink = x > 60
        for name in wins:
            heat = getattr(expl, name)
            assert heat.shape == (28, 28) and 0 <= heat.min() and heat.max() <= 1.0 + 1e-6
            wins[name] += heat[ink].mean() > heat[~ink].mean()
        assert expl.gradcam_method in ("Grad-CAM", "HiResCAM")
    assert wins["saliency"] >= 10 and wins["gradcam"] >= 8 and wins["occlusion"] >= 8, wins


def test_explain_any_class_and_smoothgrad(inspector, mnist):
    x = mnist.x_test[5]
    for target in (0, 9):
        expl = inspector.explain(x, target, smooth=8)
        assert expl.target == target and expl.saliency.max() == pytest.approx(1.0)


def test_mlp_has_no_gradcam_and_no_spatial_layers(mnist):
    from core.build import build_model
    from core.presets import PRESETS

    mlp = inspector_for(build_model(PRESETS["warmup_mlp"].spec, seed=0))
    assert mlp.gradcam_layer is None and not mlp.views("conv", "pool")
    expl = mlp.explain(mnist.x_test[0])
    assert expl.gradcam is None and expl.saliency.shape == (28, 28)
    assert [v.name for v in mlp.views("dense")] == ["dense1", "dense2", "dense3", "dense4"]


# -- weights, variants and pictures ------------------------------------------------------
def test_filter_images(inspector):
    k1 = inspector.conv_kernel("conv1")
    assert k1.shape == (3, 3, 1, 8)
    first = filter_images(k1)
    assert first.shape == (8, 3, 3)
    np.testing.assert_allclose(first[2], k1[:, :, 0, 2])
    k2 = inspector.conv_kernel("conv2")
    np.testing.assert_allclose(filter_images(k2)[5], k2[:, :, :, 5].mean(axis=2), atol=1e-7)
    np.testing.assert_allclose(filter_images(k2, 3)[5], k2[:, :, 3, 5])
    with pytest.raises(LayerLabError, match="8 input channels"):
        filter_images(k2, 8)


def test_robustness_variants(mnist):
    x = mnist.x_test[0]
    variants = robustness_variants(x)
    labels = [name for name, _ in variants]
    assert labels[0] == "original" and len(variants) == 11
    assert {"shift left 4", "rotate +30°", "noise sd 0.25"} <= set(labels)
    by = dict(variants)
    np.testing.assert_array_equal(by["shift right 4"][:, 4:], x[:, :-4])
    np.testing.assert_array_equal(by["shift up 4"][:-4], x[4:])
    for name, img in variants:
        assert img.shape == (28, 28) and img.dtype == np.uint8, name
    assert abs(int(by["rotate +15°"].astype(int).sum()) - int(x.astype(int).sum())) \
        < 0.1 * x.astype(int).sum()
    np.testing.assert_array_equal(robustness_variants(x)[9][1], by["noise sd 0.25"])
