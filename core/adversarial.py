"""How little it takes to fool a model: the smallest L∞ perturbation that changes its answer.

The attack is projected gradient descent (PGD) under an L∞ budget ε: repeated signed
gradient steps on a margin between logits, each step projected back into the ε-box around
the original digit and into the valid pixel range [0, 1]. An image stops moving at the
first step where the model gives the wanted answer, so what is returned is a success,
not where the steps happened to end.

The smallest ε is searched from small to large on a grid (:data:`EPS_GRID`), stopping at
the first budget that succeeds; for one digit the gap to the last failed budget is then
halved a few times. All budgets of one round run as one batch, so a search costs a few
dozen batched gradient calls.

Pixels are floats in [0, 1]; digits are ``(28, 28)`` or ``(28, 28, 1)``. "Flipping" means
the model's answer changes from what it reads on the clean digit.
"""
from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field

import numpy as np

from core.errors import LayerLabError
from core.model_cache import cached

# Budgets tried from small to large (L∞, pixel units in [0, 1]); 0.5 can draw anything.
EPS_GRID = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
STEPS = 30                 # PGD steps per budget
REFINE = 3                 # halvings between the last failed and the first good budget
ANY = None                 # target "any other class"
MARGIN = 0.02              # a flip counts when the new answer leads by this much


@dataclass
class Attack:
    """One digit's smallest perturbation found (or the largest tried, when it failed)."""

    original: np.ndarray          # float (28, 28) in [0, 1]
    perturbed: np.ndarray         # float (28, 28) in [0, 1]
    budget: float                 # the ε (L∞ bound) the search stopped at
    clean_probabilities: np.ndarray
    probabilities: np.ndarray     # the model's output on ``perturbed``
    target: int | None            # the class asked for (None: any other)
    steps: int                    # gradient steps taken, all budgets together
    success: bool

    @property
    def perturbation(self) -> np.ndarray:
        """``perturbed - original``: what was added, in [-budget, budget]."""
        return self.perturbed - self.original

    @property
    def linf(self) -> float:
        """The largest change of any one pixel."""
        return float(np.abs(self.perturbation).max())

    @property
    def l2(self) -> float:
        """The Euclidean length of the change (784 pixels in [0, 1])."""
        return float(np.sqrt((self.perturbation.astype(np.float64) ** 2).sum()))

    @property
    def clean_class(self) -> int:
        return int(np.argmax(self.clean_probabilities))

    @property
    def new_class(self) -> int:
        return int(np.argmax(self.probabilities))


def budgets_between(low: float, high: float, halvings: int = REFINE) -> list[float]:
    """The budgets a refinement tries between a failed ``low`` and a good ``high``:
    ``2**halvings - 1`` evenly spaced, largest last.

    >>> budgets_between(0.1, 0.2, 2)
    [0.125, 0.15, 0.175]
    >>> budgets_between(0.1, 0.2, 0)
    []
    """
    n = 2 ** halvings
    return [round(low + (high - low) * i / n, 6) for i in range(1, n)]


def first_success(success: np.ndarray) -> np.ndarray:
    """Per row of a (images, budgets) success table, the index of the first success, or
    ``-1`` when none succeeded.

    >>> first_success(np.array([[False, True, True], [False, False, False]])).tolist()
    [1, -1]
    """
    success = np.asarray(success, bool)
    return np.where(success.any(axis=1), success.argmax(axis=1), -1)


def median_budget(budgets: np.ndarray) -> float:
    """The median ε over images; images never flipped count as infinitely robust.

    >>> median_budget(np.array([0.1, 0.2, np.inf]))
    0.2
    >>> median_budget(np.array([0.1, np.inf, np.inf]))
    inf
    """
    return float(np.median(np.asarray(budgets, np.float64)))


def _clear_hits(probs: np.ndarray, classes: np.ndarray, targeted: np.ndarray) -> np.ndarray:
    """Rows the model reads as wanted, by a clear margin (top probability at least
    :data:`MARGIN` above the next), so that a batch of another size, whose float
    round-off differs, reads them the same way.

    >>> p = np.array([[0.1, 0.9], [0.496, 0.504], [0.8, 0.2]])
    >>> _clear_hits(p, np.array([1, 1, 1]), np.array([True, True, False])).tolist()
    [True, False, True]
    """
    top2 = np.sort(probs, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] >= MARGIN
    pred = probs.argmax(axis=1)
    return clear & np.where(np.asarray(targeted), pred == classes, pred != classes)


