"""The hostile-upload corpus: every kind of bad file a student can hand the server —
model files, weights, pictures and specs — each refused (or handled) with one plain
sentence, nothing executed, the next ordinary request still served. The ``.npz`` bombs run
in a fresh, memory-limited Python whose peak RSS is asserted.

Each case is a row: kind, name, a maker of the bytes, a regular expression the sentence
must contain. ``test_corpus_has_at_least_80_kinds`` counts them.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from core.errors import LayerLabError
from core.modelio import load_keras_upload, model_from_spec_and_weights, spec_from_keras
from core.preprocess import MAX_FILE_BYTES, preprocess
from core.presets import get_preset
from core.safe_npz import MAX_HEADER_BYTES
from core.spec import ModelSpec, infer_shapes
from tests.hostile_files import (STORED, Entry, entry, keras_bytes, npy, npy_header,
                                 npz_bombs, picture, png_chunks, raw_zip, read_in_child,
                                 still_serves)

SPEC = get_preset("keras_example").spec
SPEC_WEIGHTS = {"conv1/0": (3, 3, 1, 32), "conv1/1": (32,), "conv2/0": (3, 3, 32, 64),
                "conv2/1": (64,), "dense1/0": (1600, 10), "dense1/1": (10,)}
MAX_RSS_MIB = 200            # a fresh Python with NumPy alone is about 30 MiB


@dataclass(frozen=True)
class Case:
    kind: str                # "model file", "weights", "image" or "spec"
    name: str
    make: Callable[[], bytes | str]
    needle: str              # a regular expression the sentence must contain
    isolated: bool = False   # read in a fresh, memory-limited process (the bombs)
    keras_allowed: bool = True


# -- model files (.keras) ----------------------------------------------------------------
def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@cache
def real_keras() -> bytes:
    from core.build import build_model

    return keras_bytes(build_model(SPEC, seed=0))


def lambda_model() -> bytes:
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    return keras_bytes(keras.Model(inputs, out))


def custom_object_model() -> bytes:
    import keras

    @keras.saving.register_keras_serializable(package="evil")
    class Sneaky(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((28, 28, 1))
    x = Sneaky(name="sneaky")(inputs)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    data = keras_bytes(keras.Model(inputs, out))
    keras.saving.get_custom_objects().clear()          # the server does not know it
    return data


def wrong_shape_model() -> bytes:
    import keras

    inputs = keras.Input((32, 32, 3))
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras_bytes(keras.Model(inputs, out))


def with_member(name: str, data: bytes) -> bytes:
    """The real model's archive with one member replaced."""
    with zipfile.ZipFile(io.BytesIO(real_keras())) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members[name] = data
    return zip_bytes(members)


LAMBDA_CONFIG = json.dumps({"class_name": "Lambda",
                            "config": {"function": {"class_name": "__lambda__"}}}).encode()
MODEL_FILES = [
    ("not a zip", lambda: b"\x00\x01 this is not an archive" * 10, "not a .keras file"),
    ("path traversal", lambda: zip_bytes({"../../evil.py": b"import os"}),
     "suspicious path"),
    ("absolute path", lambda: zip_bytes({"/etc/cron.d/x": b"* * * * *"}), "suspicious path"),
    ("extra member", lambda: zip_bytes({"config.json": b"{}", "payload.py": b"x"}),
     "unexpected file"),
    ("zip bomb", lambda: zip_bytes({"model.weights.h5": b"\0" * (210 * 1024 * 1024)}),
     "more than 200 MB"),
    ("no config", lambda: zip_bytes({"metadata.json": b"{}"}), "no readable config.json"),
    ("lambda config", lambda: zip_bytes({"config.json": LAMBDA_CONFIG}),
     "Lambda layer or Python code"),
    ("oversized", lambda: b"PK" + b"\0" * (26 * 1024 * 1024), "limit is 25 MB"),
    ("Lambda layer in a real model", lambda_model, "Lambda"),
    ("custom object the server does not know", custom_object_model,
     "could not be loaded safely|does not support"),
    ("32×32×3 input", wrong_shape_model, "needs 28×28×1 images to 10 classes"),
    ("empty file", lambda: b"", "not a .keras file"),
    ("drive-letter path", lambda: zip_bytes({"C:/evil.bat": b"x"}), "suspicious path"),
    ("100 entries", lambda: zip_bytes({f"assets/{i}": b"" for i in range(100)}),
     "more than 64 entries"),
    ("config not UTF-8", lambda: zip_bytes({"config.json": b"\xff\xfe{}"}),
     "no readable config.json"),
    ("config nested 100,000 deep", lambda: zip_bytes({"config.json": b"[" * 100_000}),
     "no readable config.json"),
    ("3 MB config", lambda: zip_bytes({"config.json": b" " * (3 << 20)}),
     "no readable config.json"),
    ("an .npz renamed .keras", lambda: zip_bytes({"conv1/0.npy": npy(np.zeros(3))}),
     "unexpected file ‘conv1/0"),
    ("markdown link as a member name", lambda: zip_bytes({"[x](https://evil.example)": b""}),
     r"suspicious path ‘\?x\?\?https\?//evil\?example\?’"),
    ("function_type in config", lambda: zip_bytes(
        {"config.json": b'{"class_name": "Functional", "function_type": "lambda"}'}),
     "Lambda layer or Python code"),
    ("damaged weights in a real model", lambda: with_member("model.weights.h5",
                                                            b"\x89HDF\r\n" + b"\0" * 64),
     "could not be loaded safely"),
]
CASES = [Case("model file", n, m, e) for n, m, e in MODEL_FILES]
CASES.append(Case("model file", "any .keras while uploads are off", real_keras,
                  "switched off", keras_allowed=False))


