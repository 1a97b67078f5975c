"""The process backend with real worker processes (``python -m core.process_worker``): a
tiny run trains in a process of its own and the server gets its model, saves and events;
Stop ends a run that waits for a place and one that trains; a worker killed with SIGKILL
leaves an interrupted run that resumes from its checkpoint; errors in the worker come back
as sentences; answers that came too late are not taken for the next request; a worker
whose server went away ends. Nothing is mocked."""
from __future__ import annotations

import os
import time

import pytest

from core import backend as backends
from core.errors import LayerLabError
from core.process_backend import (WORKER_DIED, ProcessBackend, ProcessJob, WorkerFailed,
                                  WorkerProcess)
from core.recipe import Recipe
from core.remote_job import WorkerLost
from core.runs import RunStore
from core.scheduler import Scheduler
from tests.remote_scenarios import TEST_LIMIT, TINY, killed_mid_run_then_resumed
from tests.waiting import ended, follow

pytestmark = pytest.mark.slow


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (reaped, or a zombie nobody waits for)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_the_environment_picks_threads_or_processes(monkeypatch):
    monkeypatch.delenv(backends.RAY_ADDRESS_ENV, raising=False)
    for value, name in [("process", "process"), ("thread", "local"), ("", "local")]:
        monkeypatch.setenv(backends.TRAIN_IN_ENV, value)
        backends.set_current(None)
        try:
            assert backends.current().name == name
        finally:
            backends.set_current(None)
    info = ProcessBackend(Scheduler(3)).describe()
    assert (info.name, info.queued) == ("process", 0)
    assert info.summary == "this machine, 3 runs at once, each in a process of its own"


def test_a_tiny_run_trains_in_a_worker_process_and_the_server_gets_everything(tmp_path):
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=2, batch_size=32, learning_rate=3e-3, train_subset=1000)
    job = ProcessBackend(Scheduler(2)).new_job(TINY, recipe, name="in a process",
                                               workspace="w", store=store,
                                               test_limit=TEST_LIMIT)
    assert isinstance(job, ProcessJob)
    events = follow(job.start(), ended)
    job.join(timeout=30)
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert kinds.index("started") < kinds.index("batch") < kinds.index("epoch")
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [1, 2]
    started = events[kinds.index("started")]
    assert started["device"].endswith(", in a process of its own")
    assert job.worker_pid is not None and job.worker_pid != os.getpid()
    done = events[-1]
    assert done["status"] == "finished", done["message"]
    assert done["run"] is job.run and job.run.epochs_done == 2
    assert job.run.test_accuracy > 0.5
    assert job.model is not None and job.model.count_params() == job.run.params
    folder = store.run_dir(job.run.id)
    assert {"run.json", "model.keras", "checkpoint.keras", "snapshots.npz"} <= \
        {p.name for p in folder.iterdir()}
    saved = store.load_run(job.run.id)
    assert (saved.status, saved.epochs_done, saved.name) == ("finished", 2, "in a process")
    assert job.snapshots is not None and job.snapshots.latest() is not None
    assert gone(job.worker_pid)                      # the worker ended with its run
    assert job.scheduler.active == 0                 # and its place is free again


def test_stop_ends_a_waiting_job_and_a_running_one(tmp_path):
    backend = ProcessBackend(Scheduler(1))               # one place: the second waits
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=30, batch_size=16, train_subset=5000)
    first = backend.new_job(TINY, recipe, store=store, test_limit=TEST_LIMIT).start()
    follow(first, lambda ev: any(e["kind"] == "batch" for e in ev))
    second = backend.new_job(TINY, recipe, store=store, test_limit=TEST_LIMIT).start()
    follow(second, lambda ev: any(e["kind"] == "queued" for e in ev), timeout=30)
    waiting = second.snapshot()
    assert (waiting.state, waiting.queue_position) == ("queued", 1)
    assert backend.describe().queued == 1
    second.stop()
    done = follow(second, ended, timeout=60)[-1]
    assert done["status"] == "stopped" and done["message"] == "Stopped before training began."
    assert second.worker is None                         # no process was started for it
    epoch_at_stop = first.snapshot().epoch
    t0 = time.perf_counter()
    first.stop()
    done = follow(first, ended, timeout=120)[-1]
    latency = time.perf_counter() - t0
    first.join(timeout=30)
    assert done["status"] == "stopped" and "Stopped by you" in done["message"]
    assert first.run.epochs_done <= epoch_at_stop + 1     # within the epoch it was in
    assert store.load_run(first.run.id).status == "stopped"
    assert gone(first.worker_pid) and backend.scheduler.active == 0
    print(f"\nstop through a worker process: done {latency:.2f} s after stop()")


def test_a_worker_killed_mid_run_leaves_a_resumable_interrupted_run(tmp_path):
    backend = ProcessBackend(Scheduler(2))
    killed_mid_run_then_resumed(backend, RunStore(tmp_path / "runs"), WORKER_DIED)
    assert backend.scheduler.active == 0                 # both runs gave their place back


def test_worker_errors_come_back_as_sentences_and_late_answers_are_dropped():
    order = ProcessBackend(Scheduler(1)).new_job(TINY, Recipe(epochs=1))._order()
    order["spec"]["layers"][0]["filters"] = 0           # checked here, so forged past it
    worker = WorkerProcess()
    try:
        with pytest.raises(LayerLabError) as err:
            worker.call("start", (order, None), timeout=120)
        assert "Traceback" not in str(err.value) and str(err.value).endswith(".")
        with pytest.raises(WorkerFailed):                # not a sentence: the log has it
            worker.call("dance", timeout=30)
        late = worker.send("dance")
        assert worker.answer(late, timeout=0) is None    # gave up on it at once
        assert worker.call("close", timeout=30) is True  # its own answer, not the late one
        worker.proc.wait(timeout=30)
        with pytest.raises(WorkerLost):
            worker.call("poll", timeout=5)
    finally:
        worker.end(closed=False)


def test_a_worker_whose_server_went_away_ends():
    worker = WorkerProcess()
    worker.proc.stdin.close()                            # as when the server dies
    assert worker.proc.wait(timeout=120) == 0
    worker.end(closed=False)
