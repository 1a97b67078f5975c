"""A small polling helper shared by tests that wait on background jobs (not a test module)."""
from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``predicate`` every 20 ms; fail the test once ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


def follow(job, until: Callable[[list[dict]], bool], timeout: float = 240) -> list[dict]:
    """Drain a training job's events until ``until(events)``; fails after ``timeout``."""
    events: list[dict] = []
    t0 = time.monotonic()
    while not until(events):
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"gave up waiting; events: {[e['kind'] for e in events]}")
        events += job.drain()
        time.sleep(0.05)
    return events


def ended(events: list[dict]) -> bool:
    """Whether a job's events so far end with its ``done`` event."""
    return bool(events) and events[-1]["kind"] == "done"
