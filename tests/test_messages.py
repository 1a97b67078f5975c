"""What a viewer reads when something fails: a sentence, never a server path or an
exception's class or text (those go to the server's log). Each error path below is
driven for real (a failing training run, an unreadable store, a damaged mnist.npz, an
offline server) and its message scanned."""
from __future__ import annotations

import re

import numpy as np
import pytest

from core import data
from core.errors import LayerLabError

# An absolute path: a slash-separated run of names not preceded by "~" (the generic
# "~/.keras/datasets/" a message may name is not the server's path).
ABSOLUTE_PATH = re.compile(r"(?<![\w~.])/(?:[\w.-]+/)+[\w.-]*")
CLASS_NAME = re.compile(r"\b\w*(?:Error|Exception|BadZipFile|Traceback)\b")


def assert_viewer_safe(message: str, *secrets: str) -> None:
    """``message`` is a sentence with no absolute path, class name or secret in it."""
    assert message.strip().endswith("."), message
    assert not ABSOLUTE_PATH.search(message), message
    assert not CLASS_NAME.search(message), message
    for secret in secrets:
        assert secret not in message, (secret, message)


def test_the_scanner_catches_what_it_must():
    for leaky in ("Could not read /srv/layerlab/runs/x.json.", "It failed (OSError).",
                  "Training failed: RuntimeError: boom."):
        with pytest.raises(AssertionError):
            assert_viewer_safe(leaky)
    assert_viewer_safe("Copy mnist.npz into ~/.keras/datasets/ on the server.")


def test_a_failing_training_run(tmp_path, monkeypatch, mnist):
    import time

    import core.build
    from core.recipe import Recipe
    from core.spec import ModelSpec
    from core.training import TrainingJob, prepare_data

    secret = str(tmp_path / "secret-weights.h5")

    def boom(*a, **k):
        raise RuntimeError(f"cannot open {secret}")

    monkeypatch.setattr(core.build, "build_model", boom)
    spec = ModelSpec("tiny", [{"type": "Flatten"},
                              {"type": "Dense", "units": 10, "activation": "softmax"}])
    small = prepare_data(Recipe(train_subset=200, validation_split=0.1), test_limit=100)
    job = TrainingJob(spec, Recipe(epochs=1, train_subset=200), data=small)
    job.start()
    events, end = [], time.monotonic() + 120
    while not (events and events[-1]["kind"] == "done"):
        assert time.monotonic() < end
        events += job.drain()
        time.sleep(0.05)
    assert events[-1]["status"] == "failed"
    assert_viewer_safe(events[-1]["message"], secret, "cannot open")


def test_an_unreadable_store(tmp_path):
    from core.runs import Run, RunStore

    store = RunStore(tmp_path / "runs")
    run_id = "20240101-000000-abcdef"
    folder = tmp_path / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_bytes(b"\xff\xfe not json")
    (folder / "model.keras").write_bytes(b"PK\x03\x04 damaged")
    messages = []
    for call in (lambda: store.load_run(run_id), lambda: store.load_model(run_id)):
        with pytest.raises(LayerLabError) as err:
            call()
        messages.append(str(err.value))
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("x")
    with pytest.raises(LayerLabError) as err:              # a store it cannot write
        RunStore(blocked).save_run(Run(id=run_id, name="n", spec={}, recipe={}))
    messages.append(str(err.value))
    for message in messages:
        assert_viewer_safe(message, str(tmp_path))


@pytest.mark.parametrize("content", [
    b"PK\x03\x04 definitely not a zip",              # damaged
    b"",                                             # empty
    "missing",                                       # no file at all
    "wrong shapes",
])
def test_a_damaged_mnist_npz(tmp_path, monkeypatch, content):
    path = tmp_path / "secret-folder" / "mnist.npz"
    path.parent.mkdir()
    if content == "wrong shapes":
        np.savez(path, x_train=np.zeros((5, 28, 28), np.uint8), y_train=np.zeros(5, np.uint8),
                 x_test=np.zeros((5, 28, 28), np.uint8), y_test=np.zeros(5, np.uint8))
    elif content != "missing":
        path.write_bytes(content)
    monkeypatch.setenv("MNIST_NPZ", str(path))
    with pytest.raises(LayerLabError) as err:
        data.find_mnist()
    assert_viewer_safe(str(err.value), str(tmp_path), "secret-folder")


def test_an_offline_server(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "MNIST_URL", "http://127.0.0.1:1/mnist.npz")
    data.try_again()
    try:
        with pytest.raises(LayerLabError) as err:
            data.find_mnist()
    finally:
        data.try_again()
    assert_viewer_safe(str(err.value), str(tmp_path), "127.0.0.1")


def test_offline_pages_say_why_and_offer_to_try_again(open_page, tmp_path, monkeypatch):
    """Issue 13 §2: no "(Exception)", no path, and no page that needs the data runs."""
    from pages import common

    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "MNIST_URL", "http://127.0.0.1:1/mnist.npz")
    monkeypatch.setattr(data, "_cached", None)
    data.try_again()
    common.mnist.clear()
    try:
        at = open_page("data")
        assert not at.exception
        assert not common.data_available()
        shown = [e.value for e in at.main.error]
        assert len(shown) == 1 and "no network connection" in shown[0]
        assert_viewer_safe(shown[0], str(tmp_path))
        assert [e.value for e in at.sidebar.error] == shown       # the same sentence
        assert at.button(key="data_try_again").label == "Try again"
        assert not at.main.subheader                               # the page stopped
        at.button(key="data_try_again").click().run()             # tries once more
        assert not at.exception and [e.value for e in at.main.error] == shown
    finally:
        data.try_again()
        common.mnist.clear()
