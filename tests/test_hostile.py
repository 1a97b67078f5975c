"""Hostile and bad input: model files, specs and recipes are refused with a sentence, never
executed, and the next ordinary request still works."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from core.errors import LayerLabError, SpecError
from core.modelio import (load_keras_upload, model_from_spec_and_weights, spec_from_keras,
                          weights_to_npz)
from core.presets import get_preset
from core.recipe import Recipe
from core.spec import ModelSpec, infer_shapes

SPEC = get_preset("keras_example").spec


@pytest.fixture(scope="module")
def model():
    from core.build import build_model

    return build_model(SPEC, seed=0)


@pytest.fixture
def allow_keras(monkeypatch):
    monkeypatch.setenv("LAYERLAB_ALLOW_KERAS_UPLOAD", "1")


def keras_bytes(m) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.keras"
        m.save(path)
        return path.read_bytes()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def still_serves(model) -> None:
    """The next ordinary request works: a round trip of our own format."""
    spec, again = model_from_spec_and_weights(SPEC.to_json(), weights_to_npz(model))
    assert again.count_params() == 34_826


# --------------------------------------------------------------------------- model files
def test_round_trip_of_our_format(model):
    spec, again = model_from_spec_and_weights(SPEC.to_json(), weights_to_npz(model))
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    assert np.allclose(model(x, training=False), again(x, training=False), atol=1e-6)


def test_keras_upload_off_by_default(model, monkeypatch):
    monkeypatch.delenv("LAYERLAB_ALLOW_KERAS_UPLOAD", raising=False)
    with pytest.raises(LayerLabError, match="switched off"):
        load_keras_upload(keras_bytes(model))
    still_serves(model)


def test_plain_keras_upload_when_enabled(model, allow_keras):
    loaded = load_keras_upload(keras_bytes(model))
    assert spec_from_keras(loaded).layers[0]["filters"] == 32


HOSTILE_ARCHIVES = {
    "not a zip": (b"\x00\x01 this is not an archive" * 10, "not a .keras file"),
    "path traversal": (zip_bytes({"../../evil.py": b"import os"}), "suspicious path"),
    "absolute path": (zip_bytes({"/etc/cron.d/x": b"* * * * *"}), "suspicious path"),
    "extra member": (zip_bytes({"config.json": b"{}", "payload.py": b"x"}),
                     "unexpected file"),
    "zip bomb": (zip_bytes({"model.weights.h5": b"\0" * (210 * 1024 * 1024)}),
                 "more than 200 MB"),
    "no config": (zip_bytes({"metadata.json": b"{}"}), "no readable config.json"),
    "lambda config": (zip_bytes({"config.json": json.dumps(
        {"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}}
    ).encode()}), "Lambda layer or Python code"),
    "oversized": (b"PK" + b"\0" * (26 * 1024 * 1024), "limit is 25 MB"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ARCHIVES))
def test_hostile_keras_archives_refused(case, allow_keras, model):
    data, needle = HOSTILE_ARCHIVES[case]
    with pytest.raises(LayerLabError, match=needle) as err:
        load_keras_upload(data)
    assert "Traceback" not in str(err.value)
    still_serves(model)


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


def test_custom_object_refused(allow_keras, model):
    import keras

    @keras.saving.register_keras_serializable(package="evil")
    class Sneaky(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((28, 28, 1))
    x = Sneaky(name="sneaky")(inputs)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    data = keras_bytes(keras.Model(inputs, out))
    keras.saving.get_custom_objects().clear()          # the server does not know it
    with pytest.raises(LayerLabError, match="could not be loaded safely|does not support"):
        spec_from_keras(load_keras_upload(data))
    still_serves(model)


def test_wrong_shapes_refused(allow_keras, model):
    import keras

    inputs = keras.Input((32, 32, 3))
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    with pytest.raises(LayerLabError, match="needs 28×28×1 images to 10 classes"):
        load_keras_upload(keras_bytes(keras.Model(inputs, out)))


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_npz_with_pickled_objects_refused(model):
    weights = dict(np.load(io.BytesIO(weights_to_npz(model))))
    weights["conv1/0"] = np.array([{"evil": 1}], dtype=object)
    with pytest.raises(LayerLabError, match="not a readable .npz"):
        model_from_spec_and_weights(SPEC.to_json(), npz(**weights))
    still_serves(model)


@pytest.mark.parametrize("mutate,needle", [
    (lambda w: w.pop("conv1/0"), "missing conv1/0"),
    (lambda w: w.update({"conv9/0": np.zeros(3, np.float32)}), "unexpected conv9/0"),
    (lambda w: w.update({"conv1/0": np.zeros((5, 5, 1, 32), np.float32)}),
     r"shape \(5, 5, 1, 32\) but the spec needs \(3, 3, 1, 32\)"),
    (lambda w: w.update({"conv1/1": np.full(32, np.nan, np.float32)}), "finite numbers"),
])
def test_npz_checked_shape_by_shape(model, mutate, needle):
    weights = dict(np.load(io.BytesIO(weights_to_npz(model))))
    mutate(weights)
    with pytest.raises(LayerLabError, match=needle):
        model_from_spec_and_weights(SPEC.to_json(), npz(**weights))


def test_garbage_npz_refused(model):
    with pytest.raises(LayerLabError, match="not a readable .npz"):
        model_from_spec_and_weights(SPEC.to_json(), b"garbage" * 100)


# ------------------------------------------------------------------ specs and recipes
def test_hundred_megabyte_json_refused_quickly():
    big = b'{"layers": [' + b" " * (100 * 1024 * 1024) + b"]}"
    with pytest.raises(SpecError, match="at most 1,000,000 bytes"):
        ModelSpec.from_json(big)


def test_ten_thousand_layers_refused():
    spec = ModelSpec("deep", [{"type": "Dropout", "rate": 0.1}] * 10_000)
    with pytest.raises(SpecError, match="10,000 layers; at most 100"):
        infer_shapes(spec)


BAD_RECIPES = [
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"learning_rate": -0.1}, "learning rate"),
    ({"learning_rate": "0.1"}, "learning rate"),
    ({"learning_rate": 1e9}, "learning rate"),
    ({"batch_size": 0}, "batch_size is 0"),
    ({"batch_size": 10**7}, "batch_size is 10,000,000"),
    ({"batch_size": 32.5}, "whole number"),
    ({"epochs": 0}, "epochs is 0"),
    ({"epochs": 10_000}, "epochs is 10,000"),
    ({"validation_split": 0.9}, "validation split"),
    ({"validation_split": float("inf")}, "validation split"),
    ({"train_subset": 5}, "train_subset is 5"),
    ({"optimizer": "adamw"}, "Unknown optimizer"),
    ({"schedule": "cosine"}, "Unknown learning-rate schedule"),
    ({"augment": "yes"}, "augment must be true or false"),
    ({"seed": -1}, "seed is -1"),
    ({"epochz": 3}, "unknown setting"),
    ("not a dict", "must be an object"),
]


@pytest.mark.parametrize("data,needle", BAD_RECIPES, ids=[str(i) for i in range(len(BAD_RECIPES))])
def test_bad_recipes_explained(data, needle):
    with pytest.raises(SpecError, match=needle) as err:
        Recipe.from_dict(data)
    assert str(err.value).endswith(".")
    assert Recipe.from_dict({"epochs": 2}).epochs == 2        # the next request works


BAD_SPEC_DOCS = [
    ('[]', "JSON object"),
    ('{"layers": "Conv2D"}', "\"layers\" list"),
    ('{"layers": [], "name": 7}', "name must be a non-empty string"),
    ('{"layers": [{"type": "Dense", "units": 1e400, "activation": "softmax"}]}',
     "whole number for units"),
    ('{"layers": [{"type": "Conv2D", "filters": true}]}', "whole number for filters"),
    ('{"layers": [null]}', "must be an object"),
    ('{"layers": [{"type": {"$gt": ""}}]}', "unknown type"),
    ('{"layers": [{"type": "Dense", "units": 10, "activation": "softmax", '
     '"kernel_initializer": "evil"}]}', "unknown parameter"),
    ('\ufeff{"layers": []}', "not valid JSON"),
]


@pytest.mark.parametrize("text,needle", BAD_SPEC_DOCS, ids=[str(i) for i in range(len(BAD_SPEC_DOCS))])
def test_bad_spec_documents_explained(text, needle):
    with pytest.raises(SpecError, match=needle):
        infer_shapes(ModelSpec.from_json(text))
    assert sum(i.total_params for i in infer_shapes(SPEC)) == 34_826
