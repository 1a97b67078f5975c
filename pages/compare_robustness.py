"""Compare, "How little it takes to fool them": per pinned run, the median L∞ budget
that flips the first 100 test images (see :func:`core.adversarial.robustness`),
computed on request and cached per model's content."""
from __future__ import annotations

import logging
import math
import threading

import pandas as pd
import streamlit as st

from core.errors import LayerLabError
from pages.common import load_choice, require_mnist, show_error
from pages.widgets import arrow_table

N_IMAGES = 100
_FIGURES = "compare_robustness"   # run key -> (stamp, median ε, share never flipped)
_TASK = "compare_robust_task"     # the RobustnessTask while it runs
log = logging.getLogger(__name__)


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
    task = st.session_state.get(_TASK)
    running = isinstance(task, RobustnessTask) and not task.done.is_set()
    if st.button("Compute robustness", key="compare_robust_go", disabled=running,
                 help="About 3–15 s per model on a CPU, in the background; kept for each "
                      "model's weights."):
        task = _start(pinned, stamps, label)
        running = task is not None
    if running:
        _watch()
    elif isinstance(task, RobustnessTask):          # finished: keep its figures
        known = {**known, **task.figures}
        st.session_state[_FIGURES] = known
        st.session_state.pop(_TASK, None)
        if task.problem:
            st.error(task.problem, icon="⚠️")
    rows = []
    for key in pinned:
        entry = known.get(key)
        fresh = (isinstance(entry, tuple) and len(entry) == 3
                 and entry[0] == stamps.get(key, "")
                 and all(isinstance(v, float) for v in entry[1:]))
        rows.append({"run": label(key), "median ε": _eps_text(entry[1]) if fresh else "—",
                     "never flipped": f"{entry[2]:.0%}" if fresh else "—"})
    st.dataframe(arrow_table(pd.DataFrame(rows)), hide_index=True, width="stretch",
                 key="compare_robust_table")


class RobustnessTask:
    """The figures for some models, computed on a worker thread that never touches
    Streamlit (the page polls :attr:`done`); models are loaded on the script thread."""

    def __init__(self, models: list[tuple[str, str, str, object]], images) -> None:
        self.models, self.images = models, images    # (key, stamp, name, keras model)
        self.figures: dict[str, tuple[str, float, float]] = {}
        self.current, self.problem = "", ""
        self.done = threading.Event()
        threading.Thread(target=self._run, name="layerlab-robustness", daemon=True).start()

    def _run(self) -> None:
        from core.adversarial import robustness  # noqa: PLC0415  (TensorFlow: on request)
        from core.inspector import on_worker  # noqa: PLC0415

        try:
            for key, stamp, name, model in self.models:
                self.current = name
                # On the one TensorFlow worker thread the inspector uses: building the
                # attack's sub-model of a model that a page is calling at the same moment
                # from another thread failed inside Keras' input checks.
                result = on_worker(robustness, model, self.images)
                self.figures[key] = (stamp, result.median,
                                     float((result.budgets == math.inf).mean()))
        except LayerLabError as err:
            self.problem = str(err)
        except Exception:  # noqa: BLE001 - logged; the viewer gets a sentence
            log.exception("robustness computation failed")
            self.problem = "The robustness figures could not be computed. Try again."
        finally:
            self.done.set()


def _start(pinned: list[str], stamps: dict, label) -> "RobustnessTask | None":
    """Load the pinned models here, then compute in the background."""
    data = require_mnist()
    try:
        models = [(key, stamps.get(key, ""), label(key), load_choice(key)) for key in pinned]
    except LayerLabError as err:
        show_error(err)
        return None
    task = RobustnessTask(models, data.x_test[:N_IMAGES])
    st.session_state[_TASK] = task
    return task


@st.fragment(run_every=1.0)
def _watch() -> None:
    """While the task runs: which model it is on; once done, one full rerun shows it."""
    task = st.session_state.get(_TASK)
    if not isinstance(task, RobustnessTask) or task.done.is_set():
        st.rerun(scope="app")
    st.info(f"Looking for the smallest perturbations for {task.current or '…'} "
            f"({len(task.figures)} of {len(task.models)} done)…")


def _stamp(run) -> str:
    """What changes when a run is trained further."""
    return f"{run.epochs_done}:{run.test_accuracy}:{run.wall_time_s}"


def _eps_text(value: float) -> str:
    """``0.075`` -> ``"0.075"``; an infinite median -> a word."""
    return "more than 0.5" if math.isinf(value) else f"{value:.3f}"
