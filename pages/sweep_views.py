"""View pieces of the Sweep page (not a page): the trial chart and table, the chosen
models, and the buttons that open a trial in the Builder, Train or Compare."""
from __future__ import annotations

import copy
import math
import uuid
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from core.recipe import Recipe
from core.spec import ModelSpec
from core.sweep_store import SweepResult
from core.sweep_objective import Objective, TrialRecord

STATE_COLOURS = {"complete": "#1f77b4", "running": "#ff7f0e", "pruned": "#a0a0a0",
                 "lost": "#c7a0d6", "failed": "#d62728"}
TEST_HELP = ("Test accuracy, reported for information: the sweep chooses on validation "
             "accuracy only.")


def snap(value: float, steps: tuple, log: bool = False) -> Any:
    """The step nearest ``value`` (by ratio on a log scale).

    >>> snap(0.004, (0.001, 0.002, 0.005, 0.01), log=True), snap(2.6, (1, 2, 3))
    (0.005, 3)
    """
    if log and value > 0:
        return min(steps, key=lambda s: abs(math.log(s / value)) if s > 0 else math.inf)
    return min(steps, key=lambda s: abs(s - value))


def _values_text(values: dict[str, Any]) -> str:
    """A trial's knob values, short: ``width 0.62 · epochs 3``."""
    def show(v: Any) -> str:
        if isinstance(v, bool):
            return "on" if v else "off"
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return " · ".join(f"{k.replace('_', ' ')} {show(v)}" for k, v in values.items())


def trial_frame(records: list[TrialRecord], chosen: list[TrialRecord]) -> pd.DataFrame:
    """One row per trial, for the table and the chart."""
    picked = {r.number for r in chosen}
    return pd.DataFrame([{
        "trial": r.number, "params": r.params, "val accuracy": r.val_accuracy,
        "test accuracy": r.test_accuracy if r.state in ("complete", "pruned") else None,
        "state": r.state, "chosen": "chosen" if r.number in picked else "",
        "run": r.run_name, "values": _values_text(r.values), "note": r.reason,
    } for r in records], columns=["trial", "params", "val accuracy", "test accuracy", "state",
                                  "chosen", "run", "values", "note"])


