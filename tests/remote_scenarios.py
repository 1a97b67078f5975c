"""Scenarios shared by the backends that train outside the server's process (Ray and
worker processes; not a test module): each asserts what every such backend must do."""
from __future__ import annotations

import os
import signal

from core.recipe import Recipe
from core.runs import RunStore
from core.spec import ModelSpec
from tests.waiting import ended, follow

# a network that trains in seconds; test sets cut to 500 images
TINY = ModelSpec("tiny", [{"type": "Conv2D", "filters": 8, "kernel_size": 3},
                          {"type": "MaxPooling2D", "pool_size": 2},
                          {"type": "Flatten"},
                          {"type": "Dense", "units": 10, "activation": "softmax"}])
TEST_LIMIT = 500


def killed_mid_run_then_resumed(backend, store: RunStore, died: str,
                                tiny: ModelSpec = TINY, test_limit: int = TEST_LIMIT):
    """Kill a run's worker with SIGKILL (as the kernel's OOM killer does) after its first
    checkpoint reached the server: the run ends interrupted, saying ``died``, and resumes
    from its last saved epoch to finish. Returns the saved run and the resumed job."""
    recipe = Recipe(epochs=30, batch_size=32, train_subset=1000)
    job = backend.new_job(tiny, recipe, store=store, test_limit=test_limit).start()
    follow(job, lambda ev: job.run.epochs_done >= 1)     # a checkpoint reached the server
    os.kill(job.worker_pid, signal.SIGKILL)
    job.join(timeout=60)
    assert not job.alive
    done = job.drain()[-1]
    assert done["kind"] == "done" and done["status"] == "interrupted"
    assert done["message"].startswith(died)
    assert done["message"].endswith("resume it from the Train page.")
    epochs = job.run.epochs_done
    saved = store.load_run(job.run.id)
    assert (saved.status, saved.epochs_done) == ("interrupted", epochs) and epochs < 30
    assert len(saved.history["loss"]) == epochs
    resumed = backend.new_job(tiny, recipe.replace(epochs=1), store=store, resume=saved,
                              test_limit=test_limit).start()
    events = follow(resumed, ended)
    resumed.join(timeout=30)
    started = next(e for e in events if e["kind"] == "started")
    assert started["first_epoch"] == epochs
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [epochs + 1]
    assert events[-1]["status"] == "finished", events[-1]["message"]
    assert resumed.run.id == saved.id and resumed.run.epochs_done == epochs + 1
    assert len(store.load_run(saved.id).history["loss"]) == epochs + 1
    return saved, resumed
