"""A workspace's own handwritten digits: the personal set the Draw page adds to.

Each workspace keeps one file, ``$LAYERLAB_HOME/personal/<key>/digits.npz`` (``key`` is
:func:`core.runs.workspace_key`, so the id is never spelled out on disk), holding
``ids`` (int64, stable per item, for deleting one), ``x`` (uint8 N×28×28) and ``y``
(uint8 N), MNIST's layout. Every change rewrites the whole file through
:func:`core.storage.atomic_write_bytes` (at most 2,000 digits: 1.5 MB), so a crash
mid-write leaves the previous set, never a cut one. Changes in this process are
serialised per workspace by a lock (two tabs adding at once both keep their digit).

Everything that comes from a viewer is checked before use: the workspace id
(:func:`core.workspace.check_workspace_id`), the label (an integer 0–9, nothing else)
and the image (28×28, 0–255, not blank). Refusals are :class:`PersonalError` sentences.
"""
from __future__ import annotations

import io
import logging
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import LayerLabError, StorageError
from core.runs import workspace_key
from core.storage import atomic_write_bytes, clean_temp_files, layerlab_home, save_error
from core.workspace import check_workspace_id

log = logging.getLogger(__name__)
MAX_DIGITS = 2_000
FILE_NAME = "digits.npz"
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


class PersonalError(LayerLabError):
    """A digit or label refused for the personal set (a sentence for the viewer)."""


@dataclass(frozen=True)
class PersonalSet:
    """A workspace's digits: ``x`` uint8 (N, 28, 28), ``y`` uint8 (N,), ``ids`` int64."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> list[int]:
        """How many digits of each class 0–9.

        >>> empty_set().counts()
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        """
        return np.bincount(self.y, minlength=10).astype(int).tolist()


def empty_set() -> PersonalSet:
    """A set with no digits.

    >>> len(empty_set()), empty_set().x.shape
    (0, (0, 28, 28))
    """
    return PersonalSet(np.zeros(0, np.int64), np.zeros((0, 28, 28), np.uint8),
                       np.zeros(0, np.uint8))


def check_label(value: object) -> int:
    """``value`` as a digit class if it is an integer 0–9; anything else is refused.

    >>> check_label(7), check_label(np.uint8(0))
    (7, 0)
    >>> check_label("7")
    Traceback (most recent call last):
    ...
    core.personal.PersonalError: A digit's label must be a whole number from 0 to 9; this one was not, so nothing was added.
    >>> check_label(True)
    Traceback (most recent call last):
    ...
    core.personal.PersonalError: A digit's label must be a whole number from 0 to 9; this one was not, so nothing was added.
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or not 0 <= int(value) <= 9:
        # The value is not repeated: it may be text meant for the page.
        raise PersonalError("A digit's label must be a whole number from 0 to 9; this one "
                            "was not, so nothing was added.")
    return int(value)


def check_image(image: object) -> np.ndarray:
    """``image`` as uint8 (28, 28) if it is a 28×28 digit with values 0–255, not blank.

    >>> check_image(np.full((28, 28, 1), 200)).dtype
    dtype('uint8')
    >>> check_image(np.zeros((28, 28)))
    Traceback (most recent call last):
    ...
    core.personal.PersonalError: The canvas is empty: draw a digit first, then add it.
    """
    if not isinstance(image, np.ndarray) or image.shape not in ((28, 28), (28, 28, 1)) \
            or image.dtype.kind not in "uif":
        raise PersonalError("Only a 28×28 digit from the Draw page can be added.")
    values = image.reshape(28, 28).astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise PersonalError("A digit's pixels must lie between 0 and 255; this one was not "
                            "added.")
    if values.max() == 0:
        raise PersonalError("The canvas is empty: draw a digit first, then add it.")
    return np.rint(values).astype(np.uint8)


