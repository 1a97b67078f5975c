"""Errors: the confusion matrix of any model, a gallery per cell, and what changes between
two models. Evaluations are batched, compiled and cached on disk per model (core/)."""
from __future__ import annotations

import time
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import BASELINE_LABEL, confusion_difference, error_changes
from core.errors import LayerLabError
from core.evaluation import cell_indices, per_class_metrics, row_normalise
from core.imaging import enlarge
from pages.common import data_and_models, load_choice, mnist, page_guard, show_error

BASELINE_KEY = "baseline:logreg"
GALLERY_MAX = 24
DRAW_PAGE = Path(__file__).resolve().parent / "draw.py"


@st.cache_resource(show_spinner=False)
def baseline(fit: bool):
    """The logistic-regression baseline on all training images (disk-cached), or None."""
    from core.analysis import load_or_fit_baseline

    data = mnist()
    return load_or_fit_baseline(data.x_train, data.y_train, fit=fit)


def evaluation(choice: str):
    """(Evaluation, seconds) on the test set for a model key or the baseline."""
    from core.analysis import content_key

    model = baseline(False) if choice == BASELINE_KEY else load_choice(choice)
    if model is None:
        raise LayerLabError("Train the logistic-regression baseline first.")
    return evaluation_of(content_key(model), model)


@st.cache_resource(show_spinner="Evaluating on the 10,000 test images…", max_entries=16)
def evaluation_of(content: str, _model):
    """Keyed by the model's ``content`` (its weights), not its run id: a resumed run keeps
    its id."""
    from core.analysis import evaluate_any

    t0 = time.perf_counter()
    result = evaluate_any(_model, mnist().x_test, mnist().y_test)
    return result, time.perf_counter() - t0


def send_to_draw(index: int) -> None:
    """Put one test image on the Draw & inspect page and go there."""
    st.session_state["draw_image"] = np.array(mnist().x_test[index], dtype=np.uint8)
    st.session_state["draw_image_index"] = int(index)
    if DRAW_PAGE.is_file():
        st.switch_page("pages/draw.py")
    st.info("The Draw & inspect page is not available yet; the image is kept for it.")


def heat_map(cm: np.ndarray, normalised: bool, key: str, on_select=None,
             diff: bool = False) -> None:
    """Rows = true class, columns = predicted class; click a cell to select it.

    With ``diff`` the matrix holds B − A differences, shown on a diverging scale with
    the diagonal (correct answers) left blank.
    """
    cm = np.asarray(cm)
    values = row_normalise(cm) if normalised else cm.astype(np.float64)
    if diff:
        values = values * (1 - np.eye(10))
    df = pd.DataFrame([(t, p, int(cm[t, p]), float(values[t, p]))
                       for t in range(10) for p in range(10)],
                      columns=["true", "predicted", "count", "value"])
    if normalised:
        df["text"] = df["value"].map(lambda v: f"{v:.1%}" if v >= 0.0005 else "")
    elif diff:
        df["text"] = df["value"].map(lambda v: f"{int(v):+d}" if v else "")
    else:
        df["text"] = df["count"].map(lambda c: str(c) if c else "")
    top = float(np.abs(values).max()) or 1.0
    df["dark"] = np.abs(df["value"]) >= (0.6 if diff else 0.35) * top
    if diff:
        colour = alt.Color("value:Q", title="B − A", scale=alt.Scale(
            scheme="redblue", reverse=True, domainMid=0))
    else:
        colour = alt.Color("value:Q", title="share of row" if normalised else "images",
                           scale=alt.Scale(scheme="blues",
                                           type="linear" if normalised else "symlog"))
    cell = alt.selection_point(name="cell", fields=["true", "predicted"], on="click",
                               clear="dblclick")
    base = alt.Chart(df).encode(
        x=alt.X("predicted:O", title="predicted class (columns)",
                axis=alt.Axis(orient="top", labelAngle=0)),
        y=alt.Y("true:O", title="true class (rows)"))
    tips = [alt.Tooltip("true:O", title="true"), alt.Tooltip("predicted:O", title="predicted"),
            alt.Tooltip("value:Q", title="B − A") if diff
            else alt.Tooltip("count:Q", title="images")]
    if normalised:
        tips.append(alt.Tooltip("value:Q", title="share of row", format=".2%"))
    rect = base.mark_rect(stroke="white").encode(
        color=colour, tooltip=tips,
        opacity=alt.condition(cell, alt.value(1.0), alt.value(0.6))).add_params(cell)
    text = base.mark_text(fontSize=11).encode(
        text="text:N",
        color=alt.condition("datum.dark", alt.value("white"), alt.value("black")))
    chart = (rect + text).properties(height=420)
    if on_select is None:
        st.altair_chart(chart, width="stretch", key=key)
    else:
        st.altair_chart(chart, width="stretch", key=key, on_select=on_select,
                        selection_mode=["cell"])


def picked_cell() -> None:
    """Chart click -> the two cell selectors (runs before the page as a callback)."""
    event = st.session_state.get("err_heat") or {}
    points = (event.get("selection") or {}).get("cell") or []
    if points:
        st.session_state["err_true"] = int(points[0]["true"])
        st.session_state["err_pred"] = int(points[0]["predicted"])


def probability_text(probs: np.ndarray) -> str:
    top = np.argsort(-probs)[:3]
    return " · ".join(f"{c}: {probs[c]:.0%}" for c in top)