# -- TensorFlow: the gradient step --------------------------------------------------------
def _logits_model(model):
    """A function images -> logits. The presets end in a softmax Dense layer; its logits
    are the layer's input times its kernel plus bias (a saturated softmax would give a
    zero gradient, and the signed step would stall). Other models: log-probabilities."""
    import keras  # noqa: PLC0415

    last = model.layers[-1]
    ref = weakref.ref(model)
    is_softmax_dense = (isinstance(last, keras.layers.Dense)
                        and getattr(last.activation, "__name__", "") == "softmax")
    if not is_softmax_dense:
        return lambda x: keras.ops.log(ref()(x, training=False) + 1e-12)
    features = keras.Model(model.inputs, last.input, name="adversarial_features")
    layer = weakref.ref(last)
    return lambda x: keras.ops.matmul(features(x, training=False),
                                      layer().kernel) + layer().bias


def _step_function(model):
    """One PGD step for a batch, compiled once per model (see :mod:`core.model_cache`)."""
    import tensorflow as tf  # noqa: PLC0415

    logits_of = _logits_model(model)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(x, x0, eps, alpha, cls, targeted, active):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = tf.cast(logits_of(x), tf.float32)
            hot = tf.one_hot(cls, tf.shape(z)[1])
            own = tf.reduce_sum(z * hot, axis=1)
            best_other = tf.reduce_max(z - 1e9 * hot, axis=1)
            # targeted: raise the target over the rest; untargeted: any other over ``cls``
            margin = tf.where(targeted, own - best_other, best_other - own)
        grad = tape.gradient(margin, x)
        moved = x + alpha * tf.sign(grad)
        moved = tf.clip_by_value(tf.clip_by_value(moved, x0 - eps, x0 + eps), 0.0, 1.0)
        return tf.where(active[:, None, None, None], moved, x), tf.nn.softmax(z)

    return step


def _probabilities(model, x: np.ndarray) -> np.ndarray:
    from core.evaluation import batched_probabilities  # noqa: PLC0415

    return batched_probabilities(model, np.asarray(x, np.float32))


def pgd(model, images: np.ndarray, budgets: np.ndarray, classes: np.ndarray,
        targeted: np.ndarray, steps: int = STEPS) -> tuple[np.ndarray, np.ndarray, int]:
    """PGD for a batch: row i moves within ``budgets[i]`` of ``images[i]`` until the model
    reads ``classes[i]`` (targeted) or anything else (untargeted). Returns (perturbed
    images, success per row, steps taken); a successful row keeps its first success."""
    import tensorflow as tf  # noqa: PLC0415

    step = cached(model, "pgd_step", lambda: _step_function(model))
    x0 = np.asarray(images, np.float32).reshape(-1, 28, 28, 1)
    eps = np.asarray(budgets, np.float32).reshape(-1, 1, 1, 1)
    # a step of 2.5 ε / steps reaches the box's corner with room to move back
    alpha = tf.constant(np.maximum(eps * 2.5 / steps, eps / 4), tf.float32)
    cls = tf.constant(np.asarray(classes, np.int32))
    tgt = tf.constant(np.asarray(targeted, bool))
    x0_t, eps_t = tf.constant(x0), tf.constant(eps)
    x = x0_t
    done = np.zeros(len(x0), bool)
    taken = 0
    for taken in range(steps + 1):
        # the step also returns the probabilities of the x it started from
        moved, probs = step(x, x0_t, eps_t, alpha, cls, tgt, tf.constant(~done))
        hit = _clear_hits(probs.numpy(), classes, targeted)
        done |= hit
        if done.all() or taken == steps:
            break
        x = tf.where(tf.constant(done)[:, None, None, None], x, moved)
    return x.numpy().reshape(-1, 28, 28), done, taken


# -- one digit ------------------------------------------------------------------------------
def _as_pixels(image: np.ndarray) -> np.ndarray:
    """A digit as float (28, 28) in [0, 1] (uint8 pixels are scaled by 255)."""
    from core.data import to_float  # noqa: PLC0415

    arr = np.asarray(image)
    if arr.size != 784:
        raise LayerLabError("A digit to perturb must have 28×28 pixels.")
    return to_float(arr.reshape(28, 28)).reshape(28, 28)


def _search(model, x0: np.ndarray, budgets: list[float], cls: int, targeted: bool,
            steps: int) -> tuple[int, np.ndarray, int]:
    """All ``budgets`` at once for one digit: (index of the first that succeeds or -1,
    the perturbed images, steps taken)."""
    n = len(budgets)
    out, ok, taken = pgd(model, np.repeat(x0[None], n, axis=0), np.array(budgets),
                         np.full(n, cls), np.full(n, targeted), steps)
    return int(first_success(ok[None])[0]), out, taken


