"""Compare, "How little it takes to fool them": per pinned run, the median L∞ budget
that flips the first 100 test images (see :func:`core.adversarial.robustness`),
computed on request and cached per model's content."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from core.errors import LayerLabError
from pages.common import load_choice, require_mnist, show_error

N_IMAGES = 100
_FIGURES = "compare_robustness"   # run key -> (stamp, median ε, share never flipped)


def robustness_section(pinned: list[str], runs: dict, label) -> None:
    """The table for the ``pinned`` run keys (``runs``: key -> Run; ``label`` names a
    key). A figure is shown while its run's stamp holds: a resumed run keeps its key but
    not its weights."""
    stamps = {key: _stamp(runs[key]) for key in pinned if key in runs}
    st.subheader("How little it takes to fool them")
    st.caption(f"The median ε (the largest change of any one pixel, in [0, 1]) that makes "
               f"each model change its answer on the first {N_IMAGES} test images, found by "
               "small gradient steps (PGD). Larger is more robust.")
    known = st.session_state.get(_FIGURES)
    known = known if isinstance(known, dict) else {}
    if st.button("Compute robustness", key="compare_robust_go",
                 help="About 3–15 s per model on a CPU; kept for each model's weights."):
        known = dict(known)
        for key in pinned:
            figure = _compute(key, label(key))
            if figure is not None:
                known[key] = (stamps.get(key, ""), *figure)
        st.session_state[_FIGURES] = known
    rows = []
    for key in pinned:
        entry = known.get(key)
        fresh = (isinstance(entry, tuple) and len(entry) == 3
                 and entry[0] == stamps.get(key, "")
                 and all(isinstance(v, float) for v in entry[1:]))
        rows.append({"run": label(key), "median ε": _eps_text(entry[1]) if fresh else "—",
                     "never flipped": f"{entry[2]:.0%}" if fresh else "—"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 key="compare_robust_table")


def _compute(key: str, name: str) -> tuple[float, float] | None:
    """(median ε, share never flipped up to the largest budget) for one run, or None with
    a sentence shown."""
    from core.adversarial import robustness  # noqa: PLC0415  (TensorFlow: on request)

    data = require_mnist()
    try:
        model = load_choice(key)
        with st.spinner(f"Looking for the smallest perturbations for {name}…"):
            result = robustness(model, data.x_test[:N_IMAGES])
    except LayerLabError as err:
        show_error(err)
        return None
    return result.median, float((result.budgets == math.inf).mean())


def _stamp(run) -> str:
    """What changes when a run is trained further."""
    return f"{run.epochs_done}:{run.test_accuracy}:{run.wall_time_s}"


def _eps_text(value: float) -> str:
    """``0.075`` -> ``"0.075"``; an infinite median -> a word."""
    return "more than 0.5" if math.isinf(value) else f"{value:.3f}"
