"""The worker side of the Ray backend, without Ray: the relay store's handovers (each a
consistent checkpoint), the sweep of dead workers' scratch stores, and replies to polls
whose answers were lost on the way. The actor itself trains in a real Ray worker in
tests/test_ray_backend.py."""
from __future__ import annotations

import io
import os
import subprocess

import numpy as np

from core.ray_worker import (SCRATCH_PREFIX, RelayStore, TrainingActor, merge_replies,
                             sweep_scratch)
from core.runs import SNAPSHOTS_FILE, Run


def _arrays(epoch: float) -> dict[str, np.ndarray]:
    return {"epoch": np.array([epoch]), "w": np.full((2, 2), epoch)}


def _unpacked(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_a_handover_is_the_run_record_with_the_files_saved_before_it(tmp_path):
    store = RelayStore(tmp_path)
    run = Run(id="r1", name="relay", spec={}, recipe={}, epochs_done=1)
    store.save_snapshots(run.id, _arrays(1.0))
    assert store.take() is None                 # a file alone is no checkpoint yet
    store.save_run(run)
    handover = store.take()
    assert set(handover["files"]) == {SNAPSHOTS_FILE}
    assert handover["run"]["epochs_done"] == 1
    assert float(_unpacked(handover["files"][SNAPSHOTS_FILE])["epoch"][0]) == 1.0
    assert store.take() is None                 # taken once
    store.save_run(run)                         # a record with no new file
    assert store.take()["files"] == {}


def test_unsent_handovers_merge_keeping_the_newest_of_each_file(tmp_path):
    store = RelayStore(tmp_path)
    run = Run(id="r2", name="relay", spec={}, recipe={})
    for epoch in (1, 2):
        store.save_snapshots(run.id, _arrays(float(epoch)))
        run.epochs_done = epoch
        store.save_run(run)
    store.save_snapshots(run.id, _arrays(3.0))   # staged, its record not yet saved
    handover = store.take()
    assert handover["run"]["epochs_done"] == 2
    assert float(_unpacked(handover["files"][SNAPSHOTS_FILE])["epoch"][0]) == 2.0
    run.epochs_done = 3
    store.save_run(run)
    assert float(_unpacked(store.take()["files"][SNAPSHOTS_FILE])["epoch"][0]) == 3.0


def test_the_scratch_stores_of_dead_workers_are_swept(tmp_path):
    ended_proc = subprocess.Popen(["true"])
    ended_proc.wait()                                   # a pid that no longer runs
    dead = tmp_path / f"{SCRATCH_PREFIX}{ended_proc.pid}-abc"
    alive = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    other = tmp_path / "layerlab-other"
    for folder in (dead, alive, other):
        folder.mkdir()
    assert sweep_scratch(str(tmp_path)) == [dead.name]
    assert not dead.exists() and alive.exists() and other.exists()


class ScriptedJob:
    """Stands in for the worker's TrainingJob: each drain hands out the next events."""

    def __init__(self, *batches: list[dict]) -> None:
        self.batches = list(batches)

    def drain(self) -> list[dict]:
        return self.batches.pop(0) if self.batches else []


class ScriptedStore:
    """Stands in for the relay store: each take hands out the next handover."""

    def __init__(self, *handovers) -> None:
        self.handovers = list(handovers)

    def take(self):
        return self.handovers.pop(0) if self.handovers else None


def scripted_actor(job: ScriptedJob, store: ScriptedStore) -> TrainingActor:
    actor = TrainingActor()
    actor.job, actor.store = job, store
    return actor


def test_a_reply_the_server_did_not_take_comes_again_with_the_next():
    """Bug: a poll whose answer reached the server too late (it gave up after 10 s, as
    under a heavily loaded machine) had already drained its events, so the run's done
    event was lost and the server polled forever."""
    actor = scripted_actor(ScriptedJob([{"kind": "epoch", "epoch": 1}],
                                       [{"kind": "done", "status": "finished"}]),
                           ScriptedStore({"run": {"epochs_done": 1},
                                          "files": {"checkpoint.keras": b"1"}}))
    first = actor.poll(None)                     # never reaches the server
    assert first["number"] == 1
    second = actor.poll(None)                    # so the server has still taken nothing
    assert second["number"] == 2
    assert [e["kind"] for e in second["events"]] == ["epoch", "done"]
    assert second["saved"]["files"] == {"checkpoint.keras": b"1"}
    third = actor.poll(2)                        # taken: nothing is sent twice
    assert (third["number"], third["events"], third["saved"]) == (3, [], None)


def test_replies_merge_saves_keeping_the_newest_record_and_files():
    old = {"events": [{"kind": "epoch"}], "number": 4,
           "saved": {"run": {"epochs_done": 1}, "files": {"a": b"1", "b": b"1"}},
           "snapshot": ("snap1", {})}
    new = {"events": [], "saved": {"run": {"epochs_done": 2}, "files": {"b": b"2"}}}
    merged = merge_replies(old, new)
    assert merged == {"events": [{"kind": "epoch"}], "snapshot": ("snap1", {}),
                      "saved": {"run": {"epochs_done": 2},
                                "files": {"a": b"1", "b": b"2"}}}
