"""The server's side of a run trained by a worker outside the server's process.

Two backends train that way: a Ray actor on a cluster (:mod:`core.ray_backend`) and a
worker process on this machine (:mod:`core.process_backend`). Both workers run
:class:`core.ray_worker.TrainingActor`, which answers ``start``, ``poll``, ``stop`` and
``close``; what differs is only how a message reaches it. :class:`RemoteJob` is
everything else, shared: the surface of :class:`core.training.TrainingJob` (so the
registry and the pages use either unchanged), the order a worker gets, the saves it hands
back (written into the server's run store atomically, as consistent checkpoints), the
events and snapshots it relays, and a worker that dies leaving an interrupted run that
resumes from its last checkpoint.

A subclass says how to reach its worker: :meth:`RemoteJob._place` (start it, stoppable),
:meth:`RemoteJob._poll`, :meth:`RemoteJob._send_stop`, :meth:`RemoteJob._close`, and
:meth:`RemoteJob._ending` for its own exceptions.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from core.errors import LayerLabError
from core.ray_worker import RELAYED_FILES
from core.recipe import Recipe
from core.runs import CHECKPOINT_FILE, MODEL_FILE, SNAPSHOTS_FILE, Run, RunStore
from core.spec import ModelSpec, infer_shapes
from core.storage import atomic_write_bytes, save_error
from core.training import JobEvents, job_run
from core.wording import plural

_log = logging.getLogger(__name__)
POLL_S = 0.3                  # polls of a running worker: events reach pages at ~3 Hz
LOST_AFTER_S = 30.0           # no answer about a run for this long: its worker is gone


class RemoteSnapshots:
    """The newest snapshot of a remote job, for the live view (as core.snapshot_callback)."""

    def __init__(self, snap: dict[str, Any], meta: dict[str, Any]) -> None:
        self.snap, self._meta = snap, meta

    def latest(self) -> dict[str, Any] | None:
        return self.snap

    def meta(self) -> dict[str, Any]:
        return self._meta


def model_bytes(model: Any) -> bytes:
    """A keras model as the bytes of its ``.keras`` file."""
    with tempfile.TemporaryDirectory(prefix="layerlab-") as tmp:
        path = Path(tmp) / MODEL_FILE
        model.save(path)
        return path.read_bytes()


def model_from_bytes(data: bytes) -> Any:
    """A keras model from the bytes of our own ``.keras`` file (still safe_mode)."""
    import keras  # noqa: PLC0415

    from core.build import register_layers  # noqa: PLC0415

    register_layers()
    with tempfile.TemporaryDirectory(prefix="layerlab-") as tmp:
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(data)
        return keras.models.load_model(path, safe_mode=True)


class Ended(Exception):
    """The job ended on the server's side (stopped while queued, refused …)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class WorkerLost(Exception):
    """The worker died or stopped answering; ``reason`` is the sentence that says so."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteJob(JobEvents):
    """One run trained by a worker elsewhere; the surface of
    :class:`core.training.TrainingJob` (see the module doc for what subclasses add)."""

    thread_prefix = "remote"
    silent = "The worker training this run stopped answering."

    def __init__(self, spec: ModelSpec, recipe: Recipe, *, name: str | None = None,
                 workspace: str = "", store: RunStore | None = None,
                 resume: Run | None = None, model: Any = None, data: Any = None,
                 test_limit: int | None = None) -> None:
        infer_shapes(spec)                 # raises SpecError before anything is sent
        recipe.check()
        self.spec, self.recipe, self.store = spec, recipe, store
        self.model, self.data, self.test_limit = model, data, test_limit
        super().__init__()
        self.snapshots: RemoteSnapshots | None = None
        self.worker_pid: int | None = None           # the worker process, once placed
        self.node = ""
        self._stop, self._wake = threading.Event(), threading.Event()
        self._interrupt = ""
        self._placed = False                         # the worker has started the run
        self._checkpoint: bytes | None = None        # the last one this job delivered
        self._final: bytes | None = None
        self._warned = False
        self._taken: int | None = None               # the number of the last reply taken
        self.run = job_run(spec, recipe, name=name, workspace=workspace, resume=resume)
        self.id = self.run.id + "-" + str(id(self))

    # -- control (any thread) ----------------------------------------------------------------
    def start(self) -> "RemoteJob":
        if self._thread is not None:
            raise LayerLabError("This run has already been started.")
        self._announce()
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name=f"{self.thread_prefix}-{self.run.id}")
        self._thread.start()
        return self

    def stop(self, interrupt: str = "") -> None:
        """Ask the run to stop (the worker stops after its current batch); ``interrupt``
        marks a stop by the server, saved as interrupted."""
        if interrupt and not self._stop.is_set():
            self._interrupt = interrupt
        self._stop.set()
        if self._placed:
            self._send_stop_now()
        self._wake.set()

    def _warn(self, message: str) -> None:
        self._record({"kind": "warning", "message": message})

    # -- what a subclass provides ------------------------------------------------------------
    def _announce(self) -> None:
        """Called by :meth:`start` before the job's thread starts (e.g. a queued event)."""

    def _place(self) -> None:
        """Start the worker and the run in it; stoppable (raise :meth:`_stopped_early`)."""
        raise NotImplementedError

    def _poll(self, taken: int | None) -> dict[str, Any] | None:
        """The worker's answer to a poll that says which reply was ``taken`` last; None
        when none came in time (it may be busy: the worker sends that reply's content
        again); raises :class:`WorkerLost` when it is gone."""
        raise NotImplementedError

    def _send_stop(self) -> None:
        """Tell the worker to stop (from the job's thread)."""
        raise NotImplementedError

    def _send_stop_now(self) -> None:
        """Tell a placed worker to stop from the caller's thread, where that is safe;
        otherwise the job's thread, woken, sends it within a moment."""

    def _ending(self, exc: Exception) -> tuple[str, str] | None:
        """``(status, message)`` for one of the transport's own exceptions, else None."""
        return None

    def _release(self) -> None:
        """Give back what the job held while queued or training (its thread, at the end)."""

    def _close(self) -> None:
        """Let the worker clean up, then end it."""

    def _device_words(self, device: str) -> str:
        return device

    # -- the job's thread ----------------------------------------------------------------------
    def _work(self) -> None:
        t0 = time.perf_counter()
        try:
            self._place()
            self._follow()
        except Ended as end:
            self._end_here(end.status, end.message, t0)
        except WorkerLost as lost:
            _log.warning("run %s: %s", self.run.id, lost.reason)
            self._end_here(*self._lost(lost.reason), t0)
        except LayerLabError as err:                     # raised here, a sentence
            self._end_here("failed", str(err), t0)
        except Exception as exc:  # a sentence for the page; the details go to the log
            ending = self._ending(exc)
            if ending is None:
                _log.error("run %s failed in its worker", self.run.id, exc_info=exc)
                ending = ("failed", self._failure())
            self._end_here(*ending, t0)
        finally:
            self._release()
            self._close()

    def _stopped_early(self) -> Ended:
        return Ended("stopped", " ".join(("Stopped before training began.",
                                          self._interrupt)).strip())

    def _failure(self) -> str:
        return (f"Training failed because of an error on the server (run "
                f"{self.run.id[-6:]}). Try again; if it happens again, tell whoever runs "
                f"Layer Lab (the details are in the server's log).")

    def _order(self) -> dict[str, Any]:
        """What the worker needs besides the data: the run and, to resume, its files."""
        probe = getattr(self, "probe", None)
        return {"spec": self.spec.to_dict(), "recipe": self.recipe.to_dict(),
                "run": self.run.to_dict(), "files": self._resume_files(),
                "test_limit": self.test_limit,
                "probe_index": int(getattr(self, "probe_index", 0)),
                "probe": None if probe is None else (probe[0], int(probe[1])),
                "teacher": self._teacher_answers()}

    def _teacher_answers(self) -> Any:
        """A distilling run's teacher answers for the training images (2.4 MB), computed
        or read here, for workers that have neither the presets' files nor the server's
        cache; None where the worker computes them itself."""
        if self.recipe.teacher is None or self.data is not None:
            return None
        from core.distill import teacher_probabilities  # noqa: PLC0415

        return teacher_probabilities(self.recipe.teacher)

    def _resume_files(self) -> dict[str, bytes]:
        """The server's weights (and snapshots) of the run being resumed."""
        if self.run.epochs_done == 0:
            return {}
        files: dict[str, bytes] = {}
        path = self.store.model_path(self.run.id) if self.store is not None else None
        if path is not None:
            files[path.name] = path.read_bytes()
        elif self.model is not None:
            files[MODEL_FILE] = model_bytes(self.model)
        else:
            raise LayerLabError(f"Run {self.run.id} has no saved weights to resume from.")
        snaps = self.store.run_dir(self.run.id) / SNAPSHOTS_FILE if self.store else None
        if snaps is not None and snaps.is_file():
            files[SNAPSHOTS_FILE] = snaps.read_bytes()
        return files

    def _follow(self) -> None:
        """Poll the worker until its ``done`` event; stop it when asked."""
        last_answer, stop_sent = time.monotonic(), False
        while not self.done:
            if self._stop.is_set() and not stop_sent:
                self._send_stop()
                stop_sent = True
            reply = self._poll(self._taken)
            if reply is None:
                if time.monotonic() - last_answer > LOST_AFTER_S:
                    raise WorkerLost(self.silent)
                continue
            last_answer = time.monotonic()
            self._take(reply)
            self._wake.wait(POLL_S)
            self._wake.clear()

    def _take(self, reply: dict[str, Any]) -> None:
        """Apply one poll's answer: saves first (a done event follows its final save)."""
        self._taken = reply.get("number")
        if reply.get("saved"):
            self._save(reply["saved"])
        if reply.get("snapshot") is not None:
            self.snapshots = RemoteSnapshots(*reply["snapshot"])
        for event in reply["events"]:
            if event["kind"] == "started":
                event["device"] = self._device_words(event["device"])
            elif event["kind"] == "done":
                self._update_run(event["run"])
                event["run"] = self.run
                if self._final is not None and event["status"] != "failed":
                    self._load(self._final)
            self._record(event)

    def _update_run(self, record: dict[str, Any]) -> None:
        """Take the worker's run record, keeping this object (pages hold it)."""
        fresh = Run.from_dict(record)
        if fresh.id == self.run.id:
            self.run.__dict__.update(vars(fresh))

    def _save(self, saved: dict[str, Any]) -> None:
        """Write one consistent save of the worker (files, then the run record)."""
        self._update_run(saved["run"])
        files = {n: b for n, b in saved["files"].items() if n in RELAYED_FILES}
        self._checkpoint = files.get(CHECKPOINT_FILE, self._checkpoint)
        self._final = files.get(MODEL_FILE, self._final)
        self._write(files)

    def _write(self, files: dict[str, bytes]) -> None:
        if self.store is None:
            return
        folder = self.store.run_dir(self.run.id)
        try:
            for name, data in files.items():
                try:
                    atomic_write_bytes(folder / name, data)
                except OSError as exc:
                    raise save_error(f"save the weights of run {self.run.id}", exc,
                                     folder) from None
            self.store.save_run(self.run)
        except LayerLabError as err:
            if not self._warned:
                self._warned = True
                self._warn(str(err) + " Training goes on.")

    def _load(self, data: bytes) -> None:
        try:
            self.model = model_from_bytes(data)
        except Exception as exc:  # damaged in transit: the run itself stays saved
            _log.warning("run %s: the model sent back could not be loaded: %r",
                         self.run.id, exc)

    def _lost(self, reason: str) -> tuple[str, str]:
        """The run as of its last checkpoint that reached the server, interrupted."""
        run = self.run
        if self._checkpoint is not None:        # newer weights than any earlier metrics
            run.test_accuracy = run.test_loss = run.confusion = None
            self._write({MODEL_FILE: self._checkpoint})
            self._load(self._checkpoint)
        if run.epochs_done:
            return "interrupted", (f"{reason} It was saved after "
                                   f"{plural(run.epochs_done, 'full epoch')}; resume it "
                                   f"from the Train page.")
        return "interrupted", (f"{reason} It ended before its first epoch, so nothing was "
                               f"saved; start it again.")

    def _end_here(self, status: str, message: str, t0: float) -> None:
        """The one ``done`` event of a job that ended on the server's side."""
        if self.done:
            return
        self.run.status, self.run.message = status, message
        if self.store is not None:
            try:
                self.store.save_run(self.run)
            except LayerLabError as err:
                self._warn(str(err))
        self._record({"kind": "done", "status": status, "message": message, "run": self.run,
                      "wall_time_s": time.perf_counter() - t0})
