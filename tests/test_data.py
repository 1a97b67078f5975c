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


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No MNIST on this 'server': HOME is an empty folder, MNIST_NPZ unset, and the
    download address refuses connections (a real socket failure, nothing mocked)."""
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "MNIST_URL", "http://127.0.0.1:1/mnist.npz")
    data.try_again()
    yield tmp_path / "home" / ".keras" / "datasets" / "mnist.npz"
    data.try_again()


def _attempts(caplog) -> int:
    return sum("downloading" in r.getMessage() for r in caplog.records)


def test_keras_cache_then_download(offline, caplog, mnist):
    """Without MNIST_NPZ the loader tries ~/.keras, then the download."""
    caplog.set_level("INFO", logger="core.data")
    with pytest.raises(DataError, match="could not download") as err:
        data.find_mnist()
    assert _attempts(caplog) == 1 and "MNIST_NPZ" in str(err.value)
    offline.parent.mkdir(parents=True)
    import shutil

    shutil.copy(mnist.source, offline)
    got = data.find_mnist()
    assert got.source.endswith("datasets/mnist.npz") and _attempts(caplog) == 1
    assert got.kind == "cache" and "Keras' cache" in got.describe()


def test_offline_download_is_tried_once_per_process(offline, caplog, monkeypatch):
    caplog.set_level("INFO", logger="core.data")
    messages = set()
    for _ in range(5):                                   # five page views
        with pytest.raises(DataError) as err:
            data.find_mnist()
        messages.add(str(err.value))
    assert _attempts(caplog) == 1 and len(messages) == 1
    text = messages.pop()
    assert "no network connection" in text and "MNIST_NPZ" in text
    assert "~/.keras/datasets" in text and "Exception" not in text
    assert str(offline.parent.parent.parent) not in text        # no server path
    monkeypatch.setattr(data, "_cached", None)          # this process has no MNIST yet
    assert str(data.data_problem()) == text and _attempts(caplog) == 1
    data.try_again()                                     # the page's "Try again"
    with pytest.raises(DataError):
        data.find_mnist()
    assert _attempts(caplog) == 2


class _Server:
    """A local HTTP server that answers every GET with ``body`` and counts the GETs."""

    def __init__(self, body: bytes):
        import http.server
        import threading

        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server name
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/mnist.npz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_corrupt_download_is_named_and_not_kept(offline, monkeypatch):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x_train.npy", b"not an array")
    server = _Server(buf.getvalue())
    try:
        monkeypatch.setattr(data, "MNIST_URL", server.url)
        for _ in range(3):
            with pytest.raises(DataError, match="the downloaded file is corrupt"):
                data.find_mnist()
        assert len(server.hits) == 1 and not offline.exists()
    finally:
        server.close()


def test_a_download_lands_in_keras_cache(offline, monkeypatch, mnist):
    from pathlib import Path

    server = _Server(Path(mnist.source).read_bytes())
    try:
        monkeypatch.setattr(data, "MNIST_URL", server.url)
        got = data.find_mnist()
        assert got.kind == "download" and got.x_train.shape == (60000, 28, 28)
        assert offline.is_file() and data.find_mnist().kind == "cache"
        assert len(server.hits) == 1
    finally:
        server.close()


def test_a_silent_server_times_out_quickly(offline, monkeypatch):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)                        # accepts the connection, never answers
    try:
        monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.3)
        monkeypatch.setattr(data, "MNIST_URL",
                            f"http://127.0.0.1:{listener.getsockname()[1]}/mnist.npz")
        with pytest.raises(DataError, match="the download timed out"):
            data.find_mnist()
    finally:
        listener.close()


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


def test_a_worker_can_be_given_the_servers_mnist(mnist):
    import dataclasses

    shipped = dataclasses.replace(mnist, source="the Ray object store", kind="ray")
    try:
        data.use_mnist(shipped)
        assert data.load_mnist() is shipped and data.data_problem() is None
        assert "from the training server, through Ray's object store" in shipped.describe()
    finally:
        data.use_mnist(mnist)
    assert data.load_mnist() is mnist
