"""Take a run home: a Jupyter notebook and a standalone script that reproduce it.

Both are built from the same cells: markdown sections (Setup, Data, Model, Training,
Evaluation) and plain Keras code specialised to the run, so a reader sees only what the
run used. They load MNIST as :mod:`core.data` does (the file ``MNIST_NPZ`` names, else
Keras' loader), pick the same training subset and validation split (the same stratified
selection, tested equal), build the model with :func:`core.export.build_model_lines`
(the one code generator for a spec), train with the run's optimizer, per-step schedule
(equal to :func:`core.recipe.lr_at`), batch size, epochs, augmentation and seed, refit
batch-norm statistics at epoch ends as :mod:`core.calibration` does, then evaluate on the
test set and plot the curves and the confusion matrix.

``LAYERLAB_NOTEBOOK_IMAGES`` and ``LAYERLAB_NOTEBOOK_EPOCHS``, read by the generated code,
shrink a run for a quick check (CI runs the generated files on 2,000 images, 1 epoch).
The ``.ipynb`` is written as nbformat 4.5 JSON directly (the app needs no Jupyter
packages; the tests validate it with nbformat and execute it with nbclient).
"""
from __future__ import annotations

import json
import textwrap
from typing import Any

from core.export import build_model_lines, custom_layer_lines
from core.notebook_code import (BATCH_NORM_CODE, CURVES_CODE, DATA_CODE, EVALUATION_CODE,
                                 OPTIMIZERS, SCHEDULES, SETUP_CODE, SMOOTHED_LOSS_CODE,
                                 STEP_CALLBACK, TAUGHT_LOSS_CODE, TEACHER_CODE)
from core.presets import get_preset
from core.recipe import Recipe
from core.spec import ModelSpec, infer_shapes

ENV_IMAGES = "LAYERLAB_NOTEBOOK_IMAGES"
ENV_EPOCHS = "LAYERLAB_NOTEBOOK_EPOCHS"
TITLE_CHARS = 80
Cell = tuple[str, str]              # ("markdown" | "code", source)


def one_line(text: str) -> str:
    r'''User text on one line: control characters and line breaks become spaces (a name
    can then never start a new line of code), length capped; "model" when empty.

    >>> one_line("my net\n\u2028import os  ")
    'my net  import os'
    '''
    return "".join(ch if ch.isprintable() else " " for ch in str(text))[:TITLE_CHARS] \
        .strip() or "model"


def markdown_text(text: str) -> str:
    r'''User text for markdown: HTML and markdown syntax escaped, so it shows as typed.

    >>> print(markdown_text("<b>*big*</b> _cnn_ #1"))
    &lt;b&gt;\*big\*&lt;/b&gt; \_cnn\_ \#1
    '''
    out = one_line(text).replace("\\", "\\\\").replace("&", "&amp;")
    out = out.replace("<", "&lt;").replace(">", "&gt;")
    for ch in "`*_[]#|!":
        out = out.replace(ch, "\\" + ch)
    return out


def docstring_text(text: str) -> str:
    r'''User text for a line of a docstring: backslashes and quotes escaped.

    >>> print(docstring_text('net\n"""import os'))
    net \"\"\"import os
    '''
    return one_line(text).replace("\\", "\\\\").replace('"', '\\"')


def recipe_words(recipe: Recipe) -> str:
    """The recipe in one sentence.

    >>> recipe_words(Recipe(epochs=3, batch_size=512, learning_rate=0.02,
    ...                     schedule="one_cycle", validation_split=0.05))
    'adam at a peak learning rate of 0.02 (one-cycle schedule), batches of 512, 3 epochs on all 60,000 training images, 5% held out for validation, seed 0.'
    """
    schedule = {"constant": "constant", "step": "divided by 10 at 50% and 75%",
                "one_cycle": "one-cycle schedule"}[recipe.schedule]
    rate = "a peak learning rate" if recipe.schedule != "constant" else "a learning rate"
    images = (f"a stratified subset of {recipe.train_subset:,}" if recipe.train_subset
              else "all 60,000")
    epochs = f"{recipe.epochs} epoch" + ("s" if recipe.epochs != 1 else "")
    return (f"{recipe.optimizer} at {rate} of {recipe.learning_rate:g} ({schedule}), "
            f"batches of {recipe.batch_size}, {epochs} on {images} training images, "
            f"{recipe.validation_split:.0%} held out for validation"
            f"{', light augmentation (shifts and rotations)' if recipe.augment else ''}"
            f"{f', label smoothing {recipe.label_smoothing:g}' if recipe.label_smoothing else ''}"
            f"{f', learning from the pretrained {recipe.teacher} (weight {recipe.distill_weight:g}, temperature {recipe.distill_temperature:g})' if recipe.teacher else ''}"
            f", seed {recipe.seed}"
            f"{f' (validation split of seed {recipe.split_seed})' if recipe.split_seed is not None else ''}.")


