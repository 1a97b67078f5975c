"""Compare: pin runs side by side — figures, stack and recipe diff, curves, errors."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import pretrained
from core.analysis import confusion_difference
from core.compare import diff_recipes, diff_specs
from core.runs import Run
from core.spec import ModelSpec
from core.stats import human_bytes, summarize
from pages.common import pretrained_label, pretrained_record, run_label, session_runs
from pages.widgets import confusion_chart

st.title("⚖️ Compare")

runs: dict[str, Run] = {}
for name in pretrained.available():
    runs[pretrained_label(name)] = Run.from_dict(pretrained_record(name))
for run in session_runs():
    if run.test_accuracy is not None:
        runs[run_label(run)] = run
if not runs:
    st.info("Nothing to compare yet: train a run on the Train page.")
    st.stop()

labels = list(runs)
pinned = st.multiselect("Pinned runs", labels, default=labels[: min(3, len(labels))],
                        key="compare_pinned")
if not pinned:
    st.info("Pin at least one run.")
    st.stop()


def figures(label: str) -> dict:
    run = runs[label]
    _, t = summarize(ModelSpec.from_dict(run.spec))
    return {"run": label, "test accuracy": run.test_accuracy, "params": t.params,
            "MACs": t.macs, "fp32 size": human_bytes(t.weight_bytes["fp32"]),
            "training time (s)": round(run.wall_time_s, 1), "device": run.device,
            "epochs": run.epochs_done}


table = pd.DataFrame([figures(l) for l in pinned])
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"test accuracy": st.column_config.NumberColumn(format="percent"),
                            "params": st.column_config.NumberColumn(format="localized"),
                            "MACs": st.column_config.NumberColumn(format="localized")})

# -- curves ----------------------------------------------------------------------------
st.subheader("Training curves")
metric = st.radio("Curve", ["val_accuracy", "accuracy", "val_loss", "loss"], horizontal=True,
                  key="compare_metric")
rows = [{"run": l, "epoch": e, metric: v} for l in pinned
        for e, v in zip(runs[l].history.get("epoch", []), runs[l].history.get(metric, []))]
if rows:
    chart = alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch"),
        y=alt.Y(f"{metric}:Q", title=metric.replace("_", " "), scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom")),
        tooltip=["run", "epoch", alt.Tooltip(f"{metric}:Q", format=".4f")])
    st.altair_chart(chart.properties(height=300), width="stretch")
else:
    st.caption(f"No {metric} recorded for these runs (validation split 0?).")

# -- diff of two runs ------------------------------------------------------------------------
st.subheader("What differs between two runs")
c = st.columns(2)
a = c[0].selectbox("Run A", pinned, key="compare_a")
b = c[1].selectbox("Run B", pinned, index=min(1, len(pinned) - 1), key="compare_b")
ra, rb = runs[a], runs[b]
layer_rows = diff_specs(ra.spec, rb.spec)
marks = {"same": "", "changed": "≠", "added": "+ B", "removed": "− A"}
st.dataframe(pd.DataFrame([{"": marks[s], "A: " + a: l, "B: " + b: r}
                           for s, l, r in layer_rows]), hide_index=True, width="stretch")
rdiff = diff_recipes(ra.recipe, rb.recipe)
if rdiff:
    st.markdown("**Recipe:** " + "; ".join(f"`{k}` {va} → {vb}" for k, va, vb in rdiff))
else:
    st.markdown("**Recipe:** identical.")

if ra.confusion is not None and rb.confusion is not None:
    st.markdown("**Confusion difference (B − A)**: blue off-diagonal cells are errors B "
                "fixes, red ones are errors B makes that A did not.")
    diff = confusion_difference(ra.confusion, rb.confusion)
    st.altair_chart(confusion_chart(diff, diff=True, height=360), width="stretch",
                    key="compare_confusion")

# -- accuracy vs parameters ------------------------------------------------------------------
st.subheader("Accuracy versus size: the frontier of small models")
allf = pd.DataFrame([figures(l) for l in labels if runs[l].test_accuracy is not None])
if len(allf):
    allf = allf.sort_values("params")
    allf["frontier"] = allf["test accuracy"] >= allf["test accuracy"].cummax()
    points = alt.Chart(allf).mark_circle(size=90).encode(
        x=alt.X("params:Q", scale=alt.Scale(type="log"), title="parameters (log scale)"),
        y=alt.Y("test accuracy:Q", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False),
                title="test accuracy"),
        color=alt.Color("frontier:N", title="on the frontier"),
        tooltip=["run", alt.Tooltip("params:Q", format=","),
                 alt.Tooltip("test accuracy:Q", format=".2%")])
    line = alt.Chart(allf[allf["frontier"]]).mark_line(strokeDash=[4, 3]).encode(
        x="params:Q", y="test accuracy:Q")
    st.altair_chart((points + line).properties(height=320), width="stretch")
