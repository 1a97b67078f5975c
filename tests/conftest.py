"""Shared fixtures: MNIST from ../shared (or MNIST_NPZ), quiet TensorFlow, temp stores."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_SHARED = ROOT.parent / "shared" / "data" / "mnist.npz"
if "MNIST_NPZ" not in os.environ and _SHARED.is_file():
    os.environ["MNIST_NPZ"] = str(_SHARED)



@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own run store and leaderboard folder."""
    monkeypatch.setenv("LAYERLAB_HOME", str(tmp_path_factory.mktemp("layerlab_home")))


@pytest.fixture(scope="session")
def mnist():
    from core.data import load_mnist

    return load_mnist()
