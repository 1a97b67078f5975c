"""Builder: assemble a layer stack with sliders and see its cost after every change."""
from __future__ import annotations

import copy
import hashlib
import uuid

import streamlit as st

from core.errors import LayerLabError
from core.export import to_keras_script
from core.presets import PRESETS
from core.layers import LAYER_TYPES, LAYERS, Param, layer_label
from core.spec import ModelSpec, check_cost, check_spec, default_layer
from core.stats import compare, human_bytes, human_count, summarize
from core.wording import plain
from pages.common import run_label, session_runs, show_error
from pages.diagram_view import show_network
from pages.widgets import layer_table, show_layer_table

st.title("🧩 Builder")
st.caption("Assemble a stack from the input (28×28×1) to the 10-way softmax. The table "
           "updates after every change; the Train button unlocks once the stack is valid.")

S = st.session_state
BATCHES = [1, 8, 32, 64, 128, 256, 512, 1024]


def load_stack(spec: ModelSpec) -> None:
    """Replace the working stack (each layer gets a stable id for its widgets)."""
    S.builder_layers = [{"uid": uuid.uuid4().hex[:8], **copy.deepcopy(l)} for l in spec.layers]
    S.builder_name = spec.name
    S.builder_name_input = spec.name
    S.builder_start = ModelSpec(spec.name, copy.deepcopy(spec.layers))


def sane_stack(layers) -> bool:
    """Whether the session's stack is what this page writes: a list of dicts with a uid,
    a known type and values of each parameter's kind (anything else is started afresh)."""
    kinds = {"int": int, "float": (int, float), "bool": bool, "choice": str}
    return isinstance(layers, list) and 0 < len(layers) <= 1_000 and all(
        isinstance(l, dict) and isinstance(l.get("uid"), str) and l.get("type") in LAYERS
        and all(l.get(n) is None or isinstance(l[n], kinds[p.kind])
                for n, p in LAYERS[l["type"]].params.items()) for l in layers) \
        and len({l["uid"] for l in layers}) == len(layers)


if not sane_stack(S.get("builder_layers")):
    load_stack(PRESETS["keras_example"].spec)


def current_spec() -> ModelSpec:
    return ModelSpec(S.builder_name, [{k: v for k, v in l.items() if k != "uid"}
                                      for l in S.builder_layers])


# -- start from ---------------------------------------------------------------------------
with st.expander("Start from…", expanded=False):
    c = st.columns([2, 1])
    runs = {f"run: {run_label(r)}": r for r in session_runs()}
    options = ["(empty)"] + [f"preset: {n}" for n in PRESETS] + list(runs)
    start = c[0].selectbox("Starting point", options, key="builder_from")
    if c[1].button("Load", key="builder_load"):
        if start == "(empty)":
            load_stack(ModelSpec("custom", [default_layer("Flatten"),
                                            {"type": "Dense", "units": 10,
                                             "activation": "softmax"}]))
        elif start.startswith("preset: "):
            load_stack(PRESETS[start[8:]].spec)
        else:
            load_stack(ModelSpec.from_dict(runs[start].spec))
        st.rerun()
    upload = st.file_uploader("…or import a JSON spec", type=["json"], key="builder_upload")
    if upload is not None and S.get("builder_upload_done") != upload.file_id:
        try:
            spec = ModelSpec.from_json(upload.getvalue())
            err = check_spec(spec)
            if err:
                raise err
            load_stack(spec)
            S.builder_upload_done = upload.file_id
            st.rerun()
        except LayerLabError as err:
            show_error(err)

S.builder_name = st.text_input("Name", key="builder_name_input", max_chars=48) or "custom"


