"""Compare: pin runs side by side — figures, stack and recipe diff, curves, errors."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import pretrained
from core.analysis import confusion_difference
from core.compare import (EXTERNAL, diff_specs, external_rows, label_sides,
                          recipe_changes, smooth)
from core.runs import Run
from core.spec import ModelSpec
from core.stats import human_bytes, summarize
from pages.common import (PRETRAINED_PREFIX, pretrained_label, pretrained_record, run_label,
                          session_runs)
from pages.compare_robustness import robustness_section
from pages.compare_snapshots import snapshots_section
from pages.widgets import arrow_datasets, arrow_table, confusion_spec, frame_key

st.title("⚖️ Compare")

# Every selection below holds run keys ("pretrained:NAME" or a run id), shown through
# ``label``: a renamed label never loses a pinned run, and Run A/B default to two runs.
runs: dict[str, Run] = {}
labels: dict[str, str] = {}
for name in pretrained.available():
    runs[PRETRAINED_PREFIX + name] = Run.from_dict(pretrained_record(name))
    labels[PRETRAINED_PREFIX + name] = pretrained_label(name)
for run in session_runs():
    if run.test_accuracy is not None:
        runs[run.id], labels[run.id] = run, run_label(run)
if not runs:
    st.info("Nothing to compare yet: train a run on the Train page.")
    st.stop()


def label(key: str) -> str:
    return labels.get(key, key)


keys = list(runs)
pinned = st.multiselect("Pinned runs", keys, default=keys[: min(3, len(keys))],
                        format_func=label, key="compare_pinned")
if not pinned:
    st.info("Pin at least one run.")
    st.stop()


def figures(key: str) -> dict:
    run = runs[key]
    _, t = summarize(ModelSpec.from_dict(run.spec))
    return {"run": label(key), "name": run.name, "test accuracy": run.test_accuracy,
            "params": t.params, "MACs": t.macs, "fp32": human_bytes(t.weight_bytes["fp32"]),
            "time (s)": round(run.wall_time_s, 1), "epochs": run.epochs_done,
            "device": run.device}


@st.cache_data(max_entries=32, show_spinner=False)
def curves_spec(key: str, _rows: pd.DataFrame, metric: str) -> dict:
    """The pinned runs' ``metric`` over the epochs, zoomable, as a Vega-Lite spec made once
    per content (Altair's building and validating is most of the chart's cost a view);
    ``key`` is the rows' :func:`~pages.widgets.frame_key`."""
    chart = alt.Chart(_rows).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch"),
        y=alt.Y(f"{metric}:Q", title=metric.replace("_", " "), scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title="run",
                        legend=alt.Legend(orient="bottom", columns=2, labelLimit=0)),
        tooltip=["run", "epoch", alt.Tooltip(f"{metric}:Q", format=".4f")])
    return arrow_datasets(chart.properties(height=300).interactive().to_dict())


# Short headers, with the long names as help, so every column fits at 1024 px.
table = pd.DataFrame([figures(k) for k in pinned])
devices = sorted(set(table.pop("device")))
table = table.drop(columns="name")
number = st.column_config.NumberColumn
st.dataframe(arrow_table(table), hide_index=True, width="stretch", column_config={
    "run": st.column_config.TextColumn(width="medium"),
    "test accuracy": number("accuracy", format="percent", help="Test accuracy"),
    "params": number(format="localized", help="Parameters"),
    "MACs": number(format="localized", help="Multiply-accumulates per image"),
    "fp32": st.column_config.TextColumn(help="Size of the weights as 32-bit floats"),
    "time (s)": number(format="%,.1f", help="Training time in seconds"),
    "epochs": number(format="localized", help="Epochs trained")})
st.caption("Trained on " + " and ".join(devices) + ".")

# -- curves ----------------------------------------------------------------------------
st.subheader("Training curves")
c = st.columns([3, 2])
metric = c[0].radio("Curve", ["val_accuracy", "accuracy", "val_loss", "loss"],
                    horizontal=True, key="compare_metric")
weight = c[1].slider("Smoothing", 0.0, 0.9, 0.0, 0.1, key="compare_smooth",
                     help="An exponential moving average over epochs (0 = the raw curve).")
rows = [{"run": label(k), "epoch": e, metric: v} for k in pinned
        for e, v in zip(runs[k].history.get("epoch", []),
                        smooth(runs[k].history.get(metric, []), weight))]
if rows:
    curves = pd.DataFrame(rows)
    st.vega_lite_chart(spec=curves_spec(frame_key(curves), curves, metric), width="stretch",
                       key="compare_curves")
    st.caption("Scroll on the chart to zoom, drag to pan, double-click to see it all again.")
else:
    st.caption(f"No {metric} recorded for these runs (validation split 0?).")

