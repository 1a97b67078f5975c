"""AppTest: the app, Home, Models and Train pages run; Models shows exact counts; a tiny
run trains from the Train page and shows its results."""
from __future__ import annotations

import time

import pytest

TIMEOUT = 120


def test_home_renders_with_sidebar(open_page):
    at = open_page()
    assert not at.exception
    assert at.title[0].value.endswith("Layer Lab")
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "60,000 train + 10,000 test images" in sidebar
    assert "CPU" in sidebar or "GPU" in sidebar
    assert "Workspace" in sidebar


def test_home_does_not_import_tensorflow(app_path):
    """The cold-start path stays light: rendering Home must not need TensorFlow."""
    import subprocess
    import sys

    code = ("import sys; from streamlit.testing.v1 import AppTest; "
            "at = AppTest.from_file('app.py', default_timeout=60).run(); "
            "assert not at.exception, at.exception; "
            "print('TF' if 'tensorflow' in sys.modules else 'NO_TF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=app_path.parent)
    assert out.stdout.strip().endswith("NO_TF"), out.stdout + out.stderr


@pytest.mark.parametrize("preset,total", [("warmup_mlp", "111,146"), ("bulky_cnn", "331,754"),
                                          ("keras_example", "34,826")])
def test_models_page_shows_exact_counts(open_page, preset, total):
    at = open_page("models")
    at.selectbox(key="models_preset").set_value(preset).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == total
    if preset == "warmup_mlp":
        assert metrics["Weights (fp32)"] == "0.42 MiB"
    if preset == "bulky_cnn":
        assert (metrics["Trainable"], metrics["Non-trainable"]) == ("330,858", "896")
    table = at.dataframe[0].value
    assert int(table["params"].sum()) == int(total.replace(",", ""))
    assert any("def build_model" in c.value for c in at.code)


def test_train_page_runs_a_tiny_run(open_page):
    at = open_page("train", timeout=TIMEOUT)
    assert not at.exception
    at.selectbox(key="train_preset").set_value("keras_example").run()
    k = "Preset_keras_example"
    at.selectbox(key=f"tr_sub_{k}").set_value("1,000").run()
    at.slider(key=f"tr_ep_{k}").set_value(1).run()
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        time.sleep(1)
        at.run()
        if any(m.label == "Test accuracy" for m in at.metric):
            break
    metrics = {m.label: m.value for m in at.metric}
    assert "Test accuracy" in metrics, [m.label for m in at.metric]
    assert metrics["Parameters"] == "34,826"
    assert at.success and "Finished" in at.success[0].value
    assert metrics["Device"].startswith(("CPU", "GPU"))
    # the run can be taken home: a notebook and a script that retrain it
    assert {"train_dl_ipynb", "train_dl_py"} <= {getattr(e, "key", None)
                                                for e in at.get("download_button")}
    # one click opens the run's confusion matrix on the Errors page
    at.button(key="train_to_errors").click().run()
    assert not at.exception
    assert at.title[0].value.endswith("Errors")
    chosen = at.selectbox(key="err_model")          # holds the run's id, shows its label
    assert chosen.options[chosen.index].startswith("keras_example · run ")
    assert chosen.value.endswith(chosen.options[chosen.index].split("· run ")[1][:6])
    at.switch_page("pages/train.py").run()
    # the run is in this session's workspace and can be resumed
    at.radio(key="train_source").set_value("Resume one of my runs").run()
    assert not at.exception
    assert any("keras_example" in o for o in at.selectbox(key="train_resume").options)


# -- shared page pieces ------------------------------------------------------------------
def test_run_label_is_name_short_id_and_details():
    from core.runs import Run
    from pages.common import pretrained_label, run_label

    run = Run(id="20260101-000000-abc123", name="tiny", spec={}, recipe={})
    assert run_label(run) == "tiny · run abc123"
    assert run_label(run, "2 epochs", "stopped") == "tiny · run abc123, 2 epochs, stopped"
    assert pretrained_label("small_cnn") == "small_cnn (pretrained)"


def test_confusion_chart_labels_cells_and_blanks_the_diagonal_of_a_difference():
    import numpy as np

    from pages.widgets import CELL, confusion_chart

    cm = np.array([[5, 1], [0, 7]])
    plain = confusion_chart(cm).to_dict()
    texts = {(d["true"], d["predicted"]): d["text"]
             for d in next(iter(plain["datasets"].values()))}
    assert texts == {(0, 0): "5", (0, 1): "1", (1, 0): "", (1, 1): "7"}
    assert "params" not in plain                              # not clickable by default
    diff = confusion_chart(np.array([[3, -2], [4, -1]]), diff=True, selectable=True)
    spec = diff.to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [d["text"] for d in rows] == ["", "-2", "+4", ""]
    assert [p["name"] for p in spec["params"]] == [CELL]


def _chart_and_image_page():
    import numpy as np
    import streamlit as st

    from pages.widgets import confusion_spec, test_digit_url

    st.vega_lite_chart(spec=confusion_spec(np.array([[5, 1], [0, 7]])), key="chart")
    st.image(test_digit_url(3, 84), width=84)


def test_cached_charts_and_digits_reach_the_browser_without_work_per_view():
    """Under a class's load, converting chart rows to Arrow and re-encoding gallery PNGs as
    JPEG at every view were a fifth of the server's page CPU: a cached spec now carries
    its rows as Arrow bytes, and a gallery digit is a data URL, both passed on as they are."""
    import base64
    import io

    import numpy as np
    import pyarrow as pa
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    from core.imaging import enlarge
    from pages.common import mnist
    from pages.widgets import confusion_chart, confusion_spec

    cm = np.array([[5, 1], [0, 7]])
    at = AppTest.from_function(_chart_and_image_page).run(timeout=TIMEOUT)
    assert not at.exception
    chart, image = at.main[0].proto, at.main[1].proto
    (name, arrow), = confusion_spec(cm)["datasets"].items()
    assert isinstance(arrow, bytes) and chart.datasets[0].name == name
    assert chart.datasets[0].data.data == arrow                       # passed through
    rows = pa.ipc.open_stream(arrow).read_all().to_pylist()
    records = next(iter(confusion_chart(cm).to_dict()["datasets"].values()))
    assert [(r["true"], r["predicted"], r["text"]) for r in rows] == \
        [(r["true"], r["predicted"], r["text"]) for r in records]
    url = image.imgs[0].url
    assert url.startswith("data:image/png;base64,")                   # not re-encoded
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert (np.asarray(png) == enlarge(mnist().x_test[3], 84)).all()


def test_no_cached_chart_hashes_a_dataframe():
    """Streamlit hashes a DataFrame argument of a cached function row by row (about
    1.5 ms a call), and four charts redrawn at every view of Models and Compare paid it.
    A cached function takes a frame only as an unhashed ``_`` argument, keyed by a cheap
    digest (pages.widgets.frame_key)."""
    import ast
    from pathlib import Path

    hashed = []
    for path in sorted(Path("pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                    "cache_data" in ast.unparse(d) for d in node.decorator_list):
                hashed += [f"{path.name}:{node.name}({a.arg})" for a in node.args.args
                           if a.annotation is not None and "DataFrame" in ast.unparse(
                               a.annotation) and not a.arg.startswith("_")]
    assert not hashed, hashed


def test_tables_are_converted_to_arrow_once_per_content():
    """Streamlit converts a pandas frame given to st.dataframe at every view (about a
    third of Compare's time holding the interpreter lock under a class's load): the
    pages give it an Arrow table made once per content (pages.widgets.arrow_table)."""
    import pandas as pd
    import pyarrow as pa

    from pages import widgets

    frame = pd.DataFrame({"layer": ["conv", "dense"], "params": [320, 1_290]})
    table = widgets.arrow_table(frame)
    assert isinstance(table, pa.Table) and table.to_pandas().equals(frame)
    assert widgets.arrow_table(frame.copy()) is table                 # converted once
    assert widgets.arrow_table(frame.assign(params=[1, 2])) is not table
    mixed = pd.DataFrame({"x": [1, "a"]})                  # Arrow cannot take it as it is
    assert widgets.arrow_table(mixed) is mixed
    for i in range(widgets.ARROW_KEPT + 5):
        widgets.arrow_table(pd.DataFrame({"i": [i]}))
    assert len(widgets._arrow_tables) == widgets.ARROW_KEPT


def test_the_load_bench_pages_tables_go_to_streamlit_as_arrow():
    import ast
    from pathlib import Path

    given_frames = []
    for name in ("widgets", "compare", "compare_robustness", "errors"):
        path = Path("pages") / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("dataframe") \
                    and not ast.unparse(node.args[0]).startswith("arrow_table("):
                given_frames.append(f"{path.name}:{node.lineno}")
    assert not given_frames, given_frames


def test_snapshot_pictures_are_the_drawn_images_as_png_urls():
    import base64
    import io

    import numpy as np
    from PIL import Image

    from pages.train_replay import filters_image, picture_url

    filters = np.random.default_rng(0).normal(size=(3, 3, 5)).astype(np.float16)
    url = picture_url("filters", filters)
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert (png == filters_image(filters.astype(np.float32))).all()
    probe = np.full((28, 28, 1), 0.5, np.float16)
    png = Image.open(io.BytesIO(base64.b64decode(picture_url("probe", probe).split(",")[1])))
    assert png.size == (28, 28) and set(np.asarray(png).ravel()) == {128}


def test_layer_table_has_the_asked_columns_with_exact_counts():
    from core.presets import PRESETS
    from core.stats import summarize
    from pages.widgets import layer_table

    rows, totals = summarize(PRESETS["keras_example"].spec)
    table = layer_table(rows, ["layer", "params", "activation memory"])
    assert list(table.columns) == ["layer", "params", "activation memory"]
    assert int(table["params"].sum()) == totals.params == 34_826


def test_digit_grid_is_rgb_with_white_gaps():
    import numpy as np

    from pages.widgets import digit_grid

    digits = np.stack([np.full((28, 28), v, np.uint8) for v in (0, 100, 200)])
    grid = digit_grid(digits, cols=2, pad=2)
    assert grid.shape == (58, 58, 3) and grid.dtype == np.uint8
    assert (grid[0, 0] == 0).all() and (grid[0, 30] == 100).all() and (grid[30, 0] == 200).all()
    assert (grid[0, 28] == 255).all()                                       # the gap
    assert (digit_grid(digits[1:2], cols=1) == 100).all()                    # one digit: RGB


def test_unexpected_errors_are_logged_not_shown(caplog):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(
        "from pages.common import show_error\n"
        "show_error(RuntimeError('/srv/secret/path.npz is broken'))\n").run()
    shown = at.error[0].value
    assert "secret" not in shown and "RuntimeError" not in shown and shown.endswith(".")
    assert any("secret" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_sidebar_shows_a_data_error_as_its_sentence(open_page, monkeypatch):
    from core.errors import DataError
    from pages import common

    def missing():
        raise DataError("MNIST was not found. Point MNIST_NPZ at mnist.npz.")

    monkeypatch.setattr(common, "mnist", missing)
    at = open_page()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [
        "MNIST was not found. Point MNIST_NPZ at mnist.npz."]


# -- the two patches of Streamlit internals in pages/common.py ---------------------------
# Each is checked twice: Streamlit still does what the patch works around (in a fresh
# process, unpatched), and the patch still works. When a Streamlit upgrade changes either,
# these fail; the deep-link browser test (tests/e2e/test_navigation.py) checks the result.
LEGACY_PROBE = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60).run()
at.switch_page("pages/other.py").run()
print("frame" if any(m.value == "frame" for m in at.sidebar.markdown) else "no-frame",
      " ".join(m.value for m in at.main.markdown))
"""


def test_streamlit_still_runs_a_page_without_the_entry_point_in_legacy_mode(tmp_path):
    """Why pages/common.py reroutes legacy runs: unpatched, a fresh process (as AppTest
    makes one per run) with a ``pages/`` folder runs pages/other.py without app.py."""
    import subprocess
    import sys

    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "home.py").write_text("import streamlit as st\nst.markdown('home')\n")
    (tmp_path / "pages" / "other.py").write_text("import streamlit as st\nst.markdown('other')\n")
    app = tmp_path / "app.py"
    app.write_text("import streamlit as st\nst.sidebar.markdown('frame')\n"
                   "st.navigation([st.Page('pages/home.py', default=True),\n"
                   "               st.Page('pages/other.py')]).run()\n")
    out = subprocess.run([sys.executable, "-c", LEGACY_PROBE, str(app)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.stdout.split() == ["no-frame", "other"], out.stdout + out.stderr


def test_every_run_goes_through_app_py(open_page):
    """A page opened on its own (AppTest starts each run in legacy mode, as a fresh server
    does) still gets app.py's sidebar and session defaults."""
    import inspect

    from streamlit.runtime.scriptrunner import script_runner

    assert "_mpa_v1(" in inspect.getsource(script_runner.ScriptRunner._run_script)
    at = open_page("train")
    assert script_runner._mpa_v1.__qualname__ == "_run_entry_point"
    assert not at.exception and at.title[0].value.endswith("Train")
    assert "Workspace" in " ".join(c.value for c in at.sidebar.caption)
    assert at.session_state["workspace"]


# Keras keeps its global state in a ``threading.local`` tracker; ``clear_session()``
# replaces the tracker, wiping that state for every thread (training runs included).
KERAS_PROBE = """
from keras.src.backend.common import global_state
from streamlit.testing.v1 import AppTest
tracker = global_state.GLOBAL_STATE_TRACKER
at = AppTest.from_string("import keras", default_timeout=120)
at.run()
at.run()
print("kept" if global_state.GLOBAL_STATE_TRACKER is tracker else "cleared")
"""


def test_streamlit_still_clears_keras_state_after_every_run():
    """Why pages/common.py keeps Keras state: unpatched (a fresh process), Streamlit calls
    ``keras.backend.clear_session()`` after each run."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", KERAS_PROBE], capture_output=True,
                         text=True, timeout=180)
    assert out.stdout.split()[-1:] == ["cleared"], out.stdout + out.stderr


def test_keras_state_survives_reruns():
    from keras.src.backend.common import global_state
    from streamlit.testing.v1 import AppTest

    tracker = global_state.GLOBAL_STATE_TRACKER
    at = AppTest.from_string("import keras\nimport pages.common", default_timeout=120)
    at.run()
    at.run()
    assert not at.exception
    assert global_state.GLOBAL_STATE_TRACKER is tracker


PERCENT = r"\d+(?:\.\d+)?\s?%"


def test_preset_descriptions_carry_no_figure_and_say_take_home():
    """Accuracy figures come from the shipped records, so no description states one."""
    import re

    from core.presets import PRESETS

    for name, preset in PRESETS.items():
        assert not re.search(PERCENT, preset.spec.description), name
        assert "seed" not in preset.spec.description.lower(), name


def test_models_page_shows_each_shipped_record_figure(open_page):
    import re

    from core import pretrained

    at = open_page("models")
    for name in pretrained.available():
        at.selectbox(key="models_preset").set_value(name).run()
        assert not at.exception
        record = pretrained.load_record(name)
        text = " ".join(m.value for m in at.markdown)
        assert re.findall(PERCENT, text) == [f"{record.test_accuracy:.2%}"], (name, text)
        unit = "epoch" if record.epochs_done == 1 else "epochs"
        assert f"after {record.epochs_done:,} {unit}" in text


def test_home_figures_come_from_the_presets_and_records(open_page):
    import re

    from core import pretrained

    at = open_page()
    text = " ".join(m.value for m in at.markdown)
    assert "from 997 to 331,754 parameters" in text
    fast = pretrained.load_record("fast_cnn")
    assert re.findall(PERCENT, text) == [f"{fast.test_accuracy:.2%}"], text
    assert "seed" not in text.lower()


def test_data_page_counts_are_computed_separated_and_pluralised(open_page):
    at = open_page("data", timeout=TIMEOUT)
    assert not at.exception
    assert any(c.value == "The classes are close to balanced: from 5,421 fives to 6,742 ones "
               "in training." for c in at.caption)
    columns = at.dataframe[0].proto.columns
    assert columns.count('"localized"') == 2, columns             # train and test counts
    models = at.multiselect(key="data_models")
    models.set_value(models.value[:1]).run()
    assert at.button(key="data_hardest").label == "Find them (1 model)"
