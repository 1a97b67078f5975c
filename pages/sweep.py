"""Sweep: Optuna varies a starting stack and its recipe to answer a question about size and
accuracy; every trial is a run of this workspace."""
from __future__ import annotations

import streamlit as st

from core import sweep, sweep_store
from core.errors import LayerLabError
from core.jobs import REGISTRY
from core.leaderboard import Leaderboard
from core.presets import PRESETS
from core.recipe import Recipe
from core.spec import ModelSpec
from core.sweep_objective import KINDS, Objective
from core.sweep_space import DEFAULT_ON, KNOBS, default_space
from core.wording import plural
from pages import sweep_views as views
from pages.common import (data_available, run_label, session_runs, show_data_problem,
                          show_error, store)

st.title("🔭 Sweep")
st.caption("Optuna trains many variants of a starting network (each a run of yours) and "
           "keeps the ones that answer your question: it chooses on the validation split "
           "and reports the chosen models' test accuracy at the end.")
WS = st.session_state.workspace
SUBSETS = {"1,000": 1000, "5,000": 5000, "10,000": 10000, "30,000": 30000,
           "all 60,000": None}
driver = sweep.live(WS)


# -- a new sweep -------------------------------------------------------------------------
def pick_start() -> tuple[ModelSpec, Recipe, str]:
    """The starting stack and recipe: a preset, the Builder's stack or one of my runs."""
    sources = ["Preset", "One of my runs"]
    if isinstance(st.session_state.get("builder_spec"), ModelSpec):
        sources.append("Stack from the Builder")
    source = st.radio("Start from", sources, horizontal=True, key="sw_source")
    if source == "Preset":
        names = list(PRESETS)
        name = st.selectbox("Preset", names, index=names.index("fast_cnn"), key="sw_preset",
                            format_func=lambda n: f"{n} — {PRESETS[n].expected_params:,} "
                                                  f"params")
        return PRESETS[name].spec, PRESETS[name].recipe, f"preset {name}"
    if source == "Stack from the Builder":
        spec = st.session_state.builder_spec
        return spec, Recipe(epochs=3, batch_size=128), f"the Builder's {spec.name}"
    runs = {r.id: r for r in session_runs() if r.spec and r.recipe}
    if not runs:
        st.info("You have no runs yet: start from a preset, or train one first.")
        st.stop()
    run = runs[st.selectbox("Run", list(runs), key="sw_run",
                            format_func=lambda i: run_label(runs[i]))]
    return ModelSpec.from_dict(run.spec), Recipe.from_dict(run.recipe), f"run {run.name}"


def knob_range(name: str, rng: dict, key: str) -> dict:
    """One knob's range widget, starting from the proposed ``rng``."""
    knob = KNOBS[name]
    if knob.kind == "int":
        low, high = st.slider(knob.label, *knob.bounds, (rng["low"], rng["high"]), key=key,
                              help=knob.help, label_visibility="collapsed")
        return {"low": low, "high": high}
    if knob.kind == "choice":
        fmt = (lambda v: "on" if v else "off") if name == "batch_norm" else str
        start = [c for c in rng["choices"] if c in knob.steps] or \
            [views.snap(rng["choices"][0], knob.steps, log=True)]
        picked = st.multiselect(knob.label, knob.steps, start, key=key,
                                format_func=fmt, label_visibility="collapsed")
        return {"choices": list(picked)}
    ends = tuple(views.snap(rng[e], knob.steps, knob.log) for e in ("low", "high"))
    low, high = st.select_slider(knob.label, knob.steps, ends, key=key, help=knob.help,
                                 format_func=lambda v: f"{v:g}", label_visibility="collapsed")
    return {"low": low, "high": high}


def pick_space(spec: ModelSpec, recipe: Recipe, tag: str) -> dict:
    """What may vary: a checkbox per knob that applies, with its range."""
    space = {}
    for name, rng in default_space(spec, recipe).items():
        c = st.columns([1, 3])
        if c[0].checkbox(KNOBS[name].label, name in DEFAULT_ON, key=f"sw_on_{name}_{tag}",
                         help=KNOBS[name].help):
            with c[1]:
                space[name] = knob_range(name, rng, f"sw_rng_{name}_{tag}")
    return space


def pick_objective() -> Objective:
    kind = st.radio("Objective", list(KINDS), index=list(KINDS).index("budget"),
                    format_func=KINDS.get, key="sw_objective")
    if kind == "threshold":
        pct = st.number_input("Target validation accuracy (%)", 50.0, 99.99, 99.0, 0.05,
                              key="sw_target", format="%.2f")
        return Objective("threshold", target=round(pct / 100, 6))
    if kind == "budget":
        try:
            default = Leaderboard().budget()
        except LayerLabError:
            default = 10_000
        budget = st.number_input("Parameter budget", 100, 50_000_000, default, 1000,
                                 key="sw_budget", help="The Challenge's budget by default.")
        return Objective("budget", budget=int(budget))
    return Objective("pareto")


