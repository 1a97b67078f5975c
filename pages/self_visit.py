"""The server opens every page once, by itself, soon after its first page view.

A page's first view on a fresh server pays for work every later view reuses: imports
(altair, optuna, scikit-learn's pieces), charts and tables cached per content, pretrained
models' records. Measured one page at a time (bench/load_bench.py's warm-up), the thirteen
first views cost about 5.6 s of server CPU, against about 0.4 s once warm; Models, Compare
and Errors each about 0.4 s. A class arriving at a just-started server paid them while
thirty sessions and two runs shared two cores (page p95 2.7–3.4 s against 1.8 s warm).

So at the server's first page view a background thread connects to the server's own
websocket, as a browser does, and asks for each page in the menu's order: the very code a
student's view runs, the same caches filled. Streamlit offers no hook at server start for
``streamlit run`` (pages/common.py), so the first page view is the earliest moment. The
visit's session is an ordinary one: a fresh workspace of its own that is never used, no
widget touched, closed at the end. It asks for a page only once no student has opened one
for a second (:func:`note_page_view`), and its page runs are lowered like training
(core/priority.py): a class arriving all at once is served first and pays its own first
views as before (the visit's extra pages would only add to that burst), while a server
opened once before the class, or found by students one by one, has every page warm. It
never raises: a failure is logged and the pages stay
as they were, only slower to open first. ``LAYERLAB_WARM_UP_PAGES=0`` turns it off (the
tests do; tests/e2e/test_first_view_warms_pages.py turns it on).
"""
from __future__ import annotations

import asyncio
import logging
import hmac
import os
import secrets
import ssl
import threading
import time

_log = logging.getLogger(__name__)
_lock = threading.Lock()
visit_thread: threading.Thread | None = None
visited: list[str] = []          # the url paths asked for, in order ("" is Home)
START_DELAY_S = 3.0              # after the first view (as core/page_warm_up.py's)
PAGE_TIMEOUT_S = 120.0           # one page's answer; a stuck page ends the visit
QUIET_S = 1.0                    # no student's page view for this long: the visit's turn
GIVE_UP_S = 900.0                # a server busy for this long is warm by its own visitors
QUERY_KEY = "layerlab_visit"
_TOKEN = secrets.token_urlsafe(16)   # marks the visit's own page runs, known to no one else
_last_view = 0.0                 # time.monotonic() of the latest student's page view


def note_page_view() -> None:
    """A student's page view has just started (the visit waits for a quiet second)."""
    global _last_view
    _last_view = time.monotonic()


def is_own(value: str | None) -> bool:
    """Whether a page run's ``?layerlab_visit=`` value is this server's own visit's.

    >>> is_own(_TOKEN), is_own(None), is_own("guess")
    (True, False, False)
    """
    return value is not None and hmac.compare_digest(value.encode(), _TOKEN.encode())


async def wait_quiet(clock=time.monotonic) -> bool:
    """Wait until no student has opened a page for :data:`QUIET_S`; False after
    :data:`GIVE_UP_S` of a busy server."""
    start = clock()
    while clock() - _last_view < QUIET_S:
        if clock() - start > GIVE_UP_S:
            return False
        await asyncio.sleep(0.25)
    return True


def enabled() -> bool:
    """Whether the server visits its own pages (``LAYERLAB_WARM_UP_PAGES=0``: no).

    >>> os.environ["LAYERLAB_WARM_UP_PAGES"] = "0"; enabled()
    False
    >>> del os.environ["LAYERLAB_WARM_UP_PAGES"]; enabled()
    True
    """
    return os.environ.get("LAYERLAB_WARM_UP_PAGES", "1") != "0"


def stream_url(address: str, port: int, base_path: str = "", tls: bool = False) -> str:
    """The websocket address of this server's own app, as reached from the machine itself:
    an address bound to every interface (or none) is reached on the loopback.

    >>> stream_url("", 8501)
    'ws://127.0.0.1:8501/_stcore/stream'
    >>> stream_url("0.0.0.0", 80, "/lab/", tls=True)
    'wss://127.0.0.1:80/lab/_stcore/stream'
    >>> stream_url("::", 8501), stream_url("10.0.0.5", 8501)
    ('ws://[::1]:8501/_stcore/stream', 'ws://10.0.0.5:8501/_stcore/stream')
    """
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    if ":" in host:
        host = f"[{host}]"
    base = "/".join(part for part in base_path.split("/") if part)
    return (f"{'wss' if tls else 'ws'}://{host}:{port}/"
            + (f"{base}/" if base else "") + "_stcore/stream")


