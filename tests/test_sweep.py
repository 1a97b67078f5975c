"""Sweeps for real: Optuna's SQLite storage under LAYERLAB_HOME, tiny trials trained by
the local backend through a job registry, pruning, one sweep per workspace, and a sweep
continued over the same storage after a simulated restart."""
from __future__ import annotations

import time

import optuna
import pytest

from core.backend import LocalBackend
from core.errors import LayerLabError
from core.jobs import JobRegistry
from core.presets import FLAT, OUT, conv, pool
from core.recipe import Recipe
from core.runs import RunStore
from core.scheduler import Scheduler
from core.spec import ModelSpec
from core.storage import layerlab_home
from core.sweep import continue_sweep, live, page_seen, run_sweep, start_sweep
from core.sweep_store import SweepConfig, get_storage, list_sweeps, new_study, open_sweep
from core.sweep_objective import Objective
from core.sweep_space import suggest
from core.workspace import new_workspace_id

TINY = ModelSpec("tiny", [conv(4), pool(), FLAT, OUT])
QUICK = Recipe(epochs=1, batch_size=64, learning_rate=3e-3, train_subset=1000,
               validation_split=0.2)
WIDTH = {"width": {"low": 0.5, "high": 2.0}}


def config(ws: str, n_trials: int = 4, *, space=None, recipe: Recipe = QUICK,
           spec: ModelSpec = TINY, objective: Objective | None = None) -> SweepConfig:
    return SweepConfig(workspace=ws, start=spec.to_dict(), recipe=recipe.to_dict(),
                       space=space or WIDTH, n_trials=n_trials, start_label="test",
                       objective=objective or Objective("budget", budget=50_000))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_for(predicate, timeout: float = 120) -> None:
    t0 = time.time()
    while not predicate():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.1)


def training(registry: JobRegistry, key: str) -> bool:
    job = registry.live(key)
    return job is not None and job.snapshot().state == "running"


@pytest.fixture
def env():
    """Its own scheduler, registry and local backend: nothing shared with other tests."""
    scheduler = Scheduler(2)
    registry = JobRegistry(scheduler, max_queued=4, orphan_s=600)
    yield {"backend": LocalBackend(scheduler), "registry": registry}
    for key in list(registry._jobs):
        registry.get(key).stop()
        registry.get(key).join(60)


def test_a_four_trial_sweep_runs_to_the_end_and_every_trial_is_a_saved_run(env):
    ws = new_workspace_id()
    result = run_sweep(config(ws), timeout=300, **env)
    assert result.info.status == "finished"
    assert [r.state for r in result.records] == ["complete"] * 4
    assert (layerlab_home() / "sweeps.db").is_file()          # the default storage
    runs = {run.id: run for run in RunStore().list_runs(ws)}
    for rec in result.records:
        run = runs[rec.run_id]
        assert run.name == rec.run_name == f"sweep 1 · trial {rec.number}"
        assert run.status == "finished" and run.params == rec.params
        assert rec.val_accuracy == pytest.approx(run.history["val_accuracy"][-1])
        assert rec.test_accuracy == run.test_accuracy
        assert 2 <= run.spec["layers"][0]["filters"] <= 8      # width 0.5–2 of 4 filters
    best = max(result.records, key=lambda r: r.val_accuracy)
    assert [r.number for r in result.chosen] == [best.number]


def test_a_hopeless_trial_is_pruned_and_its_job_stopped(env):
    ws = new_workspace_id()
    recipe = QUICK.replace(epochs=10, train_subset=2000)
    space = {"learning_rate": {"low": 1e-5, "high": 1e-2}}
    study, cfg = new_study(config(ws, 4, space=space, recipe=recipe), get_storage())
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    curve = {step: 0.90 + step / 1000 for step in range(1, 11)}
    for _ in range(3):                              # three good trials seen before it
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": 3e-3}, distributions=dist, value=0.91,
            intermediate_values=curve, user_attrs={"params": 6_770}))
    study.enqueue_trial({"learning_rate": 1e-5})    # learns nothing in one epoch
    continue_sweep(ws, cfg.number, **env).join(300)
    hopeless = open_sweep(ws, cfg.number).records[3]
    assert hopeless.state == "pruned"
    assert hopeless.reason.startswith("Pruned after epoch 1:")
    run = RunStore().load_run(hopeless.run_id)
    assert run.status == "stopped" and run.epochs_done < 10
    assert run.message.startswith("Sweep 1: Pruned after epoch 1")


