"""The workspace in the app (not a page): opened from ``?ws=``, asked about when the
server does not know it, shown as plain text by its short label, never as markdown.

The id itself is a secret (see core/workspace.py): it stays in the URL, so a reload
keeps the workspace, and in a "Copy my link" box the user opens; never in the sidebar.
"""
from __future__ import annotations

import logging

import streamlit as st

from core.errors import LayerLabError
from core.runs import RunStore
from core.workspace import (IssuedIds, check_workspace_id, is_workspace_id, label,
                            link_status, new_workspace_id, share_link)

log = logging.getLogger(__name__)
ISSUED = IssuedIds()          # ids this process made or a user confirmed
PENDING = "ws_pending"        # session-state key: a link's unknown id, waiting for an answer
NOTICE = "ws_notice"          # session-state key: why a link's id was refused


def _known(workspace: str) -> bool:
    return workspace in ISSUED or bool(RunStore().list_runs(workspace))


def _use(workspace: str) -> None:
    ISSUED.add(workspace)
    st.session_state.workspace = workspace
    st.session_state.pop(PENDING, None)
    st.query_params["ws"] = workspace


def _start_new() -> None:
    _use(new_workspace_id())


def resolve_workspace() -> None:
    """Set ``st.session_state.workspace`` once per session from the link's ``?ws=``: a
    known id is opened, none or a malformed one gets a new id (with a notice), an unknown
    one waits in ``PENDING`` for :func:`workspace_gate` to ask."""
    if "workspace" in st.session_state or PENDING in st.session_state:
        return
    raw = st.query_params.get("ws")
    status = link_status(raw, _known)
    if status == "known":
        _use(raw)
    elif status == "unknown":
        st.session_state[PENDING] = raw
    else:
        if status == "malformed":
            try:
                check_workspace_id(raw)
            except LayerLabError as err:
                st.session_state[NOTICE] = str(err)
            log.warning("Refused a malformed workspace id from a link (%d characters).",
                        len(raw))
        _start_new()


def workspace_gate() -> None:
    """Before any page runs: say why a link's id was refused; while the link names a
    workspace this server does not know, ask whether to open it, and stop there."""
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.warning(notice, icon="⚠️")       # our own sentence; the link's text is not in it
    pending = st.session_state.get(PENDING)
    if pending is None:
        return
    st.subheader("Open the workspace in this link?")
    st.text(f"This link opens workspace {label(pending)}, which this server has no runs "
            "for. Whoever gave you the link can see and change every run trained there. "
            "Open it only if the link is your own; otherwise start a new workspace.")
    c = st.columns(2)
    c[0].button(f"Open {label(pending)}", key="ws_open_link", on_click=_use, args=(pending,))
    c[1].button("Start a new workspace", key="ws_start_new", type="primary",
                on_click=_start_new)
    st.stop()


def workspace_sidebar() -> None:
    """The sidebar's workspace line (plain text) and the user's own link, on request."""
    ws = st.session_state.get("workspace")
    if not ws:
        return
    # Markdown only for our own fixed words; anything about the id goes through st.text.
    st.caption("**Workspace:** your runs are saved under it; keep your link to find "
               "them again.")
    st.text(label(ws))
    if is_workspace_id(ws):
        with st.expander("Copy my link"):
            st.text("Keep it private: anyone with this link can see and change your runs.")
            st.code(share_link(st.context.url or "", ws), language=None)
    st.query_params["ws"] = ws
