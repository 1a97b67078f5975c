"""The embedding process: one long-lived child process that runs the t-SNE and UMAP fits
and keeps UMAP's fitted maps, so new digits can be placed on them.

Their numba and Cython loops hold Python's GIL for seconds at a time; in a separate
process they never stall the server. A plain subprocess (``python -m
core.embedding_worker``), not ``multiprocessing``, so the child never re-imports the
caller's main script (under Streamlit, the app itself). The child imports no TensorFlow
and nothing of Layer Lab but :mod:`core.embeddings`; its imports and numba compilations
are paid once per server.

Cold start: the server starts the child at its first page view (:meth:`start_once`),
and the child warms UMAP up on a thread of its own (:func:`core.embeddings.warm_up_umap`)
while the student is on other pages; numba's compilations are kept on disk under
``$LAYERLAB_HOME/cache/numba``, so a later server mostly loads them. A UMAP request that
comes during the warm-up waits for it: the warm-up is compiling exactly what that fit
needs, so it loses only the tiny fits' own fraction of a second. A t-SNE request does not
wait. ``LAYERLAB_WARM_UP_MAPS=0`` turns the warm-up (and the early start) off.

Protocol: pickled tasks on the child's stdin, ``("tsne"|"umap", key, features, params)``,
``("place", key, features)`` or ``("status", "", None)``; pickled events on its stdout,
any number of ``("progress", fraction, message)`` then one ``("done", result)`` or
``("error", sentence)``. Calls are serialised. A call interrupted half-way (any
exception, including ``KeyboardInterrupt`` or Streamlit's ``StopException`` raised in a
progress callback) kills the child: its remaining events would otherwise be read as the
next call's reply.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import subprocess
import sys
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from core.embeddings import (Progress, compilations, fit_umap, import_umap, no_progress,
                             tsne_embedding, warm_up_umap)
from core.errors import LayerLabError
from core.storage import layerlab_home

MAX_FITTED = 2            # fitted UMAP maps kept (in the child, and their handles here)
GONE = "This map is no longer in memory; fit it again."
DIED = ("The process computing the map stopped (probably out of memory). "
        "Try fewer points.")


# -- the child --------------------------------------------------------------------------------

def _fit(kind: str, key: str, feats: np.ndarray, params: dict[str, Any],
         fitted: "OrderedDict[str, Any]", report: Progress) -> np.ndarray:
    """One t-SNE or UMAP fit; a UMAP map is kept in ``fitted`` (the newest MAX_FITTED)."""
    if kind == "tsne":
        return tsne_embedding(feats, params["perplexity"], params["seed"], report,
                              schedule=params.get("schedule"))
    report(0.2, "UMAP: neighbours, then the layout (it reports no finer progress)")
    reducer = fit_umap(feats, params["n_neighbors"], params["min_dist"], params["seed"])
    fitted.pop(key, None)
    fitted[key] = reducer
    while len(fitted) > MAX_FITTED:
        fitted.popitem(last=False)
    return reducer.embedding_


class WarmUp:
    """The child's warm-up thread and what it did (reported by the "status" task).

    It runs at a low priority, so a server that has just started serves its pages first,
    and steps aside for a t-SNE map asked for meanwhile: from umap's import on, it holds
    still before its next numba compilation until that map is done. It holds still only
    where it owns no numba compiler lock, and after the imports whose locks a request
    could need, so it never keeps the request waiting.
    """

    def __init__(self, enabled: bool) -> None:
        self.state = "running" if enabled else "off"
        self.seconds: float | None = None
        self.done = threading.Event()
        self._may_run = threading.Event()
        self._may_run.set()
        if enabled:
            threading.Thread(target=self._run, name="umap-warm-up", daemon=True).start()
        else:
            self.done.set()

    @contextlib.contextmanager
    def stepping_aside(self) -> Iterator[None]:
        """While in this block, the warm-up waits at its next compilation."""
        self._may_run.clear()
        try:
            yield
        finally:
            self._may_run.set()

    def _run(self) -> None:
        t0 = time.perf_counter()
        _lower_this_threads_priority()
        try:
            import_umap()
            _hold_before_compiling(self._may_run)
            warm_up_umap()
            importlib.import_module("openTSNE")          # t-SNE's import, paid now too
            self.seconds = time.perf_counter() - t0
            self.state = "done"
        except Exception:  # noqa: BLE001 - a real fit will report the problem itself
            traceback.print_exc(file=sys.stderr)
            self.state = "failed"
        finally:
            self.done.set()


WARM_UP_NICE = 10


def _lower_this_threads_priority() -> None:
    """Run the calling thread at nice +10 (Linux keeps a nice value per thread), so the
    warm-up takes only CPU that page views and training leave; no-op elsewhere."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WARM_UP_NICE)
    except (AttributeError, OSError):
        pass


