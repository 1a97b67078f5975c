"""Watch it learn, on the Train page: the live snapshot of a training run, the replay of
any run's snapshots (epoch slider and play), and "one more epoch" (the resume path as one
click). Snapshots are taken by :mod:`core.snapshots` and read through :mod:`core.runs`."""
from __future__ import annotations

import logging
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.errors import LayerLabError
from core.imaging import SEPARATOR, colorize, tile_grid
from core.pretrained import CACHED_DIR
from core.runs import read_snapshots
from core.snapshots import accuracy, unpack
from pages.common import pretrained_label, run_label, session_runs, show_error, store
from pages.widgets import arrow_datasets, confusion_spec

log = logging.getLogger(__name__)
PLAY_EVERY_S = 0.8                 # seconds between two snapshots while playing
NO_SNAPSHOTS = "No snapshots for this run (runs trained before snapshots existed have none)."
PRESET_NOTE = ("Snapshots of another training of this preset with the same recipe (the "
               "shipped weights come from their own training).")


def set_probe(job: Any) -> None:
    """Probe the run with the digit picked on Draw & inspect (a test image), if any."""
    job.probe_index = int(st.session_state.get("draw_test_pick") or 0)


def filters_image(filters: np.ndarray) -> np.ndarray:
    """First-layer filters (kh, kw, n) as one RGB grid, blue negative, red positive."""
    top = float(np.max(np.abs(filters))) or 1.0
    scale = max(1, 40 // filters.shape[0])
    tiles = np.stack([colorize(filters[..., i], -top, top, "diverging", scale=scale)
                      for i in range(filters.shape[-1])])
    return tile_grid(tiles, cols=8, pad=2, pad_value=SEPARATOR)


def maps_image(maps: np.ndarray) -> np.ndarray:
    """Quantised first-layer maps (h, w, n) of the probe as one RGB grid."""
    scale = max(1, 56 // maps.shape[0])
    tiles = np.stack([colorize(maps[..., i], -127, 127, "diverging", scale=scale)
                      for i in range(maps.shape[-1])])
    return tile_grid(tiles, cols=8, pad=2, pad_value=SEPARATOR)


def probe_image(probe: np.ndarray) -> np.ndarray:
    """The run's probe digit (stored as float16 in [0, 1], 28×28×1) as gray levels 0–255."""
    return np.clip(np.asarray(probe, np.float32)[..., 0], 0, 1) * 255


PICTURES = {"filters": filters_image, "maps": maps_image, "probe": probe_image}


@st.cache_data(max_entries=256, show_spinner=False)
def picture_url(kind: str, values: np.ndarray) -> str:
    """A snapshot's picture (``kind``: "filters", "maps" or the "probe" digit) as a PNG
    ``data:`` URL, drawn and encoded once per content: ``st.image`` passes a URL on
    untouched but encodes an array again at every view and every step of a replay."""
    from core.analysis import png_data_url

    return png_data_url(np.rint(PICTURES[kind](np.asarray(values, np.float32))))


def probs_chart(probs: np.ndarray, label: int | None) -> alt.Chart:
    """The probe's probabilities per digit, its true digit highlighted."""
    df = pd.DataFrame({"digit": [str(d) for d in range(10)],
                       "probability": np.asarray(probs, np.float32),
                       "true": [d == label for d in range(10)]})
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("digit:N", sort=None), y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("true:N", legend=None,
                        scale=alt.Scale(domain=[False, True], range=["#9ecae9", "#d62728"])),
        tooltip=["digit", alt.Tooltip("probability:Q", format=".3f")],
    ).properties(height=200)


def norms_chart(snap: dict[str, Any], layers: list[str]) -> alt.Chart:
    """Weight and gradient norm per layer (log scale: they differ by orders); a zero
    norm has no place on it and is left out (no rows at all: an empty chart)."""
    rows = [{"layer": name, "norm": float(snap[key][i]), "of": what}
            for key, what in (("weight_norm", "weights"), ("grad_norm", "gradient"))
            for i, name in enumerate(layers[:len(snap[key])]) if snap[key][i] > 0]
    df = pd.DataFrame(rows, columns=["layer", "norm", "of"])   # columns even when empty
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("layer:N", sort=None),
        y=alt.Y("norm:Q", scale=alt.Scale(type="log"), title="L2 norm (log)"),
        color=alt.Color("of:N", title=None),
        tooltip=["layer", "of", alt.Tooltip("norm:Q", format=".3g")],
    ).properties(height=260, title="Weight and gradient norm per layer")


