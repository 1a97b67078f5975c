"""Passing things between pages by id, never by another page's widget text.

- The digit: :func:`send_digit` (e.g. Errors → "Inspect") puts a 28×28 digit on the Draw &
  inspect page together with the key of the model it came from; :func:`current_digit` is
  the digit Draw shows now (the Projections page places it on a UMAP map).
- A model: :func:`choose_model` asks another page to open with a model (a
  :func:`pages.common.model_choices` key); that page's :func:`model_select` honours it once.

Each page keeps its own widget keys; only this module names the session keys below.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import streamlit as st

# Session keys (the names predate this module; tests read them).
_SENT = "draw_image"              # the digit sent to Draw, uint8 (28, 28), or None
_SENT_INDEX = "draw_image_index"  # its test-set index, when it is a test image
_SENT_META = "handoff_sent_meta"  # (model key, source sentence)
_CURRENT = "drawn_digit"          # the digit Draw shows now, uint8 (28, 28)
_CURRENT_MODEL = "handoff_current_model"
_WANTED = "handoff_model_for_"    # + page name: a model another page asked for


@dataclass(frozen=True)
class Digit:
    """A 28×28 digit passed between pages, with the model it was read with."""

    image: np.ndarray             # uint8 (28, 28)
    model_key: str | None         # a model_choices() key, or None when unknown
    source: str                   # where it came from, in words
    index: int | None = None      # its test-set index, when it is a test image


def send_digit(image: np.ndarray, *, model_key: str | None, source: str,
               index: int | None = None) -> None:
    """Put ``image`` on the Draw & inspect page, to be read with ``model_key``."""
    digit = np.array(image, dtype=np.uint8).reshape(28, 28)
    st.session_state[_SENT] = digit
    st.session_state[_SENT_INDEX] = None if index is None else int(index)
    st.session_state[_SENT_META] = (model_key, source)
    if model_key is not None:
        choose_model("draw", model_key)
    show_digit(digit, model_key=model_key)


def _stored_digit(value: object) -> np.ndarray | None:
    """A 28×28 uint8 digit from session state, or None when the value is anything else
    (session state is the user's: a tampered value must not become a raw error box)."""
    if not isinstance(value, np.ndarray) or value.shape not in ((28, 28), (28, 28, 1)) \
            or value.dtype.kind not in "uif" or not np.isfinite(value).all():
        return None
    return np.clip(value.reshape(28, 28), 0, 255).astype(np.uint8)


def sent_digit() -> Digit | None:
    """The digit another page sent to Draw and not yet dismissed, or None."""
    image = _stored_digit(st.session_state.get(_SENT))
    if image is None:
        return None
    meta = st.session_state.get(_SENT_META)
    model_key, source = meta if isinstance(meta, tuple) and len(meta) == 2 \
        else (None, "another page")
    index = st.session_state.get(_SENT_INDEX)
    return Digit(image, model_key, source,
                 index if isinstance(index, int) and 0 <= index < 10_000 else None)


def forget_sent_digit() -> None:
    """Back to drawing: the sent digit is dismissed."""
    st.session_state[_SENT] = None
    st.session_state.pop(_SENT_INDEX, None)
    st.session_state.pop(_SENT_META, None)


def show_digit(image: np.ndarray, *, model_key: str | None) -> None:
    """Record the digit Draw shows now (what :func:`current_digit` returns)."""
    st.session_state[_CURRENT] = np.array(image, dtype=np.uint8).reshape(28, 28)
    st.session_state[_CURRENT_MODEL] = model_key


def clear_digit() -> None:
    """Nothing is on Draw now (an empty canvas)."""
    st.session_state.pop(_CURRENT, None)
    st.session_state.pop(_CURRENT_MODEL, None)


def current_digit() -> Digit | None:
    """The digit on the Draw & inspect page now, or None."""
    image = _stored_digit(st.session_state.get(_CURRENT))
    if image is None:
        return None
    return Digit(image, st.session_state.get(_CURRENT_MODEL), "Draw & inspect")


# -- models -------------------------------------------------------------------------------
def choose_model(page: str, key: str) -> None:
    """Ask ``page`` (``"draw"``, ``"errors"``, …) to open with the model ``key``."""
    st.session_state[_WANTED + page] = key


def model_select(page: str, label: str, choices: Mapping[str, str], *, widget_key: str,
                 default: str | None = None, **kwargs) -> str:
    """A selectbox over ``choices`` (label -> key) whose value is the model's key.

    It opens on the model another page asked for with :func:`choose_model` (once), else
    keeps the user's pick, else ``default``. A label left in the widget by older code is
    read as its key.
    """
    names = {key: lbl for lbl, key in choices.items()}
    keys = list(names)
    wanted = st.session_state.pop(_WANTED + page, None)
    held = st.session_state.get(widget_key)
    if held in choices and held not in names:          # a label, not a key
        held = choices[held]
    pick = next((k for k in (wanted, held, default) if k in names), None)
    if pick is not None:
        st.session_state[widget_key] = pick
    return st.selectbox(label, keys, key=widget_key, format_func=names.__getitem__,
                        **kwargs)
