"""A server-wide cap on how many runs train at once, with a visible FIFO queue.

:data:`SCHEDULER` (``LAYERLAB_MAX_RUNS``, default 2) is shared by every session of the
process; the rest wait in order. Which workspace may queue what is decided above it, by
:mod:`core.jobs`.
"""
from __future__ import annotations

import os
import threading
from typing import Callable


class Scheduler:
    """A server-wide cap on concurrent runs with a visible FIFO queue.

    >>> sched = Scheduler(1)
    >>> sched.acquire("a", threading.Event()), sched.position("a"), sched.active
    (True, 0, 1)
    >>> stopped = threading.Event(); stopped.set()
    >>> sched.acquire("b", stopped), sched.position("b")    # stopped while queued
    (False, None)
    >>> sched.release("a"); sched.active
    0
    """

    def __init__(self, max_active: int) -> None:
        self.max_active = max(1, max_active)
        self._cond = threading.Condition()
        self._active: set[str] = set()
        self._waiting: list[str] = []

    def position(self, job_id: str) -> int | None:
        """0 while training, 1.. while queued, None otherwise.

        >>> Scheduler(2).position("never-queued") is None
        True
        """
        with self._cond:
            if job_id in self._active:
                return 0
            if job_id in self._waiting:
                return self._waiting.index(job_id) + 1
            return None

    def acquire(self, job_id: str, stop: threading.Event,
                on_wait=None) -> bool:
        """Block until ``job_id`` may train; False if ``stop`` was set while queued."""
        with self._cond:
            self._waiting.append(job_id)
            try:
                while True:
                    if self._waiting[0] == job_id and len(self._active) < self.max_active:
                        self._active.add(job_id)
                        return True
                    if stop.is_set():
                        return False
                    if on_wait:
                        on_wait(self._waiting.index(job_id) + 1)
                    self._cond.wait(timeout=0.25)
            finally:
                self._waiting.remove(job_id)
                self._cond.notify_all()

    def release(self, job_id: str) -> None:
        """Free ``job_id``'s place (a no-op for one that holds none) and wake the queue."""
        with self._cond:
            self._active.discard(job_id)
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """How many runs wait for a place now.

        >>> Scheduler(1).waiting
        0
        """
        with self._cond:
            return len(self._waiting)

    @property
    def active(self) -> int:
        """How many runs hold a place now."""
        with self._cond:
            return len(self._active)

    def run_if_idle(self, action: Callable[[], None]) -> bool:
        """Call ``action`` while no run trains or waits, holding the lock so none can
        start meanwhile; False (and no call) otherwise.

        >>> sched, calls = Scheduler(1), []
        >>> sched.run_if_idle(lambda: calls.append("cleared")), calls
        (True, ['cleared'])
        >>> _ = sched.acquire("a", threading.Event())
        >>> sched.run_if_idle(lambda: calls.append("again")), calls
        (False, ['cleared'])
        """
        with self._cond:
            if self._active or self._waiting:
                return False
            action()
            return True


SCHEDULER = Scheduler(int(os.environ.get("LAYERLAB_MAX_RUNS", "2") or 2))
