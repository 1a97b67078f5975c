"""Compare, "Watch them learn side by side": the pinned runs' snapshots (see
:mod:`core.snapshots`) on one epoch slider, each run clamped to its own snapshots, drawn
with the Train page's replay pictures (:mod:`pages.train_replay`); their weight and
gradient norms as curves over the epochs, overlaid."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.snapshots import accuracy, index_at, shared_epochs
from core.wording import plural
from pages.common import PRETRAINED_PREFIX
from pages.train_replay import PLAY_EVERY_S, picture_url, probs_spec, snapshot_set
from pages.widgets import arrow_datasets, confusion_spec

PER_ROW = 3                        # runs side by side; more pinned runs wrap to a new row
Snapshots = tuple[list[dict[str, Any]], dict[str, Any]]


def source(key: str) -> tuple[str, str]:
    """A Compare run key as a replay source: ("pretrained", name) or ("run", id).

    >>> source("pretrained:fast_cnn"), source("3f9a1c")
    (('pretrained', 'fast_cnn'), ('run', '3f9a1c'))
    """
    if key.startswith(PRETRAINED_PREFIX):
        return "pretrained", key[len(PRETRAINED_PREFIX):]
    return "run", key


def missing_sentence(names: list[str]) -> str:
    """Which pinned runs cannot be replayed, in one sentence.

    >>> missing_sentence(["a"]).split(" (")[0], missing_sentence(["a", "b", "c"]).split(" (")[0]
    ('a has no snapshots to replay', 'a, b and c have no snapshots to replay')
    """
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return (f"{who} {'has' if len(names) == 1 else 'have'} no snapshots to replay (runs "
            "trained before snapshots existed have none, and only some presets ship theirs).")


def norm_rows(sets: dict[str, Snapshots], label: Callable[[str], str]) -> pd.DataFrame:
    """Each run's whole-network weight and gradient norm (the L2 norm over its layers)
    at every snapshot; a zero norm has no place on a log scale and is left out."""
    rows = [{"run": label(key), "epoch": float(s["epoch"]), "of": what,
             "norm": float(np.linalg.norm(np.asarray(s[field], np.float64)))}
            for key, (snaps, _) in sets.items() for s in snaps
            for field, what in (("weight_norm", "weights"), ("grad_norm", "gradient"))]
    return pd.DataFrame([r for r in rows if r["norm"] > 0])


def norms_over_epochs(rows: pd.DataFrame, what: str, epoch: float) -> alt.LayerChart:
    """One norm (``what``: "weights" or "gradient") of every run over the epochs, the
    runs overlaid, a rule at the slider's epoch."""
    lines = alt.Chart(rows[rows["of"] == what]).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch"),
        y=alt.Y("norm:Q", scale=alt.Scale(type="log"), title="L2 norm (log)"),
        color=alt.Color("run:N", title="run", scale=alt.Scale(scheme="tableau10"),
                        legend=alt.Legend(orient="right", labelLimit=0)),
        tooltip=["run", alt.Tooltip("epoch:Q", format=".2f"),
                 alt.Tooltip("norm:Q", format=".3g")])
    rule = alt.Chart(pd.DataFrame({"epoch": [epoch]})).mark_rule(color="#888888").encode(
        x="epoch:Q")
    title = ("Weight norm of the whole network" if what == "weights" else
             "Gradient norm of the whole network (one batch)")
    return (lines + rule).properties(height=230, title=title)


def norms_key(sets: dict[str, Snapshots], label: Callable[[str], str]) -> str:
    """A digest of what the norm curves of ``sets`` show: each run's name, epochs and
    norms (a few hundred numbers: far cheaper than hashing their rows as a table).

    >>> snaps = [{"epoch": 1.0, "weight_norm": np.ones(2), "grad_norm": np.ones(2)}]
    >>> one, other = {"a": (snaps, {})}, {"a": (snaps[:0], {})}
    >>> norms_key(one, str) == norms_key(one, str), norms_key(one, str) == norms_key(other, str)
    (True, False)
    """
    digest = hashlib.sha1()
    for key, (snaps, _) in sets.items():
        digest.update(f"{label(key)}\x00{len(snaps)}\x00".encode())
        for snap in snaps:
            for field in ("epoch", "weight_norm", "grad_norm"):
                digest.update(np.asarray(snap[field], np.float64).tobytes())
    return digest.hexdigest()


