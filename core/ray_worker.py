"""The worker side of the Ray backend: what runs inside a Ray worker for one run.

:class:`TrainingActor` is the actor :class:`core.ray_backend.RayBackend` creates per run
(the server side, :class:`core.ray_backend.RayJob`, drives it through ``start``, ``poll``,
``stop`` and ``close``). It trains with our own :class:`core.training.TrainingJob` under a
one-place scheduler, against a scratch :class:`RelayStore` whose saves are handed to the
server on each poll: one handover per run record, with the files saved before it, so what
reaches the server is always a consistent checkpoint.

This module imports nothing of the server side; Ray itself is imported lazily, inside the
worker, where it is always installed.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from core.data import Mnist, use_mnist
from core.recipe import Recipe
from core.runs import CHECKPOINT_FILE, MODEL_FILE, SNAPSHOTS_FILE, Run, RunStore
from core.spec import ModelSpec
from core.storage import atomic_write_bytes

_log = logging.getLogger(__name__)
RELAYED_FILES = (CHECKPOINT_FILE, MODEL_FILE, SNAPSHOTS_FILE)
SCRATCH_PREFIX = "layerlab-ray-"      # a worker's scratch run store: <prefix><pid>-<random>


def merge_handovers(old: dict[str, Any] | None,
                    new: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two handovers the server has not taken as one: the newer run record, and of each
    file the newest copy.

    >>> merge_handovers({"run": "r1", "files": {"a": 1, "b": 1}},
    ...                 {"run": "r2", "files": {"b": 2}})
    {'files': {'a': 1, 'b': 2}, 'run': 'r2'}
    >>> merge_handovers(None, None) is None
    True
    """
    if not old or not new:
        return new or old
    return {"files": {**old["files"], **new["files"]}, "run": new["run"]}


class RelayStore(RunStore):
    """A scratch run store in the worker that keeps every save for the server.

    Files saved since the last :meth:`save_run` go out together with that run record (the
    training code saves weights and snapshots first, then the record), so each handover is
    a consistent checkpoint. Unsent handovers merge: only the newest of each file is kept.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        super().__init__(root)
        self._relay_lock = threading.Lock()
        self._staged: dict[str, bytes] = {}
        self._ready: dict[str, Any] | None = None

    def save_model(self, run_id: str, model: Any, filename: str = MODEL_FILE) -> Path:
        path = super().save_model(run_id, model, filename)
        self._stage(filename, path.read_bytes())
        return path

    def save_snapshots(self, run_id: str, arrays: dict[str, Any]) -> None:
        super().save_snapshots(run_id, arrays)
        self._stage(SNAPSHOTS_FILE, (self.run_dir(run_id) / SNAPSHOTS_FILE).read_bytes())

    def save_run(self, run: Run) -> None:
        super().save_run(run)
        with self._relay_lock:
            self._ready = merge_handovers(self._ready, {"files": self._staged,
                                                        "run": run.to_dict()})
            self._staged = {}

    def _stage(self, name: str, data: bytes) -> None:
        with self._relay_lock:
            self._staged[name] = data

    def take(self) -> dict[str, Any] | None:
        """The handover not yet taken (files and run record), or None."""
        with self._relay_lock:
            out, self._ready = self._ready, None
        return out


def sweep_scratch(folder: str | None = None) -> list[str]:
    """Remove the scratch stores of workers that died (killed before they could clean
    up); a store's name holds its worker's pid. The names removed."""
    folder = folder or tempfile.gettempdir()
    removed = []
    for entry in os.scandir(folder):
        pid = entry.name.removeprefix(SCRATCH_PREFIX).split("-")[0]
        if not entry.name.startswith(SCRATCH_PREFIX) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue                          # its worker still runs
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
        except PermissionError:
            continue                          # someone else's process
    return removed


def _fit_to_assignment() -> None:
    """Keep TensorFlow to what Ray gave this job: as many threads as CPUs, and GPU memory
    taken as needed (several jobs may share one GPU). Before TensorFlow starts."""
    import ray  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, int(cpus)))
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:                      # TensorFlow already started in this worker
        _log.info("TensorFlow had started; threads and GPU memory left as they were")


def merge_replies(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A poll's reply with an earlier one the server never took put first: its events
    before the new ones, its saved files under newer ones of the same name (the newest
    run record), the newest snapshot.

    >>> old = {"events": [1], "saved": {"run": "r1", "files": {"a": 1, "b": 1}}}
    >>> new = {"events": [2], "saved": {"run": "r2", "files": {"b": 2}}}
    >>> merge_replies(old, new)
    {'events': [1, 2], 'saved': {'files': {'a': 1, 'b': 2}, 'run': 'r2'}}
    >>> merge_replies(None, new) == new
    True
    """
    if old is None:
        return new
    merged = {"events": old["events"] + new["events"],
              "saved": merge_handovers(old.get("saved"), new.get("saved"))}
    snapshot = new.get("snapshot") or old.get("snapshot")
    if snapshot is not None:
        merged["snapshot"] = snapshot
    return merged


