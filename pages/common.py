"""Streamlit glue shared by app.py and the pages: cached resources, session state, how a
run is labelled, how an error is shown, and two patches of Streamlit's internals.

Heavy libraries (TensorFlow, Keras) are imported inside the cached loaders only, so a
page that does not need them never pays for them. Every page imports this module, so the
patches are in place before any page runs on its own (see
:func:`_route_legacy_runs_through_app`).
"""
from __future__ import annotations

import logging
import runpy
import sys
from typing import Any

import streamlit as st

from core.errors import LayerLabError
from core.runs import Run, RunStore
from pages.workspace_ui import resolve_workspace

PRETRAINED_PREFIX = "pretrained:"
log = logging.getLogger(__name__)


# -- two patches of Streamlit internals, applied when this module is first imported -----
# Both replace a private function of Streamlit's script runner. tests/test_pages.py checks
# that Streamlit still has and calls each one and that the behaviour is still needed, and
# tests/e2e/test_navigation.py opens a deep link on a fresh server: a Streamlit upgrade
# that changes either fails there, loudly.

def _keep_keras_state_between_reruns() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every rerun.

    Streamlit does that when Keras is imported (its ``_clean_problem_modules``). Here it
    cost ~0.3 s of CPU per page view and threw away TensorFlow's kernel cache under the
    inspector and under runs training in other sessions. Layer Lab frees Keras state
    itself, once no run is training (``core.training.release_memory``).
    """
    from streamlit.runtime.scriptrunner import script_runner

    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = lambda: None


def _run_entry_point(main_script_path: str) -> None:
    """What Streamlit runs in legacy multipage mode: app.py, never a page on its own."""
    runpy.run_path(main_script_path, run_name="__main__")


def _route_legacy_runs_through_app() -> None:
    """Run app.py (sidebar, session defaults, ``st.navigation``) on every run, even the
    first run of a fresh server that opens a deep link such as ``/train``.

    A folder named ``pages/`` next to the entry point puts Streamlit in its legacy
    multipage mode until the first ``st.navigation`` call in the process (Streamlit 1.67
    has no setting for this). In that mode its script runner calls ``_mpa_v1``, which runs
    ``pages/train.py`` by itself: no sidebar, no session defaults. Here ``_mpa_v1`` runs
    app.py instead, whose ``st.navigation`` ends the legacy mode and runs the page. The run
    that imports this module first may already be inside the original ``_mpa_v1``: it is
    restarted, now in the normal mode (as ``st.navigation`` would have set it).
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx, script_runner

    if not hasattr(script_runner, "_mpa_v1"):
        log.warning("Streamlit has no _mpa_v1: deep links on a fresh server may open a "
                    "page without the sidebar; see pages/common.py.")
        return
    script_runner._mpa_v1 = _run_entry_point
    if PagesManager.uses_pages_directory and get_script_run_ctx() is not None:
        PagesManager.uses_pages_directory = False
        _rerun_after_this_import()


