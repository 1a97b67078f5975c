"""The process backend (``LAYERLAB_TRAIN_IN=process``): each run trains in a worker
process of this machine.

Why not a thread of the server: a run's first seconds are TensorFlow tracing its train
step, pure Python that holds the server's interpreter lock, so every page view of a class
waited behind two starting runs; and a run that exhausts memory or crashes TensorFlow
took the whole server (and every student's session) with it. In a process of its own, a
run shares only the CPU with the pages (and at a lower priority, core/priority.py), and a
worker that dies leaves an interrupted run that resumes from its last checkpoint.

The server keeps a :class:`ProcessJob` (the shared half is
:class:`core.remote_job.RemoteJob`, as for Ray) that waits for a place in the server's
:data:`core.scheduler.SCHEDULER` (``LAYERLAB_MAX_RUNS``), starts ``python -m
core.process_worker`` and polls it; the worker reads MNIST and the presets' files itself.

The price is memory: each worker holds its own TensorFlow and copy of the images, about
1 GB more per run than a thread of the server (measured: bench/load_bench.py
``--train-in process``), which is why threads stay the default
(:class:`core.backend.LocalBackend`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core.backend import BackendInfo, LocalBackend
from core.recipe import Recipe
from core.remote_job import POLL_S, RemoteJob, WorkerLost
from core.spec import ModelSpec
from core.training import Progress
from core.wording import plural

_log = logging.getLogger(__name__)
START_TIMEOUT_S = 180.0        # a worker's start: Python, TensorFlow, MNIST (under load)
CALL_TIMEOUT_S = 10.0          # any other answer
CLOSE_TIMEOUT_S = 10.0
WORKER_DIED = ("The process training this run stopped (it may have run out of memory; "
               "a smaller batch size or a smaller network needs less).")
WORKER_SILENT = "The process training this run stopped answering."
NO_START = "The process for this run did not start in time (the server is very busy)."
ROOT = Path(__file__).resolve().parents[1]


class WorkerFailed(Exception):
    """A request failed in the worker for a reason that is not a sentence for users."""


class WorkerProcess:
    """One training worker process and its pipes; requests and answers matched by number
    (an answer that came too late for its request is dropped, not taken for the next)."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]
                                            ).rstrip(os.pathsep)
        self.proc = subprocess.Popen([sys.executable, "-m", "core.process_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=ROOT, env=env)
        self._answers: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._seq = 0
        threading.Thread(target=self._read, name=f"worker-{self.proc.pid}-answers",
                         daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        try:
            while True:
                self._answers.put(pickle.load(self.proc.stdout))
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            self._answers.put(None)                    # the worker is gone

    def send(self, kind: str, payload: Any = None) -> int:
        """Send one request (any thread); its number. WorkerLost if the worker is gone."""
        with self._lock:
            self._seq += 1
            try:
                pickle.dump((self._seq, kind, payload), self.proc.stdin,
                            protocol=pickle.HIGHEST_PROTOCOL)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                raise WorkerLost(WORKER_DIED) from None
            return self._seq

    def answer(self, seq: int, timeout: float) -> Any:
        """The answer to request ``seq``, or None if none came within ``timeout``;
        raises WorkerLost, LayerLabError (its sentence) or WorkerFailed."""
        from core.errors import LayerLabError  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if got is None:
                self._answers.put(None)                # every later read sees it too
                raise WorkerLost(WORKER_DIED)
            number, status, value = got
            if number != seq:
                continue                               # late: its caller gave up on it
            if status == "error":
                raise LayerLabError(value) if value else WorkerFailed("see its log")
            return value

    def call(self, kind: str, payload: Any = None, timeout: float = CALL_TIMEOUT_S) -> Any:
        return self.answer(self.send(kind, payload), timeout)

    def end(self, closed: bool) -> None:
        """Wait briefly for a worker that was told to close, then make sure it is gone."""
        try:
            self.proc.wait(timeout=CLOSE_TIMEOUT_S if closed else 0.1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


class ProcessBackend(LocalBackend):
    """Runs in worker processes of this machine, under the server's scheduler.

    >>> from core.scheduler import Scheduler
    >>> ProcessBackend(Scheduler(2)).describe().summary
    'this machine, 2 runs at once, each in a process of its own'
    """

    name = "process"

    def new_job(self, spec: ModelSpec, recipe: Recipe, **kwargs: Any) -> "ProcessJob":
        """A :class:`ProcessJob` (TrainingJob's keyword arguments)."""
        kwargs.pop("scheduler", None)
        return ProcessJob(self, spec, recipe, **kwargs)

    def describe(self) -> BackendInfo:
        info = super().describe()
        return BackendInfo("process", f"this machine, {plural(self.scheduler.max_active, 'run')}"
                           " at once, each in a process of its own", cpus=info.cpus,
                           queued=info.queued)


class ProcessJob(RemoteJob):
    """One run trained by a worker process (see the module doc)."""

    thread_prefix = "proc"
    silent = WORKER_SILENT

    def __init__(self, backend: ProcessBackend, spec: ModelSpec, recipe: Recipe,
                 **kwargs: Any) -> None:
        self.scheduler = backend.scheduler
        self.worker: WorkerProcess | None = None
        self._acquired = False
        self._queue_position: int | None = None
        super().__init__(spec, recipe, **kwargs)

    def _position_now(self, progress: Progress) -> int | None:
        return self.scheduler.position(self.id) or progress.queue_position

    def _on_wait(self, position: int) -> None:
        """While queued: one ``queued`` event per change of position."""
        if position != self._queue_position:
            self._queue_position = position
            self._record({"kind": "queued", "position": position})

    def _teacher_answers(self) -> Any:
        return None                  # the worker has the presets and computes them itself

    def _device_words(self, device: str) -> str:
        return f"{device}, in a process of its own"

    def _place(self) -> None:
        """A place in the scheduler, then the worker and the run in it (stoppable)."""
        self._acquired = self.scheduler.acquire(self.id, self._stop, self._on_wait)
        if not self._acquired:
            raise self._stopped_early()
        order = self._order()                        # reads a resume's files: before
        self.worker = WorkerProcess()
        self.worker_pid = self.worker.pid
        seq = self.worker.send("start", (order, self.data))
        began = time.monotonic()
        while (info := self.worker.answer(seq, POLL_S)) is None:
            if self._stop.is_set():
                raise self._stopped_early()
            if time.monotonic() - began > START_TIMEOUT_S:
                raise WorkerLost(NO_START)
        self._placed = True
        self.node = info["node"]

    def _poll(self, taken: int | None) -> dict[str, Any] | None:
        return self.worker.call("poll", taken)

    def _send_stop(self) -> None:
        self.worker.send("stop", self._interrupt)

    def _send_stop_now(self) -> None:
        with contextlib.suppress(WorkerLost):     # gone: the job's thread says so
            self.worker.send("stop", self._interrupt)

    def _ending(self, exc: Exception) -> tuple[str, str] | None:
        if isinstance(exc, WorkerFailed):            # its traceback is in the log already
            return "failed", self._failure()
        return None

    def _close(self) -> None:
        """End the worker, then free the run's place (not before: two workers of one
        place would hold twice the memory for a moment)."""
        worker, closed = self.worker, False
        try:
            if worker is not None and self._placed and worker.proc.poll() is None:
                try:
                    worker.call("close", timeout=CLOSE_TIMEOUT_S)
                    closed = True
                except Exception as exc:  # noqa: BLE001 - already gone: end() makes sure
                    _log.info("run %s: worker not closed cleanly: %r", self.run.id, exc)
            if worker is not None:
                worker.end(closed)
        finally:
            if self._acquired:
                self.scheduler.release(self.id)
                self._acquired = False