def menu_order(paths: list[str]) -> list[str]:
    """The pages to visit after the first view: the menu's, Home (``""``, already shown
    by the first request) left out, each once.

    >>> menu_order(["", "models", "builder", "models"])
    ['models', 'builder']
    """
    return [p for i, p in enumerate(paths) if p and p not in paths[:i]]


async def request_page(conn, page_hash: str, pages: dict[str, str], errors: list,
                       reruns: list | None = None, query: str = "") -> None:
    """Ask an open session for a page (``""``: the app's first) and read until its script
    has finished: the app's menu (url path → page hash) replaces ``pages``, exceptions
    shown go into ``errors``, and the intervals of the fragments that ask to rerun by
    themselves into ``reruns``."""
    from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: PLC0415
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: PLC0415

    msg = BackMsg()
    msg.rerun_script.query_string = query
    msg.rerun_script.page_script_hash = page_hash
    await conn.send(msg.SerializeToString())
    while True:
        fwd = ForwardMsg()
        fwd.ParseFromString(await asyncio.wait_for(conn.recv(), timeout=PAGE_TIMEOUT_S))
        kind = fwd.WhichOneof("type")
        if kind == "navigation":            # the latest menu (a fresh server's first
            pages.clear()                     # run may send Streamlit's own pages/ menu)
            pages.update({p.url_pathname or "": p.page_script_hash
                          for p in fwd.navigation.app_pages})
        elif kind == "delta" and fwd.delta.new_element.WhichOneof("type") == "exception":
            errors.append(f"exception: {fwd.delta.new_element.exception.message[:80]}")
        elif kind == "auto_rerun" and reruns is not None:
            reruns.append(fwd.auto_rerun.interval)
        elif kind == "script_finished" and \
                fwd.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            return                # (as a browser: a run ended for a rerun is not the page)


def connect(url: str):
    """An awaitable websocket connection to the app at ``url``, speaking Streamlit's
    protocol as a browser does (a TLS server's own certificate is not checked: the
    connection is the server's to itself)."""
    from websockets.asyncio.client import connect as ws_connect  # noqa: PLC0415

    context = None
    if url.startswith("wss:"):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return ws_connect(url, subprotocols=["streamlit"], max_size=2**26, ssl=context)


async def visit(url: str) -> list[str]:
    """Open the app at ``url`` and ask for every page of its menu once; the url paths
    asked for, in order ("" is Home), each once no student has opened a page for a
    second. Exceptions a page shows are logged."""
    pages: dict[str, str] = {}
    errors: list[str] = []
    asked: list[str] = []
    query = f"{QUERY_KEY}={_TOKEN}"
    async with connect(url) as conn:
        if await wait_quiet():
            await request_page(conn, "", pages, errors, query=query)
            asked.append("")
        for path in menu_order(list(pages)):
            if not await wait_quiet():
                break
            await request_page(conn, pages[path], pages, errors, query=query)
            asked.append(path)
    for error in errors:
        _log.warning("A page showed an error to the server's own visit: %s", error)
    return asked


def start_once(url: str) -> threading.Thread | None:
    """Start the visit of ``url`` in the background, once per process; the thread, or
    None when turned off."""
    global visit_thread
    with _lock:
        if visit_thread is None and enabled():
            visit_thread = threading.Thread(target=_run, args=(url,), name="self-visit",
                                            daemon=True)
            visit_thread.start()
        return visit_thread


def _run(url: str) -> None:
    """The thread's body: wait for the first view to have had its moment, then visit."""
    time.sleep(START_DELAY_S)
    t0 = time.perf_counter()
    try:
        visited[:] = asyncio.run(visit(url))
    except Exception as exc:  # noqa: BLE001 - a slower first view, nothing worse
        _log.warning("The server's visit of its own pages stopped", exc_info=exc)
        return
    _log.info("The server opened its %d pages once in %.1f s; their first views are warm.",
              len(visited), time.perf_counter() - t0)
