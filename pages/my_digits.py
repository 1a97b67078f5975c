"""My digits: the workspace's own handwriting (added on Draw & inspect) by class, how any
model reads it, and a fine-tune on it that keeps MNIST (core.personal, core.finetune)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.data import to_float
from core.errors import LayerLabError
from core.evaluation import evaluate
from core.imaging import labelled_grid
from core.personal import PersonalSet, PersonalStore
from core.runs import Run
from core.wording import plural
from pages import handoff
from pages.common import (PRETRAINED_PREFIX, data_and_models, load_choice,
                          pretrained_record, show_error, store, workspace_job)
from pages.widgets import confusion_chart, digit_grid

MANAGE_MAX = 48          # delete buttons shown at once (the newest of a class)
WS = st.session_state.workspace


def source_run(key: str) -> Run:
    """The run record behind a model key (a preset's record, or a run of this store)."""
    if key.startswith(PRETRAINED_PREFIX):
        return Run.from_dict(pretrained_record(key[len(PRETRAINED_PREFIX):]))
    return store().load_run(key)


def gallery(digits: PersonalSet) -> None:
    """Each class's digits in one image, then one class's digits with delete buttons."""
    counts = digits.counts()
    cols = st.columns(5)
    for cls in range(10):
        with cols[cls % 5]:
            st.markdown(f"**{cls}** · {plural(counts[cls], 'digit')}")
            if counts[cls]:
                st.image(digit_grid(digits.x[digits.y == cls][-24:], cols=6), width=170,
                         output_format="PNG")
    with st.expander("Delete digits", expanded=False):
        cls = st.selectbox("Class", [c for c in range(10) if counts[c]],
                           key="my_digits_manage_class")
        idx = np.flatnonzero(digits.y == cls)[-MANAGE_MAX:]
        row = st.columns(8)
        for n, i in enumerate(idx):
            with row[n % 8]:
                st.image(digits.x[i], width=56, output_format="PNG")
                item = int(digits.ids[i])
                if st.button("Delete", key=f"my_digits_delete_{item}"):
                    PersonalStore().delete(WS, item)
                    st.rerun()


def reading(model, digits: PersonalSet) -> None:
    """The model's accuracy on the set, its confusion matrix, and every misread."""
    ev = evaluate(model, to_float(digits.x), digits.y)
    st.metric("Accuracy on your digits", f"{ev.accuracy:.1%}",
              help=f"{int((ev.predictions == digits.y).sum())} of {len(digits)} read right.")
    left, right = st.columns([3, 2])
    left.altair_chart(confusion_chart(ev.confusion, height=340), width="stretch",
                      key="my_digits_confusion")
    wrong = np.flatnonzero(ev.predictions != digits.y)
    with right:
        if len(wrong) == 0:
            st.success("This model reads every one of your digits correctly.")
        else:
            st.caption(f"Misread: {plural(len(wrong), 'digit')} (red: what it read).")
            st.image(labelled_grid([digits.x[i] for i in wrong[:60]],
                                   [(f"yours: {int(digits.y[i])}",
                                     f"read {int(ev.predictions[i])}") for i in wrong[:60]],
                                   [True] * len(wrong[:60]), cols=4),
                     width="content", output_format="PNG")


def start_finetune(key: str, model, digits: PersonalSet, data) -> None:
    """Queue the fine-tune as this workspace's run (refused with a sentence if busy)."""
    from core.finetune import FineTuneJob
    from core.jobs import REGISTRY

    job = FineTuneJob(model, source_run(key), key, digits, data, workspace=WS,
                      store=store())
    st.session_state.job = REGISTRY.submit(WS, job)
    st.session_state.my_digits_finetune = job.id


def finetune_progress() -> None:
    """Polled while the fine-tune trains; reruns the page once it ends."""
    job = workspace_job()
    p = job.snapshot()
    if p.state == "queued":
        st.warning(f"Waiting for a free training slot (position {p.queue_position or 1}).")
    elif p.state == "preparing":
        st.info(f"{p.preparing}…")
    else:
        st.progress(p.fraction, text=f"Fine-tuning: epoch {min(p.epoch + 1, p.epochs_total)}"
                                     f"/{p.epochs_total} · step {p.step}/{p.steps_per_epoch}")
    if p.done:
        st.rerun(scope="app")


def finetune_result(job, digits: PersonalSet, data) -> None:
    """Before / after on your digits and on the test set, side by side."""
    from core.finetune import before_after

    p = job.snapshot()
    if p.state != "finished":
        st.warning(p.message or "The fine-tune did not finish.")
        return
    before = load_choice(job.run.parent)
    cache = st.session_state.setdefault("my_digits_results", {})
    if job.id not in cache:
        with st.spinner("Measuring before and after on the test set…"):
            cache[job.id] = before_after(before, job.model, digits, data)
    st.success(f"Fine-tuned: “{job.run.name}” is saved as a run of this workspace; pick it "
               "on Draw, Compare, Errors or Train like any other.")
    st.table(cache[job.id].rows())


# -- the page ----------------------------------------------------------------------------
st.title("🖐️ My digits")
st.caption("Your own handwriting, added on **Draw & inspect** with “Add to my digits”: "
           "how each model reads it, and a short fine-tune that learns it without "
           "forgetting MNIST.")
try:
    digits = PersonalStore().load(WS)
except LayerLabError as err:
    show_error(err)
    st.stop()
if len(digits) == 0:
    st.info("You have no digits yet: draw one on Draw & inspect, check its label, and "
            "press “Add to my digits”.")
    st.page_link("pages/draw.py", label="Draw & inspect", icon="✏️")
    st.stop()

st.subheader(f"Your set · {plural(len(digits), 'digit')}")
st.download_button("Download as .npz (MNIST layout)", PersonalStore().export(WS),
                   file_name="my_digits.npz", mime="application/octet-stream",
                   key="my_digits_export",
                   help="x: uint8 N×28×28, y: uint8 N — load with numpy.load.")
gallery(digits)

data, choices = data_and_models()
st.subheader("How a model reads them")
key = handoff.model_select("my_digits", "Model", choices, widget_key="my_digits_model",
                           default=PRETRAINED_PREFIX + "small_cnn")
try:
    model = load_choice(key)
except LayerLabError as err:
    show_error(err)
    st.stop()
reading(model, digits)

st.subheader("Fine-tune it on your digits")
st.caption("A short run from this model's weights: each batch about half your digits "
           "(shifted by up to 2 px) and half replayed MNIST training images, 3 epochs at a "
           "low learning rate, so it learns your hand and keeps MNIST (test accuracy moves "
           "by a few tenths of a point at most). The result is a new run; this model is "
           "left as it is.")
job = workspace_job()
ours = job is not None and st.session_state.get("my_digits_finetune") == job.id
busy = job is not None and not job.done
if st.button("Fine-tune on my digits", key="my_digits_finetune_start", disabled=busy,
             type="primary"):
    try:
        start_finetune(key, model, digits, data)
        st.rerun()
    except LayerLabError as err:
        show_error(err)
if busy and not ours:
    st.caption("This workspace has a run in progress: wait for it to end first.")
if ours and busy:
    st.fragment(finetune_progress, run_every=0.5)()
elif ours:
    finetune_result(job, digits, data)
