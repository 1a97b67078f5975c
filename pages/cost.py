"""Real cost: any model as float32, float16 and int8 .tflite files, measured on the full
test set (size, accuracy, single-image latency, predictions that change). The work is in
core/quantize.py and runs in the background; results are cached per model on disk."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import quantize
from core.errors import LayerLabError
from core.wording import plural
from pages.common import data_and_models, load_choice, show_error
from pages.widgets import digit_grid

GALLERY_MAX = 32


def watch(job) -> None:
    """Poll the job every second; rerun the page once it is done."""
    @st.fragment(run_every=1.0)
    def poll() -> None:
        if job.done:
            st.rerun(scope="app")
        st.info("Converting and measuring on the 10,000 test images (about 5–20 s). It "
                "runs in the background; the result is kept on disk.", icon="⏳")
    poll()


def show_report(report, model, data, name: str) -> None:
    """The table, the problems, the differing digits and the downloads."""
    rows = quantize.cost_rows(report, quantize.computed_weight_bytes(model))
    st.dataframe(pd.DataFrame(rows).set_index("format"), key="cost_table")
    st.caption("File size is measured (the .tflite file, weights plus the graph); computed "
               "weights are parameters × 4 / 2 / 1 bytes as the Models page counts them. "
               "Latency is the median of 200 single-image runs on one CPU thread with "
               "LiteRT's interpreter. int8 files take and return int8 values; the images "
               "are scaled as the file says.")
    for v in report.variants.values():
        if v.problem:
            st.warning(v.problem, icon="⚠️")
    for fmt in quantize.FORMATS[1:]:
        v = report.variants[fmt]
        if v.problem or not v.differ:
            continue
        shown = v.differ[:GALLERY_MAX]
        st.markdown(f"**{fmt}: {plural(len(v.differ), 'prediction')} unlike fp32**"
                    + (f" (first {len(shown)} shown)" if len(shown) < len(v.differ) else ""))
        st.image(digit_grid(data.x_test[shown], cols=16), width="content")
        st.caption(" · ".join(f"#{i}: true {data.y_test[i]}, {fmt} reads {p}"
                              for i, p in zip(shown, v.differ_pred)))
    cols = st.columns(len(quantize.FORMATS))
    for col, fmt in zip(cols, quantize.FORMATS):
        content = report.tflite(fmt)
        col.download_button(f"Download {fmt} .tflite", content or b"",
                            file_name=f"{name}_{fmt}.tflite",
                            mime="application/octet-stream", key=f"cost_dl_{fmt}",
                            disabled=content is None)


st.title("💾 Real cost")
st.markdown("What a model costs on a phone or a microcontroller: converted to float16 and "
            "to full-integer int8 with the TensorFlow Lite converter, then run with LiteRT "
            "on all 10,000 test images. Most models shrink about 4× at int8 and lose almost "
            "no accuracy.")
data, choices = data_and_models()
label = st.selectbox("Model", list(choices), key="cost_model")
choice = choices[label]
try:
    model = load_choice(choice)
except LayerLabError as err:
    show_error(err)
    st.stop()
for sentence in quantize.unchecked_layers(model):
    st.info(sentence)

workspace = st.session_state.workspace
key = quantize.report_key(model, data.x_test, data.y_test)
if st.button("Convert", key="cost_convert", type="primary",
             help="Convert to fp32, fp16 and int8 and measure each on the test set."):
    try:
        quantize.submit(workspace, model, data)
    except LayerLabError as err:
        show_error(err)

job = quantize.job_for(workspace)
report = quantize.find_report(model, data)
if report is None and job is not None and job.key == key:
    if not job.done:
        watch(job)
        st.stop()
    try:
        report = job.result()
    except Exception as err:  # noqa: BLE001 - a sentence for the viewer, the rest logged
        show_error(err)
if report is None:
    st.caption("Press Convert to measure this model (results are kept, so each model is "
               "converted once).")
    st.stop()
# File names from the preset's name or the run's id, never from a name a student typed.
show_report(report, model, data, choice.split(":")[-1] if ":" in choice else f"run_{choice[-6:]}")
