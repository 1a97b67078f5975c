"""Fine-tune any model on a workspace's own digits without forgetting MNIST.

A short run of the ordinary training machinery (:class:`core.training.TrainingJob`, so
it queues, reports progress, can be stopped and is saved as a normal run) with three
differences:

- it starts from a copy of an existing model's weights (the original is left alone);
- its training set mixes the personal digits, repeated with light shifts, with as many
  *replayed* MNIST training images, so on average every batch is half each: the replay
  keeps the model from forgetting MNIST while it learns the user's hand;
- a low learning rate and few epochs (:func:`finetune_recipe`): small steps away from
  weights that already read MNIST well.

Measured on the presets (tests/test_personal.py): 50 re-styled digits, test accuracy
within 0.3 points of the original. The run's ``parent`` is the original model's key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.personal import PersonalSet
from core.recipe import Recipe
from core.runs import Run, RunStore
from core.scheduler import Scheduler
from core.training import TrainingData, TrainingJob, compile_model

PERSONAL_IMAGES = 1_024       # the personal half of the mix (digits repeated, shifted)
VALIDATION_IMAGES = 500       # replayed MNIST images held out for the curves
MAX_SHIFT = 2                 # pixels: light augmentation that keeps a digit a digit
MIN_DIGITS = 5


def shift_digits(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each (28, 28) image moved by its (dy, dx), filled with black (not wrapped).

    >>> img = np.zeros((1, 28, 28), np.uint8); img[0, 0, 0] = 9
    >>> out = shift_digits(img, np.array([[1, 2]]))
    >>> int(out[0, 1, 2]), int(out.sum())
    (9, 9)
    >>> int(shift_digits(img, np.array([[-1, 0]])).sum())     # moved off the edge
    0
    """
    out = np.zeros_like(x)
    for i, (dy, dx) in enumerate(np.asarray(shifts, int)):
        src = x[i, max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)]
        out[i, max(0, dy):max(0, dy) + src.shape[0],
            max(0, dx):max(0, dx) + src.shape[1]] = src
    return out


def personal_half(x: np.ndarray, y: np.ndarray, n_images: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The personal digits repeated to ``n_images`` (at least each once), every copy
    after the first shifted by up to :data:`MAX_SHIFT` pixels.

    >>> x, y = np.ones((3, 28, 28), np.uint8), np.array([1, 2, 3], np.uint8)
    >>> px, py = personal_half(x, y, 8, np.random.default_rng(0))
    >>> px.shape, sorted(set(py.tolist())), py[:3].tolist()
    ((9, 28, 28), [1, 2, 3], [1, 2, 3])
    """
    copies = max(1, -(-n_images // len(y)))
    xs, ys = np.tile(x, (copies, 1, 1)), np.tile(y, copies)
    shifts = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(len(ys), 2))
    shifts[:len(y)] = 0                                  # the originals themselves
    return shift_digits(xs, shifts), ys


def mixed_data(personal: PersonalSet, mnist: Any, *, seed: int = 0) -> TrainingData:
    """Personal digits (shifted copies) + as many replayed MNIST training images, a
    replayed validation set, and the full test set, as float arrays for training."""
    from core.data import to_float  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    px, py = personal_half(personal.x, personal.y, PERSONAL_IMAGES, rng)
    pick = rng.choice(len(mnist.y_train), len(py) + VALIDATION_IMAGES, replace=False)
    replay, val = pick[:len(py)], pick[len(py):]
    x = np.concatenate([px, mnist.x_train[replay]])
    y = np.concatenate([py, mnist.y_train[replay]]).astype(np.int32)
    return TrainingData(to_float(x), y, to_float(mnist.x_train[val]),
                        mnist.y_train[val].astype(np.int32), to_float(mnist.x_test),
                        mnist.y_test.astype(np.int32))


def finetune_recipe(n_images: int, *, seed: int = 0) -> Recipe:
    """Few epochs at a low, constant learning rate (recorded with the run).

    >>> r = finetune_recipe(2_548)
    >>> r.epochs, r.learning_rate, r.train_subset
    (3, 5e-05, 2548)
    """
    return Recipe(optimizer="adam", learning_rate=5e-5, schedule="constant", batch_size=64,
                  epochs=3, validation_split=0.0, augment=False,
                  train_subset=min(max(n_images, 100), 60_000), seed=seed).check()


def copy_model(model: Any) -> Any:
    """A new model with ``model``'s architecture, layer names and weights."""
    import keras  # noqa: PLC0415

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


class FineTuneJob(TrainingJob):
    """A :class:`TrainingJob` that starts from a copy of ``source_model`` and trains on
    :func:`mixed_data`; the copy is made in the worker thread."""

    def __init__(self, source_model: Any, source: Run, source_key: str,
                 personal: PersonalSet, mnist: Any, *, workspace: str,
                 store: RunStore | None = None, scheduler: Scheduler | None = None,
                 seed: int = 0) -> None:
        from core.errors import LayerLabError  # noqa: PLC0415
        from core.spec import ModelSpec  # noqa: PLC0415

        if len(personal) < MIN_DIGITS:
            raise LayerLabError(f"Add at least {MIN_DIGITS} digits of your own (you have "
                                f"{len(personal)}) before fine-tuning on them.")
        data = mixed_data(personal, mnist, seed=seed)
        recipe = finetune_recipe(len(data.y_train) + len(data.y_val), seed=seed)
        super().__init__(ModelSpec.from_dict(source.spec), recipe,
                         name=f"{source.name} + my digits", workspace=workspace,
                         store=store, data=data, scheduler=scheduler)
        self.run.parent, self.run.source = source_key, "session"
        self.source_model = source_model

    def _prepare_model(self, mixed: bool) -> Any:
        if self.model is None:
            self.model = copy_model(self.source_model)
            compile_model(self.model, self.recipe)
        return self.model


@dataclass(frozen=True)
class BeforeAfter:
    """Accuracy of the original and the fine-tuned model on both sets."""

    personal_before: float
    personal_after: float
    test_before: float
    test_after: float

    def rows(self) -> list[dict[str, str]]:
        """A table: one row per set, before / after / change in points.

        >>> BeforeAfter(0.8, 0.9, 0.99, 0.989).rows()[1]["change"]
        '-0.10 points'
        """
        def row(name: str, a: float, b: float) -> dict[str, str]:
            return {"set": name, "before": f"{a:.2%}", "after": f"{b:.2%}",
                    "change": f"{100 * (b - a):+.2f} points"}

        return [row("your digits", self.personal_before, self.personal_after),
                row("MNIST test set", self.test_before, self.test_after)]


def before_after(before: Any, after: Any, personal: PersonalSet, mnist: Any) -> BeforeAfter:
    """Both models on the personal digits and on the full test set (cached on disk)."""
    from core.data import to_float  # noqa: PLC0415
    from core.evaluation import cached_evaluate, evaluate  # noqa: PLC0415

    px, tx = to_float(personal.x), to_float(mnist.x_test)
    return BeforeAfter(evaluate(before, px, personal.y).accuracy,
                       evaluate(after, px, personal.y).accuracy,
                       cached_evaluate(before, tx, mnist.y_test).accuracy,
                       cached_evaluate(after, tx, mnist.y_test).accuracy)