def to_npz(digits: PersonalSet, *, with_ids: bool = True) -> bytes:
    """The set as ``.npz`` bytes in MNIST's layout (``x``, ``y``; ``ids`` when kept).

    >>> sorted(np.load(io.BytesIO(to_npz(empty_set(), with_ids=False))).files)
    ['x', 'y']
    """
    buf = io.BytesIO()
    arrays = {"x": digits.x, "y": digits.y}
    if with_ids:
        arrays["ids"] = digits.ids
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_npz(data: bytes) -> PersonalSet:
    """A set read back from :func:`to_npz` bytes; a malformed file raises StorageError.

    >>> len(from_npz(to_npz(empty_set())))
    0
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            ids, x, y = npz["ids"], npz["x"], npz["y"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise StorageError("The saved personal digits could not be read.") from exc
    n = len(y)
    if ids.shape != (n,) or x.shape != (n, 28, 28) or y.shape != (n,) \
            or x.dtype != np.uint8 or y.dtype != np.uint8 or ids.dtype != np.int64 \
            or n > MAX_DIGITS or (n and int(y.max()) > 9):
        raise StorageError("The saved personal digits are not in the expected layout.")
    return PersonalSet(ids, x, y)


class PersonalStore:
    """Each workspace's personal digits on disk (see the module docstring)."""

    def __init__(self, root: str | Path | None = None, *, limit: int = MAX_DIGITS) -> None:
        self.root = Path(root) if root is not None else layerlab_home() / "personal"
        self.limit = limit

    def path(self, workspace: str) -> Path:
        return self.root / workspace_key(check_workspace_id(workspace)) / FILE_NAME

    def load(self, workspace: str) -> PersonalSet:
        """The workspace's digits (an empty set before the first one is added)."""
        path = self.path(workspace)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return empty_set()
        except OSError as exc:
            log.warning("could not read %s: %r", path, exc)
            raise StorageError("Your saved digits could not be read just now; try again "
                               "in a moment.") from None
        try:
            return from_npz(data)
        except StorageError:
            log.warning("personal digits at %s are damaged", path)
            raise StorageError("Your saved digits could not be read (the file is damaged); "
                               "ask whoever runs the server to look at its log.") from None

    def add(self, workspace: str, image: object, label: object) -> int:
        """Add one digit with its label; its id. Refused past :attr:`limit` digits."""
        label = check_label(label)
        digit = check_image(image)
        with _lock_for(workspace):
            old = self.load(workspace)
            if len(old) >= self.limit:
                raise PersonalError(f"Your set already holds {self.limit:,} digits, the most "
                                    f"one workspace keeps: delete some on the My digits page "
                                    f"before adding more.")
            new_id = int(old.ids.max()) + 1 if len(old) else 1
            self._write(workspace, PersonalSet(np.append(old.ids, np.int64(new_id)),
                                               np.concatenate([old.x, digit[None]]),
                                               np.append(old.y, np.uint8(label))))
        return new_id

    def delete(self, workspace: str, item_id: int) -> bool:
        """Remove the digit with ``item_id``; False when there is none (already gone)."""
        with _lock_for(workspace):
            old = self.load(workspace)
            keep = old.ids != item_id
            if keep.all():
                return False
            self._write(workspace, PersonalSet(old.ids[keep], old.x[keep], old.y[keep]))
        return True

    def export(self, workspace: str) -> bytes:
        """The workspace's digits as an MNIST-layout ``.npz`` (``x``, ``y`` only)."""
        return to_npz(self.load(workspace), with_ids=False)

    def _write(self, workspace: str, digits: PersonalSet) -> None:
        path = self.path(workspace)
        clean_temp_files(path.parent, depth=0)      # leftovers of a killed earlier save
        try:
            atomic_write_bytes(path, to_npz(digits))
        except OSError as exc:
            raise save_error("save your digits", exc, path) from None


def _lock_for(workspace: str) -> threading.Lock:
    """One lock per workspace, so read-modify-write of its file never interleaves."""
    with _locks_lock:
        return _locks.setdefault(check_workspace_id(workspace), threading.Lock())
