"""core.notebook: the generated notebook and script run, train on the app's images with the
app's schedule and batch-norm refit, and reach far above chance on the test set."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

import pytest

from core.notebook import (ENV_EPOCHS, ENV_IMAGES, cells, notebook_for_preset,
                           notebook_for_run, schedule_code, script_for_preset, script_for_run,
                           to_script)
from core.presets import PRESETS, get_preset
from core.recipe import SCHEDULES, Recipe, lr_at
from core.runs import Run
from core.spec import ModelSpec, infer_shapes

HOSTILE = 'x"""\nraise SystemExit(3)\n"""<img src=x onerror=alert(1)> `code` \u2028import os'


def params_of(spec: ModelSpec) -> int:
    return sum(info.total_params for info in infer_shapes(spec))


def printed(pattern: str, text: str) -> str:
    found = re.findall(pattern, text)
    assert found, f"{pattern!r} not printed in:\n{text[-2000:]}"
    return found[-1]


def a_run(spec: ModelSpec, recipe: Recipe, name: str = "my run") -> Run:
    return Run(id="20250101-000000-abcdef", name=name, spec=spec.to_dict(),
               recipe=recipe.to_dict(), test_accuracy=0.9912)


@pytest.fixture
def quick(monkeypatch, mnist):
    """A small, headless run: the real MNIST file, 2,000 images, plots to no window."""
    monkeypatch.setenv(ENV_IMAGES, "2000")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    return monkeypatch


# -- the schedule equals the app's (the data and batch-norm pieces: test_notebook_code.py) -
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_generated_learning_rate_equals_lr_at(schedule):
    recipe = Recipe(learning_rate=0.03, schedule=schedule, epochs=7)
    ns: dict = {"LEARNING_RATE": recipe.learning_rate}
    exec("import math\n" + schedule_code(recipe).split("\n\nclass ")[0], ns)
    for total in (1, 40, 4217):
        for step in sorted({0, 1, total // 4, total // 4 + 1, total // 2, total * 3 // 4,
                            total - 1, total}):
            assert ns["learning_rate_at"](step, total) == pytest.approx(
                lr_at(recipe, step, total), rel=1e-12, abs=0), (schedule, step, total)


# -- every preset and hostile names: valid notebooks, compiling scripts -----------------------
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_gives_a_valid_notebook_and_a_compiling_script(name):
    import nbformat

    notebook = nbformat.reads(notebook_for_preset(name), as_version=4)
    nbformat.validate(notebook)
    titles = [c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown"]
    assert [t for t in titles if t.startswith("## ")] == [
        "## Setup", "## Data", "## Model", "## Training", "## Evaluation"]
    script = script_for_preset(name)
    compile(script, f"{name}.py", "exec")
    assert ("RecalibrateBatchNorm(" in script) == any(
        layer["type"] == "BatchNormalization" for layer in get_preset(name).spec.layers)
    assert "keras.utils.set_random_seed(SEED)" in script
    assert "keras.Input(shape=(28, 28, 1)" in script


def test_recipe_settings_reach_the_code():
    spec = get_preset("small_cnn").spec
    script = to_script(spec, Recipe(optimizer="sgd", learning_rate=0.05, batch_size=77,
                                    epochs=9, validation_split=0.2, augment=True,
                                    train_subset=5000, seed=42))
    for line in ("SEED = 42", "LEARNING_RATE = 0.05", "BATCH_SIZE = 77", "EPOCHS = 9",
                 "VALIDATION_SPLIT = 0.2", "TRAIN_IMAGES = 5000  # None: all 60,000"):
        assert line in script.splitlines()
    assert "keras.optimizers.SGD(learning_rate_at(0, total_steps), momentum=0.9, " \
           "nesterov=True)" in script
    assert "layers.RandomRotation(10 / 360" in script
    smoothed = to_script(spec, Recipe(label_smoothing=0.1, mixed_precision=True))
    assert "LABEL_SMOOTHING = 0.1" in smoothed.splitlines()
    assert "loss=smoothed_crossentropy" in smoothed and "label smoothing 0.1" in smoothed
    assert "this code trains in float32" in smoothed        # says it does not reproduce it
    taught = to_script(spec, Recipe(teacher="bulky_cnn", distill_weight=0.4, split_seed=0,
                                    seed=5))
    for line in ("TEACHER_FILE = 'bulky_cnn.keras'  # the pretrained teacher",
                 "DISTILL_WEIGHT = 0.4", "DISTILL_TEMPERATURE = 1.0", "SEED = 5",
                 "SPLIT_SEED = 0  # draws the validation images"):
        assert line in taught.splitlines()
    assert "loss=taught_crossentropy, metrics=[accuracy]" in taught
    assert "make_dataset(x_train, targets)" in taught and "Models page" in taught
    plain = to_script(spec, Recipe())
    assert "RandomRotation" not in plain and "StepLearningRate" not in plain
    assert "smoothed_crossentropy" not in plain and "LABEL_SMOOTHING" not in plain
    assert "TEACHER" not in plain and "taught_crossentropy" not in plain


def test_hostile_run_name_stays_text():
    import nbformat

    run = a_run(get_preset("keras_example").spec, Recipe(), name=HOSTILE)
    script = script_for_run(run)
    tree = ast.parse(script)
    assert "raise SystemExit(3)" in ast.get_docstring(tree)
    assert not any(isinstance(node, ast.Raise) for node in tree.body)
    notebook = nbformat.reads(notebook_for_run(run), as_version=4)
    nbformat.validate(notebook)
    heading = notebook.cells[0].source.splitlines()[0]
    assert "<img" not in heading and "&lt;img" in heading and "\\`code\\`" in heading


def test_bad_run_record_is_refused_with_a_sentence():
    from core.errors import LayerLabError

    run = a_run(get_preset("keras_example").spec, Recipe())
    run.recipe = {"epochs": 0}
    with pytest.raises(LayerLabError, match="epochs is 0"):
        notebook_for_run(run)


def test_run_details_in_the_introduction():
    run = a_run(get_preset("keras_example").spec, Recipe(epochs=2))
    intro = cells(ModelSpec.from_dict(run.spec), Recipe(epochs=2), title=run.name,
                  test_accuracy=run.test_accuracy)[0][1]
    assert intro.startswith("# my run: reproduce a Layer Lab run")
    assert "**99.12%**" in intro and "34,826-parameter" in intro
    assert json.loads(notebook_for_run(run))["cells"][0]["source"] == intro


# -- executed for real, on 2,000 images -------------------------------------------------------
@pytest.mark.slow
def test_generated_notebook_runs_and_learns(quick, mnist, tmp_path):
    import nbclient
    import nbformat

    from core.data import stratified_split, stratified_subset

    quick.setenv(ENV_EPOCHS, "2")       # one-cycle over 30 steps: 82% measured
    quick.delenv("MPLBACKEND")          # the kernel's inline backend: figures as outputs
    spec = get_preset("small_cnn").spec
    notebook = nbformat.reads(notebook_for_preset("small_cnn"), as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(out.get("text", "") for cell in notebook.cells
                     for out in cell.get("outputs", []))
    assert int(printed(r"Parameters: ([\d,]+)", text).replace(",", "")) == params_of(spec)
    subset = stratified_subset(mnist.y_train, 2000, 0)       # the app's selection
    keep, held = stratified_split(mnist.y_train[subset], 0.1, 0)
    assert f"{len(keep):,} training, {len(held):,} validation, 10,000 test images" in text
    assert float(printed(r"Test accuracy: ([\d.]+)", text)) >= 0.6   # chance: 0.1
    images = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert len(images) == 2                       # the curves and the confusion matrix


@pytest.mark.slow
def test_generated_script_of_a_run_runs_and_learns(quick, tmp_path):
    # Batch norm (refitted at epoch ends), a step schedule, augmentation and label
    # smoothing (evaluated on the digits themselves): the BN path.
    quick.setenv(ENV_EPOCHS, "1")
    spec = get_preset("fast_cnn").spec
    run = a_run(spec, Recipe(batch_size=64, learning_rate=0.005, schedule="step", epochs=5,
                             augment=True, seed=3, label_smoothing=0.1))
    path = tmp_path / "run.py"
    path.write_text(script_for_run(run))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(printed(r"Parameters: ([\d,]+)", done.stdout).replace(",", "")) == \
        params_of(spec)
    assert float(printed(r"Test accuracy: ([\d.]+)", done.stdout)) >= 0.75  # 92% measured
    assert re.search(r"val_accuracy: [\d.]+", done.stdout)     # from the refit callback


# -- the Models page offers both for every preset ---------------------------------------------
def test_models_page_offers_notebook_and_script(open_page):
    at = open_page("models")
    for name in ("fast_cnn", "warmup_mlp"):
        at.selectbox(key="models_preset").set_value(name).run()
        assert not at.exception
        labels = [button.proto.label for button in at.get("download_button")]
        assert {"Download notebook (.ipynb)", "Download training script (.py)",
                "Download the pretrained model (.keras)"} <= set(labels)


@pytest.mark.slow
def test_generated_script_of_a_taught_run_learns_from_the_teacher_file(quick, tmp_path):
    """The script of a run with a teacher loads the downloaded teacher beside it, trains
    on the blended targets and evaluates on the digits."""
    import shutil

    from core.pretrained import CACHED_DIR

    quick.setenv(ENV_EPOCHS, "2")
    shutil.copyfile(CACHED_DIR / "fast_cnn.keras", tmp_path / "fast_cnn.keras")
    run = a_run(get_preset("small_cnn").spec,
                Recipe(batch_size=64, learning_rate=3e-3, epochs=5, teacher="fast_cnn",
                       label_smoothing=0.1, split_seed=0))
    path = tmp_path / "run.py"
    path.write_text(script_for_run(run))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(printed(r"Test accuracy: ([\d.]+)", done.stdout)) >= 0.75
    (tmp_path / "fast_cnn.keras").unlink()                  # without it: a clear failure
    gone = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=dict(os.environ))
    assert gone.returncode != 0 and "fast_cnn.keras" in gone.stderr
