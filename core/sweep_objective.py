"""What a sweep is looking for, and which of its trials answer it (pure, no Optuna).

Three objectives, each selecting on the *validation* split only (a trial's test accuracy
is recorded with it and reported for the chosen models, never used to choose):

- ``threshold``: the smallest model whose validation accuracy reaches a target. Optuna
  minimises :func:`threshold_score`: the log of the parameters once the target is met,
  else a penalty that shrinks as the accuracy nears it.
- ``budget``: the best validation accuracy with at most N parameters (the Challenge's
  rule). Trials over the budget are never trained.
- ``pareto``: the front of validation accuracy against parameters (multi-objective).

A :class:`TrialRecord` is one trial as the page and the bench show it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from core.errors import SpecError

KINDS = {
    "threshold": "Smallest model with validation accuracy ≥ a target",
    "budget": "Best validation accuracy under a parameter budget",
    "pareto": "Pareto front: validation accuracy versus parameters",
}


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a sweep. ``number`` counts from 1, as the run names do."""

    number: int
    state: str                      # complete | pruned | failed | lost | running | waiting
    params: int | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    run_id: str | None = None
    run_name: str = ""
    reason: str = ""                # why it was pruned, failed or lost (a sentence)
    values: dict[str, Any] = field(default_factory=dict)    # the knobs' values
    curve: list[float] = field(default_factory=list)        # validation accuracy per epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_score(params: int, val_accuracy: float, target: float) -> float:
    """Lower is better: log10(params) once ``target`` is reached, else 10 plus 100 per
    unit of accuracy missing (so any model that reaches it beats every one that does not).

    >>> threshold_score(10_000, 0.991, 0.99)
    4.0
    >>> threshold_score(1_000, 0.98, 0.99) > threshold_score(10_000_000, 0.99, 0.99)
    True
    >>> threshold_score(1_000, 0.95, 0.99) > threshold_score(1_000, 0.98, 0.99)
    True
    """
    if val_accuracy >= target:
        return math.log10(max(params, 1))
    return 10.0 + 100.0 * (target - val_accuracy)


