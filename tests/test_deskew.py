"""core.deskew: the Deskew layer straightens slanted digits, matches the textbook
moment-based deskewing, keeps blank and hostile inputs finite, and survives saving,
safe loading, export and conversion to TensorFlow Lite."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core.build import build_model
from core.export import to_keras_script
from core.presets import get_preset
from core.spec import ModelSpec

STACK = ModelSpec("deskewed", [{"type": "Deskew"}, {"type": "Flatten"},
                               {"type": "Dense", "units": 10, "activation": "softmax"}])


def bilinear(image: np.ndarray, row: float, col: float) -> float:
    """``image`` read at a fractional (row, col), zero outside: the four neighbours."""
    r0, c0 = int(np.floor(row)), int(np.floor(col))
    total = 0.0
    for r, wr in ((r0, 1 - (row - r0)), (r0 + 1, row - r0)):
        for c, wc in ((c0, 1 - (col - c0)), (c0 + 1, col - c0)):
            if 0 <= r < image.shape[0] and 0 <= c < image.shape[1]:
                total += wr * wc * image[r, c]
    return total


def textbook_deskew(image: np.ndarray) -> np.ndarray:
    """Deskewing as the MNIST literature does it, pixel by pixel: the slant
    cov(row, col) / var(row) about the centre of mass, undone by a shear that also moves
    the centre of mass to the frame's middle."""
    rows, cols = np.mgrid[:image.shape[0], :image.shape[1]]
    total = image.sum()
    mid_r, mid_c = (rows * image).sum() / total, (cols * image).sum() / total
    slant = ((rows - mid_r) * (cols - mid_c) * image).sum() / \
        (((rows - mid_r) ** 2) * image).sum()
    centre_r, centre_c = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    out = np.zeros_like(image)
    for r in range(image.shape[0]):
        for c in range(image.shape[1]):
            out[r, c] = bilinear(image, r + mid_r - centre_r,
                                 c + slant * (r - centre_r) + mid_c - centre_c)
    return out


def slanted_bar(slope: float) -> np.ndarray:
    """A one-pixel stroke from the top to the bottom of the frame, leaning ``slope``
    columns a row (an italic 1)."""
    image = np.zeros((28, 28), np.float32)
    for r in range(4, 24):
        image[r, int(round(14 + slope * (r - 14)))] = 1.0
    return image


def column_drift(image: np.ndarray) -> float:
    """How far the ink's columns move per row: the slant the layer should remove."""
    rows, cols = np.mgrid[:28, :28]
    total = image.sum()
    mr, mc = (rows * image).sum() / total, (cols * image).sum() / total
    return float(((rows - mr) * (cols - mc) * image).sum() / (((rows - mr) ** 2) * image).sum())


def test_it_computes_the_textbook_deskew_of_real_digits(mnist):
    from core.data import to_float
    from core.deskew import deskew_images

    digits = to_float(mnist.x_test[:12])
    ours = np.asarray(deskew_images(digits))[..., 0]
    for digit, mine in zip(digits[..., 0], ours):
        np.testing.assert_allclose(mine, textbook_deskew(digit), atol=1e-4)


def test_a_leaning_stroke_comes_out_upright_and_centred():
    from core.deskew import deskew_images

    bar = slanted_bar(0.5)
    assert column_drift(bar) == pytest.approx(0.5, abs=0.05)
    upright = np.asarray(deskew_images(bar[None, ..., None]))[0, ..., 0]
    assert abs(column_drift(upright)) < 0.02
    cols = np.arange(28)
    assert (upright.sum(axis=0) * cols).sum() / upright.sum() == pytest.approx(13.5, abs=0.05)
    assert upright.sum() == pytest.approx(bar.sum(), rel=0.02)    # ink moved, not lost


def test_blank_and_hostile_images_stay_finite_and_the_slant_is_clipped():
    from core.deskew import deskew_images

    blank = np.zeros((1, 28, 28, 1), np.float32)
    assert not np.asarray(deskew_images(blank)).any()
    line = np.zeros((28, 28), np.float32)
    line[14, :] = 1.0                      # no height at all: no slant to measure
    dots = np.zeros((28, 28), np.float32)
    dots[13, 0] = dots[14, 27] = 1.0       # 27 columns in one row: a slant of 27
    out = np.asarray(deskew_images(np.stack([line, dots])[..., None]))[..., 0]
    assert np.isfinite(out).all()
    # the line is only centred: half a row up, so it shares rows 13 and 14
    np.testing.assert_allclose(out[0][13:15], np.full((2, 28), 0.5), atol=1e-4)
    # clipped to 2 columns a row, each dot moves 1 column inwards (unclipped, 13.5 each
    # way, both would leave the frame)
    assert out[1][13, 1] == pytest.approx(1.0, abs=1e-4)
    assert out[1][14, 26] == pytest.approx(1.0, abs=1e-4)
    assert out[1].sum() == pytest.approx(2.0, abs=1e-3)


def test_the_layer_has_no_weights_and_keeps_the_shape():
    model = build_model(STACK)
    layer = model.get_layer("deskew1")
    assert layer.weights == [] and tuple(layer.output.shape[1:]) == (28, 28, 1)
    assert model.count_params() == 7850