def constants_code(recipe: Recipe) -> str:
    """The recipe as named constants; the two environment variables can shrink it.

    >>> ns = {}
    >>> exec("import os\\n" + constants_code(Recipe(epochs=4, train_subset=1000)), ns)
    >>> ns["EPOCHS"], ns["TRAIN_IMAGES"], ns["BATCH_SIZE"]
    (4, 1000, 32)
    """
    return (f"# The run's recipe, exactly as Layer Lab trained it.\n"
            f"SEED = {recipe.seed!r}\n"
            f"SPLIT_SEED = {recipe.data_seed!r}  # draws the validation images\n"
            f"LEARNING_RATE = {float(recipe.learning_rate)!r}\n"
            f"BATCH_SIZE = {recipe.batch_size!r}\n"
            f"VALIDATION_SPLIT = {float(recipe.validation_split)!r}\n"
            f"TRAIN_IMAGES = {recipe.train_subset!r}  # None: all 60,000\n"
            f"EPOCHS = {recipe.epochs!r}\n"
            + (f"LABEL_SMOOTHING = {float(recipe.label_smoothing)!r}\n"
               if recipe.label_smoothing else "")
            + (f"TEACHER_FILE = {recipe.teacher + '.keras'!r}  # the pretrained teacher\n"
               f"DISTILL_WEIGHT = {float(recipe.distill_weight)!r}\n"
               f"DISTILL_TEMPERATURE = {float(recipe.distill_temperature)!r}\n"
               if recipe.teacher else "")
            + f"\n"
            f"# A quick check (CI) trains on fewer images or epochs; unset, the run is exact.\n"
            f"if os.environ.get({ENV_IMAGES!r}):\n"
            f"    TRAIN_IMAGES = min(TRAIN_IMAGES or 60_000, int(os.environ[{ENV_IMAGES!r}]))\n"
            f"if os.environ.get({ENV_EPOCHS!r}):\n"
            f"    EPOCHS = int(os.environ[{ENV_EPOCHS!r}])\n")


def has_batch_norm(spec: ModelSpec) -> bool:
    """Whether the spec has a BatchNormalization layer (then the code refits its statistics).

    >>> has_batch_norm(get_preset("fast_cnn").spec), has_batch_norm(get_preset("small_cnn").spec)
    (True, False)
    """
    return any(layer.get("type") == "BatchNormalization" for layer in spec.layers)


def schedule_code(recipe: Recipe) -> str:
    """``learning_rate_at(step, total_steps)`` for the recipe's schedule (equal to
    :func:`core.recipe.lr_at`), plus the per-step callback unless the rate is constant.

    >>> ns = {"LEARNING_RATE": 0.01}
    >>> exec("import math\\n" + SCHEDULES["step"], ns)
    >>> ns["learning_rate_at"](75, 100)
    0.0001
    >>> "StepLearningRate" in schedule_code(Recipe())
    False
    """
    return SCHEDULES[recipe.schedule] + (STEP_CALLBACK if recipe.schedule != "constant" else "")


def dataset_code(recipe: Recipe) -> str:
    """``make_dataset(x, y)``: shuffled batches as Layer Lab's engine makes them."""
    aug = ("    # Small shifts and turns, drawn afresh every batch: the model sees digits\n"
           "    # written a little off-centre or slanted, as people write them.\n"
           "    augment = keras.Sequential([\n"
           "        layers.RandomTranslation(0.08, 0.08, fill_mode=\"constant\", seed=SEED),\n"
           "        layers.RandomRotation(10 / 360, fill_mode=\"constant\", seed=SEED),\n"
           "    ], name=\"augment\")\n"
           "    ds = ds.map(lambda a, b: (augment(a, training=True), b),\n"
           "                num_parallel_calls=tf.data.AUTOTUNE)\n") if recipe.augment else ""
    return ("def make_dataset(x, y):\n"
            "    \"\"\"Shuffled batches, in a new order every epoch that the seed fixes.\"\"\"\n"
            "    ds = tf.data.Dataset.from_tensor_slices((x, y))\n"
            "    ds = ds.shuffle(len(x), seed=SEED, reshuffle_each_iteration=True)\n"
            "    ds = ds.batch(BATCH_SIZE)\n"
            f"{aug}"
            "    return ds.prefetch(tf.data.AUTOTUNE)\n")


