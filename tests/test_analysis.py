"""Data-set statistics, the hardest images, error changes between two models and the
logistic baseline (a real model's confusion matrix is in tests/test_evaluation.py)."""
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