def test_a_saved_model_loads_in_a_fresh_process_with_safe_mode(tmp_path, mnist):
    from core.data import to_float

    model = build_model(get_preset("frontier_1k").spec, seed=0)
    path = tmp_path / "m.keras"
    model.save(path)
    digits = to_float(mnist.x_test[:4])
    np.save(tmp_path / "x.npy", digits)
    np.save(tmp_path / "want.npy", np.asarray(model(digits, training=False)))
    code = ("import numpy as np, keras\n"
            "from core.build import register_layers\n"
            "register_layers()\n"
            f"m = keras.models.load_model({str(path)!r}, safe_mode=True)\n"
            f"got = np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}), training=False))\n"
            f"print('DIFF', float(np.abs(got - np.load({str(tmp_path / 'want.npy')!r})).max()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert float(out.split("DIFF")[1]) < 1e-6


def test_the_exported_script_runs_without_layer_lab(tmp_path):
    script = tmp_path / "frontier.py"
    script.write_text(to_keras_script(get_preset("frontier_1k").spec)
                      + "\nm = build_model()\nprint('PARAMS', m.count_params())\n"
                      "print('FIRST', m.layers[1].name, type(m.layers[1]).__module__)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, check=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    assert "PARAMS 997" in out
    assert "FIRST deskew1 __main__" in out       # its own copy, not core.deskew


def test_tflite_runs_it_with_builtin_operations(mnist):
    from core import quantize
    from core.data import to_float

    model = build_model(STACK, seed=0)
    digits = to_float(mnist.x_test[:20])
    content = quantize.convert(model, "fp32", digits)
    want = np.asarray(model(digits, training=False)).argmax(axis=1)
    assert (quantize.predict(content, digits, batch=10) == want).all()


def test_the_compiled_layer_computes_what_the_plain_operations_do(mnist):
    from core.data import to_float
    from core.deskew import Deskew, compiled_deskew, deskew_images

    digits = to_float(mnist.x_test[:16])
    assert compiled_deskew() is not None               # the TensorFlow backend compiles it
    np.testing.assert_allclose(np.asarray(Deskew()(digits)),
                               np.asarray(deskew_images(digits)), atol=1e-4)   # XLA rounds


def test_saliency_flows_through_it_but_training_asks_no_gradient_of_it(mnist):
    import tensorflow as tf

    from core.data import to_float

    model = build_model(STACK, seed=0)
    digit = tf.constant(to_float(mnist.x_test[:1]))
    grads = {}
    for training in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(digit)
            score = model(digit, training=training)[0, 3]
        grads[training] = tape.gradient(score, digit)
    assert float(tf.reduce_max(tf.abs(grads[False]))) > 0     # the Draw page's saliency
    assert grads[True] is None                                # nothing upstream learns


def test_straightening_the_images_once_trains_the_same_model_as_every_epoch(mnist):
    """The trainer's shortcut (core.training.training_images): the same weights as when
    the layer straightens every batch itself."""
    import keras

    from core.deskew import deskew_all, leading_deskew, straightened_beforehand

    x, y = mnist.x_train[:512], mnist.y_train[:512].astype(np.int32)
    weights = []
    for once in (False, True):
        model = build_model(STACK, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        layer = leading_deskew(model) if once else None
        with straightened_beforehand(model, layer):
            model.fit(deskew_all(x) if once else x.astype(np.float32)[..., None] / 255,
                      y, batch_size=128, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for inline, once in zip(*weights, strict=True):
        np.testing.assert_allclose(once, inline, atol=1e-5)
    assert not np.allclose(weights[0][0], build_model(STACK, seed=0).get_weights()[0])


def test_after_the_fit_the_layer_straightens_training_batches_again(mnist):
    from core.data import to_float
    from core.deskew import deskew_images, leading_deskew, straightened_beforehand

    model = build_model(STACK, seed=0)
    layer = leading_deskew(model)
    digits = to_float(mnist.x_test[:8])
    straight = np.asarray(deskew_images(digits))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with straightened_beforehand(model, layer):
        np.testing.assert_array_equal(np.asarray(layer(digits, training=True)), digits)
        np.testing.assert_allclose(np.asarray(layer(digits, training=False)), straight,
                                   atol=1e-4)                # pages still see it straighten
        model.fit(digits, mnist.y_test[:8], verbose=0)
        assert model.train_function is not None
    assert model.train_function is None                     # the next fit traces again
    np.testing.assert_allclose(np.asarray(layer(digits, training=True)), straight, atol=1e-4)


def test_only_a_first_deskew_is_found_and_deskew_all_batches_it(mnist):
    from core.deskew import deskew_all, deskew_images, leading_deskew
    from core.data import to_float

    assert leading_deskew(build_model(STACK)).name == "deskew1"
    later = ModelSpec("later", [{"type": "Flatten"}, {"type": "Dense", "units": 10,
                                                       "activation": "softmax"}])
    assert leading_deskew(build_model(later)) is None
    digits = mnist.x_test[:5]
    np.testing.assert_allclose(deskew_all(digits, batch=2),
                               np.asarray(deskew_images(to_float(digits))), atol=1e-4)
