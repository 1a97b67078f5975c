"""Faults with nothing lost: SIGKILL while training and while saving, unwritable stores."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.errors import LayerLabError
from core.recipe import Recipe
from core.runs import CHECKPOINT_FILE, RunStore
from core.spec import ModelSpec
from core.storage import atomic_save
from core.training import TrainingJob, prepare_data

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelSpec("tiny", [{"type": "Conv2D", "filters": 4, "kernel_size": 3},
                          {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"},
                          {"type": "Dense", "units": 10, "activation": "softmax"}])

TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time
    from core.recipe import Recipe
    from core.runs import RunStore
    from core.spec import ModelSpec
    from core.training import TrainingJob
    spec = ModelSpec.from_json(sys.argv[2])
    job = TrainingJob(spec, Recipe(epochs=200, batch_size=64, train_subset=1000),
                      store=RunStore(sys.argv[1]), workspace="w", test_limit=200).start()
    while True:
        for e in job.drain():
            if e["kind"] == "epoch":
                print("EPOCH", e["epoch"], job.run.id, flush=True)
        time.sleep(0.01)
""")


def spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_sigkill_mid_training_keeps_last_completed_epoch(tmp_path):
    proc = spawn(TRAIN_SCRIPT, str(tmp_path / "runs"), TINY.to_json())
    try:
        run_id, deadline = None, time.time() + 240
        while time.time() < deadline:
            line = proc.stdout.readline()
            if line.startswith("EPOCH 3 "):
                run_id = line.split()[2]
                break
        assert run_id, "the training process never reached epoch 3"
        time.sleep(0.3)                          # kill it somewhere inside epoch 4
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    store = RunStore(tmp_path / "runs")          # "restart": a fresh store object
    runs = store.list_runs()
    assert [r.id for r in runs] == [run_id]
    run = runs[0]
    assert run.status == "interrupted" and run.epochs_done >= 3
    assert len(run.history["loss"]) == run.epochs_done
    assert store.model_path(run_id).name == CHECKPOINT_FILE
    model = store.load_model(run_id)             # the checkpoint is complete and loads
    assert model.count_params() == 4 * 9 + 4 + 13 * 13 * 4 * 10 + 10
    # and training can resume from it
    data = prepare_data(Recipe(train_subset=1000), test_limit=200)
    job = TrainingJob(TINY, Recipe(epochs=1, batch_size=64, train_subset=1000), store=store,
                      data=data, resume=run).start()
    job.join(120)
    job.drain()
    assert job.run.status == "finished" and job.run.epochs_done == run.epochs_done + 1


SAVE_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from core.storage import atomic_save
    def slow_partial(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"PK partial archive")
            fh.flush()
            print("WRITING", flush=True)
            time.sleep(60)
    atomic_save(Path(sys.argv[1]), slow_partial)
""")


def test_sigkill_mid_save_never_leaves_a_partial_file_under_the_real_name(tmp_path):
    target = tmp_path / "runs" / "20260101-000000-abcdef" / "checkpoint.keras"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the previous complete checkpoint")
    proc = spawn(SAVE_SCRIPT, str(target))
    try:
        assert proc.stdout.readline().strip() == "WRITING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert target.read_bytes() == b"the previous complete checkpoint"
    leftovers = [p.name for p in target.parent.iterdir() if p.name != target.name]
    assert leftovers and all(n.startswith(".") and ".tmp" in n for n in leftovers)
    assert RunStore(tmp_path / "runs").list_runs() == []     # no run.json: not a run
    assert [p.name for p in target.parent.iterdir()] == [target.name]   # cleaned on start


def test_unwritable_store_training_still_works_and_says_why(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    store = RunStore(blocker / "runs")
    data = prepare_data(Recipe(train_subset=1000), test_limit=200)
    job = TrainingJob(TINY, Recipe(epochs=2, batch_size=64, train_subset=1000), store=store,
                      data=data).start()
    job.join(120)
    events = job.drain()
    assert job.run.status == "finished" and job.run.test_accuracy is not None
    warnings = [e["message"] for e in events if e["kind"] == "warning"]
    assert any("Could not save" in w and "Training goes on" in w for w in warnings)
    assert any("stays available in this session" in w for w in warnings)
    assert job.model is not None                 # still usable in this session


def test_disk_full_while_saving_is_explained(tmp_path, monkeypatch):
    import core.runs

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(core.runs, "atomic_write_bytes", full)
    store = RunStore(tmp_path)
    from core.runs import Run

    with pytest.raises(LayerLabError, match="No space left on device.*Free some disk space"):
        store.save_run(Run(id="20260101-000000-ffffff", name="n", spec={}, recipe={}))


def test_atomic_save_cleans_up_after_a_failing_writer(tmp_path):
    def broken(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError):
        atomic_save(tmp_path / "model.keras", broken)
    assert list(tmp_path.iterdir()) == []
