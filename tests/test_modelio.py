"""core.modelio: our own format round-trips, plain .keras files load when enabled and
nothing in a model file is executed, imports are evaluated in small stoppable steps.
(Every hostile file is in tests/test_hostile.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import LayerLabError
from core.modelio import (ImportStopped, evaluate_in_batches, import_run, load_keras_upload,
                          model_from_spec_and_weights, spec_from_keras, weights_to_npz)
from core.presets import get_preset
from tests.hostile_files import keras_bytes, still_serves
from tests.waiting import wait_until

SPEC = get_preset("keras_example").spec


@pytest.fixture(scope="module")
def model():
    from core.build import build_model

    return build_model(SPEC, seed=0)


@pytest.fixture
def allow_keras(monkeypatch):
    monkeypatch.setenv("LAYERLAB_ALLOW_KERAS_UPLOAD", "1")


def test_round_trip_of_our_format(model):
    spec, again = model_from_spec_and_weights(SPEC.to_json(), weights_to_npz(model))
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    assert np.allclose(model(x, training=False), again(x, training=False), atol=1e-6)


def test_compressed_float64_weights_load_too(model):
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **{f"{layer.name}/{i}": np.asarray(w, np.float64)
                                for layer in model.layers
                                for i, w in enumerate(layer.get_weights())})
    _, again = model_from_spec_and_weights(SPEC.to_json(), buf.getvalue())
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)


def test_plain_keras_upload_when_enabled(model, allow_keras):
    loaded = load_keras_upload(keras_bytes(model))
    assert spec_from_keras(loaded).layers[0]["filters"] == 32


def test_real_lambda_model_is_never_executed(allow_keras, tmp_path, model):
    import keras

    marker = tmp_path / "pwned"
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    evil = keras.Model(inputs, out)
    with pytest.raises(LayerLabError, match="Lambda"):
        load_keras_upload(keras_bytes(evil))
    assert not marker.exists()
    still_serves(model)


# -- evaluating an import ----------------------------------------------------------------
def test_batched_evaluation_matches_the_one_call_evaluation(model, mnist):
    from core.data import to_float
    from core.evaluation import evaluate

    images, labels = mnist.x_test[:1100], mnist.y_test[:1100]
    whole = evaluate(model, to_float(images), labels)
    steps = evaluate_in_batches(model, images, labels, batch_size=500)
    assert np.allclose(steps.probabilities, whole.probabilities, atol=1e-5)
    assert np.array_equal(steps.confusion, whole.confusion)
    assert steps.accuracy == whole.accuracy


def test_batched_evaluation_stops_between_steps(model, mnist):
    asked = []

    def stop_on_third() -> bool:
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(ImportStopped, match="stopped before its test-set evaluation"):
        evaluate_in_batches(model, mnist.x_test[:2000], mnist.y_test[:2000],
                            batch_size=200, should_stop=stop_on_third)
    assert len(asked) == 3


@pytest.mark.parametrize("batch_size", [0, 501, 10_000])
def test_batched_evaluation_keeps_steps_small(model, mnist, batch_size):
    with pytest.raises(ValueError, match="1 to 500"):
        evaluate_in_batches(model, mnist.x_test[:10], mnist.y_test[:10],
                            batch_size=batch_size)


def test_a_stopped_import_saves_nothing_and_a_finished_one_is_a_run(model):
    from core.runs import RunStore

    store = RunStore()
    with pytest.raises(ImportStopped):
        import_run(model, SPEC, "mine", "ws1", store, should_stop=lambda: True)
    assert store.list_runs("ws1") == []
    run, _ = import_run(model, SPEC, "mine", "ws1", store)
    assert [r.id for r in store.list_runs("ws1")] == [run.id]
    assert run.source == "imported" and 0.0 <= run.test_accuracy <= 1.0


def test_an_import_waits_its_turn_in_the_training_scheduler(model):
    """Issue 12 §1: imports are evaluated off the page's thread, under the scheduler's
    cap: with the only slot taken, the import queues (nothing evaluated), then runs."""
    import threading

    from core.modelio import ImportJob
    from core.runs import RunStore
    from core.training import Scheduler

    scheduler, store = Scheduler(1), RunStore()
    assert scheduler.acquire("a-run", threading.Event())
    job = ImportJob(model, SPEC, "queued", "ws2", store, scheduler=scheduler).start()
    wait_until(lambda: job.position == 1)
    assert job.fraction == 0.0 and not job.done and store.list_runs("ws2") == []
    scheduler.release("a-run")
    run, _ = job.result(timeout=300)
    assert job.done and job.fraction == 1.0 and job.position is None
    assert [r.id for r in store.list_runs("ws2")] == [run.id] and scheduler.active == 0
    waiting = ImportJob(model, SPEC, "given up", "ws2", store, scheduler=scheduler)
    assert scheduler.acquire("b-run", threading.Event())
    waiting.start()
    wait_until(lambda: waiting.position == 1)
    waiting.stop()
    with pytest.raises(ImportStopped, match="nothing was saved"):
        waiting.result(timeout=60)
    assert len(store.list_runs("ws2")) == 1
    scheduler.release("b-run")



def test_the_models_page_polls_an_import_to_its_result(open_page, model):
    """The page only polls the ImportJob (queue, progress, result); it never evaluates."""
    import time

    from core.modelio import ImportJob
    from core.runs import RunStore
    from core.training import Scheduler

    job = ImportJob(model, SPEC, "polled", "ws3", RunStore(), scheduler=Scheduler(1))
    at = open_page("models", run=False, state={"import_job": job.start()})
    at.run()
    assert not at.exception and at.button(key="import_go").disabled      # one at a time
    end = time.monotonic() + 300
    while not at.success and time.monotonic() < end:
        time.sleep(0.5)
        at.run()
    assert not at.exception
    assert [s.value for s in at.success][0].startswith("Imported “polled”")
    assert at.session_state.import_job is None
