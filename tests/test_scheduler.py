"""The server-wide run cap: FIFO queue positions, stop while queued, and the idle-only
action (memory release) decided under the scheduler's lock."""
from __future__ import annotations

import threading
import time

from core.scheduler import Scheduler


def test_scheduler_caps_concurrency_with_fifo_queue():
    sched = Scheduler(2)
    stop = threading.Event()
    assert sched.acquire("a", stop) and sched.acquire("b", stop)
    got = []
    t = threading.Thread(target=lambda: got.append(sched.acquire("c", stop)))
    t.start()
    time.sleep(0.3)
    assert sched.position("c") == 1 and sched.position("a") == 0 and not got
    sched.release("a")
    t.join(2)
    assert got == [True] and sched.position("c") == 0
    stop.set()
    assert sched.acquire("d", stop) is False and sched.position("d") is None


def test_release_is_decided_under_the_scheduler_lock():
    """A run that starts while memory is being released waits until the release is done."""
    sched = Scheduler(1)
    inside, let_go, order = threading.Event(), threading.Event(), []

    def slow_release() -> None:
        inside.set()
        let_go.wait(10)
        order.append("released")

    releaser = threading.Thread(target=sched.run_if_idle, args=(slow_release,))
    releaser.start()
    assert inside.wait(10)
    starter = threading.Thread(target=lambda: (sched.acquire("run", threading.Event()),
                                               order.append("started")))
    starter.start()
    time.sleep(0.3)
    assert order == []                     # the new run is held back, not hit mid-release
    let_go.set()
    releaser.join(10)
    starter.join(10)
    assert order == ["released", "started"]
    assert sched.run_if_idle(lambda: order.append("again")) is False   # a run is active
    assert order == ["released", "started"]


def test_the_cap_is_at_least_one():
    assert Scheduler(0).max_active == 1 and Scheduler(-3).max_active == 1
    sched = Scheduler(0)
    assert sched.acquire("only", threading.Event()) and sched.active == 1


def test_a_queued_run_that_stops_leaves_the_queue_and_the_rest_move_up():
    sched = Scheduler(1)
    assert sched.acquire("a", threading.Event())
    stop_b, seen_b, got = threading.Event(), [], {}
    b = threading.Thread(target=lambda: got.setdefault(
        "b", sched.acquire("b", stop_b, on_wait=seen_b.append)))
    b.start()
    time.sleep(0.3)
    c = threading.Thread(target=lambda: got.setdefault("c", sched.acquire("c", threading.Event())))
    c.start()
    time.sleep(0.3)
    assert (sched.position("b"), sched.position("c")) == (1, 2) and seen_b and seen_b[0] == 1
    stop_b.set()
    b.join(2)
    assert got == {"b": False} and sched.position("b") is None and sched.position("c") == 1
    sched.release("a")
    c.join(2)
    assert got == {"b": False, "c": True} and sched.position("c") == 0 and sched.active == 1


def test_run_if_idle_runs_when_nothing_trains_or_waits():
    sched, calls = Scheduler(2), []
    assert sched.run_if_idle(lambda: calls.append("ran")) is True and calls == ["ran"]
    sched.acquire("a", threading.Event())
    sched.release("a")
    assert sched.active == 0 and sched.run_if_idle(lambda: calls.append("again"))
    assert calls == ["ran", "again"]