def test_a_second_sweep_in_the_same_workspace_is_refused(env):
    ws = new_workspace_id()
    first = start_sweep(config(ws, 1, recipe=QUICK.replace(epochs=20)), **env)
    try:
        wait_for(lambda: training(env["registry"], f"{ws}/sweep/0"))
        with pytest.raises(LayerLabError, match="already has a sweep in progress"):
            start_sweep(config(ws), **env)
        with pytest.raises(LayerLabError, match="already has a sweep in progress"):
            continue_sweep(ws, 1, **env)
        assert live(ws) is first
    finally:
        first.stop()
        first.join(120)
    assert live(ws) is None and list_sweeps(ws)[0].status == "stopped"
    stopped = open_sweep(ws, 1).records              # stopped mid-run: to be asked again
    assert [r.state for r in stopped] == ["lost", "waiting"]
    assert stopped[0].reason.startswith("Stopped by you")
    assert RunStore().load_run(stopped[0].run_id).status == "stopped"


def test_a_sweep_continued_after_a_restart_finishes_its_remaining_trials(env):
    ws = new_workspace_id()
    study, cfg = new_study(config(ws, 2), get_storage())
    dead = study.ask()                        # the trial a killed server was training
    values = suggest(dead, cfg.space)
    study.set_user_attr("status", "running")
    study.set_user_attr("alive_at", time.time())
    with pytest.raises(LayerLabError, match="still running a moment ago"):
        continue_sweep(ws, cfg.number, **env)
    study.set_user_attr("alive_at", time.time() - 3600)
    assert list_sweeps(ws)[0].status == "interrupted"
    continue_sweep(ws, cfg.number, **env).join(300)       # a new driver, same storage
    result = open_sweep(ws, cfg.number)
    assert result.info.status == "finished"
    assert [r.state for r in result.records] == ["lost", "complete", "complete"]
    assert result.records[1].values == values              # asked again, same values
    assert {r.run_name for r in result.records[1:]} == {"sweep 1 · trial 2",
                                                         "sweep 1 · trial 3"}


def test_trials_that_cannot_or_need_not_train_are_told_without_a_job(env):
    ws = new_workspace_id()
    shrinking = ModelSpec("deep", [conv(8), pool(), conv(8), pool(), conv(8), FLAT, OUT])
    invalid = run_sweep(config(ws, 1, spec=shrinking, space={"kernel": {"choices": [9]}}),
                        timeout=60, **env)
    assert invalid.records[0].state == "failed"
    assert "Layer 5" in invalid.records[0].reason and invalid.records[0].run_id is None
    over = run_sweep(config(ws, 2, objective=Objective("budget", budget=100)),
                     timeout=60, **env)
    assert [r.state for r in over.records] == ["pruned", "pruned"]
    assert "over the budget of 100" in over.records[0].reason
    assert RunStore().list_runs(ws) == []


def test_a_sweep_without_an_open_page_pauses(env):
    ws = new_workspace_id()
    start_sweep(config(ws, 2), page_open=lambda: False, **env).join(60)
    info = list_sweeps(ws)[0]
    assert info.status == "paused" and "no page of this workspace" in info.message
    clock = Clock()
    registry = JobRegistry(Scheduler(1), orphan_s=300, clock=clock)
    seen = page_seen(registry, ws)
    assert not seen()
    registry.heartbeat(ws)
    assert seen()
    clock.now += 301
    assert not seen()
