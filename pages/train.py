"""Train: pick a network and a recipe, watch it learn live, stop, resume, keep it."""
from __future__ import annotations

import sys
from typing import Any

import pandas as pd
import streamlit as st

from core.build import cpu_has_bfloat16
from core.calibration import short_recipe_warning
from core.errors import LayerLabError
from core.jobs import REGISTRY, ceiling_problem
from core.modelio import weights_to_npz
from core.notebook import notebook_for_run, script_for_run
from core.presets import PRESETS
from core.recipe import OPTIMIZERS, SCHEDULES, Recipe
from core.spec import ModelSpec, check_cost, infer_shapes
from core import backend
from core.backend import Job
from core.wording import plural
from pages import train_replay
from pages.common import (data_available, device_info, model_choices, run_label,
                          session_runs, show_data_problem, show_error, store, workspace_job)
from pages.handoff import choose_model
from pages.widgets import confusion_chart

st.title("🏋️ Train")
WS = st.session_state.workspace
FORM = "train_form"     # the user's choices, kept for the browser session across pages
job: Job | None = workspace_job()      # the workspace's run, from any tab
busy = job is not None and not job.done
blocked = busy                                  # Start stays off while a run is live


def keep(key: str, default: Any, options: list | None = None) -> str:
    """``key`` for a widget, seeded with the user's last value (Streamlit forgets the
    state of a widget that a page switch did not draw) or else ``default``."""
    saved = st.session_state.setdefault(FORM, {}).get(key, default)
    if options is not None and saved not in options:
        saved = default
    if key not in st.session_state:
        st.session_state[key] = saved
    return key


def remember() -> None:
    """Save every Train widget's value into the session's form."""
    form = st.session_state.setdefault(FORM, {})
    for key, value in st.session_state.items():
        if isinstance(key, str) and key.startswith(("tr_", "train_source", "train_preset",
                                                    "train_resume")):
            form[key] = value


def recipe_rows(run_name: str, spec: ModelSpec, recipe: Recipe) -> pd.DataFrame:
    """The running run's settings as a two-column table (shown, never edited)."""
    images = f"{recipe.train_subset:,}" if recipe.train_subset else "all 60,000"
    rows = [("Run name", run_name), ("Network", spec.name),
            ("Optimizer", recipe.optimizer), ("Learning rate", f"{recipe.learning_rate:g}"),
            ("Schedule", recipe.schedule), ("Batch size", f"{recipe.batch_size:,}"),
            ("Epochs", f"{recipe.epochs:,}"),
            ("Validation split", f"{recipe.validation_split:g}"),
            ("Training images", images), ("Seed", str(recipe.seed)),
            ("Light augmentation", "yes" if recipe.augment else "no"),
            ("Label smoothing", f"{recipe.label_smoothing:g}"),
            ("Mixed precision", "yes" if recipe.mixed_precision else "no")]
    if recipe.split_seed is not None:
        rows.append(("Validation split's seed", str(recipe.split_seed)))
    if recipe.teacher:
        rows.append(("Teacher", f"{recipe.teacher} (weight {recipe.distill_weight:g}, "
                                f"temperature {recipe.distill_temperature:g})"))
    return pd.DataFrame(rows, columns=["Setting", "Value"])


if busy:
    # While a run trains, the page shows that run's recipe; the user's own choices wait
    # in the session's form and come back after it ends.
    st.caption("This workspace is training the run below; its recipe (read-only). Your "
               "own settings come back when it ends.")
    st.table(recipe_rows(job.run.name, job.spec, job.recipe).set_index("Setting"))

# -- what to train ---------------------------------------------------------------------
if not busy:
    sources = ["Preset", "Resume one of my runs"]
    if isinstance(st.session_state.builder_spec, ModelSpec):
        sources.append("Stack from the Builder")
    source = st.radio("Train", sources, horizontal=True,
                      key=keep("train_source", sources[0], sources))
    resume_run = None
    if source == "Preset":
        names = list(PRESETS)
        name = st.selectbox("Preset", names, key=keep("train_preset", "fast_cnn"
                                                      if "fast_cnn" in PRESETS else names[0],
                                                      names),
                            format_func=lambda n: f"{n} — {PRESETS[n].expected_params:,} "
                                                  f"params")
        spec, defaults = PRESETS[name].spec, PRESETS[name].recipe
    elif source == "Resume one of my runs":
        runs = [r for r in session_runs() if r.status in ("finished", "stopped",
                                                           "interrupted")
                and r.epochs_done > 0]
        if not runs:
            remember()
            st.info("You have no runs to resume yet. Train a preset first.")
            st.stop()
        labels = {run_label(r, plural(r.epochs_done, "epoch"), r.status): r for r in runs}
        resume_run = labels[st.selectbox("Run", list(labels),
                                         key=keep("train_resume", list(labels)[0],
                                                  list(labels)))]
        spec = ModelSpec.from_dict(resume_run.spec)
        defaults = Recipe.from_dict(resume_run.recipe)
        name = resume_run.name
    else:
        spec = st.session_state.builder_spec
        defaults, name = Recipe(epochs=5, batch_size=128), spec.name
        try:
            n_params = sum(i.total_params for i in infer_shapes(spec))
            st.text(f"Stack from the Builder: {spec.name}, {plural(len(spec.layers), 'layer')}, "
                    f"{n_params:,} parameters.")
        except LayerLabError as err:
            show_error(err)
            st.stop()

