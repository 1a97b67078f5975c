"""The sweep objectives choose from known trial values (pure: no training, no Optuna)."""
from __future__ import annotations

import pytest

from core.errors import SpecError
from core.sweep_objective import (Objective, TrialRecord, dominated_at, pareto_front,
                                  threshold_score)


def t(number: int, params: int, val: float, state: str = "complete", test: float = 0.0):
    return TrialRecord(number, state, params, val, test)


TRIALS = [t(1, 34_000, 0.9930, test=0.991), t(2, 21_000, 0.9905, test=0.9895),
          t(3, 12_000, 0.9880), t(4, 21_000, 0.9912, test=0.9921), t(5, 9_000, 0.9700),
          t(6, 5_000, 0.9990, state="pruned"), t(7, 3_000, 0.9995, state="failed"),
          TrialRecord(8, "running", 2_000)]


def numbers(records) -> list[int]:
    return [r.number for r in records]


def test_threshold_picks_the_smallest_that_reaches_the_target_on_validation():
    assert numbers(Objective("threshold", target=0.99).choose(TRIALS)) == [4]    # 21k, best
    assert numbers(Objective("threshold", target=0.985).choose(TRIALS)) == [3]
    assert numbers(Objective("threshold", target=0.995).choose(TRIALS)) == []
    assert "99.50%" in Objective("threshold", target=0.995).nothing_chosen()


def test_threshold_score_orders_reached_before_missed_then_by_size():
    reached = [threshold_score(p, 0.991, 0.99) for p in (1_000, 10_000, 100_000)]
    missed = [threshold_score(1_000, acc, 0.99) for acc in (0.989, 0.95, 0.5)]
    assert reached == sorted(reached) and missed == sorted(missed)
    assert max(reached) < min(missed)


def test_budget_picks_the_best_validation_accuracy_within_the_budget():
    assert numbers(Objective("budget", budget=25_000).choose(TRIALS)) == [4]
    assert numbers(Objective("budget", budget=10_000).choose(TRIALS)) == [5]
    assert numbers(Objective("budget", budget=50_000).choose(TRIALS)) == [1]
    assert numbers(Objective("budget", budget=1_000).choose(TRIALS)) == []


def test_selection_never_reads_the_test_accuracy():
    swapped = [TrialRecord(r.number, r.state, r.params, r.val_accuracy, 1 - (r.test_accuracy
                                                                            or 0))
               for r in TRIALS]
    for objective in (Objective("threshold"), Objective("budget", budget=25_000),
                      Objective("pareto")):
        assert numbers(objective.choose(swapped)) == numbers(objective.choose(TRIALS))


def test_pareto_front_of_completed_trials_smallest_first():
    assert numbers(Objective("pareto").choose(TRIALS)) == [5, 3, 4, 1]
    assert numbers(pareto_front([t(1, 100, 0.9), t(2, 100, 0.95)])) == [2]   # a tie in size


def test_the_values_told_to_optuna_match_the_directions():
    for kind, n in (("threshold", 1), ("budget", 1), ("pareto", 2)):
        objective = Objective(kind)
        assert len(objective.values(1_000, 0.98)) == len(objective.directions) == n
    assert Objective("budget", budget=500).refusal(501) is not None
    assert Objective("budget", budget=500).refusal(500) is None
    assert Objective("pareto").refusal(10**7) is None


def test_dominated_at_compares_the_same_epoch_of_smaller_trials():
    others = [(1_000, [0.90, 0.95]), (5_000, [0.97])]
    assert dominated_at(2_000, 0.85, 1, others) == 0.90
    assert dominated_at(2_000, 0.93, 2, others) == 0.95
    assert dominated_at(900, 0.5, 1, others) is None          # nobody smaller
    assert dominated_at(2_000, 0.9, 3, others) is None        # nobody got that far


@pytest.mark.parametrize("objective", [Objective("best"), Objective("threshold", target=1.2),
                                       Objective("budget", budget=10),
                                       Objective("budget", budget=True)])
def test_bad_objectives_are_refused_with_a_sentence(objective):
    with pytest.raises(SpecError) as err:
        objective.check()
    assert str(err.value).endswith(".")
