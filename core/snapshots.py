"""Watch it learn: the snapshots a run keeps while it trains, as plain arrays.

A snapshot holds the first conv layer's filters, the probabilities and first-layer
feature maps of one fixed probe digit, the validation confusion matrix, and the weight
norm and gradient norm of every layer with weights (the gradient from one small batch).
:class:`core.snapshot_callback.Snapshots` (a Keras callback) takes one before training
starts, a few inside the first epoch (where most change happens) and one after every
epoch; they are saved with the run (``snapshots.npz``, see
:meth:`core.runs.RunStore.save_snapshots`). A run's snapshots stay under
:data:`MAX_BYTES`: maps are stored as signed bytes, few channels are kept, and epoch
snapshots are thinned out when a long run would pass the budget.

This module needs NumPy only (pages import it); the Keras side is in
:mod:`core.snapshot_callback`.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

MAX_BYTES = 1_000_000          # a run's snapshots, uncompressed
MAX_FILTERS = 32               # first-layer filters kept per snapshot
MAX_MAPS = 16                  # first-layer feature maps of the probe kept
GRAD_BATCH = 32                # images in the batch the gradient norms come from
CONFUSION_IMAGES = 1000        # validation images behind each confusion matrix
FIRST_EPOCH_STEPS = (1, 10)    # plus the middle of the first epoch


def first_epoch_steps(steps_per_epoch: int) -> list[int]:
    """Steps (1-based) of the first epoch after which a snapshot is taken.

    >>> first_epoch_steps(469)
    [1, 10, 234]
    >>> first_epoch_steps(8)
    [1, 4]
    >>> first_epoch_steps(1)
    []
    """
    steps = {s for s in (*FIRST_EPOCH_STEPS, steps_per_epoch // 2) if 0 < s < steps_per_epoch}
    return sorted(steps)


def thin(epochs: list[float], keep: int) -> list[int]:
    """Indices of the snapshots to keep when only ``keep`` fit: the first and the last
    always, the rest evenly spread (what the replay slider loses is least visible).

    >>> thin([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 4)
    [0, 3, 6, 9]
    >>> thin([0, 1, 2], 5)
    [0, 1, 2]
    """
    n = len(epochs)
    if n <= keep:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (keep - 1))) for i in range(keep)})


def quantize_maps(maps: np.ndarray) -> tuple[np.ndarray, float]:
    """Feature maps as signed bytes (-127..127 of their largest absolute value) and
    that value (a linear conv layer's maps are signed, so the sign is kept).

    >>> q, top = quantize_maps(np.array([[0.0, 0.5], [1.0, -2.0]]))
    >>> q.tolist(), top
    ([[0, 32], [64, -127]], 2.0)
    """
    top = float(np.max(np.abs(maps))) if maps.size else 0.0
    scaled = maps / top * 127 if top > 0 else np.zeros_like(maps)
    return np.round(scaled).astype(np.int8), top


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int = 10) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    >>> confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    out = np.zeros((n, n), dtype=np.int32)
    np.add.at(out, (y_true.astype(int), y_pred.astype(int)), 1)
    return out


def pack(snaps: list[dict[str, Any]], meta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The snapshots as stacked arrays (a leading snapshot axis), plus ``meta``."""
    keys = snaps[0].keys() if snaps else ()
    return {**meta, **{k: np.stack([s[k] for s in snaps]) for k in keys}}


def unpack(arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The inverse of :func:`pack`: per-snapshot dicts and the shared metadata."""
    n = len(arrays.get("epoch", ()))
    per = [k for k, v in arrays.items() if k not in META_KEYS and len(v) == n]
    snaps = [{k: arrays[k][i] for k in per} for i in range(n)]
    return snaps, {k: v for k, v in arrays.items() if k in META_KEYS}


META_KEYS = ("layers", "probe", "probe_label")


def snapshot_bytes(snap: dict[str, Any]) -> int:
    """Bytes one snapshot takes in memory and (uncompressed) on disk.

    >>> snapshot_bytes({"a": np.zeros(10, np.float16), "b": np.zeros(3, np.int8)})
    23
    """
    return sum(np.asarray(v).nbytes for v in snap.values())


def accuracy(cm: np.ndarray) -> float:
    """The share of a confusion matrix on its diagonal (0 for an empty one).

    >>> accuracy(np.array([[3, 1], [0, 4]]))
    0.875
    """
    cm = np.asarray(cm)
    return float(np.trace(cm)) / max(int(cm.sum()), 1)


def shared_epochs(runs: Iterable[Sequence[float]]) -> list[float]:
    """One slider for several runs' snapshots: the union of their epochs, rounded to a
    thousandth of an epoch (float16/32 epochs of the same point compare equal).

    >>> shared_epochs([[0, 0.5, 1], [0, 1.0000001, 2]])
    [0.0, 0.5, 1.0, 2.0]
    """
    return sorted({round(float(e), 3) for epochs in runs for e in epochs})


def index_at(epochs: Sequence[float], epoch: float) -> int:
    """The snapshot of one run to show at ``epoch`` of a shared slider: the last taken at
    or before it, clamped to the run (its first before it starts, its last after it ends).

    >>> index_at([0, 0.5, 1, 2], 1.5), index_at([0, 0.5, 1, 2], 1.0)
    (2, 2)
    >>> index_at([0, 1, 2], 7.0), index_at([0.5, 1], 0.0)
    (2, 0)
    """
    later = np.searchsorted(np.asarray(epochs, np.float64), epoch + 5e-4, side="right")
    return max(0, int(later) - 1)