# -- recipe ------------------------------------------------------------------------------
if not busy:
    k = f"{source}_{name}"   # widget keys per network, so each gets its own defaults
    with st.expander("Recipe", expanded=True):
        c = st.columns(4)
        optimizer = c[0].selectbox("Optimizer", OPTIMIZERS,
                                   key=keep(f"tr_opt_{k}", defaults.optimizer, OPTIMIZERS))
        lrs = [1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2, 1e-1]
        lr = c[1].select_slider("Learning rate", lrs, key=keep(
            f"tr_lr_{k}", min(lrs, key=lambda v: abs(v - defaults.learning_rate)), lrs))
        schedule = c[2].selectbox("Schedule", SCHEDULES,
                                  key=keep(f"tr_sched_{k}", defaults.schedule, SCHEDULES),
                                  help="one_cycle: warm up, then anneal; step: ÷10 at 50% "
                                       "and 75%")
        batches = [16, 32, 64, 128, 256, 512, 1024]
        batch = c[3].select_slider("Batch size", batches, key=keep(
            f"tr_bs_{k}", defaults.batch_size if defaults.batch_size in batches else 128,
            batches))
        c = st.columns(4)
        epochs = c[0].slider("Epochs" + (" (more)" if resume_run else ""), 1, 30,
                             key=keep(f"tr_ep_{k}", min(defaults.epochs, 30)
                                      if not resume_run else 2, list(range(1, 31))))
        val = c[1].slider("Validation split", 0.0, 0.3, step=0.05,
                          key=keep(f"tr_val_{k}", float(defaults.validation_split)),
                          disabled=resume_run is not None)
        subsets = {"1,000": 1000, "5,000": 5000, "10,000": 10000, "30,000": 30000,
                   "all 60,000": None}
        sub_default = next((lbl for lbl, v in subsets.items() if v == defaults.train_subset),
                           "all 60,000")
        subset = c[2].selectbox("Training images", list(subsets),
                                key=keep(f"tr_sub_{k}", sub_default, list(subsets)),
                                disabled=resume_run is not None,
                                help="Fewer images train faster: good for a quick classroom "
                                     "demo.")
        seed = c[3].number_input("Seed", 0, 2**31 - 1,
                                 key=keep(f"tr_seed_{k}", int(defaults.seed)))
        c = st.columns(3)              # wide columns: a checkbox label never wraps
        augment = c[0].checkbox("Light augmentation",
                                key=keep(f"tr_aug_{k}", bool(defaults.augment)),
                                help="Random shifts of up to ±8% and rotations of up to "
                                     "±10° of each training image.")
        has_gpu = "tensorflow" in sys.modules and device_info().kind == "GPU"
        half = "float16" if has_gpu else "bfloat16" if cpu_has_bfloat16() else ""
        mixed = c[1].checkbox("Mixed precision", key=keep(f"tr_mp_{k}",
                                                          bool(defaults.mixed_precision)),
                              disabled=not half,
                              help=f"Computes in {half} with float32 weights: faster on "
                                   f"this device, same accuracy." if half else
                              "This device has no fast 16-bit arithmetic (a GPU, or a CPU "
                              "with bfloat16 instructions): runs train in float32.")
        smoothings = [0.0, 0.05, 0.1, 0.2]
        # A resumed run keeps its loss: the saved model was compiled with it.
        smoothing = c[2].select_slider(
            "Label smoothing", smoothings, disabled=resume_run is not None,
            key=keep(f"tr_ls_{k}", min(smoothings,
                                       key=lambda v: abs(v - defaults.label_smoothing)),
                     smoothings),
            help="Targets of 1 − s on the true digit and s/10 on every digit: a little "
                 "less overconfidence, often a little more accuracy.")
        if resume_run is not None:
            smoothing = defaults.label_smoothing
        teachers = ["none", *PRESETS]
        # A resumed run keeps its targets, as it keeps its loss.
        teacher = st.columns(3)[0].selectbox(
            "Learn from a teacher", teachers, disabled=resume_run is not None,
            key=keep(f"tr_teach_{k}", defaults.teacher or "none", teachers),
            help="Distillation: each training image's target blends its true digit with "
                 "this pretrained preset's answer, so a small network is told which "
                 "digits are ambiguous.")
        teacher = None if teacher == "none" else teacher
        if resume_run is not None:
            teacher = defaults.teacher
    run_name = st.text_input("Run name", key=keep(f"tr_name_{k}", name), max_chars=48)
    remember()

    # -- checks before Start: each a sentence, shown before the user presses it --------
    try:
        recipe = Recipe(optimizer=optimizer, learning_rate=lr, schedule=schedule,
                        batch_size=batch, epochs=epochs, validation_split=val,
                        augment=augment, train_subset=subsets[subset], seed=int(seed),
                        mixed_precision=mixed, label_smoothing=smoothing,
                        split_seed=defaults.split_seed, teacher=teacher,
                        distill_weight=defaults.distill_weight,
                        distill_temperature=defaults.distill_temperature).check()
        check_cost(spec, recipe.batch_size)
        ceiling = ceiling_problem(recipe, REGISTRY.max_run_images)
        if ceiling:
            st.error(ceiling, icon="⚠️")
            blocked = True
        short = short_recipe_warning(recipe)
        if short:
            st.warning(short)
    except LayerLabError as err:
        show_error(err)
        blocked = True

