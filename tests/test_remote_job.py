"""The shared server half of remote runs (core/remote_job.py), without any worker: a
model survives its trip as bytes, a worker's save is written into the run store and
relayed, and a lost worker leaves an interrupted run that says what was saved."""
from __future__ import annotations

import numpy as np
import pytest

from core.remote_job import RemoteJob, model_bytes, model_from_bytes
from core.recipe import Recipe
from core.runs import CHECKPOINT_FILE, MODEL_FILE, RunStore
from core.spec import ModelSpec, SpecError

TINY = ModelSpec("tiny", [{"type": "Flatten"},
                          {"type": "Dense", "units": 10, "activation": "softmax"}])


class Nowhere(RemoteJob):
    """A remote job whose worker is never reached: only the shared half runs."""

    def _place(self) -> None:
        raise AssertionError("not started in these tests")


@pytest.fixture(scope="module")
def tiny_model():
    from core.build import build_model

    return build_model(TINY)


def test_a_model_survives_its_trip_as_bytes(tiny_model):
    data = model_bytes(tiny_model)
    assert data[:2] == b"PK"                          # a .keras file is a zip
    back = model_from_bytes(data)
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(back(x, training=False), tiny_model(x, training=False),
                               rtol=1e-6)


def test_a_broken_spec_is_refused_before_anything_is_sent():
    broken = ModelSpec("broken", [{"type": "Dense", "units": 0}])
    with pytest.raises(SpecError):
        Nowhere(broken, Recipe(epochs=1))


def test_a_workers_save_is_written_to_the_store_and_the_run_updated(tmp_path, tiny_model):
    store = RunStore(tmp_path)
    job = Nowhere(TINY, Recipe(epochs=2), name="tiny", store=store)
    record = job.run.to_dict() | {"epochs_done": 1, "status": "running"}
    weights = model_bytes(tiny_model)
    job._take({"saved": {"run": record, "files": {CHECKPOINT_FILE: weights,
                                                  "../escape.bin": b"x"}},
               "events": [{"kind": "warning", "message": "Slow disk."}]})
    folder = store.run_dir(job.run.id)
    assert (folder / CHECKPOINT_FILE).read_bytes() == weights
    assert not (tmp_path / "escape.bin").exists()     # only the files a run relays
    assert job.run.epochs_done == 1
    assert store.load_run(job.run.id).epochs_done == 1
    assert [e["kind"] for e in job.drain()] == ["warning"]


def test_a_lost_worker_leaves_an_interrupted_run_from_its_last_checkpoint(tmp_path,
                                                                          tiny_model):
    store = RunStore(tmp_path)
    job = Nowhere(TINY, Recipe(epochs=3), name="tiny", store=store)
    record = job.run.to_dict() | {"epochs_done": 2, "test_accuracy": 0.5}
    job._take({"saved": {"run": record, "files": {CHECKPOINT_FILE: model_bytes(tiny_model)}},
               "events": []})
    status, message = job._lost("The worker stopped answering.")
    assert status == "interrupted"
    assert message.startswith("The worker stopped answering. It was saved after 2 full "
                              "epochs")
    assert job.run.test_accuracy is None              # older than the weights: dropped
    assert (store.run_dir(job.run.id) / MODEL_FILE).is_file()
    assert job.model is not None


def test_a_worker_lost_before_its_first_epoch_says_nothing_was_saved():
    job = Nowhere(TINY, Recipe(epochs=1), name="tiny")
    status, message = job._lost("The worker stopped answering.")
    assert (status, message) == ("interrupted", "The worker stopped answering. It ended "
                                 "before its first epoch, so nothing was saved; start it "
                                 "again.")


class Lossy(RemoteJob):
    """A remote job whose worker is a TrainingActor in this process and whose transport
    loses every other answer (it came after the server gave up waiting)."""

    def __init__(self, actor, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.actor, self.polls = actor, 0

    def _place(self) -> None:
        self._placed = True

    def _poll(self, taken):
        self.polls += 1
        reply = self.actor.poll(taken)           # the worker answered …
        return reply if self.polls % 2 == 0 else None    # … too late, every other time

    def _send_stop(self) -> None:
        self.actor.stop()


def test_a_run_whose_answers_are_lost_still_ends_with_every_event():
    from tests.test_ray_worker import ScriptedJob, ScriptedStore, scripted_actor

    job = Lossy(None, TINY, Recipe(epochs=2), name="tiny")
    done = {"kind": "done", "status": "stopped", "message": "Stopped by you.",
            "run": job.run.to_dict(), "wall_time_s": 1.0}
    job.actor = scripted_actor(ScriptedJob([{"kind": "warning", "message": "one"}], [],
                                           [{"kind": "warning", "message": "two"}, done]),
                               ScriptedStore())
    job.start().join(timeout=30)
    assert not job.alive, "the job never saw its done event"
    events = job.drain()
    assert [e.get("message") for e in events] == ["one", "two", "Stopped by you."]
