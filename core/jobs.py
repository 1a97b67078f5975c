"""Which training job belongs to which workspace, and the server's quotas on them.

A run belongs to its workspace on the server, not to a browser tab: a reload or a second
tab of the workspace finds the live job in :data:`REGISTRY` (curves from its start, Stop
works there too). The registry enforces, for every session of the process:

- one queued-or-running run per workspace;
- a bounded queue: when as many runs train as the job backend runs at once (its
  ``max_parallel()``: the local scheduler's places, or as wide as a Ray cluster) and
  ``max_queued`` more wait, Start is refused with "the server is full, try again in about
  N minutes";
- a ceiling on epochs × training images per run (``LAYERLAB_MAX_RUN_IMAGES``; the
  default, 100 epochs of all 60,000 images, fits every preset's own recipe);
- orphans: a job whose workspace had no live page for ``LAYERLAB_ORPHAN_S`` seconds
  (pages call :meth:`JobRegistry.heartbeat`) is stopped and saved as interrupted, which
  can be resumed.

Settings come from the environment (``LAYERLAB_MAX_QUEUED``, default 8).
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Callable

from core.backend import Backend, LocalBackend, current
from core.errors import LayerLabError
from core.recipe import Recipe
from core.scheduler import Scheduler
from core.training import TrainingJob

_log = logging.getLogger(__name__)
MNIST_TRAIN_IMAGES = 60_000
# frontier_1k's own recipe is the longest: 100 epochs (each costs a tiny model little)
DEFAULT_MAX_RUN_IMAGES = 100 * MNIST_TRAIN_IMAGES
ASSUMED_IMAGES_PER_S = 1_000      # a wait estimate for a run that has not yet reported


class QuotaError(LayerLabError):
    """A run refused by the server's rules (one per workspace, full queue, ceiling)."""


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, "") or default))
    except ValueError:
        _log.warning("%s is not a whole number; using %d", name, default)
        return default


def run_images(recipe: Recipe) -> int:
    """Images a recipe trains on, epochs × training images (validation included).

    >>> run_images(Recipe(epochs=3, train_subset=1000))
    3000
    >>> run_images(Recipe(epochs=2))
    120000
    """
    return recipe.epochs * min(recipe.train_subset or MNIST_TRAIN_IMAGES, MNIST_TRAIN_IMAGES)


def ceiling_problem(recipe: Recipe, max_images: int) -> str | None:
    """The sentence refusing a recipe over the per-run ceiling, or None when it fits.

    >>> ceiling_problem(Recipe(epochs=3), 1_800_000) is None
    True
    >>> print(ceiling_problem(Recipe(epochs=3), 100_000))
    This run would train on 180,000 images (3 epochs × 60,000); this server allows at most 100,000 per run. Use fewer epochs or fewer training images.
    """
    n = run_images(recipe)
    if n <= max_images:
        return None
    per_epoch = n // recipe.epochs
    epochs = f"{recipe.epochs} epoch" + ("s" if recipe.epochs != 1 else "")
    return (f"This run would train on {n:,} images ({epochs} × {per_epoch:,}); this server "
            f"allows at most {max_images:,} per run. Use fewer epochs or fewer training "
            f"images.")


def wait_minutes(seconds_left: list[float]) -> int:
    """Whole minutes until the first of the running jobs is expected to end (at least 1).

    >>> wait_minutes([400.0, 90.0]), wait_minutes([]), wait_minutes([10.0])
    (2, 1, 1)
    """
    return max(1, math.ceil(min(seconds_left, default=60.0) / 60))


def _seconds_left(job: TrainingJob) -> float:
    """A running job's ETA, else an estimate from its recipe."""
    p = job.snapshot()
    if p.eta_s is not None:
        return p.eta_s
    return run_images(job.recipe) / ASSUMED_IMAGES_PER_S


