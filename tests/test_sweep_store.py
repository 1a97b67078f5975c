"""Sweeps in Optuna's storage, without training: the configuration checked and kept, a
workspace's sweeps listed (and only its own), trials read back as records, and the
trials a dead server left RUNNING recovered."""
from __future__ import annotations

import time

import optuna
import pytest

from core.errors import SpecError, StorageError
from core.presets import get_preset
from core.sweep_objective import Objective
from core.sweep_store import (SweepConfig, counted, get_storage, list_sweeps, new_study,
                              recover, study_prefix, trial_records)
from core.workspace import new_workspace_id

FAST = get_preset("fast_cnn")
WIDTH = {"width": {"low": 0.25, "high": 1.5}}
DIST = {"width": optuna.distributions.FloatDistribution(0.25, 1.5, log=True)}


def config(ws: str, **changes) -> SweepConfig:
    base = dict(workspace=ws, start=FAST.spec.to_dict(), recipe=FAST.recipe.to_dict(),
                space=WIDTH, objective=Objective("threshold", target=0.99), n_trials=5,
                start_label="preset fast_cnn")
    return SweepConfig(**{**base, **changes})


def test_the_configuration_round_trips_through_the_study():
    ws = new_workspace_id()
    study, cfg = new_study(config(ws), get_storage())
    assert cfg.number == 1
    [info] = list_sweeps(ws)
    assert info.config == cfg and info.study_name == study.study_name
    assert ws not in study.study_name                      # the id is a secret


@pytest.mark.parametrize("changes, words", [
    ({"recipe": FAST.recipe.replace(validation_split=0.0).to_dict()}, "validation split"),
    ({"n_trials": 0}, "number of trials"),
    ({"time_limit_s": 1.0}, "time limit"),
    ({"space": {"width": {"low": 0, "high": 1}}}, "Width"),
    ({"objective": Objective("threshold", target=2.0)}, "target"),
])
def test_a_configuration_a_sweep_cannot_run_is_refused(changes, words):
    with pytest.raises(SpecError, match=words):
        config(new_workspace_id(), **changes).check()


def test_a_workspace_lists_only_its_own_sweeps_newest_first():
    mine, other = new_workspace_id(), new_workspace_id()
    storage = get_storage()
    for ws in (mine, other, mine):
        new_study(config(ws), storage)
    damaged = optuna.create_study(storage=storage,
                                  study_name=f"{study_prefix(mine)}9")
    damaged.set_user_attr("config", {"workspace": mine})          # not a configuration
    assert [i.number for i in list_sweeps(mine)] == [2, 1]
    assert [i.number for i in list_sweeps(other)] == [1]


def test_a_running_sweep_nobody_stamps_reads_as_interrupted():
    ws = new_workspace_id()
    study, _ = new_study(config(ws), get_storage())
    study.set_user_attr("status", "running")
    study.set_user_attr("alive_at", time.time())
    assert list_sweeps(ws)[0].status == "running"
    study.set_user_attr("alive_at", time.time() - 600)
    assert list_sweeps(ws)[0].status == "interrupted"


def test_recover_fails_the_running_trials_and_asks_each_again_once():
    ws = new_workspace_id()
    study, _ = new_study(config(ws), get_storage())
    study.add_trial(optuna.trial.create_trial(params={"width": 0.5}, distributions=DIST,
                                              value=4.2))
    study.add_trial(optuna.trial.create_trial(params={"width": 0.3}, distributions=DIST,
                                              state=optuna.trial.TrialState.FAIL))
    study.enqueue_trial({"width": 0.3}, user_attrs={"retry_of": 1})
    for _ in range(2):                # the dead server trained trial 1's retry and a new one
        study.ask().suggest_float("width", 0.25, 1.5, log=True)
    assert recover(study) == 2
    records = trial_records(study)
    assert [r.state for r in records] == ["complete", "lost", "failed", "lost", "waiting"]
    assert records[2].reason == "The server stopped while it trained."   # lost twice: done
    again = study.ask()                                     # asked again, same values
    assert again.suggest_float("width", 0.25, 1.5, log=True) == records[3].values["width"]
    assert counted(study.get_trials()) == 2                 # not trials 1 and 3: re-run


def test_a_database_that_cannot_be_opened_is_a_sentence_without_its_url():
    with pytest.raises(StorageError) as err:
        get_storage("nosuchdb://teacher:hunter2@db.example/sweeps")
    text = str(err.value)
    assert "LAYERLAB_SWEEP_DB" in text and "hunter2" not in text and "db.example" not in text