# A live run's view redraws every half second, its snapshot only every so often: the
# charts are kept as Vega-Lite specs per content (Altair takes ~0.05 s to build each).
@st.cache_data(max_entries=64, show_spinner=False)
def probs_spec(probs: np.ndarray, label: int | None) -> dict:
    """:func:`probs_chart` as a Vega-Lite spec, made once per content."""
    return arrow_datasets(probs_chart(probs, label).to_dict())


@st.cache_data(max_entries=64, show_spinner=False)
def norms_spec(weight_norm: np.ndarray, grad_norm: np.ndarray,
               layers: tuple[str, ...]) -> dict:
    """:func:`norms_chart` as a Vega-Lite spec, made once per content."""
    snap = {"weight_norm": weight_norm, "grad_norm": grad_norm}
    return arrow_datasets(norms_chart(snap, list(layers)).to_dict())


# The live curves are redrawn at every poll of every watching tab: the chart's spec is made
# by Altair once per title (~0.05 s of the server's CPU each) and the data passed beside it.
@st.cache_data(max_entries=8, show_spinner=False)
def curve_spec(title: str) -> dict:
    """The Vega-Lite spec of a loss or accuracy curve chart, without its data."""
    spec = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=30)).encode(
        x=alt.X("epoch:Q", title="epoch"),
        y=alt.Y("value:Q", title=title.lower(), scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None,
                        scale=alt.Scale(domain=["per batch (smoothed)", "train",
                                                "validation"],
                                        range=["#9ecae9", "#1f77b4", "#d62728"]),
                        legend=alt.Legend(orient="bottom", direction="horizontal",
                                          labelLimit=180)),
        tooltip=["series:N", alt.Tooltip("epoch:Q", format=".2f"),
                 alt.Tooltip("value:Q", format=".4f")],
    ).properties(title=title, height=260).to_dict()
    for key in ("data", "datasets"):           # Altair's empty placeholder: the data comes
        spec.pop(key, None)                    # with st.vega_lite_chart's own argument
    return spec


def show_snapshot(snap: dict[str, Any], meta: dict[str, Any], key: str,
                  previous: dict[str, Any] | None = None) -> None:
    """One snapshot: filters, the probe's probabilities and maps, norms, confusion."""
    label = int(meta["probe_label"]) if "probe_label" in meta else None
    left, mid, right = st.columns(3)
    if "filters" in snap:
        left.image(picture_url("filters", snap["filters"]),
                   caption="First conv layer's filters (blue −, red +)")
        right.image(picture_url("maps", snap["maps"]),
                    caption="The probe digit's first-layer feature maps")
    else:
        left.caption("This network has no conv layer: no filters or feature maps.")
    if "probe" in meta:
        mid.image(picture_url("probe", meta["probe"]), width=84,
                  caption=f"Probe digit (a {label})")
    mid.vega_lite_chart(spec=probs_spec(np.asarray(snap["probs"], np.float32), label),
                        width="stretch", key=f"{key}_probs")
    cm = np.asarray(snap["confusion"])
    text = f"Validation accuracy at this point: {accuracy(cm):.2%}"
    if previous is not None:
        text += f" (was {accuracy(previous['confusion']):.2%})"
    st.text(text)
    c = st.columns(2)
    layers = tuple(str(n) for n in meta.get("layers", []))
    if layers:
        c[0].vega_lite_chart(spec=norms_spec(np.asarray(snap["weight_norm"]),
                                             np.asarray(snap["grad_norm"]), layers),
                             width="stretch", key=f"{key}_norms")
    else:   # a resume's earlier snapshot, a moment before training begins and names them
        c[0].caption("Weight and gradient norms per layer: shown once training begins.")
    c[1].vega_lite_chart(spec=confusion_spec(cm, height=260), width="stretch",
                         key=f"{key}_cm")