def fool(model, image: np.ndarray, target: int | None = ANY, *,
         grid: tuple[float, ...] = EPS_GRID, steps: int = STEPS,
         refine: int = REFINE) -> Attack:
    """The smallest L∞ perturbation found that makes ``model`` read ``image`` as
    ``target`` (None: as any class but the one it reads now).

    The grid's budgets are tried together, the first success kept, then the gap to the
    budget below it is halved ``refine`` times. The result is checked with
    ``model(x, training=False)`` on the single perturbed digit.
    """
    if target is not ANY and not 0 <= int(target) <= 9:
        raise LayerLabError("The target must be a digit from 0 to 9, or any other.")
    x0 = _as_pixels(image)
    clean = _probabilities(model, x0[None, ..., None])[0]
    start = int(clean.argmax())
    if target is not ANY and int(target) == start:
        return Attack(x0, x0.copy(), 0.0, clean, clean, int(target), 0, True)
    targeted = target is not ANY
    cls = int(target) if targeted else start
    first, out, used = _search(model, x0, list(grid), cls, targeted, steps)
    if first < 0:
        return _checked(model, x0, out[-1], grid[-1], clean, target, used)
    budget, best = grid[first], out[first]
    finer = budgets_between(grid[first - 1] if first else 0.0, budget, refine)
    if finer:
        found, out, taken = _search(model, x0, finer, cls, targeted, steps)
        used += taken
        if found >= 0:
            budget, best = finer[found], out[found]
    return _checked(model, x0, best, budget, clean, target, used)


def _checked(model, x0: np.ndarray, perturbed: np.ndarray, budget: float,
             clean: np.ndarray, target: int | None, steps: int) -> Attack:
    """The attack's result, read again by the model on the one perturbed digit."""
    x = np.clip(perturbed, 0.0, 1.0).astype(np.float32)
    probs = np.asarray(model(x[None, ..., None], training=False), np.float32)[0]
    pred = int(probs.argmax())
    success = pred == target if target is not ANY else pred != int(clean.argmax())
    return Attack(x0, x, float(budget), clean, probs, target, int(steps), bool(success))


# -- many digits: the robustness figure -------------------------------------------------------
def flip_budgets(model, images: np.ndarray, *, grid: tuple[float, ...] = EPS_GRID,
                 steps: int = STEPS) -> np.ndarray:
    """For each image, the smallest budget on ``grid`` at which PGD changes the model's
    answer (``inf`` when none does). Budgets go from small to large; each round attacks
    only the images not flipped yet, all in one batch."""
    x0 = np.stack([_as_pixels(im) for im in images]) if len(images) else \
        np.zeros((0, 28, 28), np.float32)
    start = _probabilities(model, x0[..., None]).argmax(axis=1) if len(x0) else \
        np.zeros(0, int)
    found = np.full(len(x0), np.inf)
    for eps in grid:
        left = np.flatnonzero(np.isinf(found))
        if len(left) == 0:
            break
        _, ok, _ = pgd(model, x0[left], np.full(len(left), eps), start[left],
                       np.zeros(len(left), bool), steps)
        found[left[ok]] = eps
    return found


@dataclass
class Robustness:
    """The median budget to flip a set of images, with each image's budget."""

    budgets: np.ndarray = field(repr=False)
    median: float
    from_cache: bool = False


def robustness(model, images: np.ndarray, *, grid: tuple[float, ...] = EPS_GRID,
               steps: int = STEPS, cache_dir=None) -> Robustness:
    """:func:`flip_budgets` and their median, kept on disk per (model content, images,
    grid, steps): a second call for the same model only reads a small JSON file."""
    from pathlib import Path  # noqa: PLC0415

    from core.evaluation import array_fingerprint, cache_root, model_fingerprint  # noqa
    from core.storage import atomic_write_bytes  # noqa: PLC0415

    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "robustness"
    setting = array_fingerprint(np.asarray(grid, np.float64), np.array([steps]))
    path = folder / f"{model_fingerprint(model)}-{array_fingerprint(images)}-{setting}.json"
    cached_value = _read_budgets(path, len(images))
    if cached_value is not None:
        return Robustness(cached_value, median_budget(cached_value), from_cache=True)
    budgets = flip_budgets(model, images, grid=grid, steps=steps)
    text = json.dumps([None if np.isinf(b) else float(b) for b in budgets])
    try:
        atomic_write_bytes(path, text.encode())
    except OSError:
        pass                                    # a read-only home only loses the cache
    return Robustness(budgets, median_budget(budgets))


def _read_budgets(path, n: int) -> np.ndarray | None:
    """Budgets cached at ``path`` (null = never flipped), or None if absent or damaged."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(values, list) or len(values) != n or not all(
            v is None or isinstance(v, (int, float)) for v in values):
        return None
    return np.array([np.inf if v is None else float(v) for v in values])
