"""Where training jobs run: the one interface the Train page, the Challenge and sweeps use.

A *backend* makes training jobs; a *job* is started by :data:`core.jobs.REGISTRY`
(quotas), streams its events into a :class:`core.training.Progress`, stops on request and
holds its result (``job.run``; ``job.model`` once done). Three backends:

- ``local`` (the default, no extra service): :class:`core.training.TrainingJob`, a thread
  of the server's own process under the server's :data:`core.scheduler.SCHEDULER`;
- ``process`` (``LAYERLAB_TRAIN_IN=process``): :class:`core.process_backend.ProcessJob`,
  a worker process of this machine per run, under the same scheduler (pages stay
  responsive while runs start, and a run that dies cannot take the server with it, for
  about 1 GB more memory per run: README, "Running it for a class");
- ``ray``: a Ray actor per job on a Ray cluster (``core/ray_backend.py``), selected by
  ``LAYERLAB_RAY_ADDRESS`` (``auto``, ``ray://host:10001`` or ``local``).

Pages ask :func:`current` for the backend and never name a job class themselves.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.recipe import Recipe
from core.spec import ModelSpec

_log = logging.getLogger(__name__)
RAY_ADDRESS_ENV = "LAYERLAB_RAY_ADDRESS"
TRAIN_IN_ENV = "LAYERLAB_TRAIN_IN"


class Job(Protocol):
    """What the registry and the pages use of a training job (TrainingJob has it all)."""

    id: str
    run: Any               # core.runs.Run, updated as the job trains
    recipe: Recipe
    model: Any             # the trained keras model once done (None before)

    def start(self) -> "Job": ...
    def stop(self, interrupt: str = "") -> None: ...
    def join(self, timeout: float | None = None) -> None: ...
    def drain(self) -> list[dict[str, Any]]: ...
    def snapshot(self) -> Any: ...        # core.training.Progress

    @property
    def alive(self) -> bool: ...

    @property
    def done(self) -> bool: ...


@dataclass(frozen=True)
class BackendInfo:
    """What the sidebar says about where runs train."""

    name: str                          # "local" or "ray"
    summary: str                       # one line, e.g. "2 runs at once on this machine"
    nodes: int = 1
    cpus: float = 0.0
    gpus: float = 0.0
    queued: int = 0                    # jobs waiting for a place
    problems: list[str] = field(default_factory=list)   # sentences, e.g. cluster gone


class Backend(Protocol):
    """Makes jobs; says how wide it is and what it looks like."""

    name: str

    def new_job(self, spec: ModelSpec, recipe: Recipe, **kwargs: Any) -> Job: ...
    def max_parallel(self) -> int: ...
    def describe(self) -> BackendInfo: ...


class LocalBackend:
    """A thread per job in the server's own process, under the server's scheduler.

    >>> LocalBackend().name
    'local'
    """

    name = "local"

    def __init__(self, scheduler: Any = None) -> None:
        from core.scheduler import SCHEDULER  # noqa: PLC0415

        self.scheduler = scheduler or SCHEDULER

    def new_job(self, spec: ModelSpec, recipe: Recipe, **kwargs: Any) -> Job:
        """A :class:`core.training.TrainingJob`; ``kwargs`` are its keyword arguments
        (name, workspace, store, resume, model, data, test_limit)."""
        from core.training import TrainingJob  # noqa: PLC0415

        kwargs.setdefault("scheduler", self.scheduler)
        return TrainingJob(spec, recipe, **kwargs)

    def max_parallel(self) -> int:
        return self.scheduler.max_active

    def describe(self) -> BackendInfo:
        """One machine: its cores, and the runs waiting for one of its places.

        >>> LocalBackend().describe().nodes
        1
        """
        from core.wording import plural  # noqa: PLC0415

        n = self.scheduler.max_active
        return BackendInfo("local", f"this machine, {plural(n, 'run')} at once",
                           cpus=float(len(os.sched_getaffinity(0))),
                           queued=self.scheduler.waiting)


_lock = threading.Lock()
_current: Backend | None = None


def choose(address: str | None, train_in: str | None = None) -> Backend:
    """The backend for a ``LAYERLAB_RAY_ADDRESS`` value; without one, where
    ``LAYERLAB_TRAIN_IN`` says: ``thread`` (the default) or ``process``.

    >>> choose("").name, choose(None, "thread").name, choose(None, " Process ").name
    ('local', 'local', 'process')
    """
    if (address or "").strip():
        from core.ray_backend import RayBackend  # noqa: PLC0415  (Ray is an optional extra)

        return RayBackend(address.strip())
    if (train_in or "").strip().lower() == "process":
        from core.process_backend import ProcessBackend  # noqa: PLC0415

        return ProcessBackend()
    return LocalBackend()


def current() -> Backend:
    """This process's backend, chosen once from the environment."""
    global _current
    with _lock:
        if _current is None:
            _current = choose(os.environ.get(RAY_ADDRESS_ENV), os.environ.get(TRAIN_IN_ENV))
            _log.info("training backend: %s", _current.name)
        return _current


def set_current(backend: Backend | None) -> None:
    """Replace the process's backend (tests; a fallback after the cluster went away)."""
    global _current
    with _lock:
        _current = backend