def _hold_before_compiling(may_run: threading.Event) -> None:
    """From now on the calling thread waits for ``may_run`` before each numba compilation
    it starts without holding numba's compiler lock (so nobody waits on it meanwhile)."""
    from numba.core import event  # noqa: PLC0415
    from numba.core.compiler_lock import global_compiler_lock  # noqa: PLC0415

    ident = threading.get_ident()

    class Hold(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            if threading.get_ident() == ident and not global_compiler_lock.is_locked():
                may_run.wait()

        def on_end(self, ev: event.Event) -> None:
            pass

    event.register("numba:compiler_lock", Hold())


def _status(warm: WarmUp) -> dict[str, Any]:
    """What the "status" task answers: the warm-up, compilations so far, the cache."""
    return {"warm_up": warm.state, "warm_up_s": warm.seconds, "compiles": compilations(),
            "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""), "pid": os.getpid()}


def _worker_loop(tasks: BinaryIO, events: BinaryIO, warm_up: bool = False) -> None:
    """The child's loop: one task in, its events out, until the server goes away."""
    fitted: OrderedDict[str, Any] = OrderedDict()
    warm = WarmUp(warm_up)

    def send(event: tuple) -> None:
        pickle.dump(event, events, protocol=pickle.HIGHEST_PROTOCOL)
        events.flush()

    def report(fraction: float, message: str) -> None:
        send(("progress", fraction, message))

    while True:
        try:
            task = pickle.load(tasks)
        except EOFError:                     # the server went away
            return
        try:
            kind, key, feats = task[0], task[1], task[2]
            if kind == "status":
                send(("done", _status(warm)))
                continue
            if kind in ("umap", "place"):
                warm.done.wait()           # it compiles what this needs: wait, not redo
            if kind == "place":
                if key not in fitted:
                    send(("error", GONE))
                else:
                    send(("done", np.asarray(fitted[key].transform(feats), np.float32)))
                continue
            with warm.stepping_aside() if kind == "tsne" else contextlib.nullcontext():
                emb = _fit(kind, key, feats, task[3], fitted, report)
            send(("done", np.asarray(emb, np.float32)))
        except Exception:  # noqa: BLE001 - sent back as a sentence, the details logged
            traceback.print_exc(file=sys.stderr)              # the parent's log
            send(("error", "The map could not be computed because of an error on the "
                           "server. Try fewer points or another method; the details are "
                           "in the server's log."))


def _serve() -> None:
    """Entry point of the child: pickles on stdin/stdout, logs on stderr."""
    # umap-learn imports TensorFlow for ParametricUMAP when it can: seconds and hundreds
    # of MB this process never needs. Marking it absent makes umap skip that import.
    sys.modules.setdefault("tensorflow", None)  # type: ignore[arg-type]
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # stray prints must not corrupt it
    _worker_loop(sys.stdin.buffer, protocol_out, warm_up="--warm-up" in sys.argv)
    protocol_out.flush()
    os._exit(0)            # now, even with the warm-up thread in the middle of compiling


# -- the server's side ------------------------------------------------------------------------

def numba_cache_dir() -> Path:
    """``$LAYERLAB_HOME/cache/numba``: numba's compilations for the embedding process.

    >>> numba_cache_dir().parts[-2:]
    ('cache', 'numba')
    """
    return layerlab_home() / "cache" / "numba"


def _child_environment(root: str) -> dict[str, str]:
    """The server's environment plus Layer Lab on the path and numba's disk cache (an
    explicit ``NUMBA_CACHE_DIR``, even empty, is kept: empty turns the cache off)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if "NUMBA_CACHE_DIR" not in env:
        try:
            numba_cache_dir().mkdir(parents=True, exist_ok=True)
            env["NUMBA_CACHE_DIR"] = str(numba_cache_dir())
        except OSError:                     # a read-only home: compile in every process
            pass
    return env


class EmbeddingWorker:
    """The server's handle on the embedding process: starts it on first use, restarts it
    after a crash or an interrupted call, and remembers which fitted maps it keeps."""

    def __init__(self, warm_up: bool | None = None) -> None:
        # None: on unless LAYERLAB_WARM_UP_MAPS=0 (read when the child starts)
        self.warm_up = warm_up
        self._started_once = False
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()           # one call at a time through the pipes
        self._maps_lock = threading.Lock()      # the fitted-map handles below
        self._maps: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self.generation = 0                     # bumps when a new child starts

    @property
    def alive(self) -> bool:
        """Whether the child process is running (and so keeps its fitted maps)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive else None

    @property
    def warms_up(self) -> bool:
        """Whether a new child warms UMAP up (``LAYERLAB_WARM_UP_MAPS=0``: no)."""
        if self.warm_up is not None:
            return self.warm_up
        return os.environ.get("LAYERLAB_WARM_UP_MAPS", "1") != "0"

    def start_once(self) -> None:
        """Start the child (and its warm-up) now, the first time this is called in the
        server's life; returns at once. Later calls, and calls while a map is being
        computed, do nothing: a map request starts a child that has gone."""
        if self._started_once or not self.warms_up:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._started_once = True
            self._ensure()
        finally:
            self._lock.release()

    def _ensure(self) -> subprocess.Popen:
        if self.alive:
            return self._proc
        self._stop_child()                      # a dead child: reap it, forget its maps
        root = str(Path(__file__).resolve().parents[1])
        argv = [sys.executable, "-m", "core.embedding_worker"]
        self._proc = subprocess.Popen(argv + (["--warm-up"] if self.warms_up else []),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      cwd=root, env=_child_environment(root))
        self.generation += 1
        return self._proc

    def _stop_child(self) -> None:
        """Kill the child now (its fitted maps go with it); call with ``_lock`` held."""
        proc, self._proc = self._proc, None
        with self._maps_lock:
            self._maps.clear()
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()

    def _call(self, task: tuple, progress: Progress) -> np.ndarray:
        proc = self._ensure()
        try:
            pickle.dump(task, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.flush()
            event = pickle.load(proc.stdout)
            while event[0] == "progress":
                progress(event[1], event[2])
                event = pickle.load(proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            self._stop_child()
            raise LayerLabError(DIED) from None
        except BaseException:
            # Interrupted half-way: the rest of this call's events are still in the pipe
            # and the next call would read them as its reply. Start afresh instead.
            self._stop_child()
            raise
        if event[0] == "error":
            raise LayerLabError(event[1])
        return event[1]

    def embed(self, method: str, key: str, features: np.ndarray, params: dict[str, Any],
              progress: Progress = no_progress) -> tuple[np.ndarray, int]:
        """``(embedding, generation)`` of ``features`` by t-SNE or UMAP in the child."""
        with self._lock:
            emb = self._call((method, key, np.ascontiguousarray(features, np.float32),
                              params), progress)
            return emb, self.generation

    def status(self) -> dict[str, Any]:
        """The child's warm-up state, its numba compilations so far and its numba cache
        folder (starting the child if needed): for tests and the benches."""
        with self._lock:
            return self._call(("status", "", None), no_progress)

    def place(self, key: str, features: np.ndarray, generation: int,
              wait_s: float = 2.0) -> np.ndarray:
        """``UMAP.transform`` of ``features`` on the map fitted for ``key``."""
        if not self._lock.acquire(timeout=wait_s):
            raise LayerLabError("Another map is being computed; place the digit once it "
                                "is done.")
        try:
            if generation != self.generation or not self.alive:
                raise LayerLabError(GONE)
            return self._call(("place", key, np.ascontiguousarray(features, np.float32)),
                              no_progress)
        finally:
            self._lock.release()

    def keep(self, key: str, generation: int, handle: Any) -> None:
        """Remember ``handle`` for the map fitted for ``key`` by child ``generation``
        (the child keeps the newest MAX_FITTED maps; so does this)."""
        with self._maps_lock:
            self._maps.pop(key, None)
            self._maps[key] = (generation, handle)
            while len(self._maps) > MAX_FITTED:
                self._maps.popitem(last=False)

    def kept(self, key: str) -> Any | None:
        """The handle kept for ``key`` if the child that fitted it still runs, else None."""
        with self._maps_lock:
            found = self._maps.get(key)
        if found is None or found[0] != self.generation or not self.alive:
            return None
        return found[1]

    def close(self) -> None:
        """Stop the child process (it also ends when the server's pipe closes)."""
        with self._lock:
            if self.alive:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._stop_child()


WORKER = EmbeddingWorker()


if __name__ == "__main__":
    _serve()
