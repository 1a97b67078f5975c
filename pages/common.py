"""Streamlit glue shared by the pages: cached resources, session state, small widgets.

Heavy libraries (TensorFlow, Keras) are imported inside the cached loaders only, so a
page that does not need them never pays for them.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import streamlit as st

from core.errors import LayerLabError
from core.runs import Run, RunStore
from pages.workspace_ui import resolve_workspace

PRETRAINED_PREFIX = "pretrained:"
APP_SCRIPT = Path(__file__).resolve().parents[1] / "app.py"


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


_keep_keras_state_between_reruns()


def page_guard() -> None:
    """Route a deep link through app.py on a freshly started server.

    Streamlit treats an app that has a ``pages/`` folder as an old-style multipage app
    until the first ``st.navigation`` call; a first visitor who opens e.g. ``/train``
    directly would get that page without app.py (no sidebar, no session defaults).
    Every page calls this first: in that mode it runs app.py in its place (app.py's
    ``st.navigation`` switches the old mode off and runs this page again, with the
    sidebar and defaults), then ends this outer run. Widget events are kept.
    """
    import runpy

    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP_SCRIPT), run_name="__main__")
        st.stop()


def init_session() -> None:
    """Session-state defaults shared by every page."""
    resolve_workspace()                                # a secret id; see workspace_ui
    st.session_state.setdefault("job", None)          # the TrainingJob of this session
    st.session_state.setdefault("session_models", {})  # run id -> keras model in memory
    st.session_state.setdefault("builder_spec", None)  # a ModelSpec from the Builder


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
    from core import pretrained

    return pretrained.load_model(name)


@st.cache_data(show_spinner=False)
def pretrained_record(name: str) -> dict[str, Any]:
    from core import pretrained

    return pretrained.load_record(name).to_dict()


def store() -> RunStore:
    return RunStore()


def session_runs() -> list[Run]:
    """This workspace's runs on disk plus any only kept in memory."""
    runs = {r.id: r for r in store().list_runs(st.session_state.workspace)}
    job = st.session_state.get("job")
    if job is not None and job.progress.done and job.run.id not in runs:
        runs[job.run.id] = job.run
    return sorted(runs.values(), key=lambda r: r.created, reverse=True)


def model_choices() -> dict[str, str]:
    """Label -> key for every model a page can use: pretrained presets, then runs."""
    from core import pretrained

    choices = {f"{n} (pretrained)": PRETRAINED_PREFIX + n for n in pretrained.available()}
    for run in session_runs():
        if run.status in ("finished", "stopped") and run.test_accuracy is not None:
            acc = f", {run.test_accuracy:.2%}" if run.test_accuracy is not None else ""
            choices[f"{run.name} · run {run.id[-6:]}{acc}"] = run.id
    return choices


def load_choice(key: str):
    """The Keras model behind a :func:`model_choices` key."""
    if key.startswith(PRETRAINED_PREFIX):
        return pretrained_model(key[len(PRETRAINED_PREFIX):])
    models = st.session_state.session_models
    if key not in models:
        models[key] = store().load_model(key)
    return models[key]


def data_and_models():
    """(MNIST, :func:`model_choices`) for a page; on a LayerLabError, its sentence and stop."""
    try:
        return mnist(), model_choices()
    except LayerLabError as err:
        show_error(err)
        st.stop()


def show_error(err: Exception) -> None:
    """A user-facing error: the sentence, never a traceback."""
    if isinstance(err, LayerLabError):
        st.error(str(err), icon="⚠️")
    else:
        st.error(f"Something went wrong ({type(err).__name__}: {err}). Reload the page and "
                 f"try again; if it keeps happening, report it.", icon="⚠️")