class TrainingActor:
    """Runs one :class:`core.training.TrainingJob` in a Ray worker (see the module doc);
    :class:`core.process_worker.ProcessActor` runs it in a worker process of this machine."""

    def __init__(self) -> None:
        self.job: Any = None
        self.store: RelayStore | None = None
        self.root = ""
        self.sent: Any = None                     # the last snapshot sent
        # The last reply, kept until the server acknowledges it: a poll whose answer came
        # too late for the server (it gave up waiting) must not lose its events.
        self.unacked: dict[str, Any] | None = None
        self.replies = 0                          # replies numbered from 1

    def start(self, order: dict[str, Any], data: Any) -> dict[str, Any]:
        """Start training; the worker's pid and node address."""
        from core.scheduler import Scheduler  # noqa: PLC0415
        from core.training import TrainingJob  # noqa: PLC0415

        self._prepare()
        if isinstance(data, dict):            # the server's MNIST, from the object store
            use_mnist(Mnist(source="the Ray object store", kind="ray", **data))
            data = None
        if order.get("teacher") is not None:  # a distilling run: the server's teacher answers
            from core.distill import provide  # noqa: PLC0415

            provide(order["recipe"]["teacher"], order["teacher"])
        sweep_scratch()
        self.root = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
        self.store = RelayStore(self.root)
        run = Run.from_dict(order["run"])
        for name, blob in order["files"].items():
            if name in RELAYED_FILES:
                atomic_write_bytes(self.store.run_dir(run.id) / name, blob)
        job = TrainingJob(ModelSpec.from_dict(order["spec"]),
                          Recipe.from_dict(order["recipe"]), resume=run, store=self.store,
                          data=data, test_limit=order["test_limit"], scheduler=Scheduler(1))
        job.probe_index = order["probe_index"]
        if order["probe"] is not None:
            job.probe = order["probe"]
        self.job = job.start()
        return {"pid": os.getpid(), "node": self._node()}

    def _prepare(self) -> None:
        """Fit TensorFlow to what this worker was given, before it starts."""
        _fit_to_assignment()

    def _node(self) -> str:
        """Where this worker runs, as the server shows it."""
        import ray  # noqa: PLC0415

        return ray.util.get_node_ip_address()

    def poll(self, taken: int | None = None) -> dict[str, Any]:
        """New events, the handover not yet taken and a snapshot newer than sent, with
        the reply's ``number``; ``taken`` is the number of the last reply the server
        took. A reply it did not take (its answer was late) comes again, merged into
        this one."""
        if self.unacked is not None and self.unacked["number"] == taken:
            self.unacked = None
        reply = merge_replies(self.unacked, self._fresh())
        self.replies += 1
        self.unacked = reply | {"number": self.replies}
        return self.unacked

    def _fresh(self) -> dict[str, Any]:
        """What happened since the last poll."""
        events = self.job.drain()
        for event in events:
            if isinstance(event.get("run"), Run):
                event["run"] = event["run"].to_dict()
        reply: dict[str, Any] = {"events": events, "saved": self.store.take()}
        snaps = getattr(self.job, "snapshots", None)
        # none before training begins: a resume's earlier snapshots come first, and the
        # layer names their charts need are known only then
        latest = snaps.latest() if snaps is not None and snaps.layers else None
        if latest is not None and latest is not self.sent:
            self.sent = latest
            reply["snapshot"] = (latest, snaps.meta())
        return reply

    def stop(self, interrupt: str = "") -> None:
        if self.job is not None:
            self.job.stop(interrupt)

    def close(self) -> bool:
        """Remove the scratch store (the server has everything)."""
        if self.job is not None:
            self.job.stop()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
        return True
