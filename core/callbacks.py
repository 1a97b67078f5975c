"""The Keras callbacks a training run uses, one concern each, configured by constructor.

Order matters where one reads what another wrote, and :func:`core.training` passes them
in this order: :class:`StepLearningRate` (sets the rate, logs it per epoch),
:class:`StopOnNaN`, :class:`LiveBatches`, :class:`RecalibrateBatchNorm` (fits the
batch-norm statistics to the weights before anything evaluates or saves them),
:class:`EpochHistory` (records a completed epoch on the run) and :class:`EpochCheckpoint`
(saves whenever the run gained an epoch).

This module imports Keras (TensorFlow) at import time; import it only where training
starts.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable

import keras
import numpy as np

from core.errors import LayerLabError
from core.evaluation import evaluate
from core.runs import CHECKPOINT_FILE, Run, RunStore

Emit = Callable[..., None]           # emit(kind, **payload): one live event


class StepLearningRate(keras.callbacks.Callback):
    """Set the optimizer's rate before every batch from ``rate_at(step)``.

    ``step`` counts batches from 0 over the whole ``fit`` call; the rate of the last
    batch of an epoch goes into that epoch's logs as ``learning_rate``, as Keras'
    ``LearningRateScheduler`` does.
    """

    def __init__(self, rate_at: Callable[[int], float]) -> None:
        super().__init__()
        self.rate_at = rate_at
        self.step = 0
        self.rate: float | None = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        rate = float(self.rate_at(self.step))
        if rate != self.rate:                  # a constant schedule assigns once
            self.model.optimizer.learning_rate.assign(rate)
            self.rate = rate
        self.step += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and self.rate is not None:
            logs["learning_rate"] = self.rate


class StopOnNaN(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is not a finite number.

    ``nan_step`` is that batch's 1-based number within the ``fit`` call, else None.
    """

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.nan_step: int | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            self.nan_step = self.step
            self.model.stop_training = True


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """At every epoch end (a Stop's partial epoch included) set the batch-norm moving
    statistics to those of ``images`` under the current weights.

    After a few hundred steps the moving averages still remember the first, random
    weights, so a short or stopped run guessed (frontier_3k, 1 epoch on 10,000 images:
    10.65%); see :mod:`core.calibration`. Skipped once ``nan`` saw a NaN loss.
    """

    def __init__(self, images: np.ndarray, nan: StopOnNaN) -> None:
        super().__init__()
        self.images = images
        self.nan = nan

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from core.calibration import recalibrate_batch_norm  # noqa: PLC0415

        if self.nan.nan_step is None:
            recalibrate_batch_norm(self.model, self.images)


class LiveBatches(keras.callbacks.Callback):
    """Throttled ``batch`` events for the live curves, and the user's stop request.

    At most one event per ``interval_s`` plus the last batch of every epoch; a set
    ``stop`` event ends training after the current batch.
    """

    def __init__(self, emit: Emit, stop: threading.Event, *, steps_per_epoch: int,
                 first_epoch: int, clock_start: float, interval_s: float) -> None:
        super().__init__()
        self.emit, self.stop = emit, stop
        self.steps_per_epoch, self.first_epoch = steps_per_epoch, first_epoch
        self.clock_start, self.interval_s = clock_start, interval_s
        self.step = 0
        self.last_emit = 0.0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        if self.stop.is_set():
            self.model.stop_training = True
        logs = logs or {}
        loss = float(logs.get("loss", 0.0))
        now = time.perf_counter()
        if not math.isfinite(loss):
            return                             # not a point on a curve
        if now - self.last_emit >= self.interval_s or batch + 1 == self.steps_per_epoch:
            self.last_emit = now
            self.emit("batch", step=batch + 1,
                      global_step=self.first_epoch * self.steps_per_epoch + self.step,
                      loss=loss, accuracy=float(logs.get("accuracy", 0.0)),
                      elapsed_s=now - self.clock_start)


class EpochHistory(keras.callbacks.Callback):
    """Record each completed epoch on the run and emit an ``epoch`` event.

    A partial epoch (stopped, or ended by a NaN loss) is not an epoch and is not
    recorded. The row holds loss, accuracy, lr, seconds, images/s and, given
    ``validation`` images and labels, ``val_loss`` and ``val_accuracy``.
    """

    def __init__(self, run: Run, emit: Emit, *, steps_per_epoch: int, n_train: int,
                 clock_start: float,
                 validation: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__()
        self.run, self.emit = run, emit
        self.steps_per_epoch, self.n_train = steps_per_epoch, n_train
        self.clock_start = clock_start
        self.validation = validation if validation is not None and len(validation[0]) \
            else None
        self.batches = 0
        self.epoch_t0 = self.fit_t0 = self.wall_before = 0.0
        self.first_epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.fit_t0 = time.perf_counter()
        self.wall_before = self.run.wall_time_s
        self.first_epoch = self.run.epochs_done

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_t0 = time.perf_counter()
        self.batches = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.batches += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.batches < self.steps_per_epoch or not math.isfinite(logs.get("loss", np.nan)):
            return
        secs = time.perf_counter() - self.epoch_t0
        row = {"epoch": self.first_epoch + epoch + 1, "loss": float(logs["loss"]),
               "accuracy": float(logs["accuracy"]), "lr": self._rate(logs),
               "seconds": secs, "images_per_s": self.n_train / secs if secs else 0.0}
        if self.validation is not None:
            val = evaluate(self.model, *self.validation)
            row["val_loss"], row["val_accuracy"] = val.loss, val.accuracy
        for key, value in row.items():
            self.run.history.setdefault(key, []).append(value)
        self.run.epochs_done = row["epoch"]
        self._count_wall_time()
        self.emit("epoch", elapsed_s=time.perf_counter() - self.clock_start, **row)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._count_wall_time()

    def _rate(self, logs: dict) -> float:
        if "learning_rate" in logs:            # exact, from StepLearningRate
            return float(logs["learning_rate"])
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def _count_wall_time(self) -> None:
        self.run.wall_time_s = self.wall_before + time.perf_counter() - self.fit_t0


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the model and the run record after every epoch the run has gained.

    Both go through the store's atomic writes. When the disk refuses, ``warn`` gets the
    store's sentence once and training goes on.
    """

    def __init__(self, store: RunStore, run: Run, warn: Callable[[str], None]) -> None:
        super().__init__()
        self.store, self.run, self.warn = store, run, warn
        self.saved_epochs = 0
        self.warned = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.saved_epochs = self.run.epochs_done

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.run.epochs_done == self.saved_epochs:
            return                             # a partial epoch: nothing new to keep
        self.saved_epochs = self.run.epochs_done
        try:
            self.store.save_model(self.run.id, self.model, CHECKPOINT_FILE)
            self.run.status = "running"
            self.store.save_run(self.run)
        except LayerLabError as err:
            if not self.warned:
                self.warned = True
                self.warn(str(err) + " Training goes on.")
