"""Each training callback on its own, on a tiny model and 4 batches per epoch."""
from __future__ import annotations

import json
import threading

import keras
import numpy as np
import pytest

from core.callbacks import EpochCheckpoint, EpochHistory, LiveBatches, StepLearningRate, StopOnNaN
from core.recipe import Recipe, lr_at
from core.runs import CHECKPOINT_FILE, Run, RunStore

BATCH, STEPS = 8, 4


def tiny_model() -> keras.Model:
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.01), metrics=["accuracy"],
                  loss="sparse_categorical_crossentropy")
    return model


def data(nan_from_batch: int | None = None):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH * STEPS, 28, 28, 1), dtype=np.float32)
    if nan_from_batch is not None:
        x[(nan_from_batch - 1) * BATCH:] = np.nan
    return x, rng.integers(0, 10, len(x)).astype(np.int32)


class Probe(keras.callbacks.Callback):
    """Records the optimizer's rate at each batch, batches run and epoch logs."""

    def __init__(self) -> None:
        super().__init__()
        self.rates, self.batches, self.epoch_logs = [], 0, []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))


def fit(callbacks, epochs=2, nan_from_batch=None, model=None):
    model = model or tiny_model()
    x, y = data(nan_from_batch)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
              callbacks=callbacks)
    return model


def new_run() -> Run:
    return Run(id="20260101-000000-c0ffee", name="cb", spec={}, recipe={}, workspace="w")


def test_step_learning_rate_sets_the_schedule_every_batch():
    recipe = Recipe(learning_rate=0.1, schedule="step")
    probe = Probe()
    fit([StepLearningRate(lambda s: lr_at(recipe, s, 2 * STEPS)), probe])
    assert probe.rates == pytest.approx([lr_at(recipe, s, 2 * STEPS) for s in range(8)])
    assert probe.rates[0] == pytest.approx(0.1) and probe.rates[-1] == pytest.approx(0.001)
    assert [logs["learning_rate"] for logs in probe.epoch_logs] == \
        [lr_at(recipe, 3, 8), lr_at(recipe, 7, 8)]          # exact, not float32-rounded


def test_stop_on_nan_names_the_step_and_stops_there():
    nan, probe = StopOnNaN(), Probe()
    fit([nan, probe], epochs=3, nan_from_batch=3)
    assert nan.nan_step == 3 and probe.batches == 3


def test_live_batches_throttle_and_keep_the_last_batch_of_each_epoch():
    every, throttled = [], []
    for out, interval in ((every, 0.0), (throttled, 1e9)):
        fit([LiveBatches(lambda kind, **e: out.append(e), threading.Event(), steps_per_epoch=STEPS,
                         first_epoch=5, clock_start=0.0, interval_s=interval)])
    assert [e["global_step"] for e in every] == [5 * STEPS + i for i in range(1, 9)]
    assert [(e["step"], e["global_step"]) for e in throttled] == [(4, 24), (4, 28)]
    assert all(np.isfinite(e["loss"]) and e["elapsed_s"] > 0 for e in every)


def test_live_batches_honour_stop_after_the_current_batch():
    stop, probe = threading.Event(), Probe()

    class ClickStopDuringBatch2(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                stop.set()

    fit([ClickStopDuringBatch2(), LiveBatches(lambda kind, **e: None, stop,
                                              steps_per_epoch=STEPS, first_epoch=0,
                                              clock_start=0.0, interval_s=0.0), probe],
        epochs=5)
    assert probe.batches == 2


def test_epoch_history_records_whole_epochs_only():
    run, events, stop = new_run(), [], threading.Event()
    run.epochs_done, run.wall_time_s = 3, 10.0         # a resumed run
    history = EpochHistory(run, lambda kind, **e: events.append(e), steps_per_epoch=STEPS,
                           n_train=BATCH * STEPS, clock_start=0.0, validation=data())

    class StopInEpoch2(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if len(events) == 1 and batch == 1:
                stop.set()
                self.model.stop_training = True

    fit([history, StopInEpoch2()], epochs=4)
    assert [e["epoch"] for e in events] == [4] and run.epochs_done == 4
    assert set(run.history) == {"epoch", "loss", "accuracy", "lr", "seconds", "images_per_s",
                                "val_loss", "val_accuracy"}
    assert run.history["lr"] == [pytest.approx(0.01)]    # read from the optimizer
    assert run.wall_time_s > 10.0


def test_epoch_checkpoint_saves_each_gained_epoch_atomically(tmp_path):
    store, run = RunStore(tmp_path), new_run()
    saved = []

    class AfterCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record = json.loads((tmp_path / run.id / "run.json").read_text())
            saved.append((record["epochs_done"], record["status"],
                          sorted(p.name for p in (tmp_path / run.id).iterdir())))

    history = EpochHistory(run, lambda kind, **e: None, steps_per_epoch=STEPS,
                           n_train=BATCH * STEPS, clock_start=0.0)
    fit([history, EpochCheckpoint(store, run, warn=pytest.fail), AfterCheckpoint()])
    assert saved == [(1, "running", [CHECKPOINT_FILE, "run.json"]),
                     (2, "running", [CHECKPOINT_FILE, "run.json"])]
    assert store.load_model(run.id).count_params() == 28 * 28 * 10 + 10


def test_epoch_checkpoint_warns_once_when_the_disk_refuses(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run, warnings = new_run(), []
    history = EpochHistory(run, lambda kind, **e: None, steps_per_epoch=STEPS,
                           n_train=BATCH * STEPS, clock_start=0.0)
    fit([history, EpochCheckpoint(RunStore(blocker / "runs"), run, warnings.append)], epochs=3)
    assert run.epochs_done == 3 and len(warnings) == 1
    assert warnings[0].startswith("Could not save") and warnings[0].endswith("Training goes on.")
    assert str(tmp_path) not in warnings[0]
