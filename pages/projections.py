"""Projections: PCA, t-SNE and UMAP maps of raw pixels or of any layer of any model.

Maps are computed in the background by core.projections and cached on disk, so the page
stays usable while they run and re-opens a computed map at once."""
from __future__ import annotations

import hashlib

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import content_key
from core.errors import LayerLabError
from core.imaging import enlarge
from core.projection_jobs import plan_map, submit
from core.projections import METHOD_LABELS, ProjectionRequest, fitted_map, resolve
from core.wording import plural
from pages import handoff, neighbours_view
from pages.common import data_and_models, load_choice, mnist, show_error
from pages.widgets import digit_grid

NO_MODEL = "— none: raw pixels only —"
PIXELS = "raw pixels (784 values)"
THUMB_CAP = 2000            # points whose tooltip carries a thumbnail
REGION_MAX = 60             # images listed for a selected region
POINTS = {"test": [1000, 2000, 5000, 10000],
          "train": [1000, 2000, 5000, 10000, 20000, 60000]}


@st.cache_data(show_spinner="Making thumbnails…", max_entries=8)
def thumbnails(split: str, n_points: int, seed: int) -> list[str]:
    """PNG data URLs, 56 px wide so a digit can be read, for the first THUMB_CAP mapped
    points (same order as the map)."""
    from core.projections import select_indices

    data = mnist()
    images, labels = ((data.x_train, data.y_train) if split == "train"
                      else (data.x_test, data.y_test))
    idx = select_indices(labels, n_points, seed)[:THUMB_CAP]
    return [neighbours_view.thumbnail(images[i]) for i in idx]


@st.cache_data(show_spinner=False, max_entries=32)
def knn_score(key: str, _embedding: np.ndarray, _labels: np.ndarray) -> float:
    from core.embeddings import knn_accuracy

    return knn_accuracy(_embedding, _labels, k=10)


@st.cache_resource(show_spinner="Predicting…", max_entries=8)
def probabilities(content: str, split: str, n_points: int, seed: int, _model) -> np.ndarray:
    """Keyed by the model's ``content`` (its weights), not its run id: a resumed run keeps
    its id."""
    from core.projections import point_probabilities, select_indices

    data = mnist()
    images, labels = ((data.x_train, data.y_train) if split == "train"
                      else (data.x_test, data.y_test))
    idx = select_indices(labels, n_points, seed)
    return point_probabilities(_model, images, labels, idx)


def chart_key(method: str, map_key: str) -> str:
    """The map chart's widget key: one per map, so a rectangle selected on one map (its
    region) never carries over to another method's or another source's map.

    >>> chart_key("pca", "abc") != chart_key("tsne", "abc")
    True
    """
    return f"proj_chart_{method}_{hashlib.sha1(map_key.encode()).hexdigest()[:12]}"


def watch(job, what: str) -> None:
    """A progress bar polled every second; reruns the page once the job is done."""
    @st.fragment(run_every=1.0)
    def poll() -> None:
        if job.done:
            st.rerun(scope="app")
        st.progress(max(job.fraction, 0.01),
                    text=f"{what}: {job.message} · {job.elapsed_s:.0f} s")
        st.caption("It runs in the background: you can change settings or visit other "
                   "pages meanwhile, and the result is kept on disk.")
    poll()


def finished(slot: str):
    """The result of this session's job in ``slot`` once done; errors are shown."""
    job = st.session_state.get(slot)
    if job is None or not job.done:
        return None
    st.session_state[slot] = None
    try:
        return job.result()
    except Exception as err:  # noqa: BLE001 - a sentence for the viewer, the rest logged
        show_error(err)
    return None


st.title("🗺️ Projections")
st.markdown("Each dot is one image, placed so that images the source finds similar land "
            "close together. Compare raw pixels with a trained model's layers: the "
            "penultimate Dense layer usually separates the ten digits far better.")
data, choices = data_and_models()