# Every view of Compare draws these (and a playing slider redraws them each step): kept as
# Vega-Lite specs per content, as Altair takes ~0.05-0.1 s of the server's CPU per chart.
@st.cache_data(max_entries=64, show_spinner=False)
def norms_over_epochs_specs(key: str, _sets: dict[str, Snapshots],
                            _label: Callable[[str], str], epoch: float) -> list[tuple[str, dict]]:
    """The weight and gradient norm charts (:func:`norms_over_epochs`) of ``_sets`` as
    ``(what, Vega-Lite spec)`` pairs, none when no run has a norm; made once per content
    (``key``: :func:`norms_key`) and slider position."""
    rows = norm_rows(_sets, _label)
    if rows.empty:
        return []
    return [(what, arrow_datasets(norms_over_epochs(rows, what, epoch).to_dict()))
            for what in ("weights", "gradient")]


def run_column(col, key: str, name: str, snaps: list[dict[str, Any]], meta: dict[str, Any],
               epoch: float) -> None:
    """One run at the slider's epoch: filters, probe probabilities, accuracy, confusion."""
    i = index_at([float(s["epoch"]) for s in snaps], epoch)
    snap, last = snaps[i], float(snaps[-1]["epoch"])
    col.text(name)
    when = f"snapshot at epoch {float(snap['epoch']):.2f}"
    col.caption(when + (f" (its run ends at epoch {last:g})" if epoch > last + 5e-4 else ""))
    if "filters" in snap:
        col.image(picture_url("filters", snap["filters"]),
                  caption="First conv layer's filters (blue −, red +)")
    else:
        col.caption("No conv layer: no filters to show.")
    label = int(meta["probe_label"]) if "probe_label" in meta else None
    if "probe" in meta:
        col.image(picture_url("probe", meta["probe"]), width=84, caption=f"probe: a {label}")
    col.vega_lite_chart(spec=probs_spec(np.asarray(snap["probs"], np.float32), label),
                        width="stretch", key=f"compare_snap_probs_{key}")
    col.text(f"Validation accuracy: {accuracy(snap['confusion']):.2%}")
    col.vega_lite_chart(spec=confusion_spec(np.asarray(snap["confusion"]), height=260),
                        width="stretch", key=f"compare_snap_cm_{key}")


def snapshots_section(pinned: list[str], label: Callable[[str], str]) -> None:
    """The side-by-side replay of the ``pinned`` run keys (``label`` names a key)."""
    st.subheader("Watch them learn side by side")
    sets: dict[str, Snapshots] = {}
    for key in pinned:
        got = snapshot_set(*source(key))
        if got is not None:
            sets[key] = got
    missing = [label(k) for k in pinned if k not in sets]
    if missing:
        st.text(missing_sentence(missing))
    if not sets:
        return
    if any(source(k)[0] == "pretrained" for k in sets):
        st.caption("A preset's snapshots come from another training with its recipe (the "
                   "shipped weights come from their own training).")
    epochs = shared_epochs([float(s["epoch"]) for s in snaps] for snaps, _ in sets.values())
    st.caption(f"One slider for {plural(len(sets), 'run')}: each shows its last snapshot "
               "at or before the chosen epoch (its last one once its run has ended).")
    playing = st.toggle("▶ Play", key="compare_snap_play", help="Steps through the epochs.")
    # One slider per set of runs: a stored position always fits its options.
    pos_key = "compare_snap_pos_" + hashlib.sha1("|".join(sets).encode()).hexdigest()[:10]
    norms = norms_key(sets, label)

    def frame() -> None:
        if pos_key in st.session_state:     # a resumed run may have changed the epochs
            at = min(int(st.session_state[pos_key]), len(epochs) - 1)
            st.session_state[pos_key] = (at + 1) % len(epochs) if playing else at
        j = st.select_slider("Epoch", list(range(len(epochs))), key=pos_key,
                             format_func=lambda k: f"epoch {epochs[k]:g}")
        keys = list(sets)
        for start in range(0, len(keys), PER_ROW):
            cols = st.columns(PER_ROW)
            for col, key in zip(cols, keys[start:start + PER_ROW]):
                run_column(col, key, label(key), *sets[key], epochs[j])
        for what, spec in norms_over_epochs_specs(norms, sets, label, epochs[j]):
            # full width, the legend at the side: Streamlit's height includes a legend's,
            # and one below a half-width chart leaves its plot no room
            st.vega_lite_chart(spec=spec, width="stretch", key=f"compare_snap_{what}")

    st.fragment(frame, run_every=PLAY_EVERY_S if playing else None)()