# -- weights (.npz) ----------------------------------------------------------------------
def zeros() -> dict[str, np.ndarray]:
    return {k: np.zeros(s, np.float32) for k, s in SPEC_WEIGHTS.items()}


def savez(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def changed(**change) -> Callable[[], bytes]:
    """Our own export with some arrays replaced (None removes one)."""
    def make() -> bytes:
        arrays = zeros()
        for key, value in change.items():
            arrays[key.replace("__", "/")] = value          # conv1__0 stands for conv1/0
        return savez(**{k: v for k, v in arrays.items() if v is not None})
    return make


def first_is(*lead: Entry) -> Callable[[], bytes]:
    """A hand-built archive: ``lead`` entries, then honest ones for the other weights."""
    def make() -> bytes:
        rest = [entry(f"{k}.npy", npy(a)) for k, a in zeros().items() if k != "conv1/0"]
        return raw_zip(*lead, *rest)
    return make


def dtype_header(descr: str) -> bytes:
    return npy_header((), text=f"{{'descr': {descr}, 'fortran_order': False, "
                               f"'shape': (3, 3, 1, 32)}}") + bytes(4608)


def past_the_end() -> bytes:
    data = first_is(Entry("conv1/0.npy", GOOD, STORED, len(GOOD), 0))()
    at = data.index(b"PK\x01\x02")                 # its directory says 4 GiB - 1
    return data[:at + 20] + (0xFFFFFFFE).to_bytes(4, "little") + data[at + 24:]


GOOD = npy(np.zeros((3, 3, 1, 32), np.float32))
NOT_READABLE = "not a readable .npz"
WEIGHTS = [
    ("pickled objects", changed(conv1__0=np.array([{"evil": 1}], dtype=object)),
     NOT_READABLE),
    ("a weight missing", changed(conv1__0=None), "missing conv1/0"),
    ("an extra weight", changed(conv9__0=np.zeros(3, np.float32)), "unexpected conv9/0"),
    ("a weight of the wrong shape", changed(conv1__0=np.zeros((5, 5, 1, 32), np.float32)),
     r"shape \(5, 5, 1, 32\) but the spec needs \(3, 3, 1, 32\)"),
    ("NaN", changed(conv1__1=np.full(32, np.nan, np.float32)), "finite numbers"),
    ("infinity", changed(conv1__1=np.full(32, -np.inf, np.float32)), "finite numbers"),
    ("garbage", lambda: b"garbage" * 100, NOT_READABLE),
    ("empty file", lambda: b"", "it is empty"),
    ("a JSON spec as weights", lambda: SPEC.to_json().encode(),
     "not a zip archive of .npy arrays"),
    ("a PNG as weights", lambda: picture("PNG"), "not a zip archive"),
    ("a .keras as weights", real_keras, "unexpected config"),
    ("61 MB", lambda: b"PK\x03\x04" + bytes(61 << 20), "the limit is 60 MB"),
    ("an archive with no entries", lambda: raw_zip(), "missing conv1/0"),
    ("an archive cut in half", lambda: savez(**zeros())[:100_000], "damaged"),
    ("path traversal in a name", first_is(entry("../../conv1/0.npy", GOOD)),
     r"unexpected \?\?/\?\?/conv1/0"),
    ("markdown link as a name", changed(**{"[x](https://www.evil.example)": np.zeros(1)}),
     r"unexpected \?x\?\?https\?//www\?evil\?example\?"),
    ("the same weight twice", first_is(entry("conv1/0.npy", GOOD), entry("conv1/0.npy", GOOD)),
     "conv1/0 appears twice"),
    ("encrypted entry", first_is(entry("conv1/0.npy", GOOD, flags=1)), "is encrypted"),
    ("compression method 99", first_is(Entry("conv1/0.npy", GOOD, 99, len(GOOD), 0)),
     "compressed with method 99"),
    ("entry cut off", first_is(entry("conv1/0.npy", GOOD[:-100])), "ends before its array"),
    ("bytes after the array", first_is(entry("conv1/0.npy", GOOD + bytes(64))),
     "more bytes than its array needs"),
    ("wrong checksum", first_is(entry("conv1/0.npy", GOOD, crc=12345)), "is damaged"),
    ("compressed size past the end", past_the_end, "claims more bytes than the file holds"),
    ("not .npy magic", first_is(entry("conv1/0.npy", b"\x93NUMPX" + GOOD[6:])),
     "no valid .npy header"),
    (".npy version 3", first_is(entry("conv1/0.npy", GOOD[:6] + b"\x03" + GOOD[7:])),
     "no valid .npy header"),
    ("header not a dict", first_is(entry("conv1/0.npy", npy_header((), text="[1, 2]"))),
     "no valid .npy header"),
    ("header with code in it", first_is(entry("conv1/0.npy", npy_header(
        (), text="__import__('os').system('touch /tmp/pwned')"))), "no valid .npy header"),
    ("object dtype in the header", first_is(entry("conv1/0.npy", dtype_header("'|O'"))),
     r"Python objects \(a pickle\)"),
    ("complex numbers", first_is(entry("conv1/0.npy", dtype_header("'<c8'"))),
     "holds complex values"),
    ("text", first_is(entry("conv1/0.npy", dtype_header("'<U4'"))), "holds text values"),
    ("booleans", first_is(entry("conv1/0.npy", dtype_header("'|b1'"))), "true/false"),
    ("dates", first_is(entry("conv1/0.npy", dtype_header("'<M8[s]'"))), "holds date"),
    ("128-bit floats", first_is(entry("conv1/0.npy", dtype_header("'<f16'"))),
     "holds 128-bit values"),
    ("a structured dtype", first_is(entry("conv1/0.npy", dtype_header("[('a', '<f4')]"))),
     "structured or raw"),
    ("header just past the cap", first_is(entry("conv1/0.npy", npy_header(
        (), text="{" + " " * MAX_HEADER_BYTES + "}"))), "header longer than 4,096 bytes"),
]
CASES += [Case("weights", n, m, e) for n, m, e in WEIGHTS]
CASES += [Case("weights", n, m, e, isolated=True)
          for n, (m, e) in npz_bombs(SPEC_WEIGHTS).items()]


# -- pictures ----------------------------------------------------------------------------
def blank(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), 255).save(buf, format="PNG")
    return buf.getvalue()


