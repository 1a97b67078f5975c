"""The Train page in AppTest: the user's recipe outlives a page switch, a running run's
recipe is shown read-only (and the user's comes back after Stop), another session of the
workspace re-attaches to the live run, and the checks made before Start."""
from __future__ import annotations

import time

import pytest

from core.jobs import REGISTRY
from core.recipe import Recipe
from core.spec import ModelSpec

K = "Preset_keras_example"


@pytest.fixture(autouse=True)
def _no_live_runs_left():
    yield
    for ws in list(REGISTRY._jobs):
        job = REGISTRY.get(ws)
        job.stop()
        job.join(120)


def set_recipe(at, epochs: int, images: str, name: str, preset: str = "keras_example"):
    at.selectbox(key="train_preset").set_value(preset).run()
    k = f"Preset_{preset}"
    at.slider(key=f"tr_ep_{k}").set_value(epochs).run()
    at.selectbox(key=f"tr_sub_{k}").set_value(images).run()
    at.text_input(key=f"tr_name_{k}").input(name).run()
    assert not at.exception


def until(at, predicate, timeout: float = 300) -> None:
    t0 = time.time()
    while not predicate():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.3)
        at.run()
        assert not at.exception


def running_recipe(at) -> dict[str, str]:
    frames = [t.value for t in at.table if t.value.index.name == "Setting"]
    return dict(zip(frames[0].index, frames[0]["Value"])) if frames else {}


def test_the_recipe_is_kept_across_a_page_switch(open_page):
    at = open_page("train")
    set_recipe(at, 7, "1,000", "persist_test", preset="fast_cnn")
    at.switch_page("pages/builder.py")
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception
    assert at.selectbox(key="train_preset").value == "fast_cnn"
    assert at.slider(key="tr_ep_Preset_fast_cnn").value == 7
    assert at.selectbox(key="tr_sub_Preset_fast_cnn").value == "1,000"
    assert at.text_input(key="tr_name_Preset_fast_cnn").value == "persist_test"


def test_a_presets_label_smoothing_and_mixed_precision_are_its_defaults(open_page):
    from core.build import cpu_has_bfloat16

    at = open_page("train")
    at.selectbox(key="train_preset").set_value("fast_cnn").run()
    assert at.select_slider(key="tr_ls_Preset_fast_cnn").value == 0.1
    mixed = at.checkbox(key="tr_mp_Preset_fast_cnn")
    assert mixed.value is True
    if cpu_has_bfloat16():                         # offered: this CPU multiplies bfloat16
        assert not mixed.disabled
    at.selectbox(key="train_preset").set_value("keras_example").run()
    assert at.select_slider(key=f"tr_ls_{K}").value == 0.0
    assert at.checkbox(key=f"tr_mp_{K}").value is False


def test_a_running_runs_recipe_is_shown_and_the_users_comes_back_after_stop(open_page):
    at = open_page("train")
    set_recipe(at, 30, "5,000", "long_one")
    at.button(key="train_start").click().run()
    assert running_recipe(at)["Run name"] == "long_one"
    assert running_recipe(at)["Epochs"] == "30"
    assert running_recipe(at)["Training images"] == "5,000"
    assert running_recipe(at)["Label smoothing"] == "0"
    assert not [s for s in at.slider if s.key == f"tr_ep_{K}"]     # not editable now
    assert at.button(key="train_start").disabled
    at.button(key="train_stop").click().run()
    until(at, lambda: not running_recipe(at))
    assert at.slider(key=f"tr_ep_{K}").value == 30
    assert at.selectbox(key=f"tr_sub_{K}").value == "5,000"
    assert at.text_input(key=f"tr_name_{K}").value == "long_one"


def test_a_teacher_chosen_on_the_page_and_the_presets_fixed_split_reach_the_run(open_page):
    """The teacher select box starts at the preset's (frontier_10k learns from
    bulky_cnn) and what the user picks trains, with the preset's weight and temperature;
    the preset's fixed validation split, which no widget shows, is kept."""
    at = open_page("train")
    set_recipe(at, 30, "1,000", "taught", preset="frontier_10k")
    teacher = at.selectbox(key="tr_teach_Preset_frontier_10k")
    assert teacher.value == "bulky_cnn" and "none" in teacher.options
    teacher.set_value("fast_cnn").run()
    at.button(key="train_start").click().run()
    assert not at.exception
    # the teacher's pass (fast_cnn over 60,000 images, a few seconds) is said as such,
    # not as a wait for a training slot
    until(at, lambda: any("fast_cnn's answers" in box.value for box in at.info), 120)
    assert not [w for w in at.warning if "free training slot" in w.value]
    shown = running_recipe(at)
    assert shown["Teacher"] == "fast_cnn (weight 0.5, temperature 2)"
    assert shown["Validation split's seed"] == "0"
    job = next(job for job in map(REGISTRY.get, list(REGISTRY._jobs))
               if job.run.name == "taught")             # earlier tests' jobs stay listed
    assert (job.recipe.teacher, job.recipe.split_seed) == ("fast_cnn", 0)
    at.button(key="train_stop").click().run()
    until(at, lambda: not running_recipe(at))
    assert at.selectbox(key="tr_teach_Preset_frontier_10k").value == "fast_cnn"


