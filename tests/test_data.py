"""The MNIST loader: lookup order, clear errors, shapes, stratified deterministic splits."""
from __future__ import annotations

import numpy as np
import pytest

from core import data
from core.errors import DataError


def test_loads_from_env(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.y_test.dtype == np.uint8
    assert list(mnist.y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(mnist.y_test[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert "60,000 train" in mnist.describe()


def test_loaded_once(mnist):
    assert data.load_mnist() is data.load_mnist()


def test_missing_file_gives_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_NPZ", str(tmp_path / "nope.npz"))
    with pytest.raises(DataError) as err:
        data.find_mnist()
    text = str(err.value)
    assert "does not exist" in text and "MNIST_NPZ" in text and "mnist.npz" in text


def test_corrupt_and_wrong_files(tmp_path, monkeypatch):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    monkeypatch.setenv("MNIST_NPZ", str(bad))
    with pytest.raises(DataError, match="could not be read"):
        data.find_mnist()
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((5, 28, 28), np.uint8), y_train=np.zeros(5, np.uint8),
             x_test=np.zeros((5, 28, 28), np.uint8), y_test=np.zeros(5, np.uint8))
    monkeypatch.setenv("MNIST_NPZ", str(wrong))
    with pytest.raises(DataError, match=r"expected \(60000, 28, 28\) uint8"):
        data.find_mnist()
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((5, 28, 28), np.uint8))
    monkeypatch.setenv("MNIST_NPZ", str(partial))
    with pytest.raises(DataError, match="lacks the array"):
        data.find_mnist()


def test_keras_cache_then_download(tmp_path, monkeypatch, mnist):
    """Without MNIST_NPZ the loader tries ~/.keras, then Keras' download."""
    monkeypatch.delenv("MNIST_NPZ")
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "cache" / "mnist.npz")
    calls = []

    import keras

    def fake_download():
        calls.append(1)
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", fake_download)
    with pytest.raises(DataError, match="could not download") as err:
        data.find_mnist()
    assert calls == [1] and "MNIST_NPZ" in str(err.value)
    (tmp_path / "cache").mkdir()
    import shutil

    shutil.copy(mnist.source, tmp_path / "cache" / "mnist.npz")
    got = data.find_mnist()
    assert got.source.endswith("cache/mnist.npz") and calls == [1]


def test_to_float():
    x = np.full((3, 28, 28), 255, np.uint8)
    f = data.to_float(x)
    assert f.shape == (3, 28, 28, 1) and f.dtype == np.float32 and f.max() == 1.0
    assert data.to_float(x[0]).shape == (1, 28, 28, 1)


def test_to_float_takes_one_digit_or_a_batch():
    assert data.to_float(np.zeros((28, 28), np.uint8)).shape == (1, 28, 28, 1)
    assert data.to_float(np.zeros((5, 28, 28), np.uint8)).shape == (5, 28, 28, 1)
    assert data.to_float(np.full((28, 28), 255, np.uint8)).max() == 1.0
    x = np.full((2, 28, 28, 1), 0.5, np.float32)                # scaled, with channels
    assert data.to_float(x).shape == (2, 28, 28, 1) and data.to_float(x).max() == 0.5


def test_split_is_stratified_and_deterministic(mnist):
    keep, held = data.stratified_split(mnist.y_train, 0.1, seed=3)
    keep2, held2 = data.stratified_split(mnist.y_train, 0.1, seed=3)
    assert np.array_equal(held, held2) and np.array_equal(keep, keep2)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 60000
    counts = np.bincount(mnist.y_train, minlength=10)
    held_counts = np.bincount(mnist.y_train[held], minlength=10)
    assert np.all(np.abs(held_counts - counts * 0.1) <= 1)
    _, other = data.stratified_split(mnist.y_train, 0.1, seed=4)
    assert not np.array_equal(held, other)


def test_subset_keeps_class_proportions(mnist):
    idx = data.stratified_subset(mnist.y_train, 500, seed=0)
    assert len(idx) == 500
    counts = np.bincount(mnist.y_train[idx], minlength=10)
    assert counts.min() >= 40 and counts.max() <= 60
    assert np.array_equal(idx, data.stratified_subset(mnist.y_train, 500, seed=0))
    with pytest.raises(DataError):
        data.stratified_split(mnist.y_train, 1.5)
