"""The training engine on small real data: learning, stop, NaN, events, resume, store."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.errors import SpecError
from core.recipe import Recipe, lr_at
from core.runs import RunStore
from core.spec import ModelSpec
from core.training import Scheduler, TrainingJob, prepare_data, training_images

TINY = ModelSpec("tiny", [{"type": "Conv2D", "filters": 8, "kernel_size": 3},
                          {"type": "MaxPooling2D", "pool_size": 2},
                          {"type": "Flatten"},
                          {"type": "Dense", "units": 10, "activation": "softmax"}])


def run_to_end(job: TrainingJob, timeout: float = 300) -> list[dict]:
    job.start()
    events, t0 = [], time.time()
    while time.time() - t0 < timeout:
        events += job.drain()
        if events and events[-1]["kind"] == "done":
            return events
        time.sleep(0.05)
    raise AssertionError("run did not finish")


@pytest.fixture(scope="module")
def small_data():
    recipe = Recipe(train_subset=2000, validation_split=0.1, seed=0)
    return prepare_data(recipe, test_limit=1000)


def test_small_run_beats_chance_and_events_in_order(small_data, tmp_path):
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=2, batch_size=64, learning_rate=3e-3, train_subset=2000)
    events = run_to_end(TrainingJob(TINY, recipe, store=store, data=small_data))
    kinds = [e["kind"] for e in events]
    # its slot taken, it says what it prepares (here the data is given: the model only)
    assert kinds[:2] == ["preparing", "started"] and kinds[-1] == "done"
    assert events[0]["what"] == "Building the model"
    assert kinds.count("epoch") == 2 and kinds.count("done") == 1
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [1, 2]
    steps = [e["global_step"] for e in events if e["kind"] == "batch"]
    assert steps == sorted(steps) and steps[-1] == 2 * 29  # 1800 images / 64
    done = events[-1]
    assert done["status"] == "finished", done["message"]
    run = done["run"]
    assert run.test_accuracy > 0.75             # chance is 0.10
    assert run.history["val_accuracy"][-1] > 0.7
    assert set(run.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr",
                                "seconds", "images_per_s"}
    cm = np.array(run.confusion)
    assert cm.sum() == 1000 and np.trace(cm) == round(run.test_accuracy * 1000)
    assert run.params == 8 * 9 + 8 + 13 * 13 * 8 * 10 + 10
    # persisted: run.json and the final weights
    again = store.load_run(run.id)
    assert again.test_accuracy == pytest.approx(run.test_accuracy)
    assert store.model_path(run.id).name == "model.keras"
    model = store.load_model(run.id)
    assert model.count_params() == run.params


def test_stop_is_honoured_within_a_few_batches(small_data):
    recipe = Recipe(epochs=50, batch_size=16, train_subset=2000)
    job = TrainingJob(TINY, recipe, data=small_data).start()
    seen = []
    while not any(e["kind"] == "batch" and e["step"] >= 5 for e in seen):
        seen += job.drain()
        time.sleep(0.02)
    job.stop()
    t_stop = time.time()
    job.join(timeout=30)
    stopped_in = time.time() - t_stop
    seen += job.drain()
    done = seen[-1]
    assert done["kind"] == "done" and done["status"] == "stopped"
    assert "Stopped by you" in done["message"]
    assert stopped_in < 5
    assert job.run.epochs_done < 3 and job.run.test_accuracy is not None


def test_nan_loss_detected_and_explained(small_data):
    recipe = Recipe(epochs=3, batch_size=32, learning_rate=10.0, optimizer="sgd",
                    train_subset=2000)
    spec = ModelSpec("nan", [{"type": "Flatten"},
                             {"type": "Dense", "units": 256, "activation": "linear"},
                             {"type": "Dense", "units": 256, "activation": "linear"},
                             {"type": "Dense", "units": 10, "activation": "softmax"}])
    events = run_to_end(TrainingJob(spec, recipe, data=small_data))
    done = events[-1]
    assert done["status"] == "failed"
    assert "The loss became NaN at step" in done["message"]
    assert "lower the learning rate" in done["message"]


def test_resume_continues_curves(small_data, tmp_path):
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=1, batch_size=64, learning_rate=3e-3, train_subset=2000)
    job = TrainingJob(TINY, recipe, store=store, data=small_data)
    run_to_end(job)
    first = job.run
    opt_steps = int(job.model.optimizer.iterations.numpy())
    job2 = TrainingJob(TINY, recipe.replace(epochs=2), store=store, data=small_data,
                       resume=first, model=job.model)
    events = run_to_end(job2)
    assert events[-1]["status"] == "finished"
    assert job2.run.id == first.id
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [2, 3]
    assert len(job2.run.history["loss"]) == 3
    assert int(job2.model.optimizer.iterations.numpy()) == opt_steps * 3   # state kept
    # resume after a "restart": the model comes from the store
    job3 = TrainingJob(TINY, recipe, store=store, data=small_data, resume=store.load_run(first.id))
    events = run_to_end(job3)
    assert events[-1]["status"] == "finished", events[-1]["message"]
    assert job3.run.epochs_done == 4


def test_label_smoothing_and_mixed_precision_train_and_end_in_float32(small_data, tmp_path):
    """The recipe's smoothing reaches the compiled loss (and the saved model); mixed
    precision computes in what this device does fast and the run ends in float32."""
    from core.build import cpu_has_bfloat16, model_policy

    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=1, batch_size=64, learning_rate=3e-3, train_subset=2000,
                    label_smoothing=0.1, mixed_precision=True)
    job = TrainingJob(TINY, recipe, store=store, data=small_data)
    events = run_to_end(job)
    assert events[-1]["status"] == "finished", events[-1]["message"]
    assert job.run.test_accuracy > 0.6
    assert job.model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    assert store.load_model(job.run.id).loss.get_config()["label_smoothing"] == \
        pytest.approx(0.1)
    assert model_policy(job.model) == "float32"
    assert job.run.device.endswith(" · mixed bfloat16") == cpu_has_bfloat16()


def test_a_model_changes_precision_with_its_weights_and_optimizer_state(small_data):
    import keras

    from core.build import build_model, model_policy
    from core.training import compile_model, make_dataset, with_precision

    recipe = Recipe(batch_size=200, train_subset=2000)
    model = build_model(TINY, seed=1)
    compile_model(model, recipe)
    model.fit(make_dataset(small_data.x_train[:400], small_data.y_train[:400], recipe),
              epochs=1, verbose=0)
    assert with_precision(model, TINY, None, recipe) is model          # already float32
    half = with_precision(model, TINY, "mixed_bfloat16", recipe)
    assert model_policy(half) == "mixed_bfloat16" and half.compiled
    assert int(half.optimizer.iterations.numpy()) == 2
    for a, b in zip(half.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    back = with_precision(half, TINY, None, recipe)
    for a, b in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = small_data.x_test[:50]
    np.testing.assert_allclose(np.asarray(half(x, training=False)),
                               np.asarray(model(x, training=False)), atol=0.05)
    assert isinstance(back.layers[1], keras.layers.Conv2D) and model_policy(back) == "float32"
    f16 = with_precision(model, TINY, "mixed_float16", recipe)    # as on a GPU
    assert isinstance(f16.optimizer, keras.optimizers.LossScaleOptimizer)
    assert int(f16.optimizer.iterations.numpy()) == 2
    plain = with_precision(f16, TINY, None, recipe)
    assert not isinstance(plain.optimizer, keras.optimizers.LossScaleOptimizer)
    assert int(plain.optimizer.iterations.numpy()) == 2


def test_worker_errors_reach_the_ui_as_sentences(small_data, monkeypatch, caplog):
    import core.build

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(core.build, "build_model", boom)
    job = TrainingJob(TINY, Recipe(epochs=1), data=small_data)
    with caplog.at_level("ERROR", logger="core.training"):
        events = run_to_end(job)
    assert events[-1]["status"] == "failed"
    message = events[-1]["message"]
    assert message.startswith("Training failed because of an error on the server")
    assert job.run.id[-6:] in message and message.endswith(".")
    assert "RuntimeError" not in message and "simulated failure" not in message
    logged = [r for r in caplog.records if job.run.id in r.getMessage()]
    assert logged and logged[0].exc_info[0] is RuntimeError
    assert "simulated failure" in str(logged[0].exc_info[1])


def test_invalid_inputs_refused_before_thread():
    with pytest.raises(SpecError, match="last layer"):
        TrainingJob(ModelSpec("x", [{"type": "Flatten"}]), Recipe())
    with pytest.raises(SpecError, match="learning rate"):
        TrainingJob(TINY, Recipe(learning_rate=float("nan")))
    with pytest.raises(SpecError, match="batch_size"):
        Recipe.from_dict({"batch_size": 0})
    with pytest.raises(SpecError, match="unknown setting"):
        Recipe.from_dict({"epochz": 3})


def test_schedules():
    r = Recipe(learning_rate=0.01, schedule="one_cycle")
    assert lr_at(r, 0, 100) == pytest.approx(0.0004)
    assert lr_at(r, 25, 100) == pytest.approx(0.01)
    assert lr_at(r, 99, 100) < 0.0002
    s = Recipe(learning_rate=0.01, schedule="step")
    assert [lr_at(s, i, 100) for i in (0, 50, 75)] == pytest.approx([0.01, 0.001, 0.0001])
    assert lr_at(Recipe(learning_rate=0.02), 70, 100) == 0.02


def test_release_memory_leaves_other_threads_keras_state_alone():
    """The inspector's thread keeps its Keras state (here: layer name counters) while a
    finished run releases memory in its own thread."""
    import keras

    from core.training import release_memory

    first = keras.layers.Dense(1).name
    n = int(first.rsplit("_", 1)[1]) if "_" in first else 0
    done = []
    worker = threading.Thread(target=lambda: done.append(release_memory(Scheduler(1))))
    worker.start()
    worker.join(30)
    assert done == [True]
    assert keras.layers.Dense(1).name == f"dense_{n + 1}"
    busy = Scheduler(1)
    busy.acquire("training", threading.Event())
    assert release_memory(busy) is False


def test_progress_fraction_and_eta_for_a_resumed_job():
    from core.training import Progress

    p = Progress()
    p.apply({"kind": "started", "epochs": 4, "first_epoch": 2, "epochs_total": 6,
             "steps_per_epoch": 10, "device": "CPU"})
    assert p.fraction == 0.0 and p.state == "running"
    p.apply({"kind": "epoch", "epoch": 3, "elapsed_s": 5.0, "images_per_s": 100.0})
    p.apply({"kind": "batch", "step": 5, "global_step": 35, "loss": 1.0, "accuracy": 0.5,
             "elapsed_s": 7.5})
    assert p.fraction == pytest.approx(1.5 / 4)
    assert p.eta_s == pytest.approx(7.5 * (1 - 0.375) / 0.375)
    p.apply({"kind": "done", "status": "stopped", "message": "Stopped by you."})
    assert p.done and p.eta_s is None


def test_a_fixed_split_seed_holds_out_the_same_images_whatever_the_seed():
    """Seeds compared on validation see the same held-out digits when the recipe fixes
    the split; otherwise each seed draws its own (as records before the setting did)."""
    base = Recipe(train_subset=2000, validation_split=0.1, split_seed=5)
    a = prepare_data(base.replace(seed=0), test_limit=100)
    b = prepare_data(base.replace(seed=1), test_limit=100)
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.x_train, b.x_train)
    c = prepare_data(base.replace(seed=1, split_seed=None), test_limit=100)
    d = prepare_data(Recipe(train_subset=2000, validation_split=0.1, seed=1), test_limit=100)
    assert not np.array_equal(a.x_val, c.x_val) and np.array_equal(c.x_val, d.x_val)


def test_training_images_stay_pixels_and_batch_as_the_float_images_did(small_data):
    """The training images are kept as uint8 (a quarter of the memory) and scaled a
    batch at a time: the very batches, in the same order, as from float images, so a
    shipped recipe trains as before. (Augmented batches draw their shifts in parallel
    calls, so they differ from run to run either way: only their form is compared.)"""
    from core.data import to_float
    from core.training import make_dataset

    pixels, y = small_data.x_train[:300], small_data.y_train[:300]
    assert pixels.dtype == np.uint8 and pixels.shape == (300, 28, 28)
    recipe = Recipe(batch_size=64, seed=5, label_smoothing=0.1)
    scaled, floats = make_dataset(pixels, y, recipe), make_dataset(to_float(pixels), y, recipe)
    for _ in range(2):                                   # the order changes per epoch
        pairs = list(zip(scaled, floats))
        assert len(pairs) == 5
        for (xa, ya), (xb, yb) in pairs:
            assert xa.dtype.name == "float32" and xa.shape[1:] == (28, 28, 1)
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    augmented = make_dataset(pixels, y, recipe.replace(augment=True))
    for xa, ya in augmented:
        assert xa.dtype.name == "float32" and xa.shape[1:] == (28, 28, 1)
        assert 0.0 <= float(xa.numpy().min()) and float(xa.numpy().max()) <= 1.0 + 1e-6
        assert float(xa.numpy().max()) > 0.5 and ya.shape[1:] == (10,)


def test_a_deskewing_model_reads_images_straightened_once_unless_it_augments(mnist):
    from core.build import build_model
    from core.deskew import deskew_all
    from core.presets import get_preset

    model = build_model(get_preset("frontier_1k").spec, seed=0)
    x = mnist.x_train[:6]
    images, layer = training_images(model, x, Recipe())
    assert layer is model.get_layer("deskew1")
    np.testing.assert_allclose(images, deskew_all(x), atol=1e-6)
    images, layer = training_images(model, x, Recipe(augment=True))
    assert images is x and layer is None          # it shifts first, then the model straightens
    plain = build_model(get_preset("warmup_mlp").spec, seed=0)
    assert training_images(plain, x, Recipe())[1] is None
