"""Knowledge distillation: a small network learns from a bigger one's answers.

A recipe may name a *teacher*, one of the pretrained presets. Each training image's
target is then a blend of its true digit and the teacher's probabilities:

    target = (1 - weight) · one_hot(label) + weight · soften(teacher, temperature)

where ``soften`` raises the teacher's probabilities to ``1 / temperature`` and
renormalises (the same as a softmax of its logits divided by the temperature). Most
MNIST digits the teacher reads with near certainty, so their targets stay almost one-hot;
on the ambiguous few (a 4 that could be a 9) the target says so, and a network too small
to fit every training image spends less of itself on the ones even the teacher doubts.
The student is trained with ordinary cross-entropy on these targets, so its saved model,
loss and files are those of any other run.

The teacher's probabilities for the 60,000 training images are computed once per teacher
file and kept on disk beside the evaluation cache (``$LAYERLAB_HOME/cache/teachers``); a
Ray worker, which has neither the presets' files nor that cache, is handed them with the
job (:func:`provide`).
"""
from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import numpy as np

from core.errors import LayerLabError
from core.storage import atomic_write_bytes

_log = logging.getLogger(__name__)
NUM_CLASSES = 10
MNIST_TRAIN = 60_000

_provided: dict[str, np.ndarray] = {}          # teacher name -> probabilities (Ray worker)
_memory: dict[str, tuple[str, np.ndarray]] = {}   # teacher -> (file key, probabilities)
_lock = threading.Lock()
computed = 0                # teacher passes actually computed (not read back), for tests


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at a higher temperature: ``p ** (1/T)``, renormalised per row.

    >>> [round(float(v), 3) for v in soften(np.array([[0.8, 0.2]]), 1.0)[0]]
    [0.8, 0.2]
    >>> [round(float(v), 3) for v in soften(np.array([[0.8, 0.2]]), 2.0)[0]]
    [0.667, 0.333]
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
    if temperature != 1.0:
        p = p ** (1.0 / temperature)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def soft_targets(labels: np.ndarray, teacher: np.ndarray, *, weight: float,
                 temperature: float) -> np.ndarray:
    """Training targets (N, 10): the true digit blended with the teacher's softened answer.

    >>> soft_targets(np.array([0]), np.array([[0.5, 0.5]]), weight=0.5,
    ...              temperature=1.0)[0].tolist()
    [0.75, 0.25]
    """
    labels = np.asarray(labels)
    teacher = np.asarray(teacher)
    if teacher.shape[0] != labels.shape[0]:
        raise ValueError(f"{teacher.shape[0]} teacher answers for {labels.shape[0]} labels")
    hard = np.eye(teacher.shape[1], dtype=np.float32)[labels]
    return ((1.0 - weight) * hard + weight * soften(teacher, temperature)).astype(np.float32)


def provide(name: str, probabilities: np.ndarray) -> None:
    """Hand this process the teacher's training-set probabilities (a Ray worker gets them
    with its job instead of computing them from files it does not have)."""
    probs = np.asarray(probabilities, dtype=np.float32)
    check_probabilities(probs, name)
    with _lock:
        _provided[name] = probs


def check_probabilities(probs: np.ndarray, name: str) -> None:
    """Refuse anything but (60000, 10) finite probabilities, with a sentence.

    >>> check_probabilities(np.zeros((3, 10)), "bulky_cnn")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    core.errors.LayerLabError: The teacher bulky_cnn's answers ...
    """
    if probs.shape != (MNIST_TRAIN, NUM_CLASSES) or not np.isfinite(probs).all():
        raise LayerLabError(f"The teacher {name}'s answers for the training images are "
                            f"incomplete ({probs.shape}); train without a teacher or ask "
                            f"whoever runs Layer Lab to regenerate the preset.")


def teacher_probabilities(name: str) -> np.ndarray:
    """The pretrained preset ``name``'s probabilities for all 60,000 training images
    (float32, read-only), computed once per version of its file."""
    with _lock:
        if name in _provided:
            return _provided[name]
    from core.pretrained import shared_model  # noqa: PLC0415

    model = shared_model(name)
    from core.evaluation import cache_root, model_fingerprint  # noqa: PLC0415

    key = f"{name}-{model_fingerprint(model)}"
    with _lock:              # one computation at a time: two runs asking wait for one
        held = _memory.get(name)
        if held is not None and held[0] == key:
            return held[1]
        probs = _read(cache_root() / "teachers" / f"{key}.npy")
        if probs is None:
            probs = _compute(model, cache_root() / "teachers" / f"{key}.npy")
        probs.setflags(write=False)
        _memory[name] = (key, probs)
        return probs


def _read(path: Path) -> np.ndarray | None:
    """The cached probabilities, or None when absent or damaged."""
    try:
        probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return probs if probs.shape == (MNIST_TRAIN, NUM_CLASSES) else None


def _compute(model, path: Path) -> np.ndarray:
    """The teacher's pass over the training images, kept at ``path`` when it can be."""
    global computed
    from core.data import load_mnist, to_float  # noqa: PLC0415
    from core.evaluation import batched_probabilities  # noqa: PLC0415

    x = load_mnist().x_train
    # in slices: the float copy of all 60,000 images would be 188 MB at once
    probs = np.concatenate([batched_probabilities(model, to_float(x[i:i + 10_000]))
                            for i in range(0, len(x), 10_000)])
    computed += 1
    buf = io.BytesIO()
    np.save(buf, probs, allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, LayerLabError) as exc:   # a read-only home only loses the cache
        _log.warning("cannot keep the teacher's answers at %s: %r", path, exc)
    return probs