def pareto_front(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Completed trials that no other beats on both counts (fewer or as many parameters
    and a higher validation accuracy), smallest first.

    >>> r = [TrialRecord(1, "complete", 100, 0.90), TrialRecord(2, "complete", 200, 0.95),
    ...      TrialRecord(3, "complete", 300, 0.94), TrialRecord(4, "pruned", 50, 0.99)]
    >>> [t.number for t in pareto_front(r)]
    [1, 2]
    """
    done = sorted((r for r in records if r.state == "complete" and r.params is not None
                   and r.val_accuracy is not None),
                  key=lambda r: (r.params, -r.val_accuracy, r.number))
    front: list[TrialRecord] = []
    for r in done:
        if not front or r.val_accuracy > front[-1].val_accuracy:
            front.append(r)
    return front


def dominated_at(params: int, accuracy: float, epoch: int,
                 others: Iterable[tuple[int, list[float]]]) -> float | None:
    """The Pareto sweep's pruning rule: the best validation accuracy at ``epoch`` (1-based)
    of another trial with at most ``params`` parameters that beat ``accuracy`` there, or
    None when no smaller trial was ahead at that epoch.

    >>> dominated_at(500, 0.90, 1, [(400, [0.93, 0.97]), (900, [0.99])])
    0.93
    >>> dominated_at(500, 0.95, 1, [(400, [0.93, 0.97]), (900, [0.99])]) is None
    True
    """
    ahead = [curve[epoch - 1] for p, curve in others
             if p <= params and len(curve) >= epoch and curve[epoch - 1] > accuracy]
    return max(ahead, default=None)


@dataclass(frozen=True)
class Objective:
    """The sweep's goal; ``target`` (threshold) and ``budget`` as the kind needs."""

    kind: str = "budget"
    target: float = 0.99            # validation accuracy to reach (threshold)
    budget: int = 10_000            # parameters allowed (budget)

    def check(self) -> "Objective":
        """SpecError with a sentence for a bad objective.

        >>> Objective("threshold", target=1.5).check()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        core.errors.SpecError: The target validation accuracy must be between 0.5 and ...
        """
        if self.kind not in KINDS:
            raise SpecError(f"Unknown objective {self.kind!r}; choose one of "
                            f"{', '.join(KINDS)}.")
        t = self.target
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.5 <= t <= 0.9999:
            raise SpecError(f"The target validation accuracy must be between 0.5 and 0.9999 "
                            f"(50% to 99.99%), got {t!r}.")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) \
                or not 100 <= self.budget <= 50_000_000:
            raise SpecError(f"The parameter budget must be a whole number between 100 and "
                            f"50,000,000, got {self.budget!r}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Objective":
        if not isinstance(data, dict) or set(data) - {"kind", "target", "budget"}:
            raise SpecError("A sweep's objective needs a kind, a target and a budget.")
        return cls(**data).check()

    @property
    def multi(self) -> bool:
        return self.kind == "pareto"

    @property
    def directions(self) -> list[str]:
        """Optuna's directions for :meth:`values`.

        >>> Objective("pareto").directions
        ['maximize', 'minimize']
        """
        return {"threshold": ["minimize"], "budget": ["maximize"],
                "pareto": ["maximize", "minimize"]}[self.kind]

    def values(self, params: int, val_accuracy: float) -> list[float]:
        """What Optuna is told for a completed trial (and, single-objective, reported
        after every epoch for pruning).

        >>> Objective("budget").values(9_000, 0.98), Objective("pareto").values(9_000, 0.98)
        ([0.98], [0.98, 9000.0])
        """
        if self.kind == "threshold":
            return [threshold_score(params, val_accuracy, self.target)]
        if self.kind == "budget":
            return [float(val_accuracy)]
        return [float(val_accuracy), float(params)]

    def refusal(self, params: int) -> str | None:
        """Why a trial of ``params`` parameters is not worth training, or None.

        >>> print(Objective("budget", budget=10_000).refusal(12_345))
        It has 12,345 parameters, over the budget of 10,000, so it was not trained.
        """
        if self.kind == "budget" and params > self.budget:
            return (f"It has {params:,} parameters, over the budget of {self.budget:,}, so "
                    f"it was not trained.")
        return None

    def choose(self, records: Iterable[TrialRecord]) -> list[TrialRecord]:
        """The trials that answer the objective, from their validation accuracy only.

        >>> r = [TrialRecord(1, "complete", 30_000, 0.992), TrialRecord(2, "complete",
        ...      20_000, 0.990), TrialRecord(3, "complete", 9_000, 0.985)]
        >>> [t.number for t in Objective("threshold", target=0.99).choose(r)]
        [2]
        >>> [t.number for t in Objective("budget", budget=25_000).choose(r)]
        [2]
        >>> [t.number for t in Objective("pareto").choose(r)]
        [3, 2, 1]
        """
        done = [r for r in records if r.state == "complete" and r.params is not None
                and r.val_accuracy is not None]
        if self.kind == "pareto":
            return pareto_front(done)
        if self.kind == "threshold":
            ok = [r for r in done if r.val_accuracy >= self.target]
            return [min(ok, key=lambda r: (r.params, -r.val_accuracy, r.number))] if ok else []
        ok = [r for r in done if r.params <= self.budget]
        return [max(ok, key=lambda r: (r.val_accuracy, -r.params, -r.number))] if ok else []

    def describe(self) -> str:
        """The objective in words.

        >>> Objective("threshold", target=0.99).describe()
        'the smallest model with validation accuracy ≥ 99.00%'
        """
        if self.kind == "threshold":
            return f"the smallest model with validation accuracy ≥ {self.target:.2%}"
        if self.kind == "budget":
            return f"the best validation accuracy with at most {self.budget:,} parameters"
        return "the Pareto front of validation accuracy against parameters"

    def nothing_chosen(self) -> str:
        """The sentence when no trial answers the objective yet."""
        if self.kind == "threshold":
            return (f"No trial has reached {self.target:.2%} validation accuracy yet: run "
                    f"more trials, widen the space or lower the target.")
        if self.kind == "budget":
            return (f"No trial under {self.budget:,} parameters has finished yet: run more "
                    f"trials or allow smaller widths.")
        return "No trial has finished yet."