# -- start / stop -----------------------------------------------------------------------
if not data_available():
    show_data_problem()          # the sentence and "Try again"; nothing trains without data
    blocked = True
b = st.columns([1, 1, 4])
if b[0].button("▶ Start", type="primary", key="train_start", disabled=busy or blocked):
    try:
        model = None
        if resume_run is not None:
            model = st.session_state.session_models.get(resume_run.id)
        if job is not None and job.model is not None and job.done:
            st.session_state.session_models[job.run.id] = job.model   # keep the last one
        new_job = backend.current().new_job(spec, recipe, name=run_name.strip() or name,
                                            workspace=WS, store=store(), resume=resume_run,
                                            model=model)
        train_replay.set_probe(new_job)
        st.session_state.job = REGISTRY.submit(WS, new_job)   # refused with a sentence
        st.rerun()
    except LayerLabError as err:
        show_error(err)
if b[1].button("■ Stop", key="train_stop", disabled=not busy):
    job.stop()
    st.toast("Stopping after the current batch…")


# -- live view ---------------------------------------------------------------------------
def curves(progress) -> None:
    """Per-epoch train/validation curves and a smoothed per-batch line."""
    left, right = st.columns(2)
    for col, metric, title in ((left, "loss", "Loss"), (right, "accuracy", "Accuracy")):
        frames = []
        if progress.batches:
            bdf = pd.DataFrame(progress.batches)
            spe = max(progress.steps_per_epoch, 1)
            bdf["epoch"] = bdf["global_step"] / spe
            bdf["value"] = bdf[metric].ewm(alpha=0.3).mean()
            bdf["series"] = "per batch (smoothed)"
            frames.append(bdf[["epoch", "value", "series"]])
        if progress.epochs:
            edf = pd.DataFrame(progress.epochs)
            for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
                if key in edf:
                    frames.append(pd.DataFrame({"epoch": edf["epoch"], "value": edf[key],
                                                "series": label}))
        if not frames:
            col.caption(f"{title}: waiting for the first batch…")
            continue
        col.vega_lite_chart(pd.concat(frames, ignore_index=True),
                            spec=train_replay.curve_spec(title), width="stretch")


