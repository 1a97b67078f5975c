"""Train: pick a network and a recipe, watch it learn live, stop, resume, keep it."""
from __future__ import annotations

import sys

import altair as alt
import pandas as pd
import streamlit as st

from core.errors import LayerLabError
from core.modelio import weights_to_npz
from core.presets import PRESETS
from core.recipe import OPTIMIZERS, SCHEDULES, Recipe
from core.spec import ModelSpec
from core.training import SCHEDULER, TrainingJob
from pages.common import (device_info, model_choices, run_label, session_runs, show_error,
                          store)
from pages.widgets import confusion_chart

st.title("🏋️ Train")
job: TrainingJob | None = st.session_state.job
busy = job is not None and not job.progress.done and (job.alive or not job.events.empty())

# -- what to train ---------------------------------------------------------------------
sources = ["Preset", "Resume one of my runs"]
if isinstance(st.session_state.builder_spec, ModelSpec):
    sources.append("Stack from the Builder")
source = st.radio("Train", sources, horizontal=True, key="train_source", disabled=busy)
resume_run = None
if source == "Preset":
    name = st.selectbox("Preset", list(PRESETS), key="train_preset", disabled=busy,
                        index=list(PRESETS).index("fast_cnn") if "fast_cnn" in PRESETS else 0,
                        format_func=lambda n: f"{n} — {PRESETS[n].expected_params:,} params")
    spec, defaults = PRESETS[name].spec, PRESETS[name].recipe
elif source == "Resume one of my runs":
    runs = [r for r in session_runs() if r.status in ("finished", "stopped", "interrupted")
            and r.epochs_done > 0]
    if not runs:
        st.info("You have no runs to resume yet. Train a preset first.")
        st.stop()
    labels = {run_label(r, f"{r.epochs_done} epochs", r.status): r for r in runs}
    resume_run = labels[st.selectbox("Run", list(labels), key="train_resume", disabled=busy)]
    spec = ModelSpec.from_dict(resume_run.spec)
    defaults = Recipe.from_dict(resume_run.recipe)
    name = resume_run.name
else:
    spec = st.session_state.builder_spec
    defaults, name = Recipe(epochs=5, batch_size=128), spec.name

# -- recipe ------------------------------------------------------------------------------
k = f"{source}_{name}"   # widget keys per network, so each gets its own defaults
with st.expander("Recipe", expanded=not busy):
    c = st.columns(4)
    optimizer = c[0].selectbox("Optimizer", OPTIMIZERS, key=f"tr_opt_{k}",
                               index=OPTIMIZERS.index(defaults.optimizer), disabled=busy)
    lrs = [1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2, 1e-1]
    lr = c[1].select_slider("Learning rate", lrs, key=f"tr_lr_{k}", disabled=busy,
                            value=min(lrs, key=lambda v: abs(v - defaults.learning_rate)))
    schedule = c[2].selectbox("Schedule", SCHEDULES, key=f"tr_sched_{k}", disabled=busy,
                              index=SCHEDULES.index(defaults.schedule),
                              help="one_cycle: warm up, then anneal; step: ÷10 at 50% and 75%")
    batches = [16, 32, 64, 128, 256, 512, 1024]
    batch = c[3].select_slider("Batch size", batches, key=f"tr_bs_{k}", disabled=busy,
                               value=defaults.batch_size if defaults.batch_size in batches
                               else 128)
    c = st.columns(4)
    epochs = c[0].slider("Epochs" + (" (more)" if resume_run else ""), 1, 30, key=f"tr_ep_{k}",
                         value=min(defaults.epochs, 30) if not resume_run else 2,
                         disabled=busy)
    val = c[1].slider("Validation split", 0.0, 0.3, float(defaults.validation_split), 0.05,
                      key=f"tr_val_{k}", disabled=busy or resume_run is not None)
    subsets = {"1,000": 1000, "5,000": 5000, "10,000": 10000, "30,000": 30000, "all 60,000": None}
    sub_default = next((lbl for lbl, v in subsets.items() if v == defaults.train_subset),
                       "all 60,000")
    subset = c[2].selectbox("Training images", list(subsets), key=f"tr_sub_{k}",
                            index=list(subsets).index(sub_default),
                            disabled=busy or resume_run is not None,
                            help="Fewer images train faster: good for a quick classroom demo.")
    seed = c[3].number_input("Seed", 0, 2**31 - 1, int(defaults.seed), key=f"tr_seed_{k}",
                             disabled=busy)
    c = st.columns(2)              # two wide columns: a checkbox label never wraps
    augment = c[0].checkbox("Light augmentation", value=defaults.augment, key=f"tr_aug_{k}",
                            disabled=busy, help="Random shifts of up to ±8% and rotations "
                                                "of up to ±10° of each training image.")
    has_gpu = "tensorflow" in sys.modules and device_info().kind == "GPU"
    mixed = c[1].checkbox("Mixed precision (float16)", value=False, key=f"tr_mp_{k}",
                          disabled=busy or not has_gpu,
                          help="Only on a GPU: faster and lighter, same accuracy." if has_gpu
                          else "Offered only when a GPU is present.")
