"""The Ray backend against a real Ray head on 127.0.0.1 (2 CPUs, no dashboard), started
once for the module: a tiny run trains in a Ray worker and the server gets its model,
snapshots and events; Stop ends a run mid-way (and one still waiting for a place); a
worker killed with SIGKILL leaves an interrupted run that resumes from its checkpoint; a
job no node can hold and an unreachable cluster are refused with sentences.

Nothing about Ray is mocked. The head is stopped by its own process id (``ray stop``
would stop every Ray of the machine)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core import backend as backends
from core.errors import LayerLabError
from core.ray_backend import (FELL_BACK, UNREACHABLE, WORKER_DIED, FallbackBackend,
                              RayBackend, RayJob)
from core.recipe import Recipe
from core.runs import RunStore
from core.training import TrainingJob
from tests.remote_scenarios import TEST_LIMIT, TINY, killed_mid_run_then_resumed
from tests.waiting import ended, follow

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _started(log: Path) -> bool:
    """Whether ``ray start`` said the whole head is up (its GCS port opens much earlier)."""
    return "Ray runtime started" in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head`` on 127.0.0.1 with 2 CPUs: its address ("127.0.0.1:port")."""
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")    # as core.ray_backend does
    os.environ["RAY_AUTH_MODE"] = "disabled"     # no token written into ~/.ray by a test
    import ray

    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")      # short: Ray's socket paths
    exe = Path(sys.executable).with_name("ray")
    log_path = Path(temp, "head.log")
    log = open(log_path, "wb")
    head = subprocess.Popen(
        [str(exe) if exe.exists() else "ray", "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         f"--object-store-memory={200 * 2**20}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ)
    deadline = time.monotonic() + 180
    while not _started(log_path):
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            pytest.fail("the Ray head did not start:\n"
                        + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    ray.shutdown()
    head.send_signal(signal.SIGTERM)              # --block: the head stops what it started
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)        # its own process group, nothing else
        head.wait()
    log.close()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(ray_head) -> RayBackend:
    """The backend joined to the head (1 CPU per job: two jobs at once)."""
    return RayBackend(ray_head)


def test_the_backend_sees_the_clusters_nodes_cpus_and_width(cluster):
    cluster.cluster(wait_s=120)             # joins, then reads the nodes
    info = cluster.describe()
    assert (info.name, info.nodes, info.cpus, info.gpus, info.queued) == ("ray", 1, 2.0,
                                                                          0.0, 0)
    assert "1 node, 2 CPUs, 0 GPUs, 0 queued" in info.summary and not info.problems
    assert cluster.max_parallel() == 2


def test_a_tiny_run_trains_in_a_worker_and_the_server_gets_model_and_events(cluster,
                                                                              tmp_path):
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=2, batch_size=32, learning_rate=3e-3, train_subset=1000)
    job = cluster.new_job(TINY, recipe, name="through ray", workspace="w", store=store,
                          test_limit=TEST_LIMIT)
    assert isinstance(job, RayJob)
    events = follow(job.start(), ended)
    job.join(timeout=30)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "done" and kinds.count("done") == 1
    assert kinds.index("started") < kinds.index("batch") < kinds.index("epoch")
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [1, 2]
    started = events[kinds.index("started")]
    assert "Ray worker on" in started["device"]
    assert job.worker_pid is not None and job.worker_pid != os.getpid()
    done = events[-1]
    assert done["status"] == "finished", done["message"]
    run = done["run"]
    assert run is job.run and run.epochs_done == 2 and run.test_accuracy > 0.5
    # the store of the server holds what the worker saved, written here
    folder = store.run_dir(run.id)
    assert {"run.json", "model.keras", "checkpoint.keras", "snapshots.npz"} <= \
        {p.name for p in folder.iterdir()}
    saved = store.load_run(run.id)
    assert (saved.status, saved.epochs_done, saved.name) == ("finished", 2, "through ray")
    assert len(saved.history["val_accuracy"]) == 2
    from core.data import load_mnist, to_float
    x = to_float(load_mnist().x_test[:16])
    np.testing.assert_allclose(np.asarray(store.load_model(run.id)(x, training=False)),
                               np.asarray(job.model(x, training=False)), atol=1e-6)
    snaps = store.load_snapshots(run.id)
    assert snaps is not None and float(snaps["epoch"][-1]) == 2.0
    assert float(job.snapshots.latest()["epoch"]) == 2.0     # the live view's copy


