"""Models: a preset layer by layer — shapes, parameters, memory, compute, code."""
import functools

import altair as alt
import pandas as pd
import streamlit as st

from core import pretrained
from core.export import to_keras_script
from core.modelio import (ImportJob, keras_upload_allowed, load_keras_upload,
                          model_from_spec_and_weights, spec_from_keras)
from core.notebook import notebook_for_preset, script_for_preset
from core.preprocess import MAX_FILE_MB
from core.presets import PRESETS
from core.stats import human_bytes, human_count, summarize
from core.wording import plain, plural
from pages.common import pretrained_record, show_error, store
from pages.diagram_view import show_network
from pages.widgets import arrow_datasets, frame_key, layer_table, show_layer_table

st.title("🧱 Models")
st.caption("Every number here comes from the layer stack itself and matches Keras' own "
           "`model.summary()`.")

c1, c2 = st.columns([2, 1])
name = c1.selectbox("Preset network", list(PRESETS), key="models_preset",
                    format_func=lambda n: f"{n} — {PRESETS[n].expected_params:,} params")
batch = c2.select_slider("Batch size for activation memory", [1, 8, 32, 128, 256, 1024],
                         value=32, key="models_batch")
preset = PRESETS[name]
shipped = ""
if name in pretrained.available():     # the figure comes from the shipped record, never a literal
    record = pretrained_record(name)
    shipped = (f" The shipped weights reach **{record['test_accuracy']:.2%}** test accuracy "
               f"after {plural(record['epochs_done'], 'epoch')}.")
st.markdown(f"*{preset.spec.description}*{shipped}")

rows, t = summarize(preset.spec, batch_size=batch)
# Two rows of three so every figure is shown whole at 1024 px
m = [*st.columns(3), *st.columns(3)]
m[0].metric("Parameters", f"{t.params:,}")
m[1].metric("Trainable", f"{t.trainable:,}")
m[2].metric("Non-trainable", f"{t.non_trainable:,}",
            help="BatchNormalization's moving mean and variance")
m[3].metric("Weights (fp32)", human_bytes(t.weight_bytes["fp32"]),
            help=f"fp16 {human_bytes(t.weight_bytes['fp16'])}, "
                 f"int8 {human_bytes(t.weight_bytes['int8'])}")
m[4].metric("MACs per image", human_count(t.macs), help=f"{t.macs:,} multiply-accumulates")
m[5].metric("Adam state", human_bytes(t.adam_training_bytes),
            help="weights + gradients + two Adam moments, 4 bytes each")

table = layer_table(rows, ["#", "layer", "type", "output shape", "params", "trainable",
                           "non-trainable", "MACs", "activations", "weights fp32"])
show_layer_table(table, key="models_table")
st.caption(f"Activation memory at batch {batch}: inference "
           f"{human_bytes(t.activation_bytes_inference)}, training ≈ "
           f"{human_bytes(t.activation_bytes_training)} (outputs kept, plus their gradients).")
show_network(preset.spec, key="models_network")

st.subheader("Where the parameters and the compute go")


@st.cache_data(max_entries=32, show_spinner=False)
def shares_spec(key: str, _table: pd.DataFrame) -> dict:
    """Each layer's share of the parameters, MACs and activations, as a Vega-Lite spec
    made once per table (Altair's building and validating cost about 0.03 s a view);
    ``key`` is the table's :func:`~pages.widgets.frame_key`."""
    long = _table.melt(id_vars=["#", "layer", "type"],
                      value_vars=["params", "MACs", "activations"],
                      var_name="measure", value_name="value")
    long["share"] = long.groupby("measure")["value"].transform(lambda v: v / max(v.sum(), 1))
    return arrow_datasets(alt.Chart(long).mark_bar().encode(
        x=alt.X("layer:N", sort=list(table["layer"]), title="layer (input → output)"),
        y=alt.Y("share:Q", axis=alt.Axis(format="%"), title="share of the model's total"),
        color=alt.Color("measure:N", title="measure",
                        scale=alt.Scale(domain=["params", "MACs", "activations"])),
        xOffset="measure:N",
        tooltip=["layer", "type", "measure", alt.Tooltip("value:Q", format=","),
                 alt.Tooltip("share:Q", format=".1%")],
    ).properties(height=320).to_dict())


st.vega_lite_chart(spec=shares_spec(frame_key(table), table), width="stretch",
                   key="models_chart")

st.subheader("Take it with you")
script = to_keras_script(preset.spec)
d1, d2 = st.columns(2)
d1.download_button("Download Keras script (.py)", script, file_name=f"{name}.py",
                   mime="text/x-python", key="models_dl_py")
d2.download_button("Download spec (.json)", preset.spec.to_json(), file_name=f"{name}.json",
                   mime="application/json", key="models_dl_json")