PNG = picture("PNG")
JPEG = picture("JPEG")
REFUSED_FORMAT = "whatever its name says"
IMAGES = [
    ("truncated PNG", lambda: PNG[:len(PNG) // 2], "truncated PNG"),
    ("PNG header claiming 100,000×100,000", lambda: png_chunks(100_000, 100_000),
     "too many pixels"),
    ("16-bit PNG claiming 5,000×5,000", lambda: png_chunks(5000, 5000, depth=16),
     "megapixels"),
    ("PNG of zero width", lambda: png_chunks(0, 10), "damaged"),
    ("PNG with garbage pixel data", lambda: png_chunks(28, 28, b"not zlib at all"),
     "damaged"),
    ("PNG with a wrong checksum", lambda: PNG[:20] + b"\0\0\0\0" + PNG[24:], "damaged"),
    ("PNG signature only", lambda: PNG[:8], "damaged"),
    ("truncated JPEG", lambda: JPEG[:len(JPEG) // 2], "truncated JPEG"),
    ("JPEG header only", lambda: JPEG[:20], "damaged"),
    ("JPEG claiming 65,535×65,535", lambda: b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff"
     b"\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9", "too many pixels"),
    ("GIF", lambda: picture("GIF"), "GIF file, " + REFUSED_FORMAT),
    ("BMP", lambda: picture("BMP"), "BMP file, " + REFUSED_FORMAT),
    ("TIFF", lambda: picture("TIFF"), "TIFF file, " + REFUSED_FORMAT),
    ("WEBP", lambda: picture("WEBP"), "WEBP file, " + REFUSED_FORMAT),
    ("ICO", lambda: picture("ICO", side=64), "ICO file, " + REFUSED_FORMAT),
    ("PDF", lambda: b"%PDF-1.4\n" + b"x" * 100, "PDF file, " + REFUSED_FORMAT),
    ("SVG with a script", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>'
     b"alert(1)</script></svg>", "SVG file, " + REFUSED_FORMAT),
    ("XML with an entity", lambda: b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
     b"<x>&a;</x>", "XML/SVG file, " + REFUSED_FORMAT),
    ("a zip renamed .png", lambda: savez(**zeros()), "ZIP file, " + REFUSED_FORMAT),
    ("HTML", lambda: b"<html><body>hi</body></html>", "not an image Layer Lab can read"),
    ("a program", lambda: b"\x7fELF" + bytes(100), "not an image Layer Lab can read"),
    ("text", lambda: b"These are my notes, not a picture.\n" * 20,
     "not an image Layer Lab can read"),
    ("empty file", lambda: b"", "is empty"),
    ("over the upload limit", lambda: PNG[:8] + bytes(MAX_FILE_BYTES + 1),
     "pictures are at most 5 MB"),
    ("a blank white page", lambda: blank(100), "Draw a digit: the picture is empty"),
    ("one white pixel", lambda: blank(1), "Draw a digit"),
]
CASES += [Case("image", n, m, e) for n, m, e in IMAGES]


# -- specs -------------------------------------------------------------------------------
def layers(*stack: dict) -> str:
    return json.dumps({"layers": list(stack)})


SOFTMAX = {"type": "Dense", "units": 10, "activation": "softmax"}
SPECS = [
    # the malformed documents of the old suite, each with its sentence
    ("a JSON list", lambda: "[]", "JSON object"),
    ("layers as a string", lambda: '{"layers": "Conv2D"}', "\"layers\" list"),
    ("a number as name", lambda: '{"layers": [], "name": 7}',
     "name must be a non-empty string"),
    ("units 1e400", lambda: '{"layers": [{"type": "Dense", "units": 1e400, '
                            '"activation": "softmax"}]}', "whole number for units"),
    ("filters true", lambda: '{"layers": [{"type": "Conv2D", "filters": true}]}',
     "whole number for filters"),
    ("a null layer", lambda: '{"layers": [null]}', "must be an object"),
    ("a query object as type", lambda: '{"layers": [{"type": {"$gt": ""}}]}', "unknown type"),
    ("an initializer", lambda: '{"layers": [{"type": "Dense", "units": 10, "activation": '
                               '"softmax", "kernel_initializer": "evil"}]}',
     "unknown parameter"),
    ("a byte-order mark", lambda: '\ufeff{"layers": []}', "not valid JSON"),
    ("100 MB of JSON", lambda: b'{"layers": [' + b" " * (100 * 1024 * 1024) + b"]}",
     "at most 1,000,000 bytes"),
    ("10,000 layers", lambda: layers(*[{"type": "Dropout", "rate": 0.1}] * 10_000),
     "10,000 layers; at most 100"),
    # and more
    ("not UTF-8", lambda: b'\xff\xfe{"layers": []}', "not valid JSON"),
    ("empty file", lambda: "", "not valid JSON"),
    ("a JSON string", lambda: '"hello"', "JSON object"),
    ("no layers", lambda: "{}", "\"layers\" list"),
    ("unknown keys", lambda: '{"layers": [], "optimizer": "sgd"}', "unknown keys"),
    ("NaN rate", lambda: '{"layers": [{"type": "Dropout", "rate": NaN}]}',
     "needs a number for rate"),
    ("negative filters", lambda: layers({"type": "Conv2D", "filters": -3}),
     "filters=-3; it must be at least 1"),
    ("kernel 99", lambda: layers({"type": "Conv2D", "filters": 3, "kernel_size": 99}),
     "kernel_size=99; the most allowed is 11"),
    ("100,000 units", lambda: layers({"type": "Flatten"}, {"type": "Dense", "units": 100_000},
                                     SOFTMAX), "units=100000; the most allowed is 8192"),
    ("strides 0", lambda: layers({"type": "Conv2D", "filters": 3, "strides": 0}),
     "strides=0; it must be at least 1"),
    ("dropout rate 2", lambda: layers({"type": "Dropout", "rate": 2}), r"must be in \[0, 1\)"),
    ("pool size 0", lambda: layers({"type": "MaxPooling2D", "pool_size": 0}),
     "pool_size=0; it must be at least 1"),
    ("padding reflect", lambda: layers({"type": "Conv2D", "filters": 3, "padding": "reflect"}),
     "padding='reflect'; choose one of"),
    ("activation __import__", lambda: layers({"type": "Flatten"}, {
        "type": "Dense", "units": 10, "activation": "__import__"}),
     "activation='__import__'; choose one of"),
    ("no softmax at the end", lambda: layers({"type": "Flatten"},
                                             {"type": "Dense", "units": 7}),
     "last layer must be Dense with 10 units and softmax"),
    ("60 M parameters", lambda: layers({"type": "Flatten"}, {"type": "Dense", "units": 8192},
                                       {"type": "Dense", "units": 8192},
                                       {"type": "Dense", "units": 8192}, SOFTMAX),
     "over the limit of 50,000,000"),
    ("nested 200,000 deep", lambda: '{"layers": ' + "[" * 200_000 + "]" * 200_000 + "}",
     "nested too deeply|too deep"),
    ("input_shape 5", lambda: '{"layers": [], "input_shape": 5}', "input shape must be"),
]
CASES += [Case("spec", n, m, e) for n, m, e in SPECS]


# -- the test ----------------------------------------------------------------------------
def attempt(case: Case) -> None:
    """Hand the file to the core function its page calls; it must raise."""
    data = case.make()
    if case.kind == "model file":
        spec_from_keras(load_keras_upload(data))
    elif case.kind == "weights":
        model_from_spec_and_weights(SPEC.to_json(), data)
    elif case.kind == "image":
        preprocess(data)
    else:
        infer_shapes(ModelSpec.from_json(data))


def assert_sentence(message: str, needle: str) -> None:
    assert re.search(needle, message), message
    assert message.rstrip().endswith("."), message
    for leak in ("Traceback", "allow_pickle", "Something went wrong", "]("):
        assert leak not in message, message
    assert not re.search(r"/(tmp|root|home|work|usr)/", message), message


@pytest.fixture(scope="module")
def model():
    from core.build import build_model

    return build_model(SPEC, seed=0)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.name}" for c in CASES])
def test_hostile_upload_refused_with_a_sentence(case, model, monkeypatch, tmp_path):
    if case.keras_allowed:
        monkeypatch.setenv("LAYERLAB_ALLOW_KERAS_UPLOAD", "1")
    else:
        monkeypatch.delenv("LAYERLAB_ALLOW_KERAS_UPLOAD", raising=False)
    if case.isolated:
        message, rss = read_in_child(case.make(), SPEC_WEIGHTS, tmp_path)
        assert message.startswith("WeightsRefused: "), message
        message = message.removeprefix("WeightsRefused: ")
        assert rss < MAX_RSS_MIB, f"peak RSS {rss:.0f} MiB"
    else:
        with pytest.raises(LayerLabError) as err:
            attempt(case)
        message = str(err.value)
    assert_sentence(message, case.needle)
    if case.kind in ("model file", "weights"):
        still_serves(model)


def test_the_corpus_names_the_specs_real_weights(model):
    assert {f"{layer.name}/{i}": tuple(w.shape) for layer in model.layers
            for i, w in enumerate(layer.weights)} == SPEC_WEIGHTS


def test_corpus_has_at_least_80_kinds():
    kinds = Counter(case.kind for case in CASES)
    assert len({(c.kind, c.name) for c in CASES}) == len(CASES)
    assert sum(kinds.values()) >= 80, kinds
    assert min(kinds.values()) >= 15, kinds