def test_stop_ends_a_waiting_job_and_a_running_one_within_a_few_batches(ray_head,
                                                                          tmp_path):
    wide = RayBackend(ray_head, cpus_per_job=2)          # one job fills the head
    wide.cluster()
    assert wide.max_parallel() == 1
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=30, batch_size=16, train_subset=5000)
    first = wide.new_job(TINY, recipe, store=store, test_limit=TEST_LIMIT).start()
    seen = follow(first, lambda ev: any(e["kind"] == "batch" for e in ev))
    arrivals = []                       # when new batch events reached the server
    while len(arrivals) < 12:
        new = first.drain()
        if any(e["kind"] == "batch" for e in new):
            arrivals.append(time.monotonic())
        seen += new
        time.sleep(0.02)
    gaps = np.diff(arrivals)
    second = wide.new_job(TINY, recipe, store=store, test_limit=TEST_LIMIT).start()
    waiting = second.snapshot()
    assert (waiting.state, waiting.queue_position) == ("queued", 1)
    assert wide.describe().queued == 1
    second.stop()
    done = follow(second, ended, timeout=60)[-1]
    assert done["status"] == "stopped" and done["message"] == "Stopped before training began."
    assert wide.describe().queued == 0
    seen += first.drain()
    epoch_at_stop = first.snapshot().epoch
    last_seen = [e for e in seen if e["kind"] == "batch"][-1]["global_step"]
    t0 = time.perf_counter()
    first.stop()
    seen += follow(first, ended, timeout=120)
    latency = time.perf_counter() - t0
    first.join(timeout=30)
    done = seen[-1]
    assert done["status"] == "stopped" and "Stopped by you" in done["message"]
    # 282 batches an epoch: the remote job stopped within the epoch it was in
    assert first.run.epochs_done <= epoch_at_stop + 1
    assert store.load_run(first.run.id).status == "stopped"
    trained = int(first.model.optimizer.iterations.numpy())      # batches in all
    batches = [e for e in seen if e["kind"] == "batch"]
    rate = (batches[-1]["global_step"] - batches[0]["global_step"]) / max(
        batches[-1]["elapsed_s"] - batches[0]["elapsed_s"], 1e-9)
    print(f"\nwhile training, batch events reached the server {1 / gaps.mean():.1f} times "
          f"a second (largest gap {gaps.max():.2f} s)")
    print(f"stop through Ray: done {latency:.2f} s after stop() (the test evaluation "
          f"included); {trained - last_seen} batches trained after the last one the server "
          f"had seen ({rate:.0f} batches/s, one event per 0.2 s and a poll per 0.3 s)")


def test_a_worker_killed_mid_run_leaves_a_resumable_interrupted_run(cluster, tmp_path):
    store = RunStore(tmp_path / "runs")
    saved, _ = killed_mid_run_then_resumed(cluster, store, WORKER_DIED)
    assert store.model_path(saved.id).name == "model.keras"


@pytest.mark.parametrize("ask, words", [({"gpus_per_job": 1}, "no machine of the cluster "
                                                                "has a GPU"),
                                        ({"cpus_per_job": 8}, "its largest machine has 2")])
def test_a_job_no_node_can_hold_is_refused_before_it_is_submitted(ray_head, ask, words):
    greedy = RayBackend(ray_head, **ask)
    with pytest.raises(LayerLabError) as err:
        greedy.new_job(TINY, Recipe(epochs=1, train_subset=1000))
    text = str(err.value)
    assert words in text and text.endswith(".") and "Traceback" not in text
    assert greedy.describe().queued == 0


