"""The Sweep page in AppTest: the form renders, Start waits for the data, a stored sweep's
trials fill the table with the chosen model's test accuracy, and a trial opens in the
Builder, Train and Compare."""
from __future__ import annotations

import optuna
import pytest

from core import data
from core.presets import get_preset
from core.runs import Run, RunStore, new_run_id
from core.spec import ModelSpec, infer_shapes
from core.sweep_store import SweepConfig, get_storage, new_study
from core.sweep_objective import Objective
from core.sweep_space import apply, count_params
from core.workspace import new_workspace_id

WIDTHS = [(1.0, None, None), (0.75, 0.9912, 0.9921), (0.5, 0.9850, 0.9862)]


def stored_sweep(ws: str) -> list[Run]:
    """Sweep 1 of ``ws`` as a finished sweep leaves it: trial 1 over the budget (pruned,
    never trained), trials 2 and 3 complete with their saved runs."""
    p = get_preset("fast_cnn")
    cfg = SweepConfig(ws, p.spec.to_dict(), p.recipe.to_dict(),
                      {"width": {"low": 0.25, "high": 1.5}},
                      Objective("budget", budget=25_000), n_trials=3,
                      start_label="preset fast_cnn")
    study, cfg = new_study(cfg, get_storage())
    dist = {"width": optuna.distributions.FloatDistribution(0.25, 1.5, log=True)}
    runs = []
    for n, (width, val, test) in enumerate(WIDTHS, start=1):
        spec, recipe = apply(p.spec, p.recipe, {"width": width}, name=f"fast_cnn_s1t{n}")
        attrs = {"params": count_params(spec)}
        if val is None:
            attrs["reason"] = "It has 34,138 parameters, over the budget of 25,000."
            study.add_trial(optuna.trial.create_trial(
                params={"width": width}, distributions=dist,
                state=optuna.trial.TrialState.PRUNED, user_attrs=attrs))
            continue
        run = Run(new_run_id(), f"sweep 1 · trial {n}", spec.to_dict(), recipe.to_dict(),
                  workspace=ws, params=attrs["params"], status="finished",
                  test_accuracy=test, epochs_done=3)
        RunStore().save_run(run)
        runs.append(run)
        attrs.update(curve=[val - 0.01, val], test_accuracy=test, run_id=run.id,
                     run_name=run.name)
        study.add_trial(optuna.trial.create_trial(params={"width": width}, distributions=dist,
                                                  value=val, user_attrs=attrs))
    study.set_user_attr("status", "finished")
    study.set_user_attr("message", "Finished: 3 trials.")
    return runs


def test_the_page_renders_the_form_with_fast_cnn_and_start_enabled(open_page):
    at = open_page("sweep")
    assert not at.exception and not at.error
    assert at.selectbox(key="sw_preset").value == "fast_cnn"
    assert at.checkbox(key="sw_on_width_preset_fast_cnn").value
    assert at.select_slider(key="sw_rng_width_preset_fast_cnn").value == (0.25, 1.5)
    assert not at.button(key="sw_start").disabled
    assert not at.subheader                                    # no sweep yet


def test_start_is_disabled_without_data(open_page, tmp_path, monkeypatch):
    from pages import common

    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "MNIST_URL", "http://127.0.0.1:1/mnist.npz")
    monkeypatch.setattr(data, "_cached", None)
    data.try_again()
    common.mnist.clear()
    try:
        at = open_page("sweep")
        assert not at.exception
        assert at.button(key="sw_start").disabled
        assert any("no network connection" in e.value for e in at.main.error)
    finally:
        data.try_again()
        common.mnist.clear()


def normalised(layers: list[dict]) -> list[tuple]:
    return [(i.type, i.params) for i in infer_shapes(ModelSpec("s", layers))]


@pytest.fixture
def swept(open_page):
    ws = new_workspace_id()
    runs = stored_sweep(ws)
    return open_page("sweep", state={"workspace": ws}), runs


def test_the_table_shows_the_trials_of_a_stored_sweep(swept):
    at, runs = swept
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["trial"]) == [1, 2, 3]
    assert list(table["state"]) == ["pruned", "complete", "complete"]
    assert list(table["chosen"]) == [False, True, False]       # best val. acc. ≤ 25,000
    assert list(table["test accuracy"].fillna(0)) == [0, 0.9921, 0.9862]
    assert "over the budget" in table["note"][0]
    lines = [m.value for m in at.markdown if m.value.startswith("**Trial")]
    assert lines == ["**Trial 2** (sweep 1 · trial 2): 21,286 parameters, validation "
                     "accuracy 99.12% · **test accuracy 99.21%** (reported, not used to "
                     "choose)."]
    assert at.button(key="sw_continue").disabled             # it has all its trials
    assert at.button(key="sw_stop").disabled                   # nothing runs


def test_a_trial_opens_in_the_builder(swept):
    at, runs = swept
    assert at.selectbox(key="sw_trial_1").value == 2          # the chosen one first
    at.button(key="sw_to_builder").click().run()
    assert not at.exception
    layers = [{k: v for k, v in layer.items() if k != "uid"}
              for layer in at.session_state.builder_layers]
    assert normalised(layers) == normalised(runs[0].spec["layers"])     # defaults filled in
    assert at.text_input(key="builder_name_input").value == "fast_cnn_s1t2"


def test_a_trial_opens_in_train_with_its_recipe(swept):
    at, runs = swept
    at.selectbox(key="sw_trial_1").set_value(3).run()
    at.button(key="sw_to_train").click().run()
    assert not at.exception
    k = "Stack from the Builder_fast_cnn_s1t3"
    assert at.radio(key="train_source").value == "Stack from the Builder"
    recipe = get_preset("fast_cnn").recipe           # the width varied, not the recipe
    assert at.slider(key=f"tr_ep_{k}").value == recipe.epochs
    assert at.select_slider(key=f"tr_bs_{k}").value == recipe.batch_size
    assert at.select_slider(key=f"tr_lr_{k}").value == recipe.learning_rate
    assert at.selectbox(key=f"tr_sched_{k}").value == recipe.schedule


def test_a_trial_is_pinned_in_compare(swept):
    at, runs = swept
    at.selectbox(key="sw_trial_1").set_value(3).run()
    at.button(key="sw_to_compare").click().run()
    assert not at.exception
    assert at.multiselect(key="compare_pinned").value == [runs[1].id, runs[0].id]


def test_start_runs_a_sweep_from_the_form_and_its_trials_fill_the_table(open_page):
    from core import sweep

    at = open_page("sweep")
    at.selectbox(key="sw_subset").set_value("1,000").run()
    at.number_input(key="sw_trials").set_value(2).run()
    at.number_input(key="sw_budget").set_value(50_000_000).run()       # every trial trains
    at.button(key="sw_start").click().run()
    assert not at.exception and not at.error
    driver = sweep.live(at.session_state.workspace)
    assert driver is not None and driver.page_open()     # kept alive by this page's views
    assert at.button(key="sw_stop").disabled is False
    try:
        driver.join(300)
    finally:
        driver.stop()
        driver.join(60)
    at.run()
    table = at.dataframe[0].value
    assert list(table["state"]) == ["complete", "complete"]
    assert list(table["run"]) == ["sweep 1 · trial 1", "sweep 1 · trial 2"]
    assert at.button(key="sw_continue").disabled                 # it has all its trials
