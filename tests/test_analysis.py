"""Data-set statistics, the hardest images, the logistic baseline, confusion matrices of a
real model (row sums = test class counts, trace = correct count) and their caching."""
from __future__ import annotations

import base64
import time

import numpy as np
import pytest

from core import analysis as an
from core import evaluation as ev
from core.errors import LayerLabError

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def small_model():
    """The shipped pretrained small_cnn."""
    from core import pretrained

    return pretrained.load_model("small_cnn")


def test_class_counts_match_mnist(mnist):
    assert an.class_counts(mnist.y_test).tolist() == TEST_COUNTS
    assert an.class_counts(mnist.y_train).tolist() == TRAIN_COUNTS


def test_mean_images_are_class_averages(mnist):
    x, y = mnist.x_test[:500], mnist.y_test[:500]
    means = an.mean_images(x, y)
    assert means.shape == (10, 28, 28) and means.dtype == np.float32
    np.testing.assert_allclose(means[3], x[y == 3].mean(axis=0), rtol=1e-5)
    assert 0 <= means.min() and means.max() <= 255


def test_gallery_is_per_class_and_seeded(mnist):
    picks = an.class_gallery(mnist.y_test, 6, seed=1)
    assert len(picks) == 10
    for cls, idx in enumerate(picks):
        assert len(idx) == 6 and (mnist.y_test[idx] == cls).all()
    again = an.class_gallery(mnist.y_test, 6, seed=1)
    other = an.class_gallery(mnist.y_test, 6, seed=2)
    assert all((a == b).all() for a, b in zip(picks, again))
    assert any((a != b).any() for a, b in zip(picks, other))


def test_histogram_counts_every_pixel(mnist):
    counts, edges = an.intensity_histogram(mnist.x_test[:100], bins=32)
    assert counts.sum() == 100 * 784 and len(edges) == 33
    assert counts[0] > counts[1:].sum()          # MNIST is mostly background
    with pytest.raises(LayerLabError):
        an.intensity_histogram(mnist.x_test[:2], bins=7)


def test_png_data_url_roundtrip():
    from io import BytesIO

    from PIL import Image

    img = np.arange(784, dtype=np.uint8).reshape(28, 28)
    url = an.png_data_url(img)
    assert url.startswith("data:image/png;base64,") and len(url) < 2000
    back = np.array(Image.open(BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert (back == img).all()


def test_hardest_images_rank_by_models_wrong():
    labels = np.array([0, 1, 2, 3, 4])
    preds = [np.array([0, 2, 2, 0, 4]), np.array([1, 2, 2, 0, 4]), np.array([0, 2, 2, 3, 4])]
    idx, wrong = an.hardest_images(preds, labels, top=10)
    assert idx.tolist() == [1, 3, 0] and wrong.tolist() == [3, 2, 1]
    with pytest.raises(LayerLabError):
        an.hardest_images([], labels)


def test_error_changes_and_difference():
    labels = np.array([0, 1, 2, 3])
    a, b = np.array([0, 0, 2, 1]), np.array([0, 1, 1, 1])
    ch = an.error_changes(labels, a, b)
    assert ch["fixed"].tolist() == [1] and ch["new"].tolist() == [2]
    assert ch["both"].tolist() == [3]
    diff = an.confusion_difference(ev.confusion_matrix(labels, a),
                                   ev.confusion_matrix(labels, b))
    assert diff.sum() == 0 and diff[1, 0] == -1 and diff[2, 1] == 1


def test_logistic_baseline_small_and_cached(mnist, tmp_path):
    x, y = mnist.x_train[:2000], mnist.y_train[:2000]
    base = an.load_or_fit_baseline(x, y, max_iter=50, cache_dir=tmp_path)
    probs = base.probabilities(mnist.x_test[:1000])
    assert probs.shape == (1000, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(axis=1) == mnist.y_test[:1000]).mean() > 0.8
    assert an.baseline_cache_path(x, y, 50, cache_dir=tmp_path).is_file()
    t0 = time.perf_counter()
    again = an.load_or_fit_baseline(x, y, max_iter=50, cache_dir=tmp_path, fit=False)
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_array_equal(again.coef, base.coef)
    assert an.load_or_fit_baseline(x[:1500], y[:1500], 50, cache_dir=tmp_path,
                                   fit=False) is None


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
    clone.set_weights(w)                       # trained further in place: a new identity
    assert ev.model_fingerprint(clone) == ev.model_fingerprint(other)
