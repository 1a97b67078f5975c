"""The job registry on small real runs in real threads: a run belongs to its workspace
(reattach from another reader, one run per workspace, never resumed while it trains), the
server's bounded queue (as wide as the job backend) and per-run ceiling, and orphaned runs
saved as interrupted."""
from __future__ import annotations

import threading
import time

import pytest

from core import backend as backends
from core.backend import LocalBackend
from core.jobs import JobRegistry, QuotaError
from core.recipe import Recipe
from core.runs import RunStore
from core.scheduler import Scheduler
from core.spec import ModelSpec
from core.training import TrainingJob, prepare_data
from core.workspace import new_workspace_id

TINY = ModelSpec("tiny", [{"type": "Conv2D", "filters": 4, "kernel_size": 3},
                          {"type": "MaxPooling2D", "pool_size": 2},
                          {"type": "Flatten"},
                          {"type": "Dense", "units": 10, "activation": "softmax"}])
LONG = Recipe(epochs=30, batch_size=32, train_subset=2000)
QUICK = Recipe(epochs=1, batch_size=64, train_subset=2000)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def data():
    return prepare_data(Recipe(train_subset=2000, validation_split=0.1, seed=0),
                        test_limit=500)


@pytest.fixture
def registry():
    reg = JobRegistry(Scheduler(2), max_queued=4, orphan_s=60, clock=Clock())
    yield reg
    for ws in list(reg._jobs):
        job = reg.get(ws)
        job.stop()
        job.join(60)


def job(data, recipe=LONG, **kw) -> TrainingJob:
    return TrainingJob(TINY, recipe, data=data, test_limit=500, **kw)


def wait_for(predicate, timeout: float = 120) -> None:
    t0 = time.time()
    while not predicate():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def test_a_second_reader_reattaches_with_the_curves_from_the_start_and_can_stop(registry,
                                                                               data):
    ws = new_workspace_id()
    first = registry.submit(ws, job(data))
    wait_for(lambda: len(first.snapshot().batches) >= 3)
    first.drain()                              # one reader taking events takes nothing
    again = registry.get(ws)                   # a reload, or a second tab
    assert again is first
    seen = again.snapshot()
    assert seen.state == "running" and seen.batches[0]["global_step"] <= 2
    assert len(first.snapshot().batches) >= len(seen.batches)   # both see every batch
    again.stop()
    again.join(60)
    assert registry.live(ws) is None and first.snapshot().state == "stopped"


def test_one_queued_or_running_run_per_workspace(registry, data):
    ws, other = new_workspace_id(), new_workspace_id()
    registry.submit(ws, job(data))
    with pytest.raises(QuotaError, match="already has a run in progress"):
        registry.submit(ws, job(data))
    assert registry.check(ws, QUICK) is not None
    registry.submit(other, job(data, QUICK))           # another workspace is not held up
    registry.get(ws).stop()
    registry.get(ws).join(60)
    assert registry.check(ws, QUICK) is None


def test_a_run_training_here_is_never_resumed(registry, data, tmp_path):
    store = RunStore(tmp_path / "runs")
    ws = new_workspace_id()
    live = registry.submit(ws, job(data, workspace=ws, store=store))
    wait_for(lambda: store.list_runs(ws))                # the first epoch's checkpoint
    on_disk = store.list_runs(ws)[0]
    assert on_disk.id == live.run.id and on_disk.status == "interrupted"   # as stored
    assert live.run.id in registry.live_run_ids()      # ... so pages know better
    resume = job(data, QUICK, store=store, resume=on_disk)
    with pytest.raises(QuotaError, match="still training"):
        registry.submit(new_workspace_id(), resume)
    assert not resume.alive and store.load_run(live.run.id).epochs_done >= 1


def test_the_queue_is_bounded_and_says_when_to_come_back(data):
    reg = JobRegistry(Scheduler(1), max_queued=1, orphan_s=60)
    first = reg.submit(new_workspace_id(), job(data))
    reg.submit(new_workspace_id(), job(data))
    try:
        with pytest.raises(QuotaError, match=r"The server is full \(2 runs are training or "
                                             r"waiting\): try again in about \d+ minutes?\."):
            reg.submit(new_workspace_id(), job(data, QUICK))
        wait_for(lambda: first.snapshot().eta_s is not None)
        message = reg.check(new_workspace_id(), QUICK)
        assert message is not None and "try again in about" in message
    finally:
        for ws in list(reg._jobs):
            reg.get(ws).stop()
            reg.get(ws).join(60)



class Cluster(LocalBackend):
    """A backend as wide as a cluster of ``width`` places whose jobs are real local jobs
    that only wait (the one local place is held): what the registry asks of a backend is
    only its width."""

    def __init__(self, width: int) -> None:
        super().__init__(Scheduler(1))
        self.width = width
        self.scheduler.acquire("held", threading.Event())

    def max_parallel(self) -> int:
        return self.width


