"""Maps computed in the background, and what the Projections page does for a request.

:func:`submit` computes a map (or fits a UMAP map again to place a drawn digit) on one
background thread per process, shared by every session asking for the same key, and
reports its progress on a :class:`ProjectionJob`. :func:`plan_map` decides, for one
request, whether the page shows a map, waits for one, computes it at once or offers to
start it.

Concurrency: the job registry has its own lock (``_jobs_lock``), separate from the
embedding process's lock on its fitted maps; neither is held while a map is computed.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import LayerLabError
from core.projections import (Projection, ProjectionRequest, compute_projection,
                              fit_umap_map, load_projection, resolve)

QUICK_PCA_POINTS = 10000     # a PCA of up to this many points takes about a second: no job


SUPERSEDED = ("This map was not computed: a newer map requested from your workspace "
              "replaced it. Ask for it again if you still want it.")


class JobCancelled(LayerLabError):
    """A job superseded by a newer request of every workspace that asked for it."""


@dataclass
class ProjectionJob:
    """A projection (or a fitted map) being computed in the background.

    ``owners`` are the workspaces waiting for it (``None`` for a caller without one); a
    job no owner wants any more is cancelled: dropped from the queue, or stopped at its
    next progress report if it already runs (a t-SNE/UMAP child process is restarted).
    """

    key: str
    kind: str                                   # "projection" | "fit"
    fraction: float = 0.0
    message: str = "Waiting for the previous map to finish"
    started: float = field(default_factory=time.perf_counter)
    future: Any = None
    owners: set = field(default_factory=set)
    began: float | None = None                  # when the worker took it up, if it did
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def report(self, fraction: float, message: str) -> None:
        if self._cancel.is_set():               # stops the computation that reports
            raise JobCancelled(SUPERSEDED)
        self.fraction, self.message = float(fraction), message

    def cancel(self) -> None:
        """Stop this job: drop it from the queue, or stop it at its next report."""
        self._cancel.set()
        self.message = "Cancelled: replaced by a newer request"
        if self.future is not None:
            self.future.cancel()                # only succeeds while it is still queued

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def result(self):
        """The Projection/FittedMap; re-raises the job's error (a LayerLabError stays one;
        a cancelled job raises :class:`JobCancelled`)."""
        if self.future.cancelled():
            raise JobCancelled(SUPERSEDED)
        return self.future.result()


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerlab-projection")
_jobs_lock = threading.Lock()
_jobs: dict[tuple[str, str], ProjectionJob] = {}
_current: dict[str, ProjectionJob] = {}        # workspace -> its one queued/running job


def _forget(job: ProjectionJob) -> None:
    """Take ``job`` out of the registries; call with ``_jobs_lock`` held."""
    if _jobs.get((job.kind, job.key)) is job:
        del _jobs[(job.kind, job.key)]
    for owner in list(job.owners):
        if _current.get(owner) is job:
            del _current[owner]


def _supersede(workspace: str | None, job: ProjectionJob) -> None:
    """``workspace`` now waits for ``job`` only: its previous job loses it as an owner and
    is cancelled when nobody else waits for it. Call with ``_jobs_lock`` held."""
    job.owners.add(workspace)
    if workspace is None:                      # no workspace: no quota, nothing replaced
        return
    previous = _current.get(workspace)
    _current[workspace] = job
    if previous is None or previous is job:
        return
    previous.owners.discard(workspace)
    if not previous.owners:
        _forget(previous)
        previous.cancel()


def submit(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
           model=None, kind: str = "projection", cache_dir: Path | None = None,
           workspace: str | None = None) -> ProjectionJob:
    """Start (or join) the background computation of a map or of a fitted UMAP map.

    Jobs run one at a time per process, in the order they were asked for; asking again
    for a key that is still queued or running returns that job instead of starting a
    second one. Each ``workspace`` has at most one job: a new request replaces its
    previous one, which is cancelled unless another workspace waits for it too, so one
    student cannot queue maps ahead of everyone else. A finished job leaves the registry
    at once: its map is in the disk cache, its fitted UMAP in
    :func:`core.projections.fitted_map`.
    """
    request, _, key = resolve(request, images, labels, model)
    with _jobs_lock:
        job = _jobs.get((kind, key))
        if job is not None:
            _supersede(workspace, job)
            return job
        job = ProjectionJob(key, kind)

        def work():
            job.started = job.began = time.perf_counter()
            try:
                job.report(0.0, "Starting")     # a job cancelled just now stops here
                if kind == "fit":
                    return fit_umap_map(request, images, labels, model, job.report)
                return compute_projection(request, images, labels, model, job.report,
                                          cache_dir)
            finally:
                with _jobs_lock:
                    _forget(job)

        _jobs[(kind, key)] = job
        _supersede(workspace, job)
        job.future = _executor.submit(work)
        return job


@dataclass(frozen=True)
class MapPlan:
    """What to do for one map request: ``action`` is

    - ``"show"``: the map is in the disk cache (``projection``);
    - ``"wait"``: ``job`` is computing it;
    - ``"compute"``: it is quick (a PCA of up to :data:`QUICK_PCA_POINTS` points): compute
      it now with :func:`core.projections.compute_projection`;
    - ``"offer"``: it takes a while: offer to :func:`submit` it (``job``, when set, is
      another map of the same session still being computed).
    """

    action: str
    projection: Projection | None = None
    job: ProjectionJob | None = None


def plan_map(request: ProjectionRequest, key: str, job: ProjectionJob | None = None,
             cache_dir: Path | None = None) -> MapPlan:
    """The page's decision for a resolved ``request`` and its ``key`` (see
    :func:`core.projections.resolve`), given the session's current ``job`` if any.

    >>> plan_map(ProjectionRequest("tsne", n_points=2000), "no-such-key").action
    'offer'
    >>> plan_map(ProjectionRequest("pca", n_points=2000), "no-such-key").action
    'compute'
    """
    found = load_projection(key, cache_dir)
    if found is not None:
        return MapPlan("show", projection=found)
    if job is not None and job.key == key:
        return MapPlan("wait", job=job)
    if request.method == "pca" and request.n_points <= QUICK_PCA_POINTS:
        return MapPlan("compute")
    return MapPlan("offer", job=job)
