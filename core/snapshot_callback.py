"""The Keras side of :mod:`core.snapshots`: the :class:`Snapshots` callback a training
run uses, and what it measures (probe, maps, norms, gradient norms).

This module imports Keras (TensorFlow) at import time; import it only where training
starts.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import keras
import numpy as np

from core.data import to_float
from core.evaluation import batched_probabilities
from core.snapshots import (CONFUSION_IMAGES, GRAD_BATCH, MAX_BYTES, MAX_FILTERS, MAX_MAPS,
                            confusion, first_epoch_steps, pack, quantize_maps,
                            snapshot_bytes, thin, unpack)


def layers_with_weights(model: Any) -> list[Any]:
    """The model's layers that own trainable weights, in order."""
    return [layer for layer in model.layers if layer.trainable_weights]


def first_conv(model: Any) -> Any | None:
    """The first Conv2D layer, or None for a model without one (an MLP)."""
    return next((layer for layer in model.layers
                 if isinstance(layer, keras.layers.Conv2D)), None)


def gradient_norms(model: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-layer L2 norm of the loss gradient on one batch (layers with weights)."""
    import tensorflow as tf  # noqa: PLC0415

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    layers = layers_with_weights(model)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=False))
    grads = tape.gradient(loss, [[w.value for w in lyr.trainable_weights] for lyr in layers])
    return np.array([np.sqrt(sum(float(np.sum(np.square(g))) for g in gs if g is not None))
                     for gs in grads], dtype=np.float32)


def weight_norms(model: Any) -> np.ndarray:
    """Per-layer L2 norm of the trainable weights (layers with weights)."""
    return np.array([np.sqrt(sum(float(np.sum(np.square(np.asarray(w))))
                                 for w in lyr.trainable_weights))
                     for lyr in layers_with_weights(model)], dtype=np.float32)


class Snapshots(keras.callbacks.Callback):
    """Take snapshots while a model trains; keep the latest for the live view.

    ``probe``: one image (H, W, C) and its label; ``validation``: images and labels for
    the confusion matrix; ``grad_batch``: images and labels for the gradient norms.
    ``first_epoch``: epochs done before this fit (0 for a new run: snapshots at the
    start and inside the first epoch). ``previous``: the snapshots of the run so far
    (a resume continues them). ``save(arrays)`` is called after every epoch.
    """

    def __init__(self, probe: tuple[np.ndarray, int], validation: tuple[np.ndarray, np.ndarray],
                 grad_batch: tuple[np.ndarray, np.ndarray], *, steps_per_epoch: int,
                 first_epoch: int = 0, previous: list[dict[str, Any]] | None = None,
                 save: Callable[[dict[str, np.ndarray]], None] | None = None) -> None:
        super().__init__()
        self.probe, self.validation, self.grad_batch = probe, validation, grad_batch
        self.steps_per_epoch, self.first_epoch = steps_per_epoch, first_epoch
        self.snaps: list[dict[str, Any]] = list(previous or [])
        self.save = save
        self._inside = first_epoch_steps(steps_per_epoch) if first_epoch == 0 else []
        self._lock = threading.Lock()
        self._maps_model: Any = None
        self.layers: list[str] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        conv = first_conv(self.model)
        if conv is not None:      # a sub-model from the model's own inputs (keras-io)
            self._maps_model = keras.Model(self.model.inputs, conv.output)
        self.layers = [lyr.name for lyr in layers_with_weights(self.model)]
        if self.first_epoch == 0 and not self.snaps:
            self._take(0.0)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._inside and batch + 1 == self._inside[0]:
            self._inside.pop(0)
            self._take(self.first_epoch + (batch + 1) / self.steps_per_epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._inside = []
        self._take(float(self.first_epoch + epoch + 1))
        if self.save is not None:
            self.save(self.arrays())

    def latest(self) -> dict[str, Any] | None:
        """The newest snapshot (any thread), or None before the first."""
        with self._lock:
            return self.snaps[-1] if self.snaps else None

    def arrays(self) -> dict[str, np.ndarray]:
        """Every snapshot so far as arrays to save (see :func:`core.runs`)."""
        with self._lock:
            snaps = list(self.snaps)
        return pack(snaps, self.meta())

    def meta(self) -> dict[str, np.ndarray]:
        """What every snapshot shares: the layer names and the probe digit."""
        image, label = self.probe
        return {"layers": np.array(self.layers, dtype=str),
                "probe": np.asarray(image, np.float16), "probe_label": np.array(label, np.int32)}

    def _take(self, epoch: float) -> None:
        snap = take_snapshot(self.model, self._maps_model, self.probe[0], self.validation,
                             self.grad_batch, epoch)
        with self._lock:
            self.snaps.append(snap)
            keep = max(2, MAX_BYTES // max(snapshot_bytes(snap), 1))
            if len(self.snaps) > keep:
                self.snaps = [self.snaps[i] for i in thin([s["epoch"] for s in self.snaps],
                                                          keep)]


def take_snapshot(model: Any, maps_model: Any, image: np.ndarray,
                  validation: tuple[np.ndarray, np.ndarray],
                  grad_batch: tuple[np.ndarray, np.ndarray], epoch: float) -> dict[str, Any]:
    """One snapshot of ``model`` (see the module's docstring)."""
    import keras  # noqa: PLC0415

    # A tensor, not an array: Keras converts array arguments on the call, and two runs
    # snapshotting at once in one process once failed there ("Only input tensors may be
    # passed as positional arguments"); a tensor skips that step.
    x = keras.ops.convert_to_tensor(np.asarray(image, np.float32)[None])
    probs = np.asarray(model(x, training=False), np.float32)[0]
    xv, yv = validation
    # the compiled batched call the epoch's validation already uses, not predict()'s
    # per-call set-up
    pred = np.argmax(batched_probabilities(model, xv), axis=-1)
    snap: dict[str, Any] = {
        "epoch": np.float32(epoch), "probs": probs.astype(np.float16),
        "confusion": confusion(yv, pred).astype(np.int16),
        "weight_norm": weight_norms(model),
        "grad_norm": gradient_norms(model, *grad_batch)}
    conv = first_conv(model)
    if conv is not None and maps_model is not None:
        kernel = np.asarray(conv.kernel, np.float32)[..., :MAX_FILTERS]
        snap["filters"] = kernel.mean(axis=2).astype(np.float16)   # (kh, kw, filters)
        maps = np.asarray(maps_model(x, training=False), np.float32)[0][..., :MAX_MAPS]
        snap["maps"], top = quantize_maps(maps)
        snap["maps_scale"] = np.float32(top)
    return snap


def for_job(job: Any, data: Any, steps_per_epoch: int) -> Snapshots:
    """The :class:`Snapshots` callback of a :class:`core.training.TrainingJob`, set as
    ``job.snapshots`` for the live view. The probe is ``job.probe`` (an image and label,
    e.g. the user's digit) when set, else test image ``job.probe_index`` (default 0)."""
    probe = getattr(job, "probe", None)
    if probe is None:
        index = min(int(getattr(job, "probe_index", 0)), len(data.x_test) - 1)
        probe = (data.x_test[index], int(data.y_test[index]))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(data.x_train), min(GRAD_BATCH, len(data.x_train)), replace=False)
    xv, yv = (data.x_val, data.y_val) if len(data.x_val) else (data.x_test, data.y_test)
    store, run = job.store, job.run
    previous = None
    if store is not None and run.epochs_done > 0:
        previous = unpack(store.load_snapshots(run.id) or {})[0]
    save = None if store is None else functools.partial(_save, job)
    job.snapshots = Snapshots(probe, (xv[:CONFUSION_IMAGES], yv[:CONFUSION_IMAGES]),
                              (to_float(data.x_train[pick]), data.y_train[pick]),
                              steps_per_epoch=steps_per_epoch, first_epoch=run.epochs_done,
                              previous=previous, save=save)
    return job.snapshots


def _save(job: Any, arrays: dict[str, np.ndarray]) -> None:
    """Save a job's snapshots; a failed save is a warning, never a failed run."""
    from core.errors import LayerLabError  # noqa: PLC0415

    try:
        job.store.save_snapshots(job.run.id, arrays)
    except LayerLabError as err:
        job._warn(str(err))