def test_an_unreachable_cluster_is_a_sentence_within_seconds_and_can_fall_back(
        monkeypatch):
    gone = RayBackend(f"127.0.0.1:{free_port()}")     # nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(LayerLabError) as err:
        gone.new_job(TINY, Recipe(epochs=1))
    waited = time.perf_counter() - t0
    assert str(err.value) == UNREACHABLE
    assert waited < 30, "a hung page: ray.init would wait about a minute"
    assert gone.describe().problems == [UNREACHABLE]
    monkeypatch.setenv("LAYERLAB_RAY_FALLBACK", "local")
    backends.set_current(gone)
    try:
        job = gone.new_job(TINY, Recipe(epochs=1))
        assert isinstance(job, TrainingJob)
        now = backends.current()
        assert isinstance(now, FallbackBackend) and now.describe().problems == [FELL_BACK]
    finally:
        backends.set_current(None)
    print(f"\nunreachable cluster refused in {waited:.2f} s")



def test_a_four_trial_sweep_runs_to_the_end_on_the_cluster(cluster, tmp_path, monkeypatch):
    """The Sweep page's driver through the Ray backend: every trial trains in a Ray worker
    and comes back as a saved run of the workspace; the study is in real SQLite storage."""
    from core.jobs import JobRegistry
    from core.scheduler import Scheduler
    from core.sweep import run_sweep
    from core.sweep_objective import Objective
    from core.sweep_store import SweepConfig, get_storage
    from core.workspace import new_workspace_id

    monkeypatch.setenv("LAYERLAB_HOME", str(tmp_path))
    recipe = Recipe(epochs=1, batch_size=64, learning_rate=3e-3, train_subset=1000,
                    validation_split=0.2)
    ws = new_workspace_id()
    config = SweepConfig(workspace=ws, start=TINY.to_dict(), recipe=recipe.to_dict(),
                         space={"width": {"low": 0.5, "high": 2.0}}, n_trials=4,
                         start_label="test", objective=Objective("budget", budget=50_000))
    registry = JobRegistry(Scheduler(2), max_queued=4, orphan_s=600)
    result = run_sweep(config, storage=get_storage(), timeout=400, backend=cluster,
                       registry=registry, store=RunStore(tmp_path / "runs"))
    assert result.info.status == "finished", result.info.message
    assert [r.state for r in result.records] == ["complete"] * 4
    assert (tmp_path / "sweeps.db").is_file()
    runs = {run.id: run for run in RunStore(tmp_path / "runs").list_runs(ws)}
    for rec in result.records:
        run = runs[rec.run_id]
        assert run.status == "finished" and run.params == rec.params
        assert 4 <= run.spec["layers"][0]["filters"] <= 16     # width 0.5–2 of 8 filters
    trial_jobs = [registry.get(key) for key in list(registry._jobs)]
    assert trial_jobs and all(isinstance(job, RayJob) for job in trial_jobs)   # on the cluster
    assert all(job.worker_pid not in (None, os.getpid()) for job in trial_jobs)
    assert result.chosen and result.chosen[0].val_accuracy == max(
        r.val_accuracy for r in result.records)


def test_a_distilling_run_learns_from_the_servers_teacher_answers(cluster, tmp_path,
                                                                  monkeypatch):
    """The worker has no presets' files or cache of its own to trust: it trains on the
    answers the server hands it. Answers that call every digit the next one (weight 1)
    make a model that reads each test digit as the next one, which the teacher's own
    answers never would."""
    from core import distill
    from core.data import load_mnist

    monkeypatch.setattr(distill, "_provided", {})
    shifted = np.eye(10, dtype=np.float32)[(load_mnist().y_train + 1) % 10]
    distill.provide("fast_cnn", shifted)
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=3, batch_size=32, learning_rate=3e-3, train_subset=1000,
                    teacher="fast_cnn", distill_weight=1.0)
    job = cluster.new_job(TINY, recipe, name="taught", workspace="w", store=store,
                          test_limit=TEST_LIMIT)
    events = follow(job.start(), ended)
    job.join(timeout=30)
    assert events[-1]["status"] == "finished", events[-1]["message"]
    assert job.run.test_accuracy < 0.2
    confusion = np.array(job.run.confusion)
    next_digit = sum(confusion[d, (d + 1) % 10] for d in range(10))
    assert next_digit > 0.5 * confusion.sum()