def new_sweep_form() -> None:
    spec, recipe, label = pick_start()
    tag = label.replace(" ", "_")
    st.markdown("**What may vary**")
    space = pick_space(spec, recipe, tag)
    c = st.columns(4)
    subset = c[0].selectbox("Training images", list(SUBSETS), index=len(SUBSETS) - 1,
                            key="sw_subset", help="Fewer images: faster, rougher trials.")
    n_trials = c[1].number_input("Trials", 1, sweep_store.MAX_TRIALS, 20, key="sw_trials")
    minutes = c[2].number_input("Time limit (minutes, 0 = none)", 0, 7 * 24 * 60, 0,
                                key="sw_minutes")
    with c[3]:
        objective = pick_objective()
    base = recipe.replace(train_subset=SUBSETS[subset])
    blocked = not data_available()
    try:
        config = sweep_store.SweepConfig(
            WS, spec.to_dict(), base.to_dict(), space, objective, int(n_trials),
            minutes * 60.0 if minutes else None, label).check()
    except LayerLabError as err:
        show_error(err)
        config, blocked = None, True
    if blocked and not data_available():
        show_data_problem()
    if st.button("▶ Start sweep", type="primary", key="sw_start", disabled=blocked):
        try:
            sweep.start_sweep(config, page_open=sweep.page_seen(REGISTRY, WS))
            st.session_state.sw_view = None                  # show the new one
            st.rerun()
        except LayerLabError as err:
            show_error(err)


try:
    sweeps = {info.number: info for info in sweep_store.list_sweeps(WS)}
except LayerLabError as err:
    show_error(err)
    st.stop()
if driver is None:
    with st.expander("New sweep", expanded=not sweeps):
        new_sweep_form()
else:
    st.info(f"Sweep {driver.config.number} is running in this workspace: stop it or let it "
            f"end before starting another.")

# -- the workspace's sweeps --------------------------------------------------------------
if not sweeps:
    st.stop()
st.subheader("Sweeps")
numbers = list(sweeps)
if st.session_state.get("sw_view") not in numbers:
    st.session_state.sw_view = driver.config.number if driver else numbers[0]
# No status in the label: the fragment below keeps that one up to date.
number = st.selectbox("Sweep", numbers, key="sw_view", format_func=lambda n: (
    f"Sweep {n} · {sweeps[n].config.start_label} · {sweeps[n].config.objective.kind} · "
    f"{plural(sweeps[n].config.n_trials, 'trial')}"))
info = sweeps[number]
running = driver is not None and driver.config.number == number
st.caption(f"Objective: {info.config.objective.describe()}. Varies: "
           f"{', '.join(KNOBS[k].label.lower() for k in info.config.space) or 'nothing'}.")
b = st.columns([1, 1, 4])
if b[0].button("■ Stop", key="sw_stop", disabled=not running):
    sweep.stop_sweep(WS)
    st.toast("Stopping: the trials in flight end after their current batch…")
if b[1].button("↻ Continue", key="sw_continue",
               disabled=driver is not None or info.status == "finished"
               or not data_available()):
    try:
        sweep.continue_sweep(WS, number, page_open=sweep.page_seen(REGISTRY, WS))
        st.rerun()
    except LayerLabError as err:
        show_error(err)


def live(watching: bool) -> None:
    """The sweep's trials, redrawn every 2 s while it runs."""
    REGISTRY.heartbeat(WS)                 # a page of this workspace is open
    try:
        result = sweep_store.open_sweep(WS, number)
    except LayerLabError as err:
        show_error(err)
        return
    views.show_result(result)
    if watching and sweep.live(WS) is None:
        st.rerun(scope="app")              # it ended: redraw the buttons


st.fragment(live, run_every=2 if running else None)(running)


# -- a trial elsewhere ---------------------------------------------------------------------
def trial_actions() -> None:
    """Open one trial's run in the Builder, Train or Compare (by its run id)."""
    try:
        result = sweep_store.open_sweep(WS, number)
    except LayerLabError:
        return                                  # already said above
    # Only trials that ended: a run's record is saved when its job ends.
    trials = {r.number: r for r in result.records
              if r.run_id and r.state in ("complete", "pruned", "lost", "failed")}
    if not trials:
        return
    st.subheader("Open a trial")
    best = next((r.number for r in result.chosen if r.number in trials), next(iter(trials)))
    pick = st.selectbox("Trial", list(trials), index=list(trials).index(best),
                        key=f"sw_trial_{number}", format_func=lambda n: (
                            f"trial {n} · {trials[n].state} · "
                            + (f"{trials[n].params:,} params" if trials[n].params else "")))
    try:
        run = store().load_run(trials[pick].run_id)
    except LayerLabError as err:
        show_error(err)
        return
    c = st.columns(3)
    if c[0].button("🧩 Open in Builder", key="sw_to_builder"):
        views.open_in_builder(ModelSpec.from_dict(run.spec))
    if c[1].button("🏋️ Train it", key="sw_to_train",
                   help="Train with this trial's stack and recipe (the learning rate and "
                        "batch size rounded to the Train page's steps)."):
        views.open_in_train(ModelSpec.from_dict(run.spec), Recipe.from_dict(run.recipe))
    if c[2].button("⚖️ Pin in Compare", key="sw_to_compare",
                   disabled=run.test_accuracy is None,
                   help="Pins this trial's run and the chosen ones."):
        views.pin_in_compare([run.id] + [r.run_id for r in result.chosen if r.run_id][:3])


trial_actions()
