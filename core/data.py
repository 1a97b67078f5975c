"""MNIST: find it, load it once per process, and cut it into splits and subsets.

Lookup order: the ``MNIST_NPZ`` environment variable, Keras' cache
(``~/.keras/datasets/mnist.npz``), then Keras' own download. Arrays stay uint8;
:func:`to_float` makes the float32 [0, 1] tensors with a channel axis that models eat.
"""
from __future__ import annotations

import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError

HOW_TO_GET = (
    "Download mnist.npz (for example with `python -c \"import keras; "
    "keras.datasets.mnist.load_data()\"` on a machine with internet, which stores it in "
    "~/.keras/datasets/) and point the MNIST_NPZ environment variable at the file."
)
KERAS_CACHE = Path("~/.keras/datasets/mnist.npz")
_EXPECTED = {"x_train": (60000, 28, 28), "y_train": (60000,),
             "x_test": (10000, 28, 28), "y_test": (10000,)}


@dataclass(frozen=True)
class Mnist:
    """The four MNIST arrays (uint8) and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def describe(self) -> str:
        """One line for the sidebar: sizes and source."""
        return (f"{len(self.x_train):,} train + {len(self.x_test):,} test images "
                f"from {self.source}")


def read_npz(path: str | os.PathLike) -> Mnist:
    """Read and check an MNIST ``.npz`` in Keras' layout; raise DataError if it is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"MNIST file {path} does not exist. {HOW_TO_GET}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in _EXPECTED}
    except KeyError as exc:
        raise DataError(f"MNIST file {path} lacks the array {exc}; it is not Keras' "
                        f"mnist.npz. {HOW_TO_GET}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"MNIST file {path} could not be read ({exc}); it is damaged or "
                        f"not an .npz file. {HOW_TO_GET}") from None
    for key, shape in _EXPECTED.items():
        arr = arrays[key]
        if arr.shape != shape or arr.dtype != np.uint8:
            raise DataError(f"MNIST file {path} has {key} of shape {arr.shape} and type "
                            f"{arr.dtype}, expected {shape} uint8. {HOW_TO_GET}")
    return Mnist(source=str(path), **arrays)


def find_mnist() -> Mnist:
    """Load MNIST from the first place that has it (see module docstring)."""
    env = os.environ.get("MNIST_NPZ")
    if env:
        return read_npz(env)
    cache = KERAS_CACHE.expanduser()
    if cache.is_file():
        return read_npz(cache)
    try:
        import keras  # noqa: PLC0415 - heavy, only needed for the download

        keras.datasets.mnist.load_data()
    except Exception as exc:  # network errors come in many types
        raise DataError(f"MNIST is not on this machine and Keras could not download it "
                        f"({type(exc).__name__}). {HOW_TO_GET}") from None
    return read_npz(cache)


_lock = threading.Lock()
_cached: Mnist | None = None


def load_mnist() -> Mnist:
    """MNIST for this process, loaded once (thread-safe)."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = find_mnist()
        return _cached


def to_float(images: np.ndarray) -> np.ndarray:
    """Digits as models eat them: float32 ``(N, 28, 28, 1)`` in [0, 1].

    The one place pixels are scaled. Takes one digit ``(28, 28)``, a batch
    ``(N, 28, 28)`` or a batch that already has its channel axis ``(N, 28, 28, 1)``;
    integer values (uint8 pixels) are divided by 255, float values are taken as already
    in [0, 1].
    Callers that want flat pixel vectors reshape the result (a view, no copy).

    >>> x = np.full((3, 28, 28), 255, np.uint8)
    >>> to_float(x).shape, to_float(x).dtype.name, float(to_float(x).max())
    ((3, 28, 28, 1), 'float32', 1.0)
    >>> to_float(x[0]).shape
    (1, 28, 28, 1)
    >>> to_float(np.full((2, 28, 28, 1), 0.5)).max()      # already scaled: kept
    np.float32(0.5)
    >>> to_float(x).reshape(3, -1).shape                   # flat pixels
    (3, 784)
    """
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[..., None]
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32)


def stratified_split(labels: np.ndarray, fraction: float,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): ``fraction`` of each class held out, deterministically."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"The validation fraction must be in [0, 1), got {fraction}.")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` examples with class proportions kept (for quick runs)."""
    n = len(labels)
    if size >= n:
        return np.arange(n)
    if size < 1:
        raise DataError(f"A subset needs at least one image, got {size}.")
    _, held = stratified_split(labels, size / n, seed)
    return held
