"""Workspace ids: the secret that holds a student's runs together.

Whoever knows a workspace id reads, resumes and downloads its runs, so an id is a
secret: 128 random bits from :mod:`secrets`, made only by the server, and checked
against that exact format before it is used for anything. Pages show the short
:func:`label` instead (a hash: it tells workspaces apart without revealing the id),
and never adopt an id from a link without knowing it (see :class:`IssuedIds`).
"""
from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from typing import Callable, Literal
from urllib.parse import urlencode

from core.errors import LayerLabError

ID_BYTES = 16                                   # 128 bits
_ID_RE = re.compile(r"[0-9a-f]{%d}" % (2 * ID_BYTES))
LinkStatus = Literal["none", "malformed", "known", "unknown"]


def new_workspace_id() -> str:
    """A fresh 128-bit workspace id: 32 lowercase hex digits.

    >>> ws = new_workspace_id()
    >>> len(ws), is_workspace_id(ws), ws == new_workspace_id()
    (32, True, False)
    """
    return secrets.token_hex(ID_BYTES)


def is_workspace_id(value: object) -> bool:
    """Whether ``value`` has the server's own id format (nothing else is ever used).

    >>> is_workspace_id("0123456789abcdef0123456789abcdef")
    True
    >>> is_workspace_id("1a2b3c4d"), is_workspace_id("x` [a](https://e.example)")
    (False, False)
    """
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def check_workspace_id(value: object) -> str:
    """``value`` if it is a well-formed id; else a LayerLabError (never echoing it).

    >>> check_workspace_id("0123456789abcdef0123456789abcdef")
    '0123456789abcdef0123456789abcdef'
    >>> check_workspace_id("../../etc")
    Traceback (most recent call last):
    ...
    core.errors.LayerLabError: The workspace in this link is not valid (a workspace id is 32 letters a-f and digits), so it was not opened; a new workspace was started for you.
    """
    if not is_workspace_id(value):
        # The rejected text is not repeated: it may be markup meant for the page.
        raise LayerLabError("The workspace in this link is not valid (a workspace id is "
                            f"{2 * ID_BYTES} letters a-f and digits), so it was not opened; "
                            "a new workspace was started for you.")
    return str(value)


def label(workspace: str) -> str:
    """A short, non-secret name for a workspace: 6 hex digits of its SHA-256.

    >>> label("0123456789abcdef0123456789abcdef")
    'ws-3eb1bd'
    """
    return "ws-" + hashlib.sha256(workspace.encode()).hexdigest()[:6]


def share_link(base_url: str, workspace: str) -> str:
    """The app's URL that reopens ``workspace`` (``base_url`` without a query).

    >>> share_link("http://127.0.0.1:8501/train", "0123456789abcdef0123456789abcdef")
    'http://127.0.0.1:8501/train?ws=0123456789abcdef0123456789abcdef'
    """
    return f"{base_url.split('?', 1)[0]}?{urlencode({'ws': check_workspace_id(workspace)})}"


def link_status(value: str | None, known: Callable[[str], bool]) -> LinkStatus:
    """What to do with a ``?ws=`` value: ``none`` (make a new id), ``malformed``
    (refuse it), ``known`` (this server has seen it: open it) or ``unknown`` (ask).

    ``known`` is only called with a well-formed id.

    >>> seen = {"0123456789abcdef0123456789abcdef"}
    >>> [link_status(v, seen.__contains__) for v in (None, "", "<b>x</b>",
    ...  "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210")]
    ['none', 'none', 'malformed', 'known', 'unknown']
    """
    if not value:
        return "none"
    if not is_workspace_id(value):
        return "malformed"
    return "known" if known(value) else "unknown"


class IssuedIds:
    """The ids this server process made or a user confirmed, so that reloading a page of
    a workspace without runs yet reopens it without asking. Thread-safe and bounded
    (the oldest are forgotten first; a forgotten one is simply asked about again).

    >>> ids = IssuedIds(limit=2)
    >>> for ws in ("a" * 32, "b" * 32, "c" * 32):
    ...     ids.add(ws)
    >>> "a" * 32 in ids, "c" * 32 in ids
    (False, True)
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, workspace: str) -> None:
        check_workspace_id(workspace)
        with self._lock:
            self._ids[workspace] = None
            self._ids.move_to_end(workspace)
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)

    def __contains__(self, workspace: object) -> bool:
        with self._lock:
            return workspace in self._ids
