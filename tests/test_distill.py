"""core.distill: a teacher's answers become soft training targets, computed once per
teacher file, and a run learns from them end to end."""
from __future__ import annotations

import time

import numpy as np
import pytest

from core import distill
from core.errors import LayerLabError
from core.evaluation import cache_root
from core.spec import ModelSpec
from core.recipe import Recipe
from core.runs import RunStore
from core.data import to_float
from core.training import TrainingJob, make_loss, prepare_data

TEACHER = "fast_cnn"          # the quickest preset to run over 60,000 images
TINY = ModelSpec("tiny", [{"type": "Conv2D", "filters": 8, "kernel_size": 3},
                          {"type": "MaxPooling2D", "pool_size": 2},
                          {"type": "Flatten"},
                          {"type": "Dense", "units": 10, "activation": "softmax"}])


@pytest.fixture
def fresh(monkeypatch):
    """No teacher answers held in memory or handed over by a Ray server."""
    monkeypatch.setattr(distill, "_memory", {})
    monkeypatch.setattr(distill, "_provided", {})


def test_soft_targets_blend_the_digit_with_the_softened_teacher():
    labels = np.array([3, 7])
    teacher = np.full((2, 10), 0.01, np.float32)
    teacher[0, 3], teacher[1, 1] = 0.91, 0.91          # the second one the teacher misreads
    soft = distill.soft_targets(labels, teacher, weight=0.25, temperature=1.0)
    assert soft.shape == (2, 10) and np.allclose(soft.sum(axis=1), 1.0)
    assert soft[0, 3] == pytest.approx(0.75 + 0.25 * 0.91)
    assert soft[1, 7] == pytest.approx(0.75 + 0.25 * 0.01) and soft[1, 1] == pytest.approx(0.25 * 0.91)
    warm = distill.soft_targets(labels, teacher, weight=1.0, temperature=4.0)
    assert warm[0, 3] < 0.91 and warm[0].argmax() == 3      # softer, same answer
    with pytest.raises(ValueError):
        distill.soft_targets(labels, teacher[:1], weight=0.5, temperature=1.0)


def test_teacher_answers_are_computed_once_per_file_and_read_back(fresh, mnist):
    from core.data import to_float
    from core.evaluation import batched_probabilities
    from core.pretrained import shared_model

    before = distill.computed
    probs = distill.teacher_probabilities(TEACHER)
    assert distill.computed == before + 1
    assert probs.shape == (60_000, 10) and not probs.flags.writeable
    assert (probs.argmax(axis=1) == mnist.y_train).mean() > 0.98     # a good teacher
    direct = batched_probabilities(shared_model(TEACHER), to_float(mnist.x_train[:64]))
    assert np.allclose(probs[:64], direct, atol=1e-5)
    assert distill.teacher_probabilities(TEACHER) is probs           # held in memory
    distill._memory.clear()                                          # a new server process
    again = distill.teacher_probabilities(TEACHER)
    assert distill.computed == before + 1 and np.array_equal(again, probs)   # from disk
    (cached,) = (cache_root() / "teachers").glob(f"{TEACHER}-*.npy")
    cached.write_bytes(b"not an array")                              # damaged: recomputed
    distill._memory.clear()
    assert np.array_equal(distill.teacher_probabilities(TEACHER), probs)
    assert distill.computed == before + 2


def test_provided_answers_are_checked_and_used_instead_of_files(fresh):
    with pytest.raises(LayerLabError, match="incomplete"):
        distill.provide(TEACHER, np.zeros((5, 10)))
    given = np.full((60_000, 10), 0.1, np.float32)
    distill.provide(TEACHER, given)
    assert np.array_equal(distill.teacher_probabilities(TEACHER), given)


def test_prepare_data_gives_soft_targets_aligned_with_the_training_images(fresh):
    from core.evaluation import batched_probabilities
    from core.pretrained import shared_model

    recipe = Recipe(train_subset=2000, validation_split=0.1, seed=0, teacher=TEACHER,
                    distill_weight=0.4)
    data = prepare_data(recipe, test_limit=100)
    plain = prepare_data(recipe.replace(teacher=None), test_limit=100)
    assert plain.y_soft is None and plain.targets is plain.y_train
    assert np.array_equal(data.x_train, plain.x_train) and data.targets is data.y_soft
    teacher = batched_probabilities(shared_model(TEACHER), to_float(data.x_train[:50]))
    expected = 0.6 * np.eye(10)[data.y_train[:50]] + 0.4 * teacher
    assert np.allclose(data.y_soft[:50], expected, atol=1e-5)
    assert (data.y_soft.argmax(axis=1) == data.y_train).mean() > 0.99


def test_a_distilled_run_trains_on_the_teachers_answers_and_saves_an_ordinary_model(
        fresh, tmp_path, mnist):
    """Answers that call every digit the next one, at weight 1, make a model that reads
    each test digit as the next one: the run learns from the teacher, not the labels."""
    import keras

    distill.provide(TEACHER, np.eye(10, dtype=np.float32)[(mnist.y_train + 1) % 10])
    store = RunStore(tmp_path / "runs")
    recipe = Recipe(epochs=3, batch_size=32, learning_rate=3e-3, train_subset=2000,
                    seed=0, teacher=TEACHER, distill_weight=1.0)
    assert isinstance(make_loss(recipe), keras.losses.CategoricalCrossentropy)
    job = TrainingJob(TINY, recipe, store=store,
                      data=prepare_data(recipe, test_limit=500)).start()
    t0 = time.time()
    job.join(timeout=300)
    assert not job.alive, f"still training after {time.time() - t0:.0f} s"
    assert job.run.status == "finished", job.run.message
    assert job.run.test_accuracy < 0.2 and job.run.recipe["teacher"] == TEACHER
    confusion = np.array(job.run.confusion)
    assert sum(confusion[d, (d + 1) % 10] for d in range(10)) > 0.5 * confusion.sum()
    loaded = store.load_model(job.run.id)                 # an ordinary saved model
    assert loaded.count_params() == job.model.count_params()