run_name = st.text_input("Run name", value=name, key=f"tr_name_{k}", max_chars=48,
                         disabled=busy)

# -- start / stop -----------------------------------------------------------------------
b = st.columns([1, 1, 4])
if b[0].button("▶ Start", type="primary", key="train_start", disabled=busy):
    try:
        recipe = Recipe(optimizer=optimizer, learning_rate=lr, schedule=schedule,
                        batch_size=batch, epochs=epochs, validation_split=val,
                        augment=augment, train_subset=subsets[subset], seed=int(seed),
                        mixed_precision=mixed).check()
        model = None
        if resume_run is not None:
            model = st.session_state.session_models.get(resume_run.id)
        if job is not None and job.model is not None and job.progress.done:
            st.session_state.session_models[job.run.id] = job.model   # keep the last one
        st.session_state.job = TrainingJob(
            spec, recipe, name=run_name.strip() or name, workspace=st.session_state.workspace,
            store=store(), resume=resume_run, model=model).start()
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
        df = pd.concat(frames, ignore_index=True)
        chart = alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=30)).encode(
            x=alt.X("epoch:Q", title="epoch"),
            y=alt.Y("value:Q", title=title.lower(), scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title=None,
                            scale=alt.Scale(domain=["per batch (smoothed)", "train",
                                                    "validation"],
                                            range=["#9ecae9", "#1f77b4", "#d62728"]),
                            legend=alt.Legend(orient="bottom", direction="horizontal",
                                              labelLimit=180)),
            tooltip=["series", alt.Tooltip("epoch:Q", format=".2f"),
                     alt.Tooltip("value:Q", format=".4f")],
        ).properties(title=title, height=260)
        col.altair_chart(chart, width="stretch")


def live() -> None:
    job: TrainingJob | None = st.session_state.job
    if job is None:
        st.info("Choose a network and a recipe, then press **Start**. Training runs in the "
                "background: you can visit other pages and come back.")
        return
    was_done = job.progress.done
    job.drain()
    p = job.progress
    if p.state == "queued":
        st.warning(f"Waiting for a free training slot: position {p.queue_position or 1} in "
                   f"the queue (the server trains {SCHEDULER.max_active} runs at once).")
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
    m[3].metric("Elapsed", f"{p.elapsed_s:.0f} s")
    if p.device:
        st.caption(f"Training on {p.device}.")
    for w in p.warnings:
        st.warning(w)
    curves(p)
    if p.done and not was_done:
        st.rerun(scope="app")      # stop polling; show the results section


fragment_every = 0.5 if busy else None
st.fragment(live, run_every=fragment_every)()

# -- results -----------------------------------------------------------------------------
if job is not None and job.progress.done:
    run, p = job.run, job.progress
    (st.success if p.state == "finished" else st.warning if p.state == "stopped"
     else st.error)(p.message)
    if run.test_accuracy is not None:
        c = st.columns(4)
        c[0].metric("Test accuracy", f"{run.test_accuracy:.2%}")
        c[1].metric("Test loss", f"{run.test_loss:.4f}")
        c[2].metric("Parameters", f"{run.params:,}")
        c[3].metric("Training time", f"{run.wall_time_s:.1f} s")
        errors_label = next((lbl for lbl, key in model_choices().items() if key == run.id),
                            None)
        if errors_label and st.button("Open its confusion matrix on the Errors page ❌",
                                   key="train_to_errors"):
            st.session_state.err_model = errors_label   # preselect this run there
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
        new_name = d[3].text_input("Save under a name", value=run.name, key="train_rename",
                                   max_chars=48)
        if d[4].button("Save name", key="train_save_name"):
            run.name = new_name.strip()[:48] or run.name
            try:
                store().save_run(run)
                st.toast(f"Saved as “{run.name}”.")
            except LayerLabError as err:
                show_error(err)
