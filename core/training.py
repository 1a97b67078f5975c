"""Training engine: a spec + recipe trained in a background thread, reporting live.

The worker thread never touches the UI. It folds each plain dict event into the job's
:class:`Progress` under a lock, so any number of pages (a reload, a second tab) read the
same consistent :meth:`TrainingJob.snapshot`; :meth:`TrainingJob.drain` hands the events
themselves to one reader (tests, the command line). Event kinds, in order: ``queued`` (with the queue position), ``started``,
``batch`` (throttled), ``epoch`` (one per finished epoch), ``warning``, and exactly one
final ``done`` (status finished | stopped | interrupted | failed, with a message;
interrupted: stopped by the server, e.g. an orphaned run, and resumable). The events come
from the Keras callbacks in :mod:`core.callbacks`, one concern each.

A server-wide :data:`SCHEDULER` (:mod:`core.scheduler`) caps how many runs train at once;
:mod:`core.jobs` keeps each workspace's live job and the server's quotas.
"""
from __future__ import annotations

import copy
import functools
import gc
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import priority
from core.errors import LayerLabError
from core.recipe import Recipe, lr_at
from core.runs import Run, RunStore, new_run_id
from core.scheduler import SCHEDULER, Scheduler
from core.spec import ModelSpec, infer_shapes

_log = logging.getLogger(__name__)
BATCH_EVENT_INTERVAL_S = 0.2
MAX_BATCH_POINTS = 2000
MAX_PENDING_EVENTS = 20_000


@dataclass
class Progress:
    """What a page shows about a job, folded from its events."""

    # queued | preparing (has its slot; data, teacher, model) | running | finished |
    # stopped | interrupted | failed
    state: str = "queued"
    queue_position: int | None = None
    epoch: int = 0                   # epochs completed (over the whole run, resumes too)
    epochs_total: int = 0
    step: int = 0                    # step within the current epoch
    steps_per_epoch: int = 0
    batches: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    images_per_s: float = 0.0
    started_at: float | None = None
    elapsed_s: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    device: str = ""
    preparing: str = ""              # what a preparing job is doing, as a phrase

    job_epochs: int = 0              # epochs this job trains (a resume adds to earlier ones)

    @property
    def fraction(self) -> float:
        """Share of this job's work done, 0..1."""
        if not self.job_epochs:
            return 0.0
        first = self.epochs_total - self.job_epochs
        done = (self.epoch - first) + (self.step / self.steps_per_epoch
                                       if self.steps_per_epoch else 0.0)
        return min(1.0, done / self.job_epochs)

    @property
    def eta_s(self) -> float | None:
        f = self.fraction
        if self.state != "running" or f <= 0.01:
            return None
        return self.elapsed_s * (1 - f) / f

    @property
    def done(self) -> bool:
        return self.state in ("finished", "stopped", "interrupted", "failed")

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "queued":
            self.state, self.queue_position = "queued", event["position"]
        elif kind == "preparing":
            self.state, self.queue_position = "preparing", 0
            self.preparing = event["what"]
        elif kind == "started":
            self.state, self.queue_position = "running", 0
            self.started_at = time.time()
            self.epochs_total = event["epochs_total"]
            self.job_epochs = event["epochs"]
            self.epoch = event["first_epoch"]
            self.steps_per_epoch = event["steps_per_epoch"]
            self.device = event["device"]
        elif kind == "batch":
            self.step = event["step"]
            self.elapsed_s = event["elapsed_s"]
            self.batches.append(event)
            if len(self.batches) > MAX_BATCH_POINTS:
                del self.batches[::2]
        elif kind == "epoch":
            self.epoch = event["epoch"]
            self.step = 0
            self.elapsed_s = event["elapsed_s"]
            self.images_per_s = event["images_per_s"]
            self.epochs.append(event)
        elif kind == "warning":
            self.warnings.append(event["message"])
        elif kind == "done":
            self.state = event["status"]
            self.elapsed_s = event.get("wall_time_s", self.elapsed_s)   # evaluation too
            self.message = event["message"]
            self.queue_position = None