class JobRegistry:
    """The live (or last) training job of each workspace, and the quotas on them.

    Its width (runs at once) is ``backend``'s, else a local backend over ``scheduler``'s,
    else the process's current backend (:func:`core.backend.current`).

    >>> JobRegistry(Scheduler(3), max_queued=4).width()
    3
    """

    def __init__(self, scheduler: Scheduler | None = None, *, backend: Backend | None = None,
                 max_queued: int | None = None, max_run_images: int | None = None,
                 orphan_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # neither given (the server's registry): the process's backend, asked each time,
        # so a switch to Ray, or a fallback from it, moves the cap with it
        self.backend = backend or (LocalBackend(scheduler) if scheduler else None)
        self.max_queued = max_queued if max_queued is not None else \
            _env_int("LAYERLAB_MAX_QUEUED", 8)
        self.max_run_images = max_run_images or _env_int("LAYERLAB_MAX_RUN_IMAGES",
                                                         DEFAULT_MAX_RUN_IMAGES)
        self.orphan_s = orphan_s or _env_int("LAYERLAB_ORPHAN_S", 300)
        self.clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}      # workspace -> its latest job
        self._seen: dict[str, float] = {}            # workspace -> last heartbeat
        self._reaper: threading.Thread | None = None

    # -- reading ------------------------------------------------------------------------
    def width(self) -> int:
        """How many runs the backend trains at once (beyond it, runs wait)."""
        return (self.backend or current()).max_parallel()

    def get(self, workspace: str) -> TrainingJob | None:
        """The workspace's live job, or its last one while the registry still keeps it."""
        with self._lock:
            return self._jobs.get(workspace)

    def live(self, workspace: str) -> TrainingJob | None:
        """The workspace's queued or running job, else None."""
        job = self.get(workspace)
        return job if job is not None and not job.done else None

    def live_run_ids(self) -> set[str]:
        """Ids of the runs queued or training in this process."""
        with self._lock:
            return {j.run.id for j in self._jobs.values() if not j.done}

    def last_seen(self, workspace: str) -> float | None:
        """The clock reading of the workspace's last page heartbeat, or None."""
        with self._lock:
            return self._seen.get(workspace)

    def heartbeat(self, workspace: str) -> None:
        """A page of ``workspace`` is open: its job is not an orphan."""
        with self._lock:
            self._seen[workspace] = self.clock()

    # -- starting -----------------------------------------------------------------------
    def check(self, workspace: str, recipe: Recipe) -> str | None:
        """Why a run with ``recipe`` could not start now in ``workspace``, or None."""
        with self._lock:
            return self._problem(workspace, recipe)

    def submit(self, workspace: str, job: TrainingJob) -> TrainingJob:
        """Start ``job`` as the workspace's run, or raise :class:`QuotaError` saying why."""
        with self._lock:
            problem = self._problem(workspace, job.recipe, job.run.id)
            if problem:
                raise QuotaError(problem)
            self._jobs[workspace] = job
            self._seen[workspace] = self.clock()
            job.start()
            self._ensure_reaper()
        return job

    def _problem(self, workspace: str, recipe: Recipe, run_id: str = "") -> str | None:
        """Checked under the lock, so two tabs pressing Start at once get one run."""
        own = self._jobs.get(workspace)
        if own is not None and not own.done:
            return (f"This workspace already has a run in progress (“{own.run.name}”), "
                    f"perhaps started in another tab: stop it or wait for it to end before "
                    f"starting another.")
        if run_id and run_id in {j.run.id for j in self._jobs.values() if not j.done}:
            return "This run is still training; wait for it to end before resuming it."
        ceiling = ceiling_problem(recipe, self.max_run_images)
        if ceiling:
            return ceiling
        live = [j for j in self._jobs.values() if not j.done]
        width = self.width()
        if len(live) >= width + self.max_queued:
            minutes = wait_minutes([_seconds_left(j) for j in live[:width]])
            return (f"The server is full ({len(live)} runs are training or waiting): try "
                    f"again in about {minutes} minute{'s' if minutes != 1 else ''}.")
        return None

    # -- orphans ------------------------------------------------------------------------
    def reap(self) -> list[TrainingJob]:
        """Stop every live job whose workspace had no heartbeat for ``orphan_s``; they are
        saved as interrupted. Finished jobs are forgotten after the same time."""
        now, stopped = self.clock(), []
        with self._lock:
            for ws, job in list(self._jobs.items()):
                idle = now - self._seen.get(ws, now)
                if idle <= self.orphan_s:
                    continue
                if job.done:
                    del self._jobs[ws]           # frees its model; sessions keep their own
                    self._seen.pop(ws, None)
                    continue
                minutes = max(1, round(self.orphan_s / 60))
                job.stop(interrupt=f"The server stopped this run because no page of its "
                                   f"workspace was open for {minutes} minute(s).")
                stopped.append(job)
        for job in stopped:
            _log.info("stopped orphaned run %s", job.run.id)
        return stopped

    def _ensure_reaper(self) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return
        self._reaper = threading.Thread(target=self._reap_loop, name="job-reaper",
                                        daemon=True)
        self._reaper.start()

    def _reap_loop(self) -> None:
        """Reap every few seconds while the registry holds any job."""
        while True:
            time.sleep(min(10.0, self.orphan_s / 4))
            self.reap()
            with self._lock:
                if not self._jobs:
                    self._reaper = None
                    return


REGISTRY = JobRegistry()