def test_another_session_of_the_workspace_reattaches_and_cannot_start_a_second(open_page):
    first = open_page("train")
    set_recipe(first, 30, "5,000", "shared")
    first.button(key="train_start").click().run()
    ws = first.session_state["workspace"]
    second = open_page("train", query={"ws": ws})          # a reload or a second tab
    assert second.session_state["workspace"] == ws
    assert second.session_state["job"] is first.session_state["job"]
    assert running_recipe(second)["Run name"] == "shared"
    assert second.button(key="train_start").disabled
    until(second, lambda: any(m.label == "Elapsed" and m.value != "0 s"
                              for m in second.metric))
    second.button(key="train_stop").click().run()           # Stop works from here
    job = first.session_state["job"]
    job.join(120)
    assert job.snapshot().state == "stopped"


def test_a_run_in_progress_is_not_offered_for_resume(open_page):
    at = open_page("train")
    set_recipe(at, 30, "1,000", "still_going")
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    until(at, lambda: job.store.model_path(job.run.id) is not None)   # a checkpoint
    other = open_page("train", query={"ws": at.session_state["workspace"]})
    job.stop()
    job.join(120)
    other.run()
    other.radio(key="train_source").set_value("Resume one of my runs").run()
    options = other.selectbox(key="train_resume").options
    assert len(options) == 1 and "stopped" in options[0]


def test_checks_before_start_are_sentences_and_keep_start_off(open_page, monkeypatch):
    heavy = ModelSpec("heavy", [
        {"type": "Conv2D", "filters": 1024, "kernel_size": 1, "padding": "same"},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 10, "activation": "softmax"}])
    at = open_page("train", state={"builder_spec": heavy})
    at.radio(key="train_source").set_value("Stack from the Builder").run()
    assert any("Stack from the Builder: heavy, 3 layers," in t.value and "parameters" in
               t.value for t in at.text)
    at.select_slider(key="tr_bs_Stack from the Builder_heavy").set_value(1024).run()
    assert any("activation memory" in e.value and "layer 1" in e.value for e in at.error)
    assert at.button(key="train_start").disabled

    monkeypatch.setattr(REGISTRY, "max_run_images", 5_000)
    at.radio(key="train_source").set_value("Preset").run()
    set_recipe(at, 2, "5,000", "too_long")
    assert any("at most 5,000 per run" in e.value for e in at.error)
    assert at.button(key="train_start").disabled

    at.slider(key=f"tr_ep_{K}").set_value(1).run()
    at.selectbox(key=f"tr_sub_{K}").set_value("1,000").run()
    at.select_slider(key=f"tr_bs_{K}").set_value(1024).run()
    assert any("optimizer step" in w.value for w in at.warning)
    assert not at.button(key="train_start").disabled


def test_a_resumed_run_about_to_train_shows_its_last_snapshot(open_page):
    """On the local path a resume's live view holds the run's earlier snapshots a moment
    before training begins, when the layer names are not known yet (they come with
    on_train_begin): the page must draw that snapshot, not fail on the norms chart."""
    from core.runs import RunStore
    from core.snapshot_callback import for_job
    from core.training import TrainingJob, prepare_data

    tiny = ModelSpec("tiny", [{"type": "Conv2D", "filters": 4, "kernel_size": 3},
                              {"type": "MaxPooling2D", "pool_size": 2},
                              {"type": "Flatten"},
                              {"type": "Dense", "units": 10, "activation": "softmax"}])
    recipe = Recipe(epochs=1, batch_size=64, train_subset=1000)
    first = TrainingJob(tiny, recipe, store=RunStore(), test_limit=200).start()
    first.join(300)
    run = RunStore().load_run(first.run.id)
    assert run.status == "finished" and RunStore().load_snapshots(run.id) is not None
    resumed = TrainingJob(tiny, recipe, store=RunStore(), resume=run, test_limit=200)
    snaps = for_job(resumed, prepare_data(recipe, 200), steps_per_epoch=16)  # as _train
    assert snaps.latest() is not None and snaps.layers == []     # the moment in question
    at = open_page("train", state={"job": resumed})
    assert not at.exception, at.exception
    assert any("snapshot at epoch 1.00" in e.label for e in at.expander)
    assert any("once training begins" in c.value for c in at.caption)


def curve_charts(at) -> list:
    """The live view's loss and accuracy charts (Vega-Lite protos titled so)."""
    import json

    charts = [c.proto for c in at.get("vega_lite_chart")]
    return [c for c in charts if json.loads(c.spec).get("title") in ("Loss", "Accuracy")]


def test_the_live_curves_come_as_a_kept_spec_with_the_runs_data_beside_it(open_page):
    import io

    import pyarrow as pa

    at = open_page("train")
    set_recipe(at, 30, "5,000", "curves")
    at.button(key="train_start").click().run()
    until(at, lambda: len(curve_charts(at)) == 2, timeout=180)
    for chart in curve_charts(at):
        assert "data" not in chart.spec and "datasets" not in chart.spec   # no data inline
        rows = pa.ipc.open_stream(io.BytesIO(chart.data.data)).read_all().to_pandas()
        assert {"epoch", "value", "series"} <= set(rows.columns) and len(rows) > 0
    at.button(key="train_stop").click().run()
