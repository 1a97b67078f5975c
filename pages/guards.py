"""Server-side guards against what a viewer's browser may send (not a page).

Streamlit answers a ``clear_cache`` BackMsg from any session by clearing the global
``st.cache_data`` and ``st.cache_resource`` (``AppSession._handle_clear_cache_request``:
"Because this cache is global, it will be cleared for all users"). ``client.toolbarMode =
"viewer"`` only hides the menu item; a hand-crafted websocket message still clears every
student's models and arrays (another user's render went 0.10 → 0.64 s). Streamlit 1.67
has no setting for this, so :func:`keep_caches_from_viewers` replaces that one handler.
To clear the caches, restart the server.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_HANDLER = "_handle_clear_cache_request"
streamlit_handler = None      # Streamlit's own handler, kept for the test that shows the hole


def _ignore_clear_cache(session) -> None:
    """A viewer asked to clear the global caches: refuse (they belong to every session)."""
    log.warning("Ignored a clear-cache request from session %s: the caches are shared by "
                "every user (restart the server to clear them).", getattr(session, "id", "?"))


def keep_caches_from_viewers() -> None:
    """Make a browser's "clear cache" request a no-op (idempotent).

    Raises RuntimeError if Streamlit no longer dispatches ``clear_cache`` through the
    handler replaced here, so an upgrade cannot silently reopen the hole.
    """
    from streamlit.runtime.app_session import AppSession

    global streamlit_handler
    original = getattr(AppSession, _HANDLER, None)
    if original is _ignore_clear_cache:
        return
    if not callable(original) or _HANDLER not in AppSession.handle_backmsg.__code__.co_names:
        raise RuntimeError("Streamlit no longer handles 'clear_cache' in "
                           f"AppSession.{_HANDLER}; update pages/guards.py for this version "
                           "so that viewers still cannot clear the shared caches.")
    streamlit_handler = original
    setattr(AppSession, _HANDLER, _ignore_clear_cache)