def _rerun_after_this_import() -> None:
    """Ask for a rerun that stops the script at its next Streamlit call, not here.

    ``st.rerun()`` raises at once, and raised inside this module's import it failed the
    import: a page thread waiting on the same import then took the half-run module object
    ("cannot import name 'device_label'", 10 of 30 sessions of a class opening a fresh
    server at once; tests/e2e/test_navigation.py). A queued request lets the import
    finish.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

    ctx = get_script_run_ctx()
    try:
        ctx.script_requests.request_rerun(RerunData(
            query_string=ctx.query_string, page_script_hash=ctx.page_script_hash))
    except (AttributeError, TypeError) as exc:     # Streamlit changed: the old way
        log.warning("Streamlit's rerun request changed (%r); rerunning at once", exc)
        st.rerun()


def init_session() -> None:
    """Session-state defaults shared by every page."""
    resolve_workspace()                                # a secret id; see workspace_ui
    st.session_state.setdefault("job", None)          # the TrainingJob of this session
    st.session_state.setdefault("session_models", {})  # run id -> keras model in memory
    st.session_state.setdefault("builder_spec", None)  # a ModelSpec from the Builder
    _keep_workspace_runs_alive()
    _start_map_process()
    _start_warm_ups()
    _yield_to_students()


def _yield_to_students() -> None:
    """The server's own visit of its pages runs below the students' page views, which it
    waits for (pages/self_visit.py)."""
    from core import priority
    from pages import self_visit

    if self_visit.is_own(st.query_params.get(self_visit.QUERY_KEY)):
        priority.lower_this_thread()       # this run's thread only: one per page run
    else:
        self_visit.note_page_view()


def _start_warm_ups() -> None:
    """At the server's first page view, start the Errors page's first evaluation in the
    background (core/page_warm_up.py); it starts TensorFlow on a low-priority thread, so
    training's compute pools run below the pages (core/priority.py). Once per server, a
    few milliseconds; the page itself never waits for TensorFlow (runs and model loads
    start it lowered themselves when the warm-up is off). Then the server opens each of
    its pages once itself, so a class's first views find them warm (pages/self_visit.py)."""
    from core import page_warm_up
    from pages import self_visit

    page_warm_up.start_errors_warm_up()
    if self_visit.visit_thread is None:       # (until it has started: a few lookups)
        self_visit.start_once(self_visit.stream_url(
            st.get_option("server.address") or "", int(st.get_option("server.port")),
            st.get_option("server.baseUrlPath") or "",
            tls=bool(st.get_option("server.sslCertFile"))))


def _start_map_process() -> None:
    """At the server's first page view, start the process that computes t-SNE and UMAP
    maps: it compiles UMAP while students are on other pages (core/embedding_worker.py).
    Once per server, in a few milliseconds; LAYERLAB_WARM_UP_MAPS=0 turns it off."""
    from core.embedding_worker import WORKER

    WORKER.start_once()


def sweep_live(ws: str) -> bool:
    """Whether workspace ``ws`` has a sweep in progress, without importing the sweep
    module: it is loaded only once a sweep page has been opened, and may be half-way
    through its import on another session's thread (its ``live`` not defined yet, when
    no sweep can have started either)."""
    live = getattr(sys.modules.get("core.sweep"), "live", None)
    return live is not None and live(ws) is not None


def _keep_workspace_runs_alive() -> None:
    """Tell the job registry a page of this workspace is open (every page view), and
    while the workspace has a live run, every 30 s from any page: a run is stopped as
    orphaned only when no page of its workspace is open (see core/jobs.py)."""
    from core.jobs import REGISTRY

    ws = st.session_state.get("workspace")
    if not ws:
        return
    REGISTRY.heartbeat(ws)
    if REGISTRY.live(ws) is not None or sweep_live(ws):
        st.fragment(_heartbeat, run_every=30)(ws)             # draws nothing


def _heartbeat(workspace: str) -> None:
    from core.jobs import REGISTRY

    REGISTRY.heartbeat(workspace)


@st.cache_resource(show_spinner="Loading MNIST…")
def mnist():
    """The data set, once per server process."""
    from core.data import load_mnist

    return load_mnist()


@st.cache_resource(show_spinner=False)
def device_info():
    """The training device; imports TensorFlow, so call it only where needed."""
    from core.device import detect

    return detect()


def device_label() -> str:
    """The device if TensorFlow is already loaded, else a cheap CPU description."""
    if "tensorflow" in sys.modules:
        return device_info().label
    from core.device import cpu_name

    return f"CPU: {cpu_name()} · GPU checked when training starts"


@st.cache_resource(show_spinner="Loading pretrained model…")
def pretrained_model(name: str):
    """The shared pretrained model (the pages' warm-up may have loaded it already)."""
    from core import pretrained

    return pretrained.shared_model(name)


@st.cache_data(show_spinner=False)
def pretrained_record(name: str) -> dict[str, Any]:
    from core import pretrained

    return pretrained.load_record(name).to_dict()


def store() -> RunStore:
    return RunStore()