def gallery(indices: np.ndarray, probs: np.ndarray, key: str, cols: int = 6) -> None:
    """Images with their top probabilities and a button sending each to Draw."""
    data = mnist()
    rows = st.columns(cols)
    for n, idx in enumerate(indices[:GALLERY_MAX]):
        with rows[n % cols]:
            st.image(enlarge(data.x_test[idx], 84), width=84,
                     caption=f"#{idx} · true {data.y_test[idx]}")
            st.caption(probability_text(probs[idx]))
            if st.button("✏️ Inspect", key=f"{key}_draw_{idx}",
                         help="Send this image to the Draw & inspect page."):
                send_to_draw(int(idx))
    if len(indices) > GALLERY_MAX:
        st.caption(f"Showing {GALLERY_MAX} of {len(indices):,} images, most confident "
                   f"first.")


page_guard()
st.title("❌ Errors")
st.markdown("Where does a model go wrong? Rows are the **true** class, columns the "
            "**predicted** class: the diagonal holds the correct answers, every other cell "
            "a kind of mistake. Click a cell to see its images.")

data, choices = data_and_models()
choices[BASELINE_LABEL] = BASELINE_KEY
labels = list(choices)

label = st.selectbox("Model", labels, key="err_model",
                     help="Pretrained presets, your finished runs, and a logistic-regression "
                          "baseline on raw pixels.")
choice = choices[label]
if choice == BASELINE_KEY and baseline(False) is None:
    st.info("The baseline is a multinomial logistic regression on the 784 raw pixels "
            "(scikit-learn). It is trained once on the 60,000 training images, about a "
            "minute on a laptop, then kept on disk.")
    if st.button("Train the baseline", key="err_fit_baseline", type="primary"):
        with st.spinner("Training the logistic regression on 60,000 images…"):
            try:
                baseline.clear()
                baseline(True)
                baseline.clear()
            except LayerLabError as err:
                show_error(err)
        st.rerun()
    st.stop()

try:
    result, seconds = evaluation(choice)
except LayerLabError as err:
    show_error(err)
    st.stop()

cm = result.confusion
m = st.columns(4)
m[0].metric("Accuracy", f"{result.accuracy:.2%}")
m[1].metric("Errors", f"{int(cm.sum() - np.trace(cm)):,} of {int(cm.sum()):,}")
m[2].metric("Test loss", f"{result.loss:.4f}")
m[3].metric("Evaluation", f"{seconds:.2f} s",
            help="One compiled, batched pass over the test set; the probabilities are then "
                 "kept on disk per model, so the second time is instant.")

left, right = st.columns([3, 2])
with left:
    norm = st.radio("Show", ["counts", "row-normalised (share of each true class)"],
                    horizontal=True, key="err_norm")
    heat_map(cm, norm != "counts", "err_heat", on_select=picked_cell)
with right:
    metrics = per_class_metrics(cm)
    table = pd.DataFrame({"class": range(10), "precision": metrics["precision"],
                          "recall": metrics["recall"], "F1": metrics["f1"],
                          "images": metrics["support"]})
    st.markdown("**Per class**")
    st.dataframe(table, key="err_table", hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("precision", "recall", "F1")})
    st.caption("Precision: of the images predicted as the class, the share that are it. "
               "Recall: of the images of the class, the share found.")

# -- one cell -------------------------------------------------------------------------------
st.subheader("Images in a cell")
off = cm - np.diag(np.diag(cm))
worst = np.unravel_index(int(off.argmax()), cm.shape)
st.session_state.setdefault("err_true", int(worst[0]))
st.session_state.setdefault("err_pred", int(worst[1]))
c = st.columns([1, 1, 3])
true_c = c[0].selectbox("True class", list(range(10)), key="err_true")
pred_c = c[1].selectbox("Predicted class", list(range(10)), key="err_pred")
idx = cell_indices(result.labels, result.probabilities, true_c, pred_c)
c[2].markdown(f"**{len(idx):,}** test images of a **{true_c}** predicted as **{pred_c}**"
              + (" (correct answers)" if true_c == pred_c else "")
              + (", most confident first." if len(idx) else "."))
if len(idx):
    gallery(idx, result.probabilities, "err_cell")

# -- two models -------------------------------------------------------------------------------
st.subheader("Compared with another model")
others = [lbl for lbl in labels if lbl != label
          and not (choices[lbl] == BASELINE_KEY and baseline(False) is None)]
if not others:
    st.info("Train a run or the baseline to compare two models.")
    st.stop()
label_b = st.selectbox("Model B", others, key="err_model_b")
try:
    result_b, _ = evaluation(choices[label_b])
except LayerLabError as err:
    show_error(err)
    st.stop()
changes = error_changes(result.labels, result.predictions, result_b.predictions)
k = st.columns(4)
k[0].metric("Accuracy of B", f"{result_b.accuracy:.2%}",
            f"{(result_b.accuracy - result.accuracy) * 100:+.2f} points")
k[1].metric("Errors B fixes", f"{len(changes['fixed']):,}")
k[2].metric("New errors B makes", f"{len(changes['new']):,}")
k[3].metric("Wrong in both", f"{len(changes['both']):,}")
left, right = st.columns([3, 2])
with left:
    st.caption("B − A per cell: red where B makes that mistake more often, blue where it "
               "makes it less often (diagonal left out).")
    heat_map(confusion_difference(cm, result_b.confusion), False, "err_diff", diff=True)
with right:
    which = st.radio("Images", ["fixed by B", "new errors of B", "wrong in both"],
                     key="err_which")
    picked = changes[{"fixed by B": "fixed", "new errors of B": "new",
                      "wrong in both": "both"}[which]]
    if len(picked):
        st.caption(f"{len(picked):,} images; probabilities shown are model B's.")
        gallery(picked, result_b.probabilities, "err_cmp", cols=4)
    else:
        st.caption("None.")
