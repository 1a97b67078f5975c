"""Page work before training work: the threads that train run at a lower CPU priority
than the threads that render pages, inside the one server process.

Linux keeps a nice value per thread, and a new thread starts with its creator's. So a
training thread lowers its own priority (:func:`lower_this_thread`), and TensorFlow's
compute pools (the intra-op Eigen threads, which TensorFlow leaves unnamed, and the
inter-op ``tf_Compute`` threads) are created by a thread that did the same
(:func:`start_tensorflow`): they are created once per process, when TensorFlow's runtime
starts, so that start is moved to a low-priority thread: the Errors page's warm-up a few
seconds after the server's first page view (core/page_warm_up.py), or the first run or
model load, whichever comes first (a page that builds a model before either starts the
runtime at its own priority; training then says so in the log). Per-process nice would
not do: with the kernel's ``sched_autogroup_enabled`` the whole server is one group, and
only the threads' nice values inside it decide who of them gets the CPU.

Pages' own TensorFlow calls share those pools: the parallel inner loops of a page's
prediction run at training's priority too, while the page's thread keeps its own.

``LAYERLAB_TRAIN_NICE`` (default 10, at most 19) is how much lower; 0 turns it off.
A no-op outside Linux.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

_log = logging.getLogger(__name__)
TRAIN_NICE = 10
_lock = threading.Lock()
_tf_thread: threading.Thread | None = None
pools_lowered: bool | None = None       # None: TensorFlow not started here (yet)


def train_nice() -> int:
    """How many nice levels training runs below the pages (``LAYERLAB_TRAIN_NICE``).

    >>> os.environ["LAYERLAB_TRAIN_NICE"] = "0"; train_nice()
    0
    >>> os.environ["LAYERLAB_TRAIN_NICE"] = "lots"; train_nice()
    10
    >>> del os.environ["LAYERLAB_TRAIN_NICE"]
    """
    try:
        return max(0, min(19, int(os.environ.get("LAYERLAB_TRAIN_NICE", TRAIN_NICE))))
    except ValueError:
        return TRAIN_NICE


def thread_nice(tid: int | None = None) -> int | None:
    """The nice value of thread ``tid`` (default: the calling one); None where unknown.

    >>> thread_nice() is None or -20 <= thread_nice() <= 19
    True
    """
    try:
        return os.getpriority(os.PRIO_PROCESS, tid or threading.get_native_id())
    except (AttributeError, OSError):
        return None


def lower_this_thread(offset: int | None = None) -> bool:
    """Run the calling thread ``offset`` (default :func:`train_nice`) nice levels below
    the process's main thread; never raises its priority. True if it is lowered now."""
    offset = train_nice() if offset is None else offset
    base, mine = thread_nice(os.getpid()), thread_nice()
    if offset <= 0 or base is None or mine is None or not sys.platform.startswith("linux"):
        return False
    target = max(mine, min(19, base + offset))
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), target)
    except OSError:
        return False
    return target > base


def start_tensorflow() -> threading.Thread:
    """Start TensorFlow's runtime on a low-priority thread, once per process, so its
    compute pools inherit that priority; the thread (join it to wait for the start)."""
    global _tf_thread
    with _lock:
        if _tf_thread is None:
            _tf_thread = threading.Thread(target=_start_tensorflow, name="tf-start",
                                          daemon=True)
            _tf_thread.start()
        return _tf_thread


def ensure_tensorflow() -> None:
    """:func:`start_tensorflow` and wait until TensorFlow's runtime has started. Called
    before the first TensorFlow work of a run and of the pages' model loads, so a page
    thread never starts the runtime (and the pools) at its own priority."""
    start_tensorflow().join()


def _start_tensorflow() -> None:
    """Import TensorFlow (at the page's priority: a page may be waiting), then lower
    this thread and start the runtime, which creates the pools from here."""
    global pools_lowered
    from tensorflow.python.eager import context  # noqa: PLC0415

    lowered = lower_this_thread()
    ctx = context.context()
    fresh = not getattr(ctx, "_initialized", False)
    ctx.ensure_initialized()     # creates the pools, from this thread (if nobody did)
    pools_lowered = lowered and fresh
    if lowered and not fresh:
        _log.warning("TensorFlow started before its pools could be given a lower "
                     "priority; training competes with pages as an equal.")