def workspace_job():
    """This workspace's training job: the one the server holds for the workspace (so a
    reload or a second tab re-attaches to a live run), else this session's last one."""
    from core.jobs import REGISTRY

    job = REGISTRY.get(st.session_state.get("workspace") or "")
    if job is not None:
        st.session_state.job = job
    return st.session_state.get("job")


def session_runs() -> list[Run]:
    """This workspace's runs on disk plus any only kept in memory. A run still training
    in this process shows as running (on disk its last checkpoint reads as interrupted),
    so no page offers it for resume."""
    from core.jobs import REGISTRY

    live = REGISTRY.live_run_ids()
    runs = {r.id: r for r in store().list_runs(st.session_state.workspace)}
    for run in runs.values():
        if run.id in live:
            run.status = "running"
    job = workspace_job()
    if job is not None and job.done and job.run.id not in runs:
        runs[job.run.id] = job.run
    return sorted(runs.values(), key=lambda r: r.created, reverse=True)


def run_label(run: Run, *details: str) -> str:
    """A run as every page lists it: name and short id, then any details, comma-separated.

    ``run_label(run, "90.00%")`` -> ``"tiny · run 3f9a1c, 90.00%"``.
    """
    return ", ".join([f"{run.name} · run {run.id[-6:]}", *details])


def pretrained_label(name: str) -> str:
    """A pretrained preset as every page lists it."""
    return f"{name} (pretrained)"


def model_choices() -> dict[str, str]:
    """Label -> key for every model a page can use: pretrained presets, then runs."""
    from core import pretrained

    choices = {pretrained_label(n): PRETRAINED_PREFIX + n for n in pretrained.available()}
    for run in session_runs():
        if run.status in ("finished", "stopped") and run.test_accuracy is not None:
            choices[run_label(run, f"{run.test_accuracy:.2%}")] = run.id
    return choices


def load_choice(key: str):
    """The Keras model behind a :func:`model_choices` key."""
    if key.startswith(PRETRAINED_PREFIX):
        return pretrained_model(key[len(PRETRAINED_PREFIX):])
    models = st.session_state.session_models
    if key not in models:
        models[key] = store().load_model(key)
    return models[key]


def data_available() -> bool:
    """Whether MNIST can be used. Cheap after the first call: a failed download is not
    tried again on each page view (see :func:`core.data.load_mnist`). Pages disable
    what needs the data while this is False, and say why with :func:`show_data_problem`."""
    from core.data import data_problem

    return data_problem() is None


def show_data_problem() -> None:
    """Why MNIST is missing (a sentence, no path), with a button to try the download again."""
    from core.data import data_problem, try_again

    problem = data_problem()
    if problem is None:
        return
    show_error(problem)
    if st.button("Try again", key="data_try_again",
                 help="Look for mnist.npz again and retry the download once."):
        try_again()
        st.rerun()


def require_mnist():
    """MNIST for a page that cannot work without it; else why (and "Try again"), and stop."""
    if not data_available():
        show_data_problem()
        st.stop()
    return mnist()


def data_and_models():
    """(MNIST, :func:`model_choices`) for a page; without MNIST, why (and "Try again"),
    then stop; on another LayerLabError, its sentence and stop."""
    data = require_mnist()
    try:
        return data, model_choices()
    except LayerLabError as err:
        show_error(err)
        st.stop()


def show_error(err: Exception) -> None:
    """A user-facing error: a LayerLabError's sentence; anything else is logged here on
    the server and the viewer gets a plain sentence (no exception text, no paths)."""
    if isinstance(err, LayerLabError):
        st.error(str(err), icon="⚠️")
    else:
        log.error("Unexpected error on a page", exc_info=err)
        st.error("Something went wrong on the server. Reload the page and try again; if it "
                 "keeps happening, tell the person who runs Layer Lab (the details are in "
                 "the server's log).", icon="⚠️")


# Last, so that the module is whole even if a rerun is raised here (see above).
_keep_keras_state_between_reruns()
_route_legacy_runs_through_app()
