"""Rank small candidate networks for the frontier presets, on any Keras 3 backend.

The app trains with TensorFlow; this search only ranks candidates, so it runs wherever
Keras runs — on a machine with a GPU and JAX, fifteen configurations side by side, one
process each. A run is a candidate (below), a seed, a number of epochs and recipe
changes; it prints the final validation accuracy (the app's stratified split), the test
accuracy and the time. Choose on validation. The chosen candidate becomes a preset and is
then trained by the app itself (``bench/frontier_bench.py``): those are the figures the
README reports.

    python bench/frontier_search.py t1 0 80
    python bench/frontier_search.py t1 0 80 batch_size=256 learning_rate=0.02
    KERAS_BACKEND=jax python bench/frontier_search.py f10 1 20 augment=true
"""
from __future__ import annotations

import json
import math
import sys
import time

import _util  # noqa: F401  (first: paths, MNIST_NPZ)

from core.presets import DESKEW, FLAT, GAP, OUT, cbr, conv, dropout, pool, sep
from core.recipe import Recipe
from core.spec import ModelSpec

LEAKY = "leaky_relu"


def leaky_stack(widths: tuple[int, ...], rate: float = 0.1, kernels: tuple[int, ...] = (),
                act: str = LEAKY, padding: str = "valid") -> list[dict]:
    """Separable convolutions (leaky ReLU unless ``act`` says otherwise), each followed by
    dropout (``kernels``: per-layer kernel sizes, 3 where not given).

    >>> [layer["type"] for layer in leaky_stack((10,))]
    ['SeparableConv2D', 'Dropout']
    """
    sizes = kernels or (3,) * len(widths)
    extra = {} if padding == "valid" else {"padding": padding}   # entries as the presets'
    return [layer for width, k in zip(widths, sizes)
            for layer in (sep(width, k, activation=act, **extra), dropout(rate))]


def flat_head(stem: int, widths: tuple[int, ...], act: str) -> list[dict]:
    """A stem convolution and pooling, separable convolutions, a second pooling and a
    last 6-filter separable convolution whose 2×2 map the softmax layer reads whole.

    >>> [layer["type"] for layer in flat_head(8, (12,), "silu")][-3:]
    ['SeparableConv2D', 'Flatten', 'Dense']
    """
    return [conv(stem, activation=act), pool(), dropout(0.1), *leaky_stack(widths, act=act),
            pool(), sep(6, activation=act), FLAT, OUT]


