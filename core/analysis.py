"""MNIST at a glance and where models go wrong: counts, means, galleries, histograms,
the hardest images, a logistic-regression baseline and confusion differences.

Small pure functions on numpy arrays (uint8 images ``(N, 28, 28)``, integer labels); the
pages only draw what they return. Confusion matrices themselves belong to
:mod:`core.evaluation`.
"""
from __future__ import annotations

import base64
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import to_float
from core.errors import LayerLabError
from core.evaluation import (NUM_CLASSES, Evaluation, array_fingerprint, cache_root,
                             cached_evaluate, evaluation_from_probabilities,
                             model_fingerprint)
from core.runs import atomic_write_bytes

BASELINE_LABEL = "Logistic regression (scikit-learn baseline)"


# -- the data set -------------------------------------------------------------------------

def class_counts(labels: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """How many images each class has, shape ``(n_classes,)``."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)


def mean_images(images: np.ndarray, labels: np.ndarray,
                n_classes: int = NUM_CLASSES) -> np.ndarray:
    """The average image of each class, float32 ``(n_classes, 28, 28)`` in [0, 255]."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    out = np.zeros((n_classes, *images.shape[1:]), dtype=np.float32)
    for cls in range(n_classes):
        members = images[labels == cls]
        if len(members):
            out[cls] = members.mean(axis=0, dtype=np.float64)
    return out


def class_gallery(labels: np.ndarray, per_class: int, seed: int = 0,
                  n_classes: int = NUM_CLASSES) -> list[np.ndarray]:
    """For each class, ``per_class`` random image indices (fewer if the class is small)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picks = []
    for cls in range(n_classes):
        members = np.flatnonzero(labels == cls)
        take = min(per_class, len(members))
        picks.append(np.sort(rng.choice(members, size=take, replace=False)))
    return picks


def intensity_histogram(images: np.ndarray, bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-value counts over [0, 255] in ``bins`` equal bins: ``(counts, edges)``."""
    values = np.asarray(images, dtype=np.uint8).ravel()
    counts = np.bincount(values, minlength=256).astype(np.int64)
    if 256 % bins:
        raise LayerLabError(f"The histogram needs a number of bins that divides 256, "
                            f"got {bins}.")
    counts = counts.reshape(bins, 256 // bins).sum(axis=1)
    edges = np.arange(0, 257, 256 // bins)
    return counts, edges


def png_data_url(image: np.ndarray) -> str:
    """A small uint8 image as a ``data:image/png;base64,…`` URL (for chart tooltips)."""
    from core.imaging import png_bytes  # noqa: PLC0415

    return "data:image/png;base64," + base64.b64encode(png_bytes(image, optimize=True)
                                                       ).decode("ascii")


# -- errors -------------------------------------------------------------------------------

def hardest_images(predictions: list[np.ndarray], labels: np.ndarray,
                   top: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """The images most models get wrong: ``(indices, wrong_counts)``, worst first.

    ``predictions`` holds one array of predicted classes per model. Ties are broken by
    index so the answer is deterministic; images no model gets wrong are left out.
    """
    if not predictions:
        raise LayerLabError("Finding the hardest images needs at least one model.")
    labels = np.asarray(labels)
    wrong = np.zeros(len(labels), dtype=np.int64)
    for preds in predictions:
        preds = np.asarray(preds)
        if preds.shape != labels.shape:
            raise LayerLabError(f"A model gave {len(preds):,} predictions for "
                                f"{len(labels):,} images.")
        wrong += preds != labels
    order = np.lexsort((np.arange(len(labels)), -wrong))
    order = order[wrong[order] > 0][:top]
    return order, wrong[order]


def confusion_difference(confusion_a: np.ndarray, confusion_b: np.ndarray) -> np.ndarray:
    """``B − A`` cell by cell: positive off-diagonal cells are errors B makes more often."""
    a, b = np.asarray(confusion_a), np.asarray(confusion_b)
    if a.shape != b.shape:
        raise LayerLabError("The two confusion matrices have different shapes.")
    return b.astype(np.int64) - a.astype(np.int64)


def error_changes(labels: np.ndarray, preds_a: np.ndarray,
                  preds_b: np.ndarray) -> dict[str, np.ndarray]:
    """Which errors B fixes, which it adds, and which both models make (indices)."""
    labels, preds_a, preds_b = map(np.asarray, (labels, preds_a, preds_b))
    ok_a, ok_b = preds_a == labels, preds_b == labels
    return {"fixed": np.flatnonzero(~ok_a & ok_b), "new": np.flatnonzero(ok_a & ~ok_b),
            "both": np.flatnonzero(~ok_a & ~ok_b)}


# -- the logistic-regression baseline ---------------------------------------------------------

@dataclass(frozen=True)
class LinearBaseline:
    """A fitted multinomial logistic regression on raw pixels (weights only, no pickle)."""

    coef: np.ndarray          # (10, 784) float32
    intercept: np.ndarray     # (10,) float32
    train_size: int
    seconds: float

    def probabilities(self, images: np.ndarray, batch_size: int = 10000) -> np.ndarray:
        """Softmax class probabilities for uint8 images ``(N, 28, 28)``, float32 ``(N, 10)``.

        >>> coef = np.zeros((10, 784), np.float32); coef[3] = 1.0     # ink means "3"
        >>> model = LinearBaseline(coef, np.zeros(10, np.float32), 0, 0.0)
        >>> probs = model.probabilities(np.full((2, 28, 28), 255, np.uint8))
        >>> probs.shape, probs.argmax(axis=1).tolist()
        ((2, 10), [3, 3])
        """
        images = np.asarray(images)
        out = np.empty((len(images), len(self.intercept)), dtype=np.float32)
        for i in range(0, len(images), batch_size):
            x = to_float(images[i:i + batch_size]).reshape(-1, self.coef.shape[1])
            z = x @ self.coef.T + self.intercept
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            out[i:i + batch_size] = e / e.sum(axis=1, keepdims=True)
        return out


def fit_logistic_baseline(images: np.ndarray, labels: np.ndarray, max_iter: int = 100,
                          seed: int = 0) -> LinearBaseline:
    """Fit scikit-learn's multinomial ``LogisticRegression`` on pixels scaled to [0, 1].

    On all 60,000 training images it reaches about 92% test accuracy.
    """
    import warnings  # noqa: PLC0415

    from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    images = np.asarray(images)
    x = to_float(images).reshape(len(images), -1)
    t0 = time.perf_counter()
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # 100 lbfgs steps suffice
        clf.fit(x, np.asarray(labels))
    if len(clf.classes_) != NUM_CLASSES:
        raise LayerLabError("The baseline needs training images of all ten digits.")
    return LinearBaseline(clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32),
                          len(images), time.perf_counter() - t0)


def baseline_cache_path(images: np.ndarray, labels: np.ndarray, max_iter: int = 100,
                        seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the baseline fitted on exactly these images and settings is kept."""
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "baseline"
    key = f"{array_fingerprint(images, labels)}-{max_iter}-{seed}"
    return folder / f"logreg-{key}.npz"


def load_or_fit_baseline(images: np.ndarray, labels: np.ndarray, max_iter: int = 100,
                         seed: int = 0, cache_dir: str | os.PathLike | None = None,
                         fit: bool = True) -> LinearBaseline | None:
    """The cached baseline for these images, fitting (and saving) it when ``fit`` is set."""
    path = baseline_cache_path(images, labels, max_iter, seed, cache_dir)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                return LinearBaseline(npz["coef"], npz["intercept"], int(meta["train_size"]),
                                      float(meta["seconds"]))
        except (OSError, ValueError, KeyError):
            pass                                        # damaged: fit again
    if not fit:
        return None
    model = fit_logistic_baseline(images, labels, max_iter, seed)
    buf = io.BytesIO()
    np.savez(buf, coef=model.coef, intercept=model.intercept,
             meta=np.array(json.dumps({"train_size": model.train_size,
                                       "seconds": model.seconds})))
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass
    return model


def evaluate_any(model, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """The evaluation of a Keras model (probabilities cached on disk) or of the baseline
    on a labelled set of uint8 images."""
    if isinstance(model, LinearBaseline):
        return evaluation_from_probabilities(model.probabilities(images), labels)
    return cached_evaluate(model, to_float(images), labels)


def content_key(model) -> str:
    """What a model's results are cached under: its content (weights), never its run id.

    A resumed run keeps its id but not its weights; a page cache keyed by this shows
    the resumed model's results, not the old ones. Works for Keras models and the
    baseline.

    >>> a = LinearBaseline(np.zeros((10, 784), np.float32), np.zeros(10, np.float32), 0, 0.0)
    >>> b = LinearBaseline(np.ones((10, 784), np.float32), np.zeros(10, np.float32), 0, 0.0)
    >>> content_key(a) == content_key(a), content_key(a) == content_key(b)
    (True, False)
    """
    if isinstance(model, LinearBaseline):
        return "baseline-" + array_fingerprint(model.coef, model.intercept)
    return model_fingerprint(model)
