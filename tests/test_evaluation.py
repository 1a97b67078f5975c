"""Evaluation of a real model: confusion matrices (row sums = test class counts, trace =
correct count), the content-keyed disk cache, the cell view, and per-class metrics."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core import evaluation as ev

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def small_model():
    """The shipped pretrained small_cnn."""
    from core import pretrained

    return pretrained.load_model("small_cnn")


def test_confusion_of_a_real_model(small_model, mnist, tmp_path):
    from core.data import to_float

    x = to_float(mnist.x_test)
    result = ev.cached_evaluate(small_model, x, mnist.y_test, cache_dir=tmp_path)
    cm = result.confusion
    assert cm.sum(axis=1).tolist() == TEST_COUNTS          # rows = true class
    correct = int((result.predictions == mnist.y_test).sum())
    assert int(np.trace(cm)) == correct
    assert result.accuracy == pytest.approx(correct / 10000)
    # cached: same numbers from the file, quickly
    assert len(list(tmp_path.glob("*.npy"))) == 1
    t0 = time.perf_counter()
    again = ev.cached_evaluate(small_model, x, mnist.y_test, cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_array_equal(again.confusion, cm)
    # a cell lists exactly its images, most confident first
    off = np.argwhere(cm - np.diag(np.diag(cm)) > 0)
    t, p = (int(v) for v in off[0])
    idx = ev.cell_indices(mnist.y_test, result.probabilities, t, p)
    assert len(idx) == cm[t, p]
    assert (mnist.y_test[idx] == t).all() and (result.predictions[idx] == p).all()
    conf = result.probabilities[idx, p]
    assert (np.diff(conf) <= 0).all()
    norm = ev.row_normalise(cm)
    np.testing.assert_allclose(norm.sum(axis=1), 1.0)


def test_model_fingerprint_follows_weights(small_model):
    import keras

    fp = ev.model_fingerprint(small_model)
    assert fp == ev.model_fingerprint(small_model)
    clone = keras.models.clone_model(small_model)
    clone.set_weights(small_model.get_weights())
    assert ev.model_fingerprint(clone) == fp
    w = clone.get_weights()
    w[0] = w[0] + 1.0
    other = keras.models.clone_model(small_model)
    other.set_weights(w)
    assert ev.model_fingerprint(other) != fp
    clone.set_weights(w)                       # changed in place, outside an optimizer:
    ev.forget_fingerprint(clone)               # its changer says so
    assert ev.model_fingerprint(clone) == ev.model_fingerprint(other)


def test_a_fingerprint_is_kept_until_the_model_trains_or_is_recalibrated(mnist):
    """Kept per model object (the weights are not read again at every page view), and
    new after an optimizer step on the very same object (a resumed run) or a batch-norm
    recalibration."""
    from core import pretrained
    from core.calibration import recalibrate_batch_norm
    from core.data import to_float

    model = pretrained.load_model("fast_cnn")
    first = ev.model_fingerprint(model)
    reads = []
    model.get_weights = lambda original=model.get_weights: reads.append(1) or original()
    assert ev.model_fingerprint(model) == first and not reads
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(to_float(mnist.x_train[:64]), mnist.y_train[:64], batch_size=64, verbose=0)
    trained = ev.model_fingerprint(model)
    assert trained != first and len(reads) == 1
    assert ev.model_fingerprint(model) == trained and len(reads) == 1
    assert recalibrate_batch_norm(model, mnist.x_train[:256].astype("float32") / 255) > 0
    assert ev.model_fingerprint(model) not in (first, trained) and len(reads) == 2


def test_a_damaged_cache_file_is_computed_again(small_model, mnist, tmp_path):
    from core.data import to_float

    x, y = to_float(mnist.x_test[:300]), mnist.y_test[:300]
    first = ev.cached_evaluate(small_model, x, y, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(b"not an array")
    again = ev.cached_evaluate(small_model, x, y, cache_dir=tmp_path)
    np.testing.assert_allclose(again.probabilities, first.probabilities, atol=1e-6)
    assert np.load(path).shape == (300, 10)                      # rewritten whole


def test_calls_for_the_same_model_and_set_at_once_compute_it_once(small_model, mnist,
                                                                 tmp_path):
    """A page's visitor arriving during the Errors warm-up (or with other visitors) waits
    on the one computation, then reads its result."""
    from core.data import to_float

    x, y = to_float(mnist.x_test[:3000]), mnist.y_test[:3000]
    ev.cached_evaluate(small_model, x[:10], y[:10], cache_dir=tmp_path)   # traced: warm
    start, results = threading.Barrier(3), []

    def visit():
        start.wait()
        results.append(ev.cached_evaluate(small_model, x, y, cache_dir=tmp_path))

    before = ev.computed
    visitors = [threading.Thread(target=visit) for _ in range(3)]
    for t in visitors:
        t.start()
    for t in visitors:
        t.join(120)
    assert ev.computed - before == 1
    assert len(results) == 3
    for other in results[1:]:
        np.testing.assert_array_equal(other.probabilities, results[0].probabilities)


def test_evaluate_agrees_with_the_batched_probabilities(small_model, mnist):
    from core.data import to_float

    x, y = to_float(mnist.x_test[:250]), mnist.y_test[:250]
    probs = ev.batched_probabilities(small_model, x, batch_size=100)
    assert probs.shape == (250, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    result = ev.evaluate(small_model, x, y, batch_size=64)
    np.testing.assert_allclose(result.probabilities, probs, atol=1e-5)
    assert result.accuracy == pytest.approx((probs.argmax(axis=1) == y).mean())


def test_metrics_of_a_class_never_predicted_or_never_present_are_zero():
    m = ev.per_class_metrics([[2, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert m["precision"].tolist() == [pytest.approx(2 / 3), 0.0, 0.0]
    assert m["recall"].tolist() == [1.0, 0.0, 0.0] and m["support"].tolist() == [2, 1, 0]
    assert m["f1"].tolist() == [pytest.approx(0.8), 0.0, 0.0]


def test_loss_is_the_mean_cross_entropy_with_zero_probabilities_clipped():
    result = ev.evaluation_from_probabilities([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]], [0, 1, 1])
    assert result.loss == pytest.approx((np.log(2) + 0 - np.log(1e-7)) / 3, rel=1e-5)
    assert result.confusion.shape == (10, 10) and result.confusion.sum() == 3
    assert result.confusion[:2, :2].tolist() == [[1, 0], [1, 1]]