# -- the layer list -----------------------------------------------------------------------
def param_widget(col, key: str, name: str, param: Param, value):
    """One widget generated from the layer table's (kind, default, low, high, UI high)."""
    label = name.replace("_", " ")
    if param.kind == "choice":
        index = param.low.index(value) if value in param.low else 0
        return col.selectbox(label, param.low, index=index, key=key)
    if param.kind == "bool":
        return col.checkbox(label, bool(value), key=key)
    if param.same_as:                     # None means "the same as that parameter"
        options = [None, *range(param.low, max(param.ui_high, value or 0) + 1)]
        same = f"= {param.same_as.replace('_', ' ')}"
        return col.selectbox(label, options, index=options.index(value), key=key,
                             format_func=lambda v: same if v is None else f"{v:,}")
    top = max(param.ui_high or param.high, value)     # a loaded value beyond the slider
    if param.kind == "float":
        return col.slider(label, float(param.low), float(top), float(value), 0.05, key=key)
    return col.slider(label, param.low, top, int(value), key=key, format="localized")


def layer_widgets(layer: dict, cols: int = 2) -> None:
    """The widgets of one layer; they write straight into the layer dict."""
    params = LAYERS[layer["type"]].params
    if not params:
        st.caption(LAYERS[layer["type"]].about or "No settings.")
        return
    columns = st.columns(cols)
    for n, (name, param) in enumerate(params.items()):
        value = layer.get(name, param.default)
        if value is None and not param.same_as:
            value = param.low                 # a required value not set yet
        layer[name] = param_widget(columns[n % cols], f"b_{layer['uid']}_{name}", name,
                                   param, value)


def select(uid: str) -> None:
    S.builder_selected = uid


def move(i: int, delta: int) -> None:
    layers = S.builder_layers
    j = i + delta
    if 0 <= j < len(layers):
        layers[i], layers[j] = layers[j], layers[i]


def duplicate(i: int) -> None:
    clone = copy.deepcopy(S.builder_layers[i])
    clone["uid"] = uuid.uuid4().hex[:8]
    S.builder_layers.insert(i + 1, clone)
    select(clone["uid"])


def remove(i: int) -> None:
    del S.builder_layers[i]
    if S.builder_layers:                     # the layer that took its place
        select(S.builder_layers[min(i, len(S.builder_layers) - 1)]["uid"])


def picked_layer(uids: list[str]) -> int:
    """The index of the layer being edited: the session's choice, else the first."""
    chosen = S.get("builder_selected")
    return uids.index(chosen) if chosen in uids else 0


def layer_editor(i: int, error) -> None:
    """The chosen layer's actions and settings (one layer's widgets a view, not every
    layer's: the page sent 200 elements a view with every layer open)."""
    layer, n = S.builder_layers[i], len(S.builder_layers)
    with st.container(border=True):
        # one wrapping row: the four small buttons keep their icons in a narrow column
        # (Streamlit's own icon font: "⧉" was a box where no system font had it)
        head = st.container(horizontal=True, vertical_alignment="center")
        head.markdown(f"**{i + 1}. {layer['type']}**", width="stretch")
        head.button(":material/arrow_upward:", key="builder_up", on_click=move, args=(i, -1),
                    disabled=i == 0, help="Move up")
        head.button(":material/arrow_downward:", key="builder_down", on_click=move, args=(i, 1),
                    disabled=i == n - 1, help="Move down")
        head.button(":material/content_copy:", key="builder_dup", on_click=duplicate, args=(i,),
                    help="Duplicate this layer")
        head.button(":material/delete:", key="builder_del", on_click=remove, args=(i,), help="Remove",
                    disabled=n == 1)
        layer_widgets(layer)
        if error is not None and error.layer == i + 1:
            st.error(str(error), icon="⚠️")


def take_widget_values(layer: dict) -> None:
    """Copy the values its widgets hold now into ``layer``: the list above the editor is
    drawn before the widgets run and would show a change one view late."""
    for name in LAYERS[layer["type"]].params:
        key = f"b_{layer['uid']}_{name}"
        if key in S:
            layer[name] = S[key]


st.subheader("Layers")
uids = [layer["uid"] for layer in S.builder_layers]
for layer in S.builder_layers:
    take_widget_values(layer)
spec = current_spec()
error = check_spec(spec)
left, right = st.columns([2, 3])
with left:
    chosen = picked_layer(uids)
    labels = {l["uid"]: f"{n}. {layer_label(l)}" + (" ⚠️" if error is not None and
                                                      error.layer == n else "")
              for n, l in enumerate(S.builder_layers, 1)}
    # a new radio for a new list (added, removed, moved or loaded layers), started on
    # the session's choice
    pick_key = "builder_pick_" + hashlib.sha1("|".join(uids).encode()).hexdigest()[:10]
    st.radio("Layer to edit", uids, index=chosen, key=pick_key,
             format_func=labels.__getitem__, on_change=lambda: select(S[pick_key]),
             help="The stack from the input (top) to the output; pick a layer to change, "
                  "move, duplicate or remove it.")