@dataclass
class TrainingData:
    """Arrays for one run: int labels; float images with a channel axis, except the
    training images, which stay uint8 pixels ``(N, 28, 28)`` (a quarter of the memory,
    and of TensorFlow's copy and shuffle buffer of them: about 350 MiB less a run) and
    are scaled a batch at a time (:func:`make_dataset`; :func:`core.data.to_float` for any other use)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # (N, 10) training targets when the recipe learns from a teacher (core/distill.py)
    y_soft: np.ndarray | None = None

    @property
    def targets(self) -> np.ndarray:
        """What the loss is computed against: the soft targets if any, else the labels."""
        return self.y_train if self.y_soft is None else self.y_soft


def prepare_data(recipe: Recipe, test_limit: int | None = None) -> TrainingData:
    """Full (or subset) MNIST, a stratified validation split, and the test set."""
    from core.data import load_mnist, stratified_split, stratified_subset, to_float  # noqa

    mnist = load_mnist()
    idx = np.arange(len(mnist.y_train))
    if recipe.train_subset:
        idx = stratified_subset(mnist.y_train, recipe.train_subset, recipe.data_seed)
    y = mnist.y_train[idx]
    keep, held = stratified_split(y, recipe.validation_split, recipe.data_seed)
    tidx = np.arange(len(mnist.y_test)) if not test_limit else \
        stratified_subset(mnist.y_test, test_limit, 0)
    soft = None
    if recipe.teacher:
        from core.distill import soft_targets, teacher_probabilities  # noqa: PLC0415

        soft = soft_targets(y[keep], teacher_probabilities(recipe.teacher)[idx[keep]],
                            weight=recipe.distill_weight,
                            temperature=recipe.distill_temperature)
    return TrainingData(mnist.x_train[idx[keep]], y[keep].astype(np.int32),
                        to_float(mnist.x_train[idx[held]]), y[held].astype(np.int32),
                        to_float(mnist.x_test[tidx]), mnist.y_test[tidx].astype(np.int32),
                        soft)


def preparing_words(recipe: Recipe, loads_data: bool) -> str:
    """What a job does between taking its slot and its first step, as a phrase.

    >>> preparing_words(Recipe(teacher="bulky_cnn"), True)
    "Loading the images and bulky_cnn's answers for them (the first run with this teacher computes them, about half a minute), then building the model"
    >>> preparing_words(Recipe(), False)
    'Building the model'
    """
    if not loads_data:
        return "Building the model"
    teacher = (f" and {recipe.teacher}'s answers for them (the first run with this teacher "
               f"computes them, about half a minute)" if recipe.teacher else "")
    return f"Loading the images{teacher}, then building the model"


def make_optimizer(recipe: Recipe):
    """The recipe's optimizer with a plain (assignable) learning rate."""
    import keras  # noqa: PLC0415

    lr = lr_at(recipe, 0, 1)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if recipe.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr)
    return keras.optimizers.Adam(lr)