# The preset's whole run (data, model, recipe, evaluation) as code to run elsewhere.
d3, d4 = st.columns(2)
d3.download_button("Download notebook (.ipynb)", notebook_for_preset(name),
                   file_name=f"{name}.ipynb", mime="application/x-ipynb+json",
                   key="models_dl_ipynb",
                   help="Trains this preset with its recipe, then evaluates it: a Jupyter "
                        "notebook in keras-io's style")
d4.download_button("Download training script (.py)", script_for_preset(name),
                   file_name=f"{name}_train.py", mime="text/x-python", key="models_dl_train",
                   help="The same as the notebook, as one Python script")
if name in pretrained.available():
    # read when clicked (a callable), not at every view of the page
    st.download_button("Download the pretrained model (.keras)",
                       functools.partial(pretrained.model_file_bytes, name),
                       file_name=f"{name}.keras", mime="application/octet-stream",
                       key="models_dl_keras", on_click="ignore",
                       help="The shipped weights: load with keras.models.load_model; a "
                            "run that learns from this preset as its teacher needs it "
                            "beside its notebook")
with st.expander("Keras code", expanded=False):
    st.code(script, language="python")

st.subheader("Import a trained model")
st.caption("Upload a JSON spec with its weights as .npz (both exported by Layer Lab from a "
           "run). The model is checked layer by layer, evaluated on the test set and added "
           "to your runs, so the Draw, Errors and Compare pages can use it.")

kinds = ["JSON spec + .npz weights"] + ([".keras file"] if keras_upload_allowed() else [])
kind = st.radio("Format", kinds, horizontal=True, key="import_kind")
i1, i2 = st.columns(2)
if kind == kinds[0]:
    spec_file = i1.file_uploader(f"Spec (.json, at most {MAX_FILE_MB} MB)",
                                 type=["json"], key="import_spec",
                                 max_upload_size=MAX_FILE_MB)
    weights_file = i2.file_uploader(f"Weights (.npz, at most {MAX_FILE_MB} MB)",
                                    type=["npz"], key="import_weights",
                                    max_upload_size=MAX_FILE_MB)
    ready = spec_file is not None and weights_file is not None
else:
    keras_file = i1.file_uploader(f"Model (.keras, at most {MAX_FILE_MB} MB)",
                                  type=["keras"], key="import_keras",
                                  max_upload_size=MAX_FILE_MB)
    ready = keras_file is not None
import_name = st.text_input("Name", "imported", key="import_name", max_chars=48)
def import_progress() -> None:
    """The session's import, evaluated under the server's scheduler: queue place, then
    progress (polled here, never evaluated in the page's thread); once it is done, its
    outcome is kept for :func:`import_outcome` and the whole page runs again."""
    job = st.session_state.get("import_job")
    if not isinstance(job, ImportJob):
        return
    if not job.done:
        where = job.position
        st.progress(job.fraction, text=(f"Waiting for a free training slot (place {where})"
                                         if where else "Evaluating on 10,000 test images…"))
        if st.button("Stop the import", key="import_stop"):
            job.stop()
        return
    st.session_state.import_job = None
    try:
        run, model = job.result()
    except Exception as err:  # LayerLabError sentences; anything else explained too
        st.session_state.import_outcome = err
    else:
        st.session_state.session_models[run.id] = model
        st.session_state.import_outcome = {"name": run.name, "params": run.params,
                                           "accuracy": run.test_accuracy}
    st.rerun(scope="app")     # the page without the progress: the import button is free


def import_outcome() -> None:
    """The last import's result or error, kept until the next import starts."""
    outcome = st.session_state.get("import_outcome")
    if isinstance(outcome, dict):
        try:
            st.success(f"Imported “{plain(outcome['name'])}”: {int(outcome['params']):,} "
                       f"parameters, test accuracy {float(outcome['accuracy']):.2%}.")
        except (KeyError, TypeError, ValueError):
            pass                                 # not an outcome this page wrote
    elif isinstance(outcome, Exception):
        show_error(outcome)


busy = isinstance(st.session_state.get("import_job"), ImportJob)
if st.button("Import", key="import_go", disabled=not ready or busy):
    try:
        with st.spinner("Checking the model…"):
            if kind == kinds[0]:
                spec, model = model_from_spec_and_weights(spec_file.getvalue(),
                                                          weights_file.getvalue())
            else:
                model = load_keras_upload(keras_file.getvalue())
                spec = spec_from_keras(model, import_name)
        st.session_state.import_outcome = None
        st.session_state.import_job = ImportJob(model, spec, import_name,
                                                st.session_state.workspace, store()).start()
    except Exception as err:  # LayerLabError sentences; anything else explained too
        show_error(err)

# Polled only while an import is pending: an idle page asks the server for nothing.
pending = isinstance(st.session_state.get("import_job"), ImportJob)
st.fragment(import_progress, run_every=1.0 if pending else None)()
import_outcome()