# -- settings -----------------------------------------------------------------------------
c = st.columns([2, 3, 3, 2])
method_label = c[0].radio("Method", list(METHOD_LABELS.values()), key="proj_method")
method = {v: k for k, v in METHOD_LABELS.items()}[method_label]
model_label = c[1].selectbox("Model", [NO_MODEL] + list(choices), key="proj_model",
                             help="Pick a model to map one of its layers, and to see its "
                                  "predictions in the tooltips.")
model, layer, choice = None, None, None
if model_label != NO_MODEL:
    choice = choices[model_label]
    try:
        model = load_choice(choice)
        from core.projections import feature_layers

        layers = feature_layers(model)
    except LayerLabError as err:
        show_error(err)
        st.stop()
    options = [PIXELS] + [f"{name} ({dim:,} values)" for name, dim in layers]
    source = c[2].selectbox("Source", options, index=max(len(options) - 2, 0),
                            key=f"proj_layer_{choice}",
                            help="The penultimate layer is preselected.")
    if source != PIXELS:
        layer = layers[options.index(source) - 1][0]
else:
    c[2].selectbox("Source", [PIXELS], key="proj_layer_none", disabled=True)
split = c[3].radio("Images", ["test", "train"], key="proj_split",
                   disabled=method != "umap",
                   help="The 60,000 training images can be mapped with UMAP.")
split = split if method == "umap" else "test"

c = st.columns([3, 1, 2, 2])
n_points = c[0].select_slider("Points", POINTS[split], value=2000,
                              key=f"proj_points_{split}",
                              format_func=lambda n: f"{n:,}")
seed = int(c[1].number_input("Seed", 0, 9999, 0, key="proj_seed"))
perplexity, n_neighbors, min_dist = 30.0, 15, 0.1
if method == "tsne":
    perplexity = float(c[2].slider("Perplexity", 5, 100, 30, key="proj_perplexity",
                                   help="About how many neighbours each point attends to."))
elif method == "umap":
    n_neighbors = int(c[2].slider("n_neighbors", 2, 100, 15, key="proj_neighbors",
                                  help="Small: local detail. Large: global structure."))
    min_dist = float(c[3].slider("min_dist", 0.0, 0.99, 0.1, 0.01, key="proj_min_dist",
                                 help="How tightly points may pack together."))

images, labels = ((data.x_train, data.y_train) if split == "train"
                  else (data.x_test, data.y_test))
try:
    request, _, key = resolve(
        ProjectionRequest(method, split, n_points, seed, perplexity, n_neighbors, min_dist,
                          layer), images, labels, model)
except LayerLabError as err:
    show_error(err)
    st.stop()

# -- the map: cached, computing, or to compute -----------------------------------------------
finished("proj_job")            # shows a failed job's sentence; the map is on disk
plan = plan_map(request, key, st.session_state.get("proj_job"))
proj, job = plan.projection, plan.job
if proj is None:
    if plan.action == "wait":
        watch(job, f"{method_label} of {n_points:,} points")
        st.stop()
    if plan.action == "compute":
        from core.projections import compute_projection

        with st.spinner("PCA…"):
            try:
                proj = compute_projection(request, images, labels, model)
            except LayerLabError as err:
                show_error(err)
                st.stop()
    else:
        if job is not None:
            st.info("Another map of yours is still being computed: computing this one "
                    "cancels it (one map per workspace at a time).")
        st.info(f"This {method_label} map of {n_points:,} points is not computed yet. "
                f"t-SNE of the 10,000 test images takes about half a minute, UMAP of all "
                f"60,000 training images a few minutes; maps are kept on disk afterwards.")
        if st.button(f"Compute the {method_label} map", key="proj_compute", type="primary"):
            try:
                st.session_state["proj_job"] = submit(request, images, labels, model,
                                                      workspace=st.session_state.workspace)
            except LayerLabError as err:
                show_error(err)
                st.stop()
            st.rerun()
        st.stop()

# -- points -----------------------------------------------------------------------------------
df = pd.DataFrame({"x": proj.embedding[:, 0], "y": proj.embedding[:, 1],
                   "digit": proj.labels.astype(int).astype(str),
                   "index": proj.indices.astype(int)})
