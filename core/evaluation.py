"""Batched evaluation of a model on a labelled set: probabilities, confusion, metrics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """Counts with rows = true class and columns = predicted class."""
    idx = np.asarray(labels, dtype=np.int64) * n + np.asarray(predictions, dtype=np.int64)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def per_class_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
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
    """Softmax outputs for float images (N, 28, 28, 1) via one compiled batched call."""
    import tensorflow as tf  # noqa: PLC0415

    fn = getattr(model, "_layerlab_batched", None)
    if fn is None:
        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        model._layerlab_batched = fn
    outs = [np.asarray(fn(tf.convert_to_tensor(images[i:i + batch_size])))
            for i in range(0, len(images), batch_size)]
    return np.concatenate(outs).astype(np.float32)


def evaluate(model, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> Evaluation:
    """Probabilities, cross-entropy loss, accuracy and confusion matrix on a labelled set."""
    probs = batched_probabilities(model, images, batch_size)
    labels = np.asarray(labels)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    preds = probs.argmax(axis=1)
    return Evaluation(probs, labels, float(-np.log(picked).mean()),
                      float((preds == labels).mean()), confusion_matrix(labels, preds))
