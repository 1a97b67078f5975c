"""Watch it learn: snapshots taken while a run trains, their sizes, and the replay view."""
from __future__ import annotations

import numpy as np
import pytest

from core.presets import PRESETS
from core.recipe import Recipe
from core.runs import RunStore, read_snapshots, snapshots_bytes
from core.training import TrainingJob, prepare_data
from tests.test_training import TINY, run_to_end


@pytest.fixture(scope="module")
def small_data():
    return prepare_data(Recipe(train_subset=2000, validation_split=0.1, seed=0),
                        test_limit=500)


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory):
    """A TINY run of two epochs, saved in a store: (store, job)."""
    store = RunStore(tmp_path_factory.mktemp("snap") / "runs")
    recipe = Recipe(epochs=2, batch_size=64, learning_rate=3e-3, train_subset=2000)
    job = TrainingJob(TINY, recipe, store=store, data=small_data)
    job.probe_index = 3
    events = run_to_end(job)
    assert events[-1]["status"] == "finished", events[-1]["message"]
    return store, job


def test_snapshots_at_start_inside_first_epoch_and_each_epoch(trained):
    _, job = trained
    epochs = [float(s["epoch"]) for s in job.snapshots.snaps]
    steps = 29                                    # ceil(1800 / 64)
    assert epochs == pytest.approx([0, 1 / steps, 10 / steps, 14 / steps, 1, 2])


def test_snapshot_contents_and_shapes(trained, small_data):
    _, job = trained
    first, last = job.snapshots.snaps[0], job.snapshots.latest()
    assert last["filters"].shape == (3, 3, 8) and last["filters"].dtype == np.float16
    assert last["maps"].shape == (26, 26, 8) and last["maps"].dtype == np.int8
    assert last["probs"].shape == (10,) and abs(float(last["probs"].sum()) - 1) < 1e-2
    assert last["confusion"].shape == (10, 10)
    assert int(last["confusion"].sum()) == len(small_data.x_val)
    assert len(last["weight_norm"]) == len(last["grad_norm"]) == 2     # conv, dense
    assert (first["grad_norm"] > 0).all() and (last["grad_norm"] > 0).all()
    assert not np.array_equal(first["filters"], last["filters"])       # it learned
    # the probe is test image 3, and it is learned: its true class wins at the end
    label = int(small_data.y_test[3])
    assert int(np.argmax(last["probs"])) == label
    assert float(last["probs"][label]) > float(first["probs"][label])


def test_snapshots_saved_and_loaded_with_the_run(trained, small_data):
    store, job = trained
    arrays = store.load_snapshots(job.run.id)
    assert arrays is not None
    assert list(arrays["epoch"]) == pytest.approx([s["epoch"] for s in job.snapshots.snaps])
    assert arrays["maps"].shape == (6, 26, 26, 8)
    assert list(arrays["layers"]) == job.snapshots.layers
    assert int(arrays["probe_label"]) == int(small_data.y_test[3])
    assert (store.run_dir(job.run.id) / "snapshots.npz").stat().st_size < 1_000_000


def test_resume_continues_the_snapshots(trained, small_data):
    store, job = trained
    run = store.load_run(job.run.id)
    step = TrainingJob(TINY, Recipe.from_dict(run.recipe).replace(epochs=1), store=store,
                       data=small_data, resume=run, model=job.model)
    assert run_to_end(step)[-1]["status"] == "finished"
    epochs = list(store.load_snapshots(run.id)["epoch"])
    assert epochs[-2:] == pytest.approx([2, 3]) and len(epochs) == 7


def test_damaged_or_missing_snapshots_read_as_none(tmp_path):
    assert read_snapshots(tmp_path / "none.npz") is None
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    assert read_snapshots(bad) is None


def test_snapshots_are_decompressed_once_per_version_of_the_file(tmp_path, monkeypatch):
    """Compare and the replays read the same files at every view: the second read of an
    unchanged file opens nothing, and an atomic save of new snapshots is read afresh."""
    from core.storage import atomic_write_bytes

    path = tmp_path / "snapshots.npz"
    atomic_write_bytes(path, snapshots_bytes({"epoch": np.array([0.5, 1.0])}))
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    first, again = read_snapshots(path), read_snapshots(path)
    assert list(first["epoch"]) == list(again["epoch"]) == [0.5, 1.0] and len(loads) == 1
    with pytest.raises(ValueError):              # shared by every reader: read-only
        first["epoch"][0] = 9.0
    first["mine"] = np.zeros(1)                  # a reader's own dict, not the cached one
    assert "mine" not in read_snapshots(path)
    atomic_write_bytes(path, snapshots_bytes({"epoch": np.array([0.5, 1.0, 1.5])}))
    assert list(read_snapshots(path)["epoch"]) == [0.5, 1.0, 1.5] and len(loads) == 2