def live_view(job: Any) -> None:
    """The newest snapshot of a training job (called from the live fragment)."""
    snaps = getattr(job, "snapshots", None)
    snap = snaps.latest() if snaps is not None else None
    if snap is None:
        return
    with st.expander(f"Watch it learn — snapshot at epoch {float(snap['epoch']):.2f}",
                     expanded=True):
        show_snapshot(snap, snaps.meta(), key="live_snap")


def replay_sources() -> dict[str, tuple[str, str]]:
    """Label -> ("run", id) or ("pretrained", name): this workspace's runs that ended,
    then the presets shipped with snapshots."""
    out = {run_label(r, r.status): ("run", r.id) for r in session_runs()
           if r.status in ("finished", "stopped", "interrupted")}
    for path in sorted(CACHED_DIR.glob("*.snapshots.npz")):
        name = path.name.removesuffix(".snapshots.npz")
        out[pretrained_label(name)] = ("pretrained", name)
    return out


def load_source(kind: str, name: str) -> dict[str, Any] | None:
    """The snapshot arrays of a run or a shipped preset, or None."""
    if kind == "pretrained":
        return read_snapshots(CACHED_DIR / f"{name}.snapshots.npz")
    try:
        return store().load_snapshots(name)
    except LayerLabError:
        return None


def snapshot_set(kind: str, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The snapshots of a run or a shipped preset (see :func:`load_source`) and their
    shared metadata, or None when it has none."""
    arrays = load_source(kind, name)
    if not arrays or not len(arrays.get("epoch", ())):
        return None
    return unpack(arrays)


def replay() -> None:
    """Replay any ended run's snapshots: a slider over them and a play button."""
    sources = replay_sources()
    if not sources:
        return
    st.subheader("Replay: watch it learn")
    options = list(sources)
    if st.session_state.get("replay_options") != options:
        # A run ended (or another appeared): show the newest first, as a fresh page would,
        # rather than keep an old default the user never chose.
        st.session_state["replay_options"] = options
        st.session_state["replay_source"] = options[0]
    choice = st.selectbox("Run to replay", options, key="replay_source")
    got = snapshot_set(*sources[choice])
    if got is None:
        st.info(NO_SNAPSHOTS)
        return
    if sources[choice][0] == "pretrained":
        st.caption(PRESET_NOTE)
    snaps, meta = got
    n = len(snaps)
    playing = st.toggle("▶ Play", key="replay_play", help="Steps through the snapshots.")
    pos_key = f"replay_pos_{sources[choice][1]}"

    def frame() -> None:
        if playing and pos_key in st.session_state:
            st.session_state[pos_key] = (st.session_state[pos_key] + 1) % n
        i = st.select_slider("Snapshot", list(range(n)), key=pos_key,
                             format_func=lambda j: f"epoch {float(snaps[j]['epoch']):.2f}")
        show_snapshot(snaps[i], meta, key="replay_snap",
                      previous=snaps[i - 1] if i > 0 else None)

    st.fragment(frame, run_every=PLAY_EVERY_S if playing else None)()


def step_button(job: Any, workspace: str) -> None:
    """"One more epoch" for the run that just ended: resume it for exactly one epoch
    (the resume path as one click); the live view and the replay show what changed."""
    from core.jobs import REGISTRY  # noqa: PLC0415
    from core.recipe import Recipe  # noqa: PLC0415
    from core.spec import ModelSpec  # noqa: PLC0415
    from core import backend  # noqa: PLC0415

    run = job.run
    if run.status not in ("finished", "stopped", "interrupted") or run.epochs_done < 1:
        return
    if not st.button("⏭ One more epoch", key="train_step",
                     help="Train this run for exactly one more epoch, then compare the "
                          "snapshots before and after in the replay below."):
        return
    try:
        if job.model is not None:
            st.session_state.session_models[run.id] = job.model
        step = backend.current().new_job(ModelSpec.from_dict(run.spec),
                                         Recipe.from_dict(run.recipe).replace(epochs=1),
                                         workspace=workspace, store=store(), resume=run,
                                         model=job.model)
        set_probe(step)
        st.session_state.job = REGISTRY.submit(workspace, step)   # refused with a sentence
        st.rerun()
    except LayerLabError as err:
        show_error(err)