def live(watching: str | None) -> None:
    """The workspace's run as it trains; ``watching`` is the id of the job that was live
    when the page was drawn (None: nothing to poll)."""
    REGISTRY.heartbeat(WS)                  # a page of this workspace is open
    job: Job | None = workspace_job()
    if job is None:
        st.info("Choose a network and a recipe, then press **Start**. Training runs in the "
                "background: you can visit other pages and come back.")
        return
    p = job.snapshot()                      # the same for every tab of the workspace
    if p.state == "queued":
        width = plural(backend.current().max_parallel(), "run")
        st.warning(f"Waiting for a free training slot: position {p.queue_position or 1} in "
                   f"the queue (the server trains {width} at once).")
    elif p.state == "preparing":
        st.info(f"{p.preparing}…")
    elif p.state == "running":
        eta = f", about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        st.progress(p.fraction, text=f"Epoch {min(p.epoch + 1, p.epochs_total)}/"
                    f"{p.epochs_total} · step {p.step}/{p.steps_per_epoch}{eta}")
    m = st.columns(4)
    m[0].metric("Device", p.device.split(":")[0] if p.device else "—",
                help=p.device or "Known once training starts.")
    m[1].metric("Images / second", f"{p.images_per_s:,.0f}" if p.images_per_s else "—")
    last = p.epochs[-1] if p.epochs else {}
    m[2].metric("Validation accuracy",
                f"{last['val_accuracy']:.2%}" if "val_accuracy" in last else "—")
    m[3].metric("Elapsed", f"{p.elapsed_s:.0f} s",
                help="Wall-clock time since the run left the queue: loading the data, "
                     "building the model, the epochs and, at the end, the test evaluation. "
                     "“Training time” counts the epochs only.")
    if p.device:
        st.caption(f"Training on {p.device}.")
    for w in p.warnings:
        st.warning(w)
    curves(p)
    train_replay.live_view(job)
    if watching is not None and (p.done or job.id != watching):
        st.rerun(scope="app")      # stop polling; show the results section


# Once a second: each tab watching a run costs the server about 6% of its interpreter
# lock at two reruns a second (py-spy --gil, one tab, fast_cnn training), and a class of
# tabs shares that one lock with every page view.
LIVE_EVERY_S = 1.0
st.fragment(live, run_every=LIVE_EVERY_S if busy else None)(job.id if busy else None)

# -- results -----------------------------------------------------------------------------
if job is not None and not busy:             # "busy" as decided at the top
    run, p = job.run, job.snapshot()
    (st.success if p.state == "finished" else st.warning
     if p.state in ("stopped", "interrupted") else st.error)(p.message)
    if run.test_accuracy is not None:
        c = st.columns(4)
        c[0].metric("Test accuracy", f"{run.test_accuracy:.2%}")
        c[1].metric("Test loss", f"{run.test_loss:.4f}")
        c[2].metric("Parameters", f"{run.params:,}")
        c[3].metric("Training time", f"{run.wall_time_s:.1f} s",
                    help="The epochs only; “Elapsed” above also counts loading the data, "
                         "building the model and the test evaluation.")
        if run.id in model_choices().values() and st.button(
                "Open its confusion matrix on the Errors page ❌", key="train_to_errors"):
            choose_model("errors", run.id)                 # by id, never by label text
            st.switch_page("pages/errors.py")
        with st.expander("Confusion matrix (rows = true digit, columns = predicted)"):
            st.altair_chart(confusion_chart(run.confusion, height=360), width="stretch",
                            key="train_confusion")
        path = store().model_path(run.id)
        d = st.columns([1, 1, 1, 2, 1])
        if path is not None:
            d[0].download_button("Download .keras", path.read_bytes(),
                                 file_name=f"{run.name}.keras", key="train_dl")
        d[1].download_button("Spec (.json)", ModelSpec.from_dict(run.spec).to_json(),
                             file_name=f"{run.name}.json", key="train_dl_spec")
        if job.model is not None:
            d[2].download_button("Weights (.npz)", weights_to_npz(job.model),
                                 file_name=f"{run.name}.npz", key="train_dl_npz",
                                 help="Import with the spec on the Models page.")
        try:
            reproduce = (notebook_for_run(run), script_for_run(run))
        except LayerLabError as err:
            show_error(err)
        else:
            e = st.columns([1, 1, 3])
            e[0].download_button("Notebook (.ipynb)", reproduce[0], key="train_dl_ipynb",
                                 file_name=f"{run.name}.ipynb",
                                 help="Retrains this run with its exact recipe, step by step.")
            e[1].download_button("Training script (.py)", reproduce[1], key="train_dl_py",
                                 file_name=f"{run.name}_train.py")
        new_name = d[3].text_input("Save under a name", value=run.name, key="train_rename",
                                   max_chars=48)
        if d[4].button("Save name", key="train_save_name"):
            run.name = new_name.strip()[:48] or run.name
            try:
                store().save_run(run)
                st.toast(f"Saved as “{run.name}”.")
            except LayerLabError as err:
                show_error(err)

if job is not None and not busy:
    train_replay.step_button(job, WS)
train_replay.replay()
