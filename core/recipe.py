"""A training recipe: optimizer, schedule, batch size, epochs, split, augmentation, seed,
label smoothing and whether to compute in 16-bit floats where the device is fast at it."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from core.errors import SpecError

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "step", "one_cycle")


@dataclass(frozen=True)
class Recipe:
    """How to train a spec. Validate with :meth:`check` before use."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    batch_size: int = 32
    epochs: int = 10
    validation_split: float = 0.1
    augment: bool = False
    train_subset: int | None = None     # None = all 60,000 training images
    seed: int = 0
    # 16-bit compute with float32 weights: float16 on a GPU, bfloat16 on a CPU with
    # bfloat16 instructions (AVX512-BF16 or AMX); float32 elsewhere (core.build.mixed_policy).
    mixed_precision: bool = False
    # Targets (1 - s) on the true digit and s/10 spread over all ten: the network is not
    # pushed towards ever larger logits (0: plain cross-entropy). Records from before
    # this setting load with 0.
    label_smoothing: float = 0.0
    # Which images are held out for validation (and drawn for a subset); None: the seed's.
    # Fixed, seeds differ only in their weights and batches, so a choice among seeds on
    # validation compares them on the same images (the frontier presets). Records from
    # before this setting load with None: the split they were trained on.
    split_seed: int | None = None
    # Distillation (core/distill.py): a pretrained preset whose answers are blended into
    # the training targets, how much of the target they make, and how far they are
    # softened. None: learn from the labels alone.
    teacher: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 1.0

    @property
    def data_seed(self) -> int:
        """The seed that draws the validation split and a subset.

        >>> Recipe(seed=3).data_seed, Recipe(seed=3, split_seed=0).data_seed
        (3, 0)
        """
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        """Parse and check a recipe dict; unknown keys or bad values raise SpecError."""
        if not isinstance(data, dict):
            raise SpecError("A recipe must be an object such as {\"epochs\": 5}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"The recipe has unknown setting(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(known))}.")
        recipe = cls(**data)
        recipe.check()
        return recipe

    def replace(self, **changes: Any) -> "Recipe":
        data = self.to_dict()
        data.update(changes)
        return Recipe.from_dict(data)

    def check(self) -> "Recipe":
        """Raise SpecError with one plain sentence for the first bad setting."""
        def whole(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"The recipe's {name} must be a whole number, got {value!r}.")
            if not low <= value <= high:
                raise SpecError(f"The recipe's {name} is {value:,}; choose between "
                                f"{low:,} and {high:,}.")

        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"Unknown optimizer {self.optimizer!r}; choose one of "
                            f"{', '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise SpecError(f"Unknown learning-rate schedule {self.schedule!r}; choose one "
                            f"of {', '.join(SCHEDULES)}.")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) \
                or not 0 < lr <= 10:
            raise SpecError(f"The learning rate must be a positive number up to 10 "
                            f"(typical: 0.001), got {lr!r}.")
        whole("batch_size", 1, 8192)
        whole("epochs", 1, 200)
        whole("seed", 0, 2**31 - 1)
        if self.split_seed is not None:
            whole("split_seed", 0, 2**31 - 1)
        vs = self.validation_split
        if isinstance(vs, bool) or not isinstance(vs, (int, float)) or not math.isfinite(vs) \
                or not 0 <= vs <= 0.5:
            raise SpecError(f"The validation split must be between 0 and 0.5, got {vs!r}.")
        if self.train_subset is not None:
            whole("train_subset", 100, 60_000)
        ls = self.label_smoothing
        if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not math.isfinite(ls) \
                or not 0 <= ls <= 0.5:
            raise SpecError(f"The label smoothing must be between 0 and 0.5 (typical: 0.1), "
                            f"got {ls!r}.")
        self._check_teacher()
        for flag in ("augment", "mixed_precision"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecError(f"The recipe's {flag} must be true or false.")
        return self

    def _check_teacher(self) -> None:
        """The teacher is a preset (it ships pretrained); weight in (0, 1], T in [1, 20]."""
        if self.teacher is not None:
            from core.presets import PRESETS  # noqa: PLC0415  (presets import recipes)

            if not isinstance(self.teacher, str) or self.teacher not in PRESETS:
                raise SpecError(f"The teacher must be one of the presets "
                                f"({', '.join(PRESETS)}), got {str(self.teacher)[:40]!r}.")
        for name, low, high, typical in (("distill_weight", 0.0, 1.0, 0.5),
                                         ("distill_temperature", 1.0, 20.0, 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not low <= value <= high \
                    or (name == "distill_weight" and value == 0):
                raise SpecError(f"The recipe's {name.replace('_', ' ')} must be a number "
                                f"{'above' if name == 'distill_weight' else 'from'} {low:g} "
                                f"up to {high:g} (typical: {typical}), got {value!r}.")


def lr_at(recipe: Recipe, step: int, total_steps: int) -> float:
    """Learning rate for ``step`` (0-based) of ``total_steps`` under the recipe's schedule.

    constant: the base rate. step: ÷10 at 50% and again at 75% of training.
    one_cycle: linear warm-up from base/25 to the base rate over the first 25%, then
    cosine annealing down to base/1000.

    >>> r = Recipe(learning_rate=0.01, schedule="step")
    >>> [round(lr_at(r, s, 100), 6) for s in (0, 50, 75)]
    [0.01, 0.001, 0.0001]
    >>> round(lr_at(Recipe(learning_rate=0.01, schedule="one_cycle"), 0, 100), 6)
    0.0004
    """
    base = float(recipe.learning_rate)
    frac = step / max(total_steps, 1)
    if recipe.schedule == "step":
        return base * (0.01 if frac >= 0.75 else 0.1 if frac >= 0.5 else 1.0)
    if recipe.schedule == "one_cycle":
        warm = 0.25
        if frac < warm:
            return base / 25 + (base - base / 25) * frac / warm
        t = (frac - warm) / (1 - warm)
        low = base / 1000
        return low + (base - low) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return base
