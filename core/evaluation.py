"""Batched evaluation of a model on a labelled set: probabilities, confusion, metrics.

Results are cached by content: :func:`model_fingerprint` (the model's weights) plus
:func:`array_fingerprint` (the images and labels), never by a run id, which stays the
same when a run is resumed and trained further.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.model_cache import cached
from core.runs import atomic_write_bytes, layerlab_home

NUM_CLASSES = 10


@dataclass(frozen=True)
class Evaluation:
    probabilities: np.ndarray      # (N, 10) float32
    labels: np.ndarray             # (N,) true classes
    loss: float
    accuracy: float
    confusion: np.ndarray          # (10, 10) rows = true class, columns = predicted

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     n: int = NUM_CLASSES) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1], n=2).tolist()
    [[1, 0], [1, 1]]
    """
    idx = np.asarray(labels, dtype=np.int64) * n + np.asarray(predictions, dtype=np.int64)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def per_class_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix.

    >>> m = per_class_metrics([[3, 1], [0, 4]])
    >>> m["precision"].tolist(), m["recall"].tolist(), m["support"].tolist()
    ([1.0, 0.8], [0.75, 1.0], [4, 4])
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1,
            "support": support.astype(np.int64)}


def batched_probabilities(model, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Softmax outputs for float images (N, 28, 28, 1) via one compiled batched call
    (compiled once per model, kept by :mod:`core.model_cache`)."""
    import tensorflow as tf  # noqa: PLC0415

    fn = cached(model, "batched", lambda: _compiled_call(model))
    outs = [np.asarray(fn(tf.convert_to_tensor(images[i:i + batch_size])))
            for i in range(0, len(images), batch_size)]
    return np.concatenate(outs).astype(np.float32)


def _compiled_call(model):
    """``model(x, training=False)`` as a ``tf.function``, holding the model weakly (the
    cache is keyed by the model; a strong reference would keep it alive forever)."""
    import tensorflow as tf  # noqa: PLC0415

    ref = weakref.ref(model)

    @tf.function(reduce_retracing=True, autograph=False)
    def call(x):
        return ref()(x, training=False)

    return call


def evaluate(model, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> Evaluation:
    """Probabilities, cross-entropy loss, accuracy and confusion matrix on a labelled set."""
    return evaluation_from_probabilities(batched_probabilities(model, images, batch_size),
                                         labels)


# -- identities, caching and the cell view (Errors page) ---------------------------------

def evaluation_from_probabilities(probabilities: np.ndarray,
                                  labels: np.ndarray) -> Evaluation:
    """An :class:`Evaluation` from already computed class probabilities.

    >>> ev = evaluation_from_probabilities([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1])
    >>> ev.predictions.tolist(), round(ev.accuracy, 3)
    ([0, 1, 0], 0.667)
    """
    probs = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(labels)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    preds = probs.argmax(axis=1)
    return Evaluation(probs, labels, float(-np.log(picked).mean()),
                      float((preds == labels).mean()), confusion_matrix(labels, preds))


def array_fingerprint(*arrays: np.ndarray) -> str:
    """A short content hash of some arrays (shape, dtype and bytes).

    >>> a = np.zeros((2, 3), np.uint8)
    >>> array_fingerprint(a) == array_fingerprint(a.copy())
    True
    >>> array_fingerprint(a) == array_fingerprint(a.reshape(3, 2))
    False
    """
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


_FINGERPRINTS: "weakref.WeakKeyDictionary[Any, tuple[tuple, str]]" = weakref.WeakKeyDictionary()
_FINGERPRINTS_LOCK = threading.Lock()


def _weights_version(model) -> tuple:
    """What changes when a model's weights are trained in place: its optimizer and that
    optimizer's step count (a model never compiled has neither)."""
    optimizer = getattr(model, "optimizer", None)
    steps = getattr(optimizer, "iterations", None)
    return (id(optimizer), -1 if steps is None else int(np.asarray(steps)))


def model_fingerprint(model) -> str:
    """A content hash of a Keras model: its layer names and types and every weight value.

    Two models with the same architecture and weights share it, whatever file they came
    from, so caches keyed by it stay valid across reloads and go stale on retraining.
    Kept per model object until its optimizer takes a step (a resumed run trains the very
    same object further): reading every weight cost the Errors page a tenth of its CPU
    at each view. Code that changes weights outside an optimizer step (batch-norm
    recalibration) calls :func:`forget_fingerprint`.
    """
    version = _weights_version(model)
    with _FINGERPRINTS_LOCK:
        known = _FINGERPRINTS.get(model)
    if known is not None and known[0] == version:
        return known[1]
    h = hashlib.blake2b(digest_size=16)
    for layer in model.layers:
        h.update(f"{layer.name}:{type(layer).__name__};".encode())
    for w in model.get_weights():
        h.update(array_fingerprint(np.asarray(w)).encode())
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS[model] = (version, h.hexdigest())
    return h.hexdigest()


def forget_fingerprint(model) -> None:
    """Drop ``model``'s kept fingerprint: its weights were changed in place."""
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS.pop(model, None)


def cache_root() -> Path:
    """``$LAYERLAB_HOME/cache`` (default ``~/.layerlab/cache``), beside the run store."""
    return layerlab_home() / "cache"


def evaluation_cache_dir() -> Path:
    """``<cache_root>/evaluations``: test-set probabilities per model."""
    return cache_root() / "evaluations"


_key_locks: dict[str, threading.Lock] = {}      # one per cache key, never dropped (~100 B)
_key_locks_guard = threading.Lock()
computed = 0        # evaluations actually computed (not read from disk), for tests


def _key_lock(key: str) -> threading.Lock:
    with _key_locks_guard:
        return _key_locks.setdefault(key, threading.Lock())


def cached_evaluate(model, images: np.ndarray, labels: np.ndarray,
                    cache_dir: str | os.PathLike | None = None,
                    batch_size: int = 1000) -> Evaluation:
    """:func:`evaluate`, with the probabilities kept on disk per (model, data) pair.

    The key is the model's :func:`model_fingerprint` plus a hash of the images and
    labels, so a second call for the same model and set only reads a 400 kB file. Calls
    for the same key at once compute it once: the others wait, then read the file (a
    page's visitor arriving during :mod:`core.page_warm_up` waits on the warm-up).
    """
    global computed
    folder = Path(cache_dir) if cache_dir is not None else evaluation_cache_dir()
    key = f"{model_fingerprint(model)}-{array_fingerprint(images, labels)}"
    path = folder / f"{key}.npy"
    with _key_lock(key):
        if path.is_file():
            try:
                probs = np.load(path, allow_pickle=False)
                if probs.shape == (len(labels), NUM_CLASSES):
                    return evaluation_from_probabilities(probs, labels)
            except (OSError, ValueError):
                pass                                   # damaged: compute it again
        probs = batched_probabilities(model, images, batch_size)
        computed += 1
        buf = io.BytesIO()
        np.save(buf, probs, allow_pickle=False)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError:
            pass                                   # a read-only home only loses the cache
    return evaluation_from_probabilities(probs, labels)


def cell_indices(labels: np.ndarray, probabilities: np.ndarray, true: int,
                 predicted: int) -> np.ndarray:
    """Indices of the images in one confusion cell, most confident prediction first.

    >>> probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    >>> cell_indices([0, 0, 0], probs, true=0, predicted=1).tolist()
    [0, 2]
    """
    probabilities = np.asarray(probabilities)
    preds = probabilities.argmax(axis=1)
    idx = np.flatnonzero((np.asarray(labels) == true) & (preds == predicted))
    return idx[np.argsort(-probabilities[idx, predicted], kind="stable")]


def row_normalise(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the fraction of each true class), zeros kept.

    >>> row_normalise([[1, 3], [0, 0]]).tolist()
    [[0.25, 0.75], [0.0, 0.0]]
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    sums = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, sums, out=np.zeros_like(confusion), where=sums > 0)
