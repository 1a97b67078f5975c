"""AppTest: the app, Home, Models and Train pages run; Models shows exact counts; a tiny
run trains from the Train page and shows its results."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

TIMEOUT = 120
APP = str(Path(__file__).resolve().parents[1] / "app.py")


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def test_home_renders_with_sidebar():
    at = app()
    assert not at.exception
    assert at.title[0].value.endswith("Layer Lab")
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "60,000 train + 10,000 test images" in sidebar
    assert "CPU" in sidebar or "GPU" in sidebar
    assert "Workspace" in sidebar


def test_home_does_not_import_tensorflow():
    """The cold-start path stays light: rendering Home must not need TensorFlow."""
    import subprocess
    import sys

    code = ("import sys; from streamlit.testing.v1 import AppTest; "
            "at = AppTest.from_file('app.py', default_timeout=60).run(); "
            "assert not at.exception, at.exception; "
            "print('TF' if 'tensorflow' in sys.modules else 'NO_TF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(APP).parent)
    assert out.stdout.strip().endswith("NO_TF"), out.stdout + out.stderr


@pytest.mark.parametrize("preset,total", [("warmup_mlp", "111,146"), ("bulky_cnn", "331,754"),
                                          ("keras_example", "34,826")])
def test_models_page_shows_exact_counts(preset, total):
    at = app()
    at.switch_page("pages/models.py").run()
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


def test_train_page_runs_a_tiny_run():
    at = app()
    at.switch_page("pages/train.py").run()
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
    # one click opens the run's confusion matrix on the Errors page
    at.button(key="train_to_errors").click().run()
    assert not at.exception
    assert at.title[0].value.endswith("Errors")
    assert at.selectbox(key="err_model").value.startswith("keras_example · run ")
    at.switch_page("pages/train.py").run()
    # the run is in this session's workspace and can be resumed
    at.radio(key="train_source").set_value("Resume one of my runs").run()
    assert not at.exception
    assert any("keras_example" in o for o in at.selectbox(key="train_resume").options)
