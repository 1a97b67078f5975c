"""Errors: the confusion matrix of any model, a gallery per cell, and what changes between
two models. Evaluations are batched, compiled and cached on disk per model (core/)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import BASELINE_LABEL, confusion_difference, error_changes
from core.errors import LayerLabError
from core.evaluation import cell_indices, per_class_metrics
from core.wording import plural
from pages import handoff
from pages.common import data_and_models, load_choice, mnist, show_error
from pages.widgets import CELL, DIGIT, arrow_table, confusion_spec, gallery_spec

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


def send_to_draw(index: int, model_key: str) -> None:
    """Put one test image on the Draw & inspect page, with the model it was read with
    (the baseline is no Keras model: Draw then keeps its own), and go there."""
    name = model_names.get(model_key, "")
    handoff.send_digit(mnist().x_test[index], index=index,
                       model_key=None if model_key == BASELINE_KEY else model_key,
                       source=f"the Errors page ({name})" if name else "the Errors page")
    if DRAW_PAGE.is_file():
        st.switch_page("pages/draw.py")
    st.info("The Draw & inspect page is not available yet; the image is kept for it.")


def heat_map(cm: np.ndarray, normalised: bool, key: str, on_select=None,
             diff: bool = False) -> None:
    """The shared confusion chart; with ``on_select`` a click on a cell selects it."""
    spec = confusion_spec(cm, normalised=normalised, diff=diff,
                          selectable=on_select is not None)
    if on_select is None:
        st.vega_lite_chart(spec=spec, width="stretch", key=key)
    else:
        st.vega_lite_chart(spec=spec, width="stretch", key=key, on_select=on_select,
                           selection_mode=[CELL])


def picked_cell() -> None:
    """Chart click -> the two cell selectors (runs before the page as a callback)."""
    event = st.session_state.get("err_heat") or {}
    points = (event.get("selection") or {}).get(CELL) or []
    if points:
        st.session_state["err_true"] = int(points[0]["true"])
        st.session_state["err_pred"] = int(points[0]["predicted"])


def probability_text(probs: np.ndarray) -> str:
    top = np.argsort(-probs)[:3]
    return " · ".join(f"{c}: {probs[c]:.0%}" for c in top)


def clicked_digit(event, shown: tuple[int, ...]) -> int | None:
    """The test index a gallery click selected, if it is one of ``shown`` (the selection
    comes from the browser: anything else is ignored)."""
    try:
        points = (event.get("selection") or {}).get(DIGIT) or []
        index = int(points[0]["index"])
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        return None
    return index if index in shown else None


def gallery(indices: np.ndarray, probs: np.ndarray, key: str, model_key: str) -> None:
    """Images with their top probabilities (of ``model_key``'s model) in one chart; a
    click on one sends it to Draw with that model."""
    data = mnist()
    shown = tuple(int(i) for i in indices[:GALLERY_MAX])
    tops = tuple(f"#{i} · true {data.y_test[i]}" for i in shown)
    lines = tuple(probability_text(probs[i]) for i in shown)
    # a new chart after each send: coming back, the old click is not sent again
    sent = st.session_state.get(f"{key}_sent", 0)
    event = st.vega_lite_chart(spec=gallery_spec(shown, tops, lines), width="content",
                               key=f"{key}_gallery_{sent}", on_select="rerun",
                               selection_mode=[DIGIT])
    index = clicked_digit(event, shown)
    more = (f" Showing {GALLERY_MAX} of {plural(len(indices), 'image')}, most confident "
            f"first." if len(indices) > GALLERY_MAX else "")
    st.caption("Click a digit to open it on the Draw & inspect page, read by this model."
               + more)
    if index is not None:
        st.session_state[f"{key}_sent"] = sent + 1
        send_to_draw(index, model_key)


st.title("❌ Errors")
st.markdown("Where does a model go wrong? Rows are the **true** class, columns the "
            "**predicted** class: the diagonal holds the correct answers, every other cell "
            "a kind of mistake. Click a cell to see its images.")

data, choices = data_and_models()
choices[BASELINE_LABEL] = BASELINE_KEY
model_names = {key: lbl for lbl, key in choices.items()}

choice = handoff.model_select(
    "errors", "Model", choices, widget_key="err_model",
    help="Pretrained presets, your finished runs, and a logistic-regression baseline on "
         "raw pixels.")
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
m = st.container(horizontal=True, gap="large")     # wraps rather than cutting "266 of…"
m.metric("Accuracy", f"{result.accuracy:.2%}", width="content")
m.metric("Errors", f"{int(cm.sum() - np.trace(cm)):,} of {int(cm.sum()):,}",
         width="content")
m.metric("Test loss", f"{result.loss:.4f}", width="content")
m.metric("Evaluation", f"{seconds:.2f} s", width="content",
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
    st.dataframe(arrow_table(table), key="err_table", hide_index=True, width="stretch",
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
    gallery(idx, result.probabilities, "err_cell", choice)

# -- two models -------------------------------------------------------------------------------
st.subheader("Compared with another model")
others = [key for key in model_names if key != choice
          and not (key == BASELINE_KEY and baseline(False) is None)]
if not others:
    st.info("Train a run or the baseline to compare two models.")
    st.stop()
choice_b = st.selectbox("Model B", others, key="err_model_b",
                        format_func=model_names.__getitem__)
try:
    result_b, _ = evaluation(choice_b)
except LayerLabError as err:
    show_error(err)
    st.stop()
changes = error_changes(result.labels, result.predictions, result_b.predictions)
k = st.container(horizontal=True, gap="large")
k.metric("Accuracy of B", f"{result_b.accuracy:.2%}",
         f"{(result_b.accuracy - result.accuracy) * 100:+.2f} points", width="content")
k.metric("Errors B fixes", f"{len(changes['fixed']):,}", width="content")
k.metric("New errors B makes", f"{len(changes['new']):,}", width="content")
k.metric("Wrong in both", f"{len(changes['both']):,}", width="content")
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
    st.caption(f"{plural(len(picked), 'image')}, below; probabilities shown are model B's."
               if len(picked) else "None.")
if len(picked):            # full width: room for four digits a row
    gallery(picked, result_b.probabilities, "err_cmp", choice_b)