thumbs = thumbnails(split, n_points, seed)
df["image"] = thumbs + [None] * (len(df) - len(thumbs))
tooltip = ["image", alt.Tooltip("digit:N", title="true digit"),
           alt.Tooltip("index:Q", title=f"{split} image #")]
highlight = False
if model is not None:
    probs = probabilities(content_key(model), split, n_points, seed, model)
    df["predicted"] = probs.argmax(axis=1).astype(int)
    df["confidence"] = probs.max(axis=1)
    df["correct"] = df["predicted"].astype(str) == df["digit"]
    tooltip += [alt.Tooltip("predicted:N", title="predicted"),
                alt.Tooltip("confidence:Q", title="confidence", format=".1%")]

# metrics as wide as their text, wrapping onto a second line on a narrow window (four
# equal columns cut "dropout3 · 1,152-D" to "dropout3 · 1…" at 1024 px)
m = st.container(horizontal=True, gap="large")
m.metric("Points", f"{len(df):,}", width="content")
m.metric("Source", f"{layer or 'pixels'} · {proj.feature_dim:,}-D",
         width="content")
m.metric("10-NN accuracy in 2-D", f"{knn_score(key, proj.embedding, proj.labels):.1%}",
         width="content",
         help="How often the 10 nearest dots on the map mostly share a dot's digit: a "
              "measure of how well the map separates the classes.")
m.metric("Computed in", f"{proj.seconds:.1f} s", width="content",
         help="Loaded from the disk cache." if proj.from_cache else "Just computed.")
if model is not None:
    wrong = int((~df["correct"]).sum())
    highlight = st.toggle(f"Highlight the {wrong:,} misclassified points", key="proj_wrong")

# -- the drawn digit (UMAP) -------------------------------------------------------------------
placed = None
current = handoff.current_digit()
drawn = None if current is None else current.image
if method == "umap":
    if drawn is None:
        st.caption("Draw a digit on the **Draw & inspect** page: it will be placed on this "
                   "map with its nearest training images.")
    else:
        got = finished("proj_fit_job")
        fitted = fitted_map(key) or got
        fit_job = st.session_state.get("proj_fit_job")
        if fitted is not None:
            try:
                placed = fitted.place(np.asarray(drawn, np.uint8), model)
            except LayerLabError as err:
                show_error(err)
        elif fit_job is not None and fit_job.key == key:
            watch(fit_job, "Fitting the map again to place your digit")
        elif st.button("📍 Place my drawn digit on this map", key="proj_place"):
            st.session_state["proj_fit_job"] = submit(request, images, labels, model,
                                                      kind="fit",
                                                      workspace=st.session_state.workspace)
            st.rerun()

# -- nearest neighbours: of a clicked dot (or a typed image #) or of the drawn digit ----------
map_chart_key = chart_key(method, key)
query = neighbours_view.choose(st.session_state.get(map_chart_key), proj.indices, split,
                               drawn)
hits = None
if query is not None:
    try:
        hits = neighbours_view.find(query, key, proj, images, model, layer)
    except LayerLabError as err:
        show_error(err)

# -- chart ------------------------------------------------------------------------------------
region = alt.selection_interval(name="region", encodings=["x", "y"])
pick = alt.selection_point(name=neighbours_view.PICK, fields=["index"], on="click")
legend = alt.selection_point(name="legend", fields=["digit"], bind="legend")
if highlight:
    opacity = alt.condition("datum.correct", alt.value(0.07), alt.value(1.0))
    size = alt.condition("datum.correct", alt.value(12), alt.value(60))
else:
    opacity = alt.condition(legend, alt.value(0.75), alt.value(0.05))
    size = alt.value(14 if len(df) > 5000 else 22)
points = alt.Chart(df).mark_circle().encode(
    x=alt.X("x:Q", title=None, axis=alt.Axis(labels=False, ticks=False)),
    y=alt.Y("y:Q", title=None, axis=alt.Axis(labels=False, ticks=False)),
    color=alt.Color("digit:N", title="true digit", scale=alt.Scale(scheme="category10"),
                    sort=[str(d) for d in range(10)]),
    opacity=opacity, size=size, tooltip=tooltip,
).add_params(region, legend, pick)
chart = points
if hits is not None:
    query_xy = hits.attrs.get("query_xy") or (None if placed is None else
                                               (float(placed[0]), float(placed[1])))
    chart = chart + neighbours_view.rings(hits, query_xy)