def loss_code(recipe: Recipe) -> str:
    """The loss the run needs beyond Keras' own: a teacher's (taking targets or digits,
    smoothed too when the recipe smooths) or the smoothed one; none otherwise.

    >>> loss_code(Recipe()), "def accuracy" in loss_code(Recipe(teacher="fast_cnn"))
    ('', True)
    """
    if recipe.teacher:
        smoothing = ", label_smoothing=LABEL_SMOOTHING" if recipe.label_smoothing else ""
        return TAUGHT_LOSS_CODE.replace("{smoothing}", smoothing)
    return SMOOTHED_LOSS_CODE if recipe.label_smoothing else ""


def fit_code(recipe: Recipe, batch_norm: bool) -> str:
    """Compile with the run's optimizer and fit with its callbacks."""
    optimizer = OPTIMIZERS[recipe.optimizer].format(rate="learning_rate_at(0, total_steps)")
    callbacks = ["StepLearningRate(total_steps)"] if recipe.schedule != "constant" else []
    if batch_norm:
        callbacks.append("RecalibrateBatchNorm(x_train, validation)")
    validation = "" if batch_norm else "\n                    validation_data=validation,"
    loss = "taught_crossentropy" if recipe.teacher else "smoothed_crossentropy" \
        if recipe.label_smoothing else '"sparse_categorical_crossentropy"'
    metric = "accuracy" if recipe.teacher else '"accuracy"'
    targets = "targets" if recipe.teacher else "y_train"
    return ("steps_per_epoch = math.ceil(len(x_train) / BATCH_SIZE)\n"
            "total_steps = steps_per_epoch * EPOCHS\n"
            f"model.compile(optimizer={optimizer},\n"
            f"              loss={loss}, metrics=[{metric}])\n"
            "validation = (x_val, y_val) if len(x_val) else None\n"
            f"callbacks = [{', '.join(callbacks)}]\n"
            f"history = model.fit(make_dataset(x_train, {targets}), epochs=EPOCHS,{validation}\n"
            f"                    callbacks=callbacks, verbose=2)\n")


def teacher_code(teacher: str) -> str:
    """The teacher's cell, after the source of any Layer Lab layer the teacher uses (Keras
    can only load a saved model whose classes are defined).

    >>> "class Deskew" in teacher_code("frontier_1k"), "class Deskew" in teacher_code("fast_cnn")
    (True, False)
    """
    layers = custom_layer_lines(infer_shapes(get_preset(teacher).spec))
    return "\n".join(layers) + TEACHER_CODE if layers else TEACHER_CODE


def model_code(spec: ModelSpec) -> str:
    """Seed, then the model built layer by layer (core.export's code), and its size."""
    return ("# The seed fixes the initial weights, the dropout masks and the batch order.\n"
            "keras.utils.set_random_seed(SEED)\n\n\n"
            + "\n".join(build_model_lines(spec)) + "\n\n\n"
            "model = build_model()\n"
            "model.summary()\n"
            "print(f\"Parameters: {model.count_params():,}\")\n")


def cells(spec: ModelSpec, recipe: Recipe, *, title: str = "",
          test_accuracy: float | None = None) -> list[Cell]:
    """The notebook's cells, in order; the script is the same cells one after another."""
    infos = infer_shapes(spec)                  # raises SpecError for a bad spec
    params = sum(info.total_params for info in infos)
    batch_norm = has_batch_norm(spec)
    reached = (f" Layer Lab measured **{test_accuracy:.2%}** test accuracy for it."
               if test_accuracy is not None else "")
    gpu = (" The run asked for mixed precision (16-bit compute where the device is fast at "
           "it: float16 on a GPU, bfloat16 on a CPU with bfloat16 instructions); this code "
           "trains in float32, a little slower, with results that differ only by rounding."
           if recipe.mixed_precision else "")
    taught = (f" It learns from a teacher, Layer Lab's pretrained {recipe.teacher}: "
              f"download `{recipe.teacher}.keras` from the Models page beside this file."
              if recipe.teacher else "")
    bn_text = (" After every epoch the batch-norm statistics are refitted to the current "
               "weights, as Layer Lab does, so short runs predict as well as they train."
               if batch_norm else "")
    return [
        ("markdown", f"# {markdown_text(title or spec.name)}: reproduce a Layer Lab run\n\n"
                     f"A {params:,}-parameter network for MNIST digits, trained with the "
                     f"run's recipe: {recipe_words(recipe)}{reached}{gpu}{taught}\n\n"
                     f"Set `{ENV_IMAGES}` or `{ENV_EPOCHS}` for a quick check on fewer "
                     f"images or epochs; `MNIST_NPZ` names a local copy of `mnist.npz`."),
        ("markdown", "## Setup"),
        ("code", SETUP_CODE),
        ("code", constants_code(recipe)),
        ("markdown", "## Data\n\nThe same training subset and stratified validation split "
                     "as the app, chosen by the seed."),
        ("code", DATA_CODE),
        *([("code", teacher_code(recipe.teacher))] if recipe.teacher else []),
        ("markdown", "## Model\n\n`keras.Input` first, then one named layer per line."),
        ("code", model_code(spec)),
        ("markdown", "## Training\n\nThe learning rate follows the run's schedule step by "
                     f"step.{bn_text}"),
        ("code", schedule_code(recipe) + "\n\n" + dataset_code(recipe)
         + loss_code(recipe)),
        *([("code", BATCH_NORM_CODE)] if batch_norm else []),
        ("code", fit_code(recipe, batch_norm)),
        ("markdown", "The curves: training against held-out validation images."),
        ("code", CURVES_CODE),
        ("markdown", "## Evaluation\n\nThe 10,000 test images, never seen in training."),
        ("code", EVALUATION_CODE),
    ]


