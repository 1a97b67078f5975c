"""Shared fixtures: MNIST from ../shared (or MNIST_NPZ), quiet TensorFlow, temp stores, and
the app's pages opened in Streamlit's AppTest."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The bench scripts' setup, shared: quiet TensorFlow, MNIST_NPZ from ../shared when unset.
import bench._util  # noqa: E402,F401

# No UMAP warm-up in the app's embedding process under test: each one would compile for
# tens of seconds in the background. tests/test_embedding_worker.py turns it on itself.
os.environ.setdefault("LAYERLAB_WARM_UP_MAPS", "0")
# Nor the Errors page's evaluation at the first page view (tests/test_page_warm_up.py
# turns it on itself).
os.environ.setdefault("LAYERLAB_WARM_UP_ERRORS", "0")
# Nor the server's visit of its own pages (tests/e2e/test_first_view_warms_pages.py turns
# it on).
os.environ.setdefault("LAYERLAB_WARM_UP_PAGES", "0")

APP = ROOT / "app.py"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own run store and leaderboard folder."""
    monkeypatch.setenv("LAYERLAB_HOME", str(tmp_path_factory.mktemp("layerlab_home")))


@pytest.fixture(scope="session")
def mnist():
    from core.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def tiny_trained(mnist):
    """A small CNN with a named penultimate Dense layer, trained one epoch on 3,000
    images: ``(spec, model)``. Shared by the analysis, projection and page tests."""
    import keras

    from core.build import build_model
    from core.data import to_float
    from core.spec import ModelSpec

    spec = ModelSpec("tiny", [{"type": "Conv2D", "filters": 8, "kernel_size": 3},
                              {"type": "MaxPooling2D", "pool_size": 2},
                              {"type": "Flatten"},
                              {"type": "Dense", "units": 32},
                              {"type": "Dense", "units": 10, "activation": "softmax"}])
    model = build_model(spec, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(to_float(mnist.x_train[:3000]), mnist.y_train[:3000], epochs=1, batch_size=64,
              verbose=0)
    return spec, model


@pytest.fixture(scope="session")
def app_path() -> Path:
    """The app's entry point, app.py."""
    return APP


@pytest.fixture
def open_page(app_path):
    """Open the app in AppTest as a browser does: app.py's first run (Home), then a page.

    ``open_page("train")`` runs Home, switches to pages/train.py and runs it. ``query``
    and ``state`` are set before the first run; ``run=False`` switches without running
    the page (to set more session state first). ``open_page()`` stops after Home.
    """
    from streamlit.testing.v1 import AppTest

    def _open(page: str | None = None, *, timeout: float = 120, query: dict | None = None,
              state: dict | None = None, run: bool = True) -> AppTest:
        at = AppTest.from_file(str(app_path), default_timeout=timeout)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        for key, value in (state or {}).items():
            at.session_state[key] = value
        at.run()
        if page is not None:
            at.switch_page(f"pages/{page}.py")
            if run:
                at.run()
        return at

    return _open