# -- diff of two runs ------------------------------------------------------------------------
def difference(pinned: list[str]) -> None:
    """Two pinned runs side by side: layers, recipe and confusion matrices."""
    c = st.columns(2)
    a = c[0].selectbox("Run A", pinned, index=0, format_func=label, key="compare_a")
    b = c[1].selectbox("Run B", pinned, index=1, format_func=label, key="compare_b")
    ra, rb = runs[a], runs[b]
    if a == b:
        st.caption("Run A and Run B are the same run: pick another for either.")
    marks = {"same": "", "changed": "≠", "added": "B only", "removed": "A only"}
    # st.table wraps long layer lines where a dataframe would cut them off
    st.table(pd.DataFrame([{"": marks[s], "A: " + label(a): l, "B: " + label(b): r}
                           for s, l, r in diff_specs(ra.spec, rb.spec)]))
    changes = recipe_changes(ra.recipe, rb.recipe)
    st.markdown("**Recipe:** " + ("; ".join(changes) if changes else "identical."))
    if ra.confusion is not None and rb.confusion is not None:
        st.markdown("**Confusion difference (B − A)**: blue off-diagonal cells are errors B "
                    "fixes, red ones are errors B makes that A did not.")
        diff = confusion_difference(ra.confusion, rb.confusion)
        st.vega_lite_chart(spec=confusion_spec(diff, diff=True, height=360), width="stretch",
                           key="compare_confusion")


st.subheader("What differs between two runs")
if len(pinned) < 2:
    st.info("Pin a second run to see what differs.")
else:
    difference(pinned)

# -- accuracy vs parameters ------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner=False)
def frontier_spec(key: str, _ours: pd.DataFrame) -> dict:
    """The accuracy-versus-size chart of ``ours`` (one row per run, sorted by size) and
    the public records, as a Vega-Lite spec: made once per set of runs, as Altair takes
    about 0.1 s of the server's CPU to build and validate it (``key``: ``ours``'s
    :func:`~pages.widgets.frame_key`)."""
    ours = _ours
    on_front = ours["test accuracy"] >= ours["test accuracy"].cummax()
    ours = ours.assign(kind=on_front.map({True: "on the frontier",
                                          False: "behind the frontier"}),
                       source="Trained by Layer Lab.")
    # Published records for scale: other people's figures, drawn apart, never on the frontier.
    allf = pd.concat([ours, pd.DataFrame(external_rows())], ignore_index=True)
    allf["align"] = (allf["params"] == allf["params"].max()).map({True: "right", False: "left"})
    allf["side"] = label_sides([{**row, "side": "below" if row["kind"] == EXTERNAL else None}
                                for row in allf.to_dict("records")])
    kinds = ["on the frontier", "behind the frontier", EXTERNAL]
    low, high = allf["params"].min() / 1.5, allf["params"].max() * 1.5
    x = alt.X("params:Q", scale=alt.Scale(type="log", domain=[low, high], nice=False),
              title="parameters (log scale)")
    y = alt.Y("test accuracy:Q", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False),
              title="test accuracy")
    base = alt.Chart(allf).encode(x=x, y=y)
    legend = alt.Legend(orient="bottom", labelLimit=0)
    points = base.mark_point(size=90, filled=True).encode(
        color=alt.Color("kind:N", title=None, legend=legend, scale=alt.Scale(
            domain=kinds, range=["#1f77b4", "#a0a0a0", "#e6550d"])),
        shape=alt.Shape("kind:N", title=None, legend=legend, scale=alt.Scale(
            domain=kinds, range=["circle", "circle", "diamond"])),
        tooltip=["run", alt.Tooltip("params:Q", format=","),
                 alt.Tooltip("test accuracy:Q", format=".2%"), "kind", "source"])
    # Each name above or below its point, whichever keeps it off its neighbours' names
    # (core.compare.label_sides); the largest model's name runs left, inside the chart;
    # the public records' names are orange, below their points.
    external = alt.datum.kind == EXTERNAL
    names = base.mark_text(align="left", dx=7, dy=11, fontSize=11, color="#e6550d").encode(
        text="name:N").transform_filter(external)
    for side, dy in (("above", -7), ("below", 11)):
        for align, dx in (("left", 7), ("right", -7)):
            names += base.mark_text(align=align, dx=dx, dy=dy, fontSize=11).encode(
                text="name:N").transform_filter(
                (alt.datum.side == side) & (alt.datum.align == align) & ~external)
    line = alt.Chart(ours[on_front]).mark_line(strokeDash=[4, 3]).encode(x=x, y=y)
    return arrow_datasets((points + names + line).properties(height=360).to_dict())


st.subheader("Accuracy versus size: the frontier of small models")
ours = pd.DataFrame([figures(k) for k in keys]).sort_values("params")
st.vega_lite_chart(spec=frontier_spec(frame_key(ours), ours), width="stretch",
                   key="compare_frontier")
st.caption("A run is on the frontier when no smaller run is more accurate. Orange diamonds "
           "are published results by others (hover for the source), not trained here.")
snapshots_section(pinned, label)
robustness_section(pinned, runs, label)