def trial_chart(frame: pd.DataFrame, objective: Objective) -> alt.LayerChart | None:
    """Parameters (log) against validation accuracy, by state, the chosen ones ringed;
    the Pareto front as a line, the budget or target as a rule."""
    shown = frame.dropna(subset=["params", "val accuracy"])
    if shown.empty:
        return None
    x = alt.X("params:Q", scale=alt.Scale(type="log"), title="parameters (log scale)")
    y = alt.Y("val accuracy:Q", axis=alt.Axis(format=".1%"), scale=alt.Scale(zero=False),
              title="validation accuracy")
    states = [s for s in STATE_COLOURS if s in set(shown["state"])]
    base = alt.Chart(shown).encode(x=x, y=y)
    points = base.mark_circle(size=80, opacity=0.85).encode(
        color=alt.Color("state:N", scale=alt.Scale(domain=states,
                                                   range=[STATE_COLOURS[s] for s in states]),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["trial", alt.Tooltip("params:Q", format=","),
                 alt.Tooltip("val accuracy:Q", format=".2%"), "state", "run", "values"])
    picked = shown[shown["chosen"] == "chosen"]
    rings = alt.Chart(picked).mark_point(size=320, strokeWidth=2.5, color="#2ca02c").encode(
        x=x, y=y)
    names = alt.Chart(picked).mark_text(align="left", dx=10, dy=-10).encode(
        x=x, y=y, text=alt.Text("trial:Q", format="d"))
    layers = [points, rings, names]
    if objective.multi and len(picked) > 1:
        layers.insert(0, alt.Chart(picked.sort_values("params")).mark_line(
            strokeDash=[4, 3], color="#2ca02c").encode(x=x, y=y))
    if objective.kind == "budget":
        layers.append(alt.Chart(pd.DataFrame({"params": [objective.budget]})).mark_rule(
            strokeDash=[2, 2], color="#888").encode(x="params:Q"))
    if objective.kind == "threshold":
        layers.append(alt.Chart(pd.DataFrame({"val accuracy": [objective.target]})).mark_rule(
            strokeDash=[2, 2], color="#888").encode(y="val accuracy:Q"))
    return alt.layer(*layers).properties(height=340)


def show_result(result: SweepResult) -> None:
    """The sweep's status, chart, table and chosen models."""
    info, objective = result.info, result.info.config.objective
    say = {"finished": st.success, "failed": st.error}.get(info.status, st.info)
    done = sum(r.state in ("complete", "pruned", "failed") for r in result.records)
    say(f"Sweep {info.number}: {info.status}, {done} of {info.config.n_trials} trials done. "
        f"{info.message}".strip())
    frame = trial_frame(result.records, result.chosen)
    chart = trial_chart(frame, objective)
    if chart is None:
        st.caption("The chart appears once a trial has finished an epoch.")
    else:
        st.altair_chart(chart, width="stretch", key=f"sweep_chart_{info.number}")
        st.caption("Ringed: " + ("the Pareto front" if objective.multi else "the best so far")
                   + f" for {objective.describe()}. Chosen on validation accuracy only.")
    number = st.column_config.NumberColumn
    st.dataframe(frame.assign(chosen=frame["chosen"].map(bool)), hide_index=True,
        width="stretch",
        key=f"sweep_table_{info.number}", column_config={
            "params": number(format="localized"),
            "val accuracy": number("val acc.", format="percent",
                                   help="Validation accuracy after the last epoch."),
            "test accuracy": number("test acc.", format="percent", help=TEST_HELP),
            "chosen": st.column_config.CheckboxColumn(help="Chosen by the objective."),
            "run": st.column_config.TextColumn(width="medium"),
            "values": st.column_config.TextColumn(width="large"),
            "note": st.column_config.TextColumn(width="large")})
    chosen_lines(result)


def chosen_lines(result: SweepResult) -> None:
    """The chosen models with their test accuracy, labelled as test."""
    objective = result.info.config.objective
    if not result.chosen:
        st.caption(objective.nothing_chosen())
        return
    for r in result.chosen:
        test = f"{r.test_accuracy:.2%}" if r.test_accuracy is not None else "—"
        st.markdown(f"**Trial {r.number}** ({r.run_name}): {r.params:,} parameters, "
                    f"validation accuracy {r.val_accuracy:.2%} · **test accuracy {test}** "
                    f"(reported, not used to choose).")


# -- handing a trial to another page (session keys those pages read) -------------------
def open_in_builder(spec: ModelSpec) -> None:
    """Make ``spec`` the Builder's stack, as its "Start from… Load" does, and go there."""
    S = st.session_state
    S.builder_layers = [{"uid": uuid.uuid4().hex[:8], **copy.deepcopy(layer)}
                        for layer in spec.layers]
    S.builder_name = S.builder_name_input = spec.name
    S.builder_start = ModelSpec(spec.name, copy.deepcopy(spec.layers))
    st.switch_page("pages/builder.py")


# The Train page's steps for the learning rate, batch size and training images: a seeded
# value off its steps would be replaced by its default.
TRAIN_RATES = (1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2, 1e-1)
TRAIN_BATCHES = (16, 32, 64, 128, 256, 512, 1024)
TRAIN_SUBSETS = {1000: "1,000", 5000: "5,000", 10000: "10,000", 30000: "30,000",
                 None: "all 60,000"}


def open_in_train(spec: ModelSpec, recipe: Recipe) -> None:
    """Open Train on ``spec`` (as the Builder's "Train this" does) with ``recipe`` as its
    settings: the Train page keeps its settings per source and network name."""
    S = st.session_state
    S.builder_spec = spec
    S.train_source = "Stack from the Builder"
    k = f"Stack from the Builder_{spec.name}"
    subset = recipe.train_subset if recipe.train_subset in TRAIN_SUBSETS else None
    seeded = {f"tr_opt_{k}": recipe.optimizer, f"tr_sched_{k}": recipe.schedule,
              f"tr_lr_{k}": snap(recipe.learning_rate, TRAIN_RATES, log=True),
              f"tr_bs_{k}": snap(recipe.batch_size, TRAIN_BATCHES, log=True),
              f"tr_ep_{k}": min(recipe.epochs, 30), f"tr_val_{k}": recipe.validation_split,
              f"tr_sub_{k}": TRAIN_SUBSETS[subset], f"tr_seed_{k}": recipe.seed,
              f"tr_aug_{k}": recipe.augment}
    S.setdefault("train_form", {}).update(seeded)
    for key, value in seeded.items():
        S[key] = value
    st.switch_page("pages/train.py")


def pin_in_compare(run_ids: list[str]) -> None:
    """Open Compare with these runs pinned (by id)."""
    st.session_state.compare_pinned = list(dict.fromkeys(run_ids))
    st.switch_page("pages/compare.py")
