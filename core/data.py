"""MNIST: find it, load it once per process, and cut it into splits and subsets.

Lookup order: the ``MNIST_NPZ`` environment variable, Keras' cache
(``~/.keras/datasets/mnist.npz``), then a download from Keras' server into that cache,
tried once per process with a short timeout (:func:`try_again` allows another try).
Messages name the kind of source, never the server's paths (those go to the log). Arrays stay uint8;
:func:`to_float` makes the float32 [0, 1] tensors with a channel axis that models eat.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError

HOW_TO_GET = (
    "Set the MNIST_NPZ environment variable to a copy of Keras' mnist.npz, or copy "
    "mnist.npz into ~/.keras/datasets/ on the server, then press \u201cTry again\u201d."
)
KERAS_CACHE = Path("~/.keras/datasets/mnist.npz")
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
DOWNLOAD_TIMEOUT_S = 10.0        # per connect/read: an offline server gives up quickly
DOWNLOAD_DEADLINE_S = 120.0      # the whole download (11 MB)
MAX_DOWNLOAD_BYTES = 32 * 2**20  # mnist.npz is 11 MB
_EXPECTED = {"x_train": (60000, 28, 28), "y_train": (60000,),
             "x_test": (10000, 28, 28), "y_test": (10000,)}
# Where the data came from, in words a viewer may see (never the server's path).
KINDS = {"env": "the file MNIST_NPZ names", "cache": "Keras' cache (~/.keras/datasets)",
         "download": "a download from Keras' server",
         "ray": "the training server, through Ray's object store"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mnist:
    """The four MNIST arrays (uint8), the file they came from (``source``, server-side
    only: never shown) and how it was found (``kind``, a key of :data:`KINDS`)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    kind: str = "env"

    def describe(self) -> str:
        """One line for the sidebar: sizes and the kind of source, no path."""
        return (f"{len(self.x_train):,} train + {len(self.x_test):,} test images "
                f"from {KINDS.get(self.kind, 'a file on the server')}")


def read_npz(path: str | os.PathLike, kind: str = "env") -> Mnist:
    """Read and check an MNIST ``.npz`` in Keras' layout; raise DataError if it is wrong.

    The sentence names the kind of source, not the path; the path goes to the log.
    """
    path = Path(path).expanduser()
    what = f"The MNIST file ({KINDS.get(kind, 'a file on the server')})"
    if not path.is_file():
        log.warning("MNIST file %s does not exist", path)
        raise DataError(f"{what} does not exist. {HOW_TO_GET}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in _EXPECTED}
    except KeyError as exc:
        log.warning("MNIST file %s lacks %s", path, exc)
        raise DataError(f"{what} lacks the array {exc}; it is not Keras' mnist.npz. "
                        f"{HOW_TO_GET}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        log.warning("MNIST file %s could not be read: %r", path, exc)
        raise DataError(f"{what} could not be read; it is damaged or not an .npz file. "
                        f"{HOW_TO_GET}") from None
    for key, shape in _EXPECTED.items():
        arr = arrays[key]
        if arr.shape != shape or arr.dtype != np.uint8:
            log.warning("MNIST file %s has %s %s %s", path, key, arr.shape, arr.dtype)
            raise DataError(f"{what} has {key} of shape {arr.shape} and type "
                            f"{arr.dtype}, expected {shape} uint8. {HOW_TO_GET}")
    return Mnist(source=str(path), kind=kind, **arrays)


class CorruptDownload(Exception):
    """The downloaded bytes are not Keras' mnist.npz (truncated, too large, an error page)."""


def download_failure_reason(exc: BaseException) -> str:
    """Why a download failed, in plain words (no exception text).

    >>> download_failure_reason(socket.gaierror(-2, "Name or service not known"))
    'the download address could not be looked up (a DNS failure: no internet or no name server)'
    >>> download_failure_reason(urllib.error.URLError(ConnectionRefusedError(111, "x")))
    'the server has no network connection to the download site'
    >>> download_failure_reason(TimeoutError())
    'the download timed out'
    >>> download_failure_reason(CorruptDownload())
    'the downloaded file is corrupt'
    """
    if isinstance(exc, urllib.error.HTTPError):
        return f"the download site answered with an error (HTTP {exc.code})"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, socket.gaierror):
        return ("the download address could not be looked up (a DNS failure: no internet "
                "or no name server)")
    if isinstance(exc, TimeoutError):
        return "the download timed out"
    if isinstance(exc, (CorruptDownload, DataError)):
        return "the downloaded file is corrupt"
    return "the server has no network connection to the download site"


def download(url: str, target: Path) -> None:
    """Fetch ``url`` to ``target`` atomically, bounded in time and size; raises OSError,
    URLError or CorruptDownload."""
    from core.storage import atomic_write_bytes, ensure_dir  # noqa: PLC0415

    deadline = time.monotonic() + DOWNLOAD_DEADLINE_S
    chunks, size = [], 0
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise CorruptDownload(f"over {MAX_DOWNLOAD_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError("download deadline")
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data.startswith(b"PK"):
        raise CorruptDownload("not a zip file")
    ensure_dir(target.parent)
    atomic_write_bytes(target, data)


_download_failure: DataError | None = None     # this process tried once, and failed


def _download_once() -> Mnist:
    """Download MNIST into Keras' cache, once per process: a failure is remembered (see
    :func:`try_again`) so page views do not each wait for the network."""
    global _download_failure
    if _download_failure is not None:
        raise _download_failure
    cache = KERAS_CACHE.expanduser()
    log.info("MNIST not found; downloading %s to %s", MNIST_URL, cache)
    try:
        download(MNIST_URL, cache)
        return read_npz(cache, "download")
    except (OSError, CorruptDownload, DataError) as exc:  # URLError is an OSError
        log.warning("MNIST download from %s failed: %r", MNIST_URL, exc)
        if isinstance(exc, DataError):
            cache.unlink(missing_ok=True)       # a corrupt download must not be found later
        _download_failure = DataError(
            f"MNIST is not on this server and the server could not download it: "
            f"{download_failure_reason(exc)}. {HOW_TO_GET}")
        raise _download_failure from None


def find_mnist() -> Mnist:
    """Load MNIST from the first place that has it (see module docstring)."""
    env = os.environ.get("MNIST_NPZ")
    if env:
        return read_npz(env, "env")
    cache = KERAS_CACHE.expanduser()
    if cache.is_file():
        return read_npz(cache, "cache")
    return _download_once()


_lock = threading.Lock()
_cached: Mnist | None = None


def load_mnist() -> Mnist:
    """MNIST for this process, loaded once (thread-safe). Looking again after a failure
    is cheap: the files are checked again, the download is not tried again."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = find_mnist()
        return _cached


def use_mnist(mnist: Mnist) -> None:
    """Make ``mnist`` this process's MNIST instead of looking for it: a Ray worker gets the
    server's arrays through the object store, so a node needs no copy of its own and
    every run sees the server's data (checked there when it was loaded)."""
    global _cached
    with _lock:
        _cached = mnist


def data_problem() -> DataError | None:
    """Why MNIST cannot be used (a DataError whose text is the sentence), or None."""
    try:
        load_mnist()
    except DataError as err:
        return err
    return None


def try_again() -> None:
    """Forget a failed download so the next :func:`load_mnist` tries once more."""
    global _download_failure
    with _lock:
        _download_failure = None


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