def make_dataset(x: np.ndarray, y: np.ndarray, recipe: Recipe):
    """A shuffled, batched, prefetched tf.data pipeline; labels one-hot when the recipe
    smooths them; light augmentation if asked.

    Holding the images as one tensor and gathering batches by shuffled index gives the
    very same batches and was not measurably cheaper (fast_cnn: 0.26 vs 0.24 CPU s of
    ~14 per epoch), so the plain pipeline stays (bench/train_bench.py d).
    """
    import tensorflow as tf  # noqa: PLC0415

    if y.ndim == 1 and categorical(recipe):   # the categorical loss takes (N, 10) targets
        y = np.eye(10, dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=recipe.seed, reshuffle_each_iteration=True)
    ds = ds.batch(recipe.batch_size)
    # uint8 pixels are scaled a batch at a time, in the same map as the augmentation
    scale = scale_pixels if np.issubdtype(x.dtype, np.integer) else (lambda a: a)
    if recipe.augment:
        aug = augmenter(recipe.seed)
        ds = ds.map(lambda a, b: (aug(scale(a), training=True), b),
                    num_parallel_calls=tf.data.AUTOTUNE)
    elif scale is scale_pixels:
        ds = ds.map(lambda a, b: (scale(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_images(model, x_train: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, Any]:
    """The images a fit of ``model`` reads, and the leading Deskew layer they have already
    been through (None: they are ``x_train`` itself).

    A model that starts by straightening its digits (:class:`core.deskew.Deskew`, no
    weights) would straighten every image again each epoch: here it is done once, before
    the epochs (float32: 3 MB per 1,000 images instead of the uint8 pixels' 0.8 MB;
    ``frontier_1k``'s epoch: about 4.8 s instead of 6.5). Not with augmentation, which
    shifts and turns the digits before the model straightens them.
    """
    from core.deskew import deskew_all, leading_deskew  # noqa: PLC0415

    layer = None if recipe.augment else leading_deskew(model)
    return (x_train, None) if layer is None else (deskew_all(x_train), layer)


def scale_pixels(batch):
    """A batch of uint8 pixels ``(n, 28, 28)`` as float32 ``(n, 28, 28, 1)`` in [0, 1]:
    the same numbers as :func:`core.data.to_float` (a float32 divided by 255).

    >>> from core.data import to_float
    >>> x = np.array([[[0, 51, 255]]], np.uint8)
    >>> np.array_equal(np.asarray(scale_pixels(x)), to_float(x))
    True
    """
    import tensorflow as tf  # noqa: PLC0415

    scaled = tf.cast(batch, tf.float32) / 255.0
    return scaled[..., None] if scaled.shape.rank == 3 else scaled


def augmenter(seed: int):
    """Random shifts of up to 8% and turns of up to 10°, drawn afresh for every batch."""
    import keras  # noqa: PLC0415

    return keras.Sequential([
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed),
        keras.layers.RandomRotation(10 / 360, fill_mode="constant", seed=seed),
    ], name="augment")


def categorical(recipe: Recipe) -> bool:
    """Whether the recipe's loss takes (N, 10) targets: label smoothing or a teacher.

    >>> categorical(Recipe()), categorical(Recipe(label_smoothing=0.1))
    (False, True)
    """
    return bool(recipe.label_smoothing) or recipe.teacher is not None


def make_loss(recipe: Recipe):
    """Cross-entropy, label-smoothed when the recipe says so; on (N, 10) targets (one-hot,
    which :func:`make_dataset` gives it, or a teacher's soft ones) when it smooths or
    distils (Keras' sparse loss cannot smooth)."""
    import keras  # noqa: PLC0415

    if categorical(recipe):
        return keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    return "sparse_categorical_crossentropy"


def compile_model(model, recipe: Recipe, optimizer=None) -> None:
    """Compile with the recipe's optimizer (or ``optimizer``) and loss. A model computing
    in float16 gets dynamic loss scaling, so small gradients do not round to zero."""
    import keras  # noqa: PLC0415

    from core.build import model_policy  # noqa: PLC0415

    optimizer = optimizer or make_optimizer(recipe)
    if model_policy(model) == "mixed_float16" and \
            not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=make_loss(recipe), metrics=["accuracy"])


def precision_policy(recipe: Recipe, device_kind: str) -> str | None:
    """The dtype policy a recipe trains in on this device; None: float32.

    >>> precision_policy(Recipe(mixed_precision=False), "GPU") is None
    True
    >>> precision_policy(Recipe(mixed_precision=True), "GPU")
    'mixed_float16'
    """
    from core.build import mixed_policy  # noqa: PLC0415

    return mixed_policy(device_kind) if recipe.mixed_precision else None


def with_precision(model, spec: ModelSpec, policy: str | None, recipe: Recipe):
    """``model`` computing in ``policy`` (None: float32), with its weights and, when it
    has trained, its optimizer's state; the very same model when it already does.

    A run trains in its recipe's precision and ends in float32, so every page, file and
    converter meets an ordinary float32 model whatever the run trained in.
    """
    from core.build import build_model, model_policy  # noqa: PLC0415

    if model_policy(model) == (policy or "float32"):
        return model
    twin = build_model(spec, mixed_precision=policy)
    twin.set_weights(model.get_weights())
    old = getattr(model, "optimizer", None)
    if old is not None:
        old = getattr(old, "inner_optimizer", old)        # float16's loss scaling: its own
        optimizer = type(old).from_config(old.get_config())
        if old.built:
            optimizer.build(twin.trainable_variables)
            for mine, theirs in zip(optimizer.variables, old.variables, strict=True):
                mine.assign(theirs)
        compile_model(twin, recipe, optimizer)
    return twin


class _Stop(Exception):
    """Raised inside the worker when a stop was asked while queued."""


class JobEvents:
    """The half of a job's surface every backend shares: its progress and the events not
    yet drained, written by the job's own thread and read by pages (TrainingJob here,
    core.ray_backend.RayJob on a cluster). Subclasses start ``_thread`` and may say
    where a queued job stands (:meth:`_position_now`)."""

    def __init__(self) -> None:
        self.progress = Progress()        # written by the job's thread under _lock
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []   # events not yet drained
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self) -> list[dict[str, Any]]:
        """The events since the last drain, in order (one reader; pages use
        :meth:`snapshot`, which every reader can call)."""
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def snapshot(self) -> Progress:
        """A consistent copy of the progress, with the current queue position."""
        with self._lock:
            p = copy.copy(self.progress)
            p.batches, p.epochs = list(p.batches), list(p.epochs)
            p.warnings = list(p.warnings)
        if p.state == "queued":
            p.queue_position = self._position_now(p)
        return p

    def _position_now(self, progress: Progress) -> int | None:
        return progress.queue_position

    @property
    def done(self) -> bool:
        with self._lock:
            return self.progress.done

    def _record(self, event: dict[str, Any]) -> None:
        """Fold ``event`` into the progress and keep it for the next drain."""
        with self._lock:
            self.progress.apply(event)
            self._pending.append(event)
            if len(self._pending) > MAX_PENDING_EVENTS:     # nobody drains: keep it bounded
                del self._pending[:MAX_PENDING_EVENTS // 2]


def job_run(spec: ModelSpec, recipe: Recipe, *, name: str | None, workspace: str,
            resume: Run | None) -> Run:
    """The record a job trains: a copy of ``resume`` under this recipe, or a new run."""
    if resume is not None:
        run = Run.from_dict(resume.to_dict())
        run.recipe = recipe.to_dict()
        return run
    return Run(id=new_run_id(), name=name or spec.name, spec=spec.to_dict(),
               recipe=recipe.to_dict(), workspace=workspace)


class TrainingJob(JobEvents):
    """One run trained in a background thread. Create, :meth:`start`, :meth:`drain`."""

    def __init__(self, spec: ModelSpec, recipe: Recipe, *, name: str | None = None,
                 workspace: str = "", store: RunStore | None = None,
                 resume: Run | None = None, model: Any = None,
                 data: TrainingData | None = None, test_limit: int | None = None,
                 scheduler: Scheduler | None = None) -> None:
        infer_shapes(spec)        # raises SpecError before any thread starts
        recipe.check()
        self.spec, self.recipe = spec, recipe
        self.store = store
        self.scheduler = scheduler or SCHEDULER
        self.data, self.test_limit = data, test_limit
        super().__init__()
        self.model = model                 # set for resume-in-memory; the result after
        self._stop = threading.Event()
        self._interrupt = ""              # why the server (not the user) stopped it
        self._queue_position: int | None = None
        self.run = job_run(spec, recipe, name=name, workspace=workspace, resume=resume)
        self.id = self.run.id + "-" + str(id(self))

    # -- control, called from the UI thread ------------------------------------------
    def start(self) -> "TrainingJob":
        if self._thread is not None:
            raise LayerLabError("This run has already been started.")
        self._thread = threading.Thread(target=self._work, name=f"train-{self.run.id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, interrupt: str = "") -> None:
        """Ask the run to stop; honoured after the current batch. ``interrupt`` (a
        sentence) marks a stop by the server: the run is saved as interrupted."""
        if interrupt and not self._stop.is_set():
            self._interrupt = interrupt
        self._stop.set()

    def _position_now(self, progress: Progress) -> int | None:
        return self.scheduler.position(self.id) or progress.queue_position

    # -- worker thread ---------------------------------------------------------------
    def _emit(self, kind: str, **payload: Any) -> None:
        self._record({"kind": kind, **payload})

    def _warn(self, message: str) -> None:
        self._emit("warning", message=message)

    def _on_wait(self, position: int) -> None:
        """While queued: one ``queued`` event per change of position."""
        if position != self._queue_position:
            self._queue_position = position
            self._emit("queued", position=position)

    def _work(self) -> None:
        acquired = False
        status, message = "failed", ""
        t0 = time.perf_counter()
        # Pages first: this thread (and the tf.data threads it starts) and TensorFlow's
        # compute pools train below the page threads' priority (core/priority.py).
        priority.lower_this_thread()
        try:
            priority.ensure_tensorflow()
            acquired = self.scheduler.acquire(self.id, self._stop, self._on_wait)
            if not acquired:
                raise _Stop()
            t0 = time.perf_counter()
            status, message = self._train(t0)
        except _Stop:
            status = "stopped"
            message = " ".join(("Stopped before training began.", self._interrupt)).strip()
        except LayerLabError as err:
            status, message = "failed", str(err)
        except MemoryError:
            status, message = "failed", ("Training ran out of memory. Use a smaller batch "
                                         "size, fewer filters or fewer units.")
        except Exception as exc:  # reported to the UI as a sentence, never a traceback
            _log.error("run %s failed", self.run.id, exc_info=exc)   # details: log only
            status = "failed"
            message = (f"Training failed because of an error on the server (run "
                       f"{self.run.id[-6:]}). Try a smaller batch size or a simpler stack; "
                       f"if it happens again, tell whoever runs Layer Lab (the details are "
                       f"in the server's log).")
        finally:
            if acquired:
                self.scheduler.release(self.id)
            self.run.status = status
            self.run.message = message
            self._finish_store()
            self._emit("done", status=status, message=message, run=self.run,
                       wall_time_s=time.perf_counter() - t0)
            release_memory(self.scheduler)

    def _finish_store(self) -> None:
        if self.store is None:
            return
        try:
            if self.model is not None and self.run.status in ("finished", "stopped",
                                                              "interrupted"):
                self.store.save_model(self.run.id, self.model)
            self.store.save_run(self.run)
        except LayerLabError as err:
            self._warn(str(err) + " The run stays available in this session until the app "
                       "restarts.")

    def _train(self, t0: float) -> tuple[str, str]:
        """Build or load the model, fit it with the run's callbacks, then conclude."""
        from core.callbacks import (EpochCheckpoint, EpochHistory, LiveBatches,  # noqa
                                    RecalibrateBatchNorm, StepLearningRate, StopOnNaN)
        from core.deskew import straightened_beforehand  # noqa: PLC0415
        from core.device import detect  # noqa: PLC0415
        from core.snapshot_callback import for_job as snapshots_for  # noqa: PLC0415

        recipe, run = self.recipe, self.run
        device = detect()
        policy = precision_policy(recipe, device.kind)
        # The recipe asks for mixed precision; the device decides what it is (or none).
        run.device = device.label + (f" · {policy.replace('_', ' ')}" if policy else "")
        self._emit("preparing", what=preparing_words(recipe, self.data is None))
        data = self.data or prepare_data(recipe, self.test_limit)
        model = self._prepare_model(mixed=policy)
        run.params = int(model.count_params())
        n, first_epoch = len(data.x_train), run.epochs_done
        steps = math.ceil(n / recipe.batch_size)
        self._emit("started", epochs=recipe.epochs, first_epoch=first_epoch,
                   epochs_total=first_epoch + recipe.epochs, steps_per_epoch=steps,
                   device=run.device, n_train=n)
        nan = StopOnNaN()
        callbacks = [
            StepLearningRate(functools.partial(lr_at, recipe,
                                               total_steps=steps * recipe.epochs)),
            nan,
            LiveBatches(self._emit, self._stop, steps_per_epoch=steps, first_epoch=first_epoch,
                        clock_start=t0, interval_s=BATCH_EVENT_INTERVAL_S),
            RecalibrateBatchNorm(data.x_train, nan),
            EpochHistory(run, self._emit, steps_per_epoch=steps, n_train=n, clock_start=t0,
                         validation=(data.x_val, data.y_val)),
        ]
        callbacks.append(snapshots_for(self, data, steps))
        if self.store is not None:
            callbacks.append(EpochCheckpoint(self.store, run, self._warn))
        images, straight = training_images(model, data.x_train, recipe)
        with straightened_beforehand(model, straight):
            model.fit(make_dataset(images, data.targets, recipe), epochs=recipe.epochs,
                      verbose=0, callbacks=callbacks)
        if nan.nan_step is not None:
            return "failed", (f"The loss became NaN at step {nan.nan_step} — lower the "
                              f"learning rate (now {recipe.learning_rate:g}) and try again.")
        return self._finish_training(model, data)

    def _prepare_model(self, mixed: str | None) -> Any:
        """The model to train: this job's, the run's saved one (resume), or a new one,
        computing in the ``mixed`` policy (None: float32)."""
        from core.build import build_model  # noqa: PLC0415
        from core.device import distribution_strategy  # noqa: PLC0415

        if self.model is None and self.run.epochs_done > 0 and self.store is not None:
            self.model = self.store.load_model(self.run.id)      # resume after a restart
        if self.model is None:
            with distribution_strategy().scope():
                self.model = build_model(self.spec, seed=self.recipe.seed,
                                         mixed_precision=mixed)
                compile_model(self.model, self.recipe)
        elif self.model.optimizer is None or not self.model.compiled:
            compile_model(self.model, self.recipe)
        with distribution_strategy().scope():
            self.model = with_precision(self.model, self.spec, mixed, self.recipe)
        return self.model

    def _finish_training(self, model: Any, data: TrainingData) -> tuple[str, str]:
        """The end of a fit that was not ended by a NaN: test metrics, status, message.

        Anything that should happen to the trained weights before they are evaluated
        and saved belongs at the start of this method.
        """
        from core.evaluation import evaluate  # noqa: PLC0415

        run = self.run
        model = self.model = with_precision(model, self.spec, None, self.recipe)
        ev = evaluate(model, data.x_test, data.y_test)
        run.test_accuracy, run.test_loss = ev.accuracy, ev.loss
        run.confusion = ev.confusion.tolist()
        if self._interrupt:
            return "interrupted", (f"{self._interrupt} It was saved after "
                                   f"{run.epochs_done} full epoch(s) (test accuracy "
                                   f"{ev.accuracy:.2%}); resume it from the Train page.")
        if self._stop.is_set():
            return "stopped", (f"Stopped by you after {run.epochs_done} full epoch(s); "
                               f"test accuracy of the last weights {ev.accuracy:.2%}.")
        return "finished", f"Finished: test accuracy {ev.accuracy:.2%}."


def release_memory(scheduler: Scheduler | None = None) -> bool:
    """Free what finished runs leave behind once no run trains or waits; True if it did.

    Only TensorFlow's eager kernel cache is cleared: over 12 train cycles it was all that
    ``keras.backend.clear_session()`` freed (RSS +109–123 MiB vs +111–127; gc alone
    +147–154), and ``clear_session`` also swaps out every thread's Keras state (name
    counters, scopes, seed) under the inspector or a starting run. Decided and done under
    the scheduler's lock, so no run starts in between.
    """
    from tensorflow.python.eager import context  # noqa: PLC0415  (what clear_session calls)

    released = (scheduler or SCHEDULER).run_if_idle(context.context().clear_kernel_cache)
    if released:
        gc.collect()
    return released