def sbr(filters: int) -> list[dict]:
    """Separable convolution (no bias) → batch normalisation → ReLU."""
    return [sep(filters, activation="linear", use_bias=False), {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"}]


STEM = [conv(7, activation=LEAKY), pool(), dropout(0.1)]
CANDIDATES: dict[str, list[dict]] = {
    "t1": [*STEM, *leaky_stack((10, 10, 11, 12)), GAP, OUT],               # 997
    "t1n": [conv(7, activation=LEAKY), pool(),
            *(sep(w, activation=LEAKY) for w in (10, 10, 11, 12)), GAP, OUT],   # no dropout
    "tf": [conv(7, activation=LEAKY), dropout(0.1), sep(10, activation=LEAKY), pool(),
           dropout(0.1), *leaky_stack((10, 11, 12)), GAP, OUT],          # pool one layer later
    "tk5": [*STEM, *leaky_stack((10, 10, 11), kernels=(3, 5, 3)), GAP, OUT],   # 904
    "t6": [conv(6, activation=LEAKY), pool(), dropout(0.1),
           *leaky_stack((8, 8, 9, 10, 10)), GAP, OUT],                    # deeper, 958
    "t9": [conv(6, activation=LEAKY), pool(), dropout(0.1),
           *leaky_stack((9, 9, 10, 10), kernels=(3, 5, 3, 3)), GAP, OUT],  # 983
    "t4d": [conv(8, activation=LEAKY), pool(), dropout(0.1), *leaky_stack((12, 12, 12)),
            GAP, OUT],                                                    # wider, 918
    "tc": [*cbr(8), pool(), *sbr(11), *sbr(11), *sbr(11), GAP, OUT],      # batch norm, 956
    "td": [*cbr(6), pool(), *sbr(9), *sbr(9), *sbr(10), *sbr(10), GAP, OUT],   # 971
    "tbn1": [*cbr(7), pool(), dropout(0.1), *leaky_stack((10, 10, 11, 11)), GAP, OUT],
    # screens of this round (20 epochs, split seed 0; the best on validation at 80)
    "t1s": [conv(7, activation="silu"), pool(), dropout(0.1),
            *leaky_stack((10, 10, 11, 12), act="silu"), GAP, OUT],            # SiLU
    "t1d5": [conv(7, activation=LEAKY), pool(), dropout(0.05),
             *leaky_stack((10, 10, 11, 12), rate=0.05), GAP, OUT],
    "t1sp": [conv(7, activation="silu"), pool(), dropout(0.1),
             *leaky_stack((10, 10, 11, 12), act="silu", padding="same"), GAP, OUT],
    "t2p": [conv(8, activation=LEAKY), pool(), dropout(0.1), *leaky_stack((12, 12)), pool(),
            sep(15, activation=LEAKY, padding="same"), dropout(0.1), GAP, OUT],   # 987
    "tfl": flat_head(8, (12, 12), LEAKY),                                        # 960
    "tfls": flat_head(8, (12, 12), "silu"),       # 960: best on validation, not kept
    "tflg": flat_head(8, (12, 12), "gelu"),
    "tfl2": flat_head(8, (12, 13), "silu"),                                      # 988
    "tfl9": flat_head(9, (12, 12), "silu"),                                      # 991
    # this round: the digit straightened first (core/deskew.py), no weight more; screened
    # on images deskewed beforehand by the same arithmetic (tests/test_deskew.py), kept
    "t1dk": [DESKEW, *STEM, *leaky_stack((10, 10, 11, 12)), GAP, OUT],     # 997
    "tflsdk": [DESKEW, *flat_head(8, (12, 12), "silu")],                   # 960
    "f10": [*cbr(8), *cbr(16), pool(), *cbr(16), *cbr(16), *cbr(24), GAP, OUT],   # 9,858
    "f10d": [*cbr(8), dropout(0.05), *cbr(16), pool(), dropout(0.05), *cbr(16),
             dropout(0.05), *cbr(16), dropout(0.05), *cbr(24), GAP, OUT],
    "g10": [*cbr(8), *cbr(12), pool(), *cbr(14), *cbr(16), *cbr(16), *cbr(16), GAP, OUT],
}


# Options of the search itself, not of the app's Recipe: ``ema=0.999`` averages the
# weights (Keras' optimizer EMA) and evaluates the averaged ones.
SEARCH_OPTIONS = {"ema": 0.0}


def parse(argv: list[str]) -> tuple[str, Recipe]:
    """Candidate name and recipe from ``CAND SEED EPOCHS [key=json ...]``.

    >>> parse(["t1", "2", "80", "batch_size=256"])[1].batch_size
    256
    """
    name, seed, epochs = argv[0], int(argv[1]), int(argv[2])
    changes = {key: json.loads(value) for key, value in (a.split("=", 1) for a in argv[3:])}
    for key in SEARCH_OPTIONS:
        SEARCH_OPTIONS[key] = changes.pop(key, SEARCH_OPTIONS[key])
    recipe = Recipe(learning_rate=0.01, schedule="one_cycle", batch_size=128, epochs=epochs,
                    validation_split=0.05, seed=seed)
    return name, recipe.replace(**changes)


def train(spec: ModelSpec, recipe: Recipe) -> dict:
    """Train with plain ``fit`` on any backend: the recipe's one-cycle rate per batch
    (the app's own callback), its loss and augmentation. Validation and test accuracy."""
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from core.build import build_model  # noqa: PLC0415
    from core.data import to_float  # noqa: PLC0415
    from core.callbacks import StepLearningRate  # noqa: PLC0415
    from core.recipe import lr_at  # noqa: PLC0415
    from core.training import augmenter, make_loss, prepare_data  # noqa: PLC0415

    data = prepare_data(recipe)
    model = build_model(spec, seed=recipe.seed)
    fitted = model
    if recipe.augment:
        image = keras.Input((28, 28, 1))
        fitted = keras.Model(image, model(augmenter(recipe.seed)(image)))
    def targets(y):
        return np.eye(10, dtype="float32")[y] if recipe.label_smoothing else y
    steps = math.ceil(len(data.y_train) / recipe.batch_size) * recipe.epochs
    ema = float(SEARCH_OPTIONS["ema"])
    adam = keras.optimizers.Adam(lr_at(recipe, 0, steps), use_ema=ema > 0,
                                 ema_momentum=ema or 0.99)
    fitted.compile(optimizer=adam,
                   loss=make_loss(recipe), metrics=["accuracy"])
    history = fitted.fit(to_float(data.x_train), targets(data.y_train), batch_size=recipe.batch_size,
                         epochs=recipe.epochs, verbose=0,
                         validation_data=(data.x_val, targets(data.y_val)),
                         callbacks=[StepLearningRate(lambda step: lr_at(recipe, step, steps))])
    def accuracy(x, y):       # after fit: the averaged weights when ema is on
        return float(np.mean(model.predict(x, batch_size=2000, verbose=0).argmax(axis=1) == y))

    return {"params": model.count_params(), "val": accuracy(data.x_val, data.y_val),
            "fit_val": history.history["val_accuracy"][-1],
            "test": accuracy(data.x_test, data.y_test)}


def main(argv: list[str]) -> None:
    name, recipe = parse(argv)
    t0 = time.perf_counter()
    result = train(ModelSpec(name, CANDIDATES[name]), recipe)
    print(f"RESULT {name} params={result['params']} seed={recipe.seed} epochs={recipe.epochs} "
          f"batch={recipe.batch_size} lr={recipe.learning_rate} ls={recipe.label_smoothing} "
          f"augment={recipe.augment} ema={SEARCH_OPTIONS['ema']} val={result['val']:.4f} "
          f"(in fit {result['fit_val']:.4f}) test={result['test']:.4f} "
          f"s={time.perf_counter() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