def test_bulky_cnn_snapshots_of_a_long_run_stay_under_1mb(small_data):
    """bulky_cnn has 32 first-layer filters and 28x28 maps; 30 epochs plus the first
    epoch's snapshots must still fit in 1 MB (thinned when needed)."""
    import keras

    from core.build import build_model
    from core.snapshot_callback import Snapshots

    model = build_model(PRESETS["bulky_cnn"].spec, seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cb = Snapshots((small_data.x_test[0], 7), (small_data.x_val[:200], small_data.y_val[:200]),
                   (small_data.x_train[:32], small_data.y_train[:32]), steps_per_epoch=100)
    cb.set_model(model)
    cb.on_train_begin()
    for batch in range(100):
        cb.on_train_batch_end(batch)
    for epoch in range(30):
        cb.on_epoch_end(epoch)
    assert isinstance(model, keras.Model)
    arrays = cb.arrays()
    size = sum(v.nbytes for v in arrays.values())
    assert size < 1_000_000 and len(snapshots_bytes(arrays)) < 1_000_000
    assert arrays["filters"].shape[1:] == (3, 3, 32)
    assert arrays["epoch"][0] == 0 and arrays["epoch"][-1] == 30      # ends kept
    assert len(arrays["epoch"]) >= 10


def test_replay_view_steps_through_a_runs_snapshots(trained, open_page):
    from core.runs import Run
    from core.workspace import new_workspace_id
    from pages.train_replay import NO_SNAPSHOTS

    store, job = trained
    ws = new_workspace_id()
    home = RunStore()                                # the app's store (a temp home)
    run = Run.from_dict({**job.run.to_dict(), "workspace": ws})
    home.save_run(run)
    arrays = store.load_snapshots(run.id)
    home.save_snapshots(run.id, arrays)
    bare = Run.from_dict({**run.to_dict(), "id": run.id + "x", "name": "bare"})
    home.save_run(bare)                              # a run without snapshots
    at = open_page("train", query={"ws": ws})
    assert not at.exception
    source = at.selectbox(key="replay_source")
    label = next(o for o in source.options if run.id[-6:] in o and "bare" not in o)
    source.set_value(label).run()
    slider = at.select_slider(key=f"replay_pos_{run.id}")
    n = len(arrays["epoch"])
    assert n >= 6 and len(slider.options) == n
    slider.set_value(n - 1).run()
    assert not at.exception
    texts = [t.value for t in at.text]
    assert any(t.startswith("Validation accuracy at this point") and "(was" in t
               for t in texts)
    assert len(at.get("image")) >= 3                  # filters, probe, maps
    at.toggle(key="replay_play").set_value(True).run()
    assert not at.exception
    bare_label = next(o for o in source.options if "bare" in o)
    at.selectbox(key="replay_source").set_value(bare_label).run()
    assert NO_SNAPSHOTS in [i.value for i in at.info]


def test_one_more_epoch_trains_exactly_one_and_adds_its_snapshot(trained, open_page):
    """The step control resumes the run that ended for one epoch through the registry."""
    from core.jobs import REGISTRY
    from core.runs import Run
    from core.workspace import new_workspace_id
    from tests.waiting import wait_until

    store, job = trained
    ws = new_workspace_id()
    home = RunStore()
    job.run = Run.from_dict({**store.load_run(job.run.id).to_dict(), "workspace": ws})
    home.save_run(job.run)
    home.save_snapshots(job.run.id, store.load_snapshots(job.run.id))
    before = job.run.epochs_done
    at = open_page("train", query={"ws": ws}, state={"job": job})
    at.button(key="train_step").click().run()
    assert not at.exception
    step = REGISTRY.get(ws)
    assert step is not None and step.run.id == job.run.id
    try:
        wait_until(lambda: step.done, timeout=300)
    finally:
        step.stop()
        step.join(60)
    assert step.run.status == "finished", step.run.message
    assert home.load_run(job.run.id).epochs_done == before + 1
    epochs = list(home.load_snapshots(job.run.id)["epoch"])
    assert epochs[-1] == pytest.approx(before + 1) and epochs[-2] == pytest.approx(before)


def test_shipped_preset_snapshots_are_small_and_replayable():
    from core.pretrained import CACHED_DIR
    from core.snapshots import unpack

    paths = sorted(CACHED_DIR.glob("*.snapshots.npz"))
    assert [p.name for p in paths if p.name.startswith("fast_cnn")] == ["fast_cnn.snapshots.npz"]
    for path in paths:
        assert path.stat().st_size < 1_000_000
        snaps, meta = unpack(read_snapshots(path))
        epochs = [float(s["epoch"]) for s in snaps]
        assert epochs[0] == 0 and epochs == sorted(epochs) and len(epochs) >= 4
        assert meta["probe"].shape == (28, 28, 1)
        name = path.name.removesuffix(".snapshots.npz")
        assert len(meta["layers"]) == len(snaps[-1]["weight_norm"]), name