with right:
    layer_editor(chosen, error)
spec = current_spec()               # the editor's widgets may have changed a value
error = check_spec(spec)
if error is not None and error.layer is not None and error.layer != chosen + 1:
    st.error(str(error), icon="⚠️")

c = st.columns([2, 2, 1])
new_type = c[0].selectbox("Layer type", LAYER_TYPES, key="builder_new_type")
position = c[1].number_input("Insert at position", 1, len(S.builder_layers) + 1,
                             max(len(S.builder_layers), 1), key="builder_new_pos",
                             help="Before the output layer by default.")
# a plain "+": the full-width one is missing from common fonts (drawn as a box)
if c[2].button("+ Add layer", key="builder_add"):
    added = {"uid": uuid.uuid4().hex[:8], **default_layer(new_type)}
    S.builder_layers.insert(int(position) - 1, added)
    select(added["uid"])
    st.rerun()

# -- live statistics ----------------------------------------------------------------------
st.subheader("Cost")
if error is not None:
    if error.layer is None:
        st.error(str(error), icon="⚠️")
    else:
        st.warning(f"Fix layer {error.layer} to see the statistics: {error}")
else:
    batch = st.select_slider("Batch size for the memory estimate", BATCHES, value=128,
                             key="builder_batch", format_func=lambda b: f"{b:,}")
    rows, totals = summarize(spec, batch_size=batch)
    _, start_totals = summarize(S.builder_start) if check_spec(S.builder_start) is None \
        else (None, None)
    change = totals.params - start_totals.params if start_totals else 0
    m = [*st.columns(3), *st.columns(3)]      # two rows: every figure whole at 1024 px
    m[0].metric("Parameters", f"{totals.params:,}",
                delta=(f"{change:+,}" if change else "±0") if start_totals else None,
                delta_color="inverse" if change else "off",   # no change is neutral
                delta_arrow="auto" if change else "off")
    m[1].metric("MACs per image", human_count(totals.macs),
                help=f"{totals.macs:,} multiply-accumulates")
    m[2].metric("Weights (fp32)", human_bytes(totals.weight_bytes["fp32"]))
    m[3].metric("Adam training state", human_bytes(totals.adam_training_bytes))
    m[4].metric("Activation memory", human_bytes(totals.activation_bytes_training),
                help=f"Training at batch size {batch:,}: every layer output and its "
                     f"gradient at fp32.")
    try:
        check_cost(spec, batch)
    except LayerLabError as err:
        st.warning(str(err), icon="⚠️")
    if start_totals:
        st.caption(f"Against the starting point ({plain(S.builder_start.name)}): "
                   f"{compare(start_totals, totals)}.")
    show_layer_table(layer_table(rows, ["#", "layer", "type", "output shape", "params", "MACs",
                                        "activations", "weights fp32", "activation memory"]),
                     key="builder_table")
    st.caption("Activation memory in the table is per image at fp32; the training figure "
               "above multiplies by the batch size and keeps the gradients too.")
    show_network(spec, key="builder_network")

# -- actions ------------------------------------------------------------------------------
c = st.columns(3)
if c[0].button("🏋️ Train this", type="primary", key="builder_train", disabled=error is not None,
               help="Fix the stack first." if error is not None else "Open the Train page "
                    "with this stack."):
    S.builder_spec = spec
    S.train_source = "Stack from the Builder"
    st.switch_page("pages/train.py")
c[1].download_button("Export JSON", spec.to_json(), file_name=f"{spec.name}.json",
                     mime="application/json", key="builder_dl_json")
c[2].download_button("Export Keras script", to_keras_script(spec) if error is None else "",
                     file_name=f"{spec.name}.py", mime="text/x-python",
                     key="builder_dl_py", disabled=error is not None)
