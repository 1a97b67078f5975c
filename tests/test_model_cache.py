"""Per-model caches: one owner, keyed weakly by the model, nothing set on the Keras model,
and no lookup waits for another model's inspector to compile."""
from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

from core import model_cache
from core.data import to_float
from core.evaluation import batched_probabilities
from core.inspector import Inspector, inspector_for
from core.projections import layer_model
from core.spec import ModelSpec

SPEC = ModelSpec("cache_cnn", [{"type": "Conv2D", "filters": 4, "kernel_size": 3},
                               {"type": "Flatten"},
                               {"type": "Dense", "units": 16},
                               {"type": "Dense", "units": 10, "activation": "softmax"}])


def small_model(seed: int):
    from core.build import build_model

    return build_model(SPEC, seed=seed)


def test_lookups_for_other_models_proceed_while_one_compiles():
    model_a, model_b = small_model(0), small_model(1)
    started, release = threading.Event(), threading.Event()
    built, out = [], {}

    def slow_build():                       # an inspector that takes its time compiling
        built.append("a")
        started.set()
        assert release.wait(120)
        return Inspector(model_a).warm_up()

    first = threading.Thread(target=lambda: out.update(
        a=model_cache.cached(model_a, "inspector", slow_build)))
    first.start()
    assert started.wait(60)
    same = threading.Thread(target=lambda: out.update(same=inspector_for(model_a)))
    same.start()                            # the same model: waits for that build
    try:
        lookup_b = threading.Thread(target=lambda: out.update(b=inspector_for(model_b)))
        lookup_b.start()                    # another model: goes ahead meanwhile
        lookup_b.join(90)
        assert "b" in out and first.is_alive() and same.is_alive() and "a" not in out
        other = out["b"]
        assert other.model is model_b and other.run(np.zeros((28, 28), np.uint8)).top >= 0
    finally:
        release.set()
        first.join(120)
        same.join(120)
    assert out["same"] is out["a"] and built == ["a"]    # built once, shared
    assert inspector_for(model_b) is other


def test_nothing_is_set_on_the_keras_model(mnist):
    model = small_model(2)
    x = mnist.x_test[:4]
    model(np.zeros((1, 28, 28, 1), np.float32), training=False)
    before = dict(vars(model))
    n_weights = len(model.weights)
    batched_probabilities(model, to_float(x))
    inspector_for(model).run(x[0])
    layer_model(model, "dense1")
    assert model_cache.names(model) == ["batched", "inspector", "layer:dense1"]
    assert set(vars(model)) == set(before)
    assert not [name for name in vars(model) if "layerlab" in name]
    assert len(model.weights) == n_weights


def test_a_collected_model_leaves_the_cache(mnist):
    model = small_model(3)
    kept = weakref.ref(inspector_for(model))
    kept().run(mnist.x_test[0])
    batched_probabilities(model, to_float(mnist.x_test[:3]))
    layer_model(model, "dense1")
    gc.collect()                            # models of earlier tests leave first
    count = model_cache.size()
    ref = weakref.ref(model)
    del model
    for _ in range(3):                      # the inspector's own cycles need a second pass
        gc.collect()
    assert ref() is None and kept() is None              # the model and its values went
    assert model_cache.size() <= count - 1               # (others may leave meanwhile)


def test_a_failed_build_is_not_kept():
    model = small_model(4)
    with pytest.raises(ValueError):
        model_cache.cached(model, "x", lambda: (_ for _ in ()).throw(ValueError("no")))
    assert model_cache.cached(model, "x", lambda: 7) == 7
