"""The job backend interface: the local backend (today's threads and scheduler), which
backend an address chooses, the process's current backend, and the sidebar line."""
from __future__ import annotations

import threading

import pytest

from core import backend as backends
from core.backend import RAY_ADDRESS_ENV, BackendInfo, LocalBackend, choose, current
from core.recipe import Recipe
from core.scheduler import Scheduler
from core.spec import ModelSpec
from core.training import TrainingJob

TINY = ModelSpec("tiny", [{"type": "Flatten"},
                          {"type": "Dense", "units": 10, "activation": "softmax"}])


@pytest.fixture
def fresh_current():
    """No backend chosen yet; whatever a test chose is forgotten afterwards."""
    backends.set_current(None)
    yield
    backends.set_current(None)


def test_the_local_backend_makes_training_jobs_under_its_scheduler():
    sched = Scheduler(3)
    local = LocalBackend(sched)
    job = local.new_job(TINY, Recipe(epochs=1), name="mine", workspace="w")
    assert isinstance(job, TrainingJob) and job.scheduler is sched
    assert (job.run.name, job.run.workspace) == ("mine", "w")
    assert local.max_parallel() == 3


def test_the_local_backend_describes_its_width_and_its_queue():
    sched = Scheduler(1)
    local = LocalBackend(sched)
    info = local.describe()
    assert isinstance(info, BackendInfo)
    assert (info.name, info.nodes, info.queued, info.problems) == ("local", 1, 0, [])
    assert info.summary == "this machine, 1 run at once" and info.cpus >= 1
    assert sched.acquire("first", threading.Event())
    gave_up = threading.Event()
    waiter = threading.Thread(target=sched.acquire, args=("second", gave_up))
    waiter.start()
    try:
        while sched.waiting == 0:
            waiter.join(0.01)
        assert local.describe().queued == 1
    finally:
        gave_up.set()
        waiter.join()
        sched.release("first")
    assert local.describe().queued == 0


@pytest.mark.parametrize("address", [None, "", "   "])
def test_no_address_means_the_local_backend(address):
    assert isinstance(choose(address), LocalBackend)


@pytest.mark.parametrize("address", ["local", "auto", "ray://head:10001", " 10.0.0.5:6379 "])
def test_an_address_means_the_ray_backend(address):
    from core.ray_backend import RayBackend

    threads = threading.active_count()
    chosen = choose(address)
    assert isinstance(chosen, RayBackend) and chosen.name == "ray"
    assert chosen.address == address.strip()
    assert threading.active_count() == threads      # joined on first use, not here


def test_the_current_backend_is_chosen_once_from_the_environment(monkeypatch,
                                                                 fresh_current):
    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    first = current()
    assert isinstance(first, LocalBackend) and current() is first
    monkeypatch.setenv(RAY_ADDRESS_ENV, "local")
    assert current() is first                      # chosen once per process
    backends.set_current(None)
    assert current().name == "ray"
    replacement = LocalBackend(Scheduler(1))
    backends.set_current(replacement)              # a fallback replaces it
    assert current() is replacement


@pytest.mark.parametrize("job_class", ["core.training:TrainingJob",
                                       "core.ray_backend:RayJob",
                                       "core.process_backend:ProcessJob"])
def test_every_job_class_has_what_the_registry_and_pages_use(job_class):
    import importlib

    module, name = job_class.split(":")
    cls = getattr(importlib.import_module(module), name)
    for member in ("start", "stop", "join", "drain", "snapshot", "alive", "done"):
        assert hasattr(cls, member), f"{name} lacks {member}"
    assert isinstance(cls.alive, property) and isinstance(cls.done, property)


def test_the_sidebar_says_where_runs_train(open_page, monkeypatch, fresh_current):
    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    from core.scheduler import SCHEDULER
    from core.wording import plural

    at = open_page()
    captions = [c.value for c in at.sidebar.caption]
    width = plural(SCHEDULER.max_active, "run")
    assert f"**Training:** this machine, {width} at once" in captions