def test_the_queue_is_as_wide_as_the_backend_plus_the_queued_allowance(data):
    wide = Cluster(5)
    reg = JobRegistry(backend=wide, max_queued=1, orphan_s=60)
    try:
        for _ in range(6):                         # 5 places on the "cluster" + 1 queued
            reg.submit(new_workspace_id(), wide.new_job(TINY, LONG, data=data,
                                                         test_limit=500))
        with pytest.raises(QuotaError, match=r"The server is full \(6 runs are training "
                                             r"or waiting\)"):
            reg.submit(new_workspace_id(), wide.new_job(TINY, QUICK, data=data))
        wide.width = 6                             # a node joined
        assert reg.check(new_workspace_id(), QUICK) is None
    finally:
        for ws in list(reg._jobs):
            reg.get(ws).stop()
            reg.get(ws).join(60)


def test_the_servers_registry_follows_the_current_backend(monkeypatch):
    from core.scheduler import SCHEDULER

    monkeypatch.delenv(backends.RAY_ADDRESS_ENV, raising=False)
    server = JobRegistry(max_queued=0)             # as core.jobs.REGISTRY is made
    try:
        backends.set_current(None)
        assert server.width() == SCHEDULER.max_active      # local: as before
        backends.set_current(LocalBackend(Scheduler(3)))
        assert server.width() == 3
        backends.set_current(Cluster(40))                   # e.g. Ray on a cluster
        assert server.width() == 40
        assert JobRegistry(Scheduler(2)).width() == 2      # its own scheduler wins
    finally:
        backends.set_current(None)

def test_a_run_over_the_ceiling_is_refused_before_it_starts(data):
    reg = JobRegistry(Scheduler(1), max_run_images=5_000)
    ws = new_workspace_id()
    assert reg.check(ws, Recipe(epochs=2, train_subset=2000)) is None
    refused = job(data, Recipe(epochs=3, train_subset=2000))
    with pytest.raises(QuotaError, match="6,000 images .*at most 5,000 per run"):
        reg.submit(ws, refused)
    assert not refused.alive and reg.get(ws) is None


def test_the_default_ceiling_fits_every_presets_own_recipe():
    from core.presets import PRESETS

    reg = JobRegistry(Scheduler(1))
    for name, preset in PRESETS.items():
        assert reg.check(new_workspace_id(), preset.recipe) is None, name


def test_an_orphaned_run_is_stopped_and_saved_as_interrupted(registry, data, tmp_path):
    store = RunStore(tmp_path / "runs")
    ws, watched = new_workspace_id(), new_workspace_id()
    orphan = registry.submit(ws, job(data, workspace=ws, store=store))
    kept = registry.submit(watched, job(data, QUICK.replace(epochs=30)))
    wait_for(lambda: store.model_path(orphan.run.id) is not None)   # an epoch checkpointed
    registry.clock.now += 30
    assert registry.reap() == []                           # not idle long enough
    registry.clock.now += 31
    registry.heartbeat(watched)                            # a page of this one is open
    assert registry.reap() == [orphan]
    orphan.join(60)
    p = orphan.snapshot()
    assert p.state == "interrupted" and "no page of its workspace" in p.message
    saved = store.load_run(orphan.run.id)
    assert saved.status == "interrupted" and saved.epochs_done >= 1
    assert store.model_path(orphan.run.id) is not None         # resumable
    assert registry.live(watched) is kept and kept.alive
    registry.clock.now += 61
    registry.reap()                                        # a finished orphan is forgotten
    assert registry.get(ws) is None


def test_six_sessions_of_one_workspace_cannot_hold_up_another_student(data):
    """The issue's DoS: six sessions of one workspace start long runs at once; one is
    accepted, and another workspace's quick run trains at once, ending before it."""
    reg = JobRegistry(Scheduler(2), max_queued=4, orphan_s=600)
    ws, student = new_workspace_id(), new_workspace_id()
    accepted, refused, go = [], [], threading.Barrier(6)

    def session() -> None:
        go.wait()
        try:
            accepted.append(reg.submit(ws, job(data)))
        except QuotaError as err:
            refused.append(str(err))

    threads = [threading.Thread(target=session) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(accepted) == 1 and len(refused) == 5
        assert all("already has a run in progress" in m for m in refused)
        quick = reg.submit(student, job(data, QUICK))
        wait_for(lambda: quick.snapshot().state != "queued" or
                 quick.snapshot().queue_position is not None)
        assert quick.snapshot().queue_position in (None, 0, 1)
        quick.join(300)
        assert quick.snapshot().state == "finished"
        assert not accepted[0].done                    # the long run is still training
    finally:
        accepted[0].stop()
        accepted[0].join(60)