def to_notebook(spec: ModelSpec, recipe: Recipe, **details: Any) -> str:
    """The cells as a Jupyter notebook (nbformat 4.5 JSON, outputs empty).

    >>> nb = json.loads(to_notebook(get_preset("fast_cnn").spec, get_preset("fast_cnn").recipe))
    >>> nb["nbformat"], nb["cells"][0]["cell_type"], nb["metadata"]["kernelspec"]["name"]
    (4, 'markdown', 'python3')
    """
    def cell(n: int, kind: str, source: str) -> dict[str, Any]:
        body = {"cell_type": kind, "id": f"cell-{n}", "metadata": {},
                "source": source.rstrip("\n")}
        return body | ({"execution_count": None, "outputs": []} if kind == "code" else {})

    notebook = {
        "cells": [cell(n, *c) for n, c in enumerate(cells(spec, recipe, **details), 1)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def to_script(spec: ModelSpec, recipe: Recipe, **details: Any) -> str:
    """The cells as one Python script: markdown becomes comments, code runs top to bottom.

    >>> script = to_script(get_preset("small_cnn").spec, get_preset("small_cnn").recipe)
    >>> print(script.splitlines()[1])
    small_cnn: reproduce a Layer Lab run.
    >>> "# ## Training" in script
    True
    """
    parts = cells(spec, recipe, **details)
    title = docstring_text(details.get("title") or spec.name)
    header = ['"""', f"{title}: reproduce a Layer Lab run.", "",
              *_wrapped(parts[0][1].splitlines()[2:]), "",
              "Run with `python this_file.py` (plots open in windows).", '"""']
    body, after_text = "", False
    for kind, source in parts[1:]:
        body += "\n\n" if after_text else "\n\n\n"   # a section's text sits close to its code
        if kind == "markdown":
            body += "\n".join(("# " + line).rstrip() for line in _wrapped(source.splitlines()))
        else:
            body += source.rstrip("\n")
        after_text = kind == "markdown"
    return "\n".join(header) + body + "\n"


def _wrapped(lines: list[str], width: int = 86) -> list[str]:
    """Lines wrapped to ``width`` characters, blank lines kept."""
    return [part for line in lines for part in (textwrap.wrap(line, width) or [""])]


def _run_parts(run: Any) -> tuple[ModelSpec, Recipe, dict[str, Any]]:
    """A run record's spec and recipe (checked: SpecError sentences) and its details."""
    return (ModelSpec.from_dict(run.spec), Recipe.from_dict(run.recipe),
            {"title": run.name, "test_accuracy": run.test_accuracy})


def notebook_for_run(run: Any) -> str:
    """The ``.ipynb`` text that reproduces a :class:`core.runs.Run`."""
    spec, recipe, details = _run_parts(run)
    return to_notebook(spec, recipe, **details)


def script_for_run(run: Any) -> str:
    """The ``.py`` text that reproduces a :class:`core.runs.Run`."""
    spec, recipe, details = _run_parts(run)
    return to_script(spec, recipe, **details)


def notebook_for_preset(name: str) -> str:
    """The ``.ipynb`` text that trains a preset with its published recipe."""
    preset = get_preset(name)
    return to_notebook(preset.spec, preset.recipe)


def script_for_preset(name: str) -> str:
    """The ``.py`` text that trains a preset with its published recipe."""
    preset = get_preset(name)
    return to_script(preset.spec, preset.recipe)