if placed is not None:
    star = alt.Chart(pd.DataFrame({"x": [float(placed[0])], "y": [float(placed[1])],
                                   "what": ["your drawn digit"]})).mark_point(
        shape="diamond", size=420, filled=True, color="black", stroke="white",
        strokeWidth=2).encode(x="x:Q", y="y:Q", tooltip=["what"])
    chart = chart + star
chart = chart.properties(height=560)
left, right = st.columns([3, 1]) if placed is not None else (st.container(), None)
with left:
    event = st.altair_chart(chart, width="stretch", key=map_chart_key,
                            on_select="rerun", selection_mode=["region", neighbours_view.PICK])
    st.caption(f"Hover a dot for its image (thumbnails for the first {THUMB_CAP:,} points), "
               f"click a dot to list its nearest neighbours, click a legend entry to pick a "
               f"digit, drag a rectangle to list its images.")
if right is not None:
    from core.projections import nearest_images

    with right:
        st.markdown("**Your digit**")
        st.image(enlarge(np.asarray(drawn, np.uint8), 112), width=112)
        idx, dist = nearest_images(data.x_train, np.asarray(drawn, np.uint8), k=8)
        st.markdown("**Nearest training images** (pixel distance)")
        st.image(enlarge(digit_grid(data.x_train[idx], cols=4), 240), width=240,
                 caption=", ".join(str(int(data.y_train[i])) for i in idx))

if method == "pca" and st.toggle("3-D view (three principal components, rotatable)",
                                 key="proj_3d"):
    neighbours_view.show_3d(key, proj, images, model, layer, hits)
if hits is not None:
    neighbours_view.show(hits, query, split, f"{layer} ({proj.feature_dim:,} values)"
                         if layer else "the raw pixels (784 values)", images)

# -- selected region --------------------------------------------------------------------------
box = ((event or {}).get("selection") or {}).get("region") or {}
if "x" in box and "y" in box:
    from core.projections import points_in_box

    inside = df.iloc[points_in_box(proj.embedding, box["x"], box["y"])]
    st.subheader(f"{plural(len(inside), 'image')} in the selected region")
    if len(inside):
        counts = inside["digit"].value_counts().sort_index()
        st.caption("By true digit: " + ", ".join(f"{d}: {n}" for d, n in counts.items()))
        sample = inside.head(REGION_MAX)
        grid = digit_grid(images[sample["index"].to_numpy()], cols=15)
        st.image(enlarge(grid, 2 * grid.shape[1]), width=2 * grid.shape[1])
        shown = ["index", "digit"] + (["predicted", "confidence"] if model is not None else [])
        st.dataframe(inside[shown].head(500), key="proj_region_table", hide_index=True)

# -- PCA variance -----------------------------------------------------------------------------
if proj.explained_variance is not None:
    ev = proj.explained_variance
    var = pd.DataFrame({"component": np.arange(1, len(ev) + 1), "explained": ev,
                        "cumulative": np.cumsum(ev)})
    st.subheader("Explained variance")
    base = alt.Chart(var).encode(x=alt.X("component:O", title="principal component"))
    bars = base.mark_bar().encode(y=alt.Y("explained:Q", title="share of variance",
                                          axis=alt.Axis(format="%")),
                                  tooltip=["component", alt.Tooltip("explained:Q",
                                                                    format=".2%")])
    line = base.mark_line(color="orange", point=True).encode(
        y=alt.Y("cumulative:Q", title="cumulative", axis=alt.Axis(format="%")),
        tooltip=["component", alt.Tooltip("cumulative:Q", format=".1%")])
    st.altair_chart(alt.layer(bars, line).resolve_scale(y="independent")
                    .properties(height=260), width="stretch", key="proj_variance")
    st.caption(f"The two components drawn above keep {ev[:2].sum():.0%} of the variance; "
               f"{len(ev)} keep {ev.sum():.0%}.")
