"""The Train page on the Ray backend, in a real browser: ``streamlit run app.py`` with
``LAYERLAB_RAY_ADDRESS=local`` (the server starts its own small Ray), then Start a run,
watch it train, Stop it, resume it and see it finish. The sidebar names Ray."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench._browser import open_app, sidebar, wait_idle
from tests.e2e.menus import choose, set_slider, set_text

pytestmark = pytest.mark.browser
WORKER_START_MS = 240_000        # a Ray worker process starts and imports TensorFlow


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    """A server of its own whose runs train in Ray workers (a fresh LAYERLAB_HOME)."""
    import shutil

    from bench._util import start_app, stop_app, wait_healthy

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI is set, so this is a failure)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    home = tmp_path_factory.mktemp("e2e_ray_home")
    log = home / "streamlit.log"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")   # short: Ray's socket paths
    proc, url = start_app({"LAYERLAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3",
                           "LAYERLAB_RAY_ADDRESS": "local", "RAY_TMPDIR": ray_tmp,
                           "RAY_AUTH_MODE": "disabled"},    # no token file in ~/.ray
                          log_path=log)
    try:
        wait_healthy(url, timeout=90, proc=proc)
    except (RuntimeError, TimeoutError) as err:
        stop_app(proc)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        pytest.fail(f"streamlit did not start ({err}):\n" + log.read_text(errors="replace"))
    yield url, log
    stop_app(proc)                  # Ray's processes end with the server that started them
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_run_trains_stops_and_resumes_through_ray(ray_server, page):
    url, log = ray_server
    open_app(page, url, "Train", path="train")
    expect(sidebar(page).get_by_text(re.compile(r"Training: Ray cluster"))).to_be_visible()
    choose(page, "train_preset", "fast_cnn")
    set_slider(page, "tr_ep_Preset_fast_cnn", 10)
    choose(page, "tr_sub_Preset_fast_cnn", "5,000")
    set_text(page, "tr_name_Preset_fast_cnn", "through_ray")
    page.get_by_role("button", name="▶ Start").click()
    # the page reran after Start: the sidebar has seen the cluster by now
    expect(sidebar(page).get_by_text(re.compile(r"Ray cluster, 1 node, \d+ CPUs")
                                     )).to_be_visible()
    expect(page.get_by_text(re.compile(r"Epoch \d+/10 · step"))).to_be_visible(
        timeout=WORKER_START_MS)
    expect(page.get_by_text(re.compile(r"Training on .* \(Ray worker on "))).to_be_visible()
    expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible()      # the curves
    expect(page.get_by_text(re.compile(r"Epoch ([2-9]|10)/10 · step"))).to_be_visible()
    page.get_by_role("button", name="■ Stop").click()
    expect(page.get_by_text(re.compile(r"Stopped by you after [1-9]"))).to_be_visible()
    wait_idle(page)

    page.locator(".st-key-train_source").get_by_text("Resume one of my runs").click()
    wait_idle(page)
    expect(page.locator(".st-key-train_resume [role=combobox]")).to_have_value(
        re.compile("^through_ray"))
    page.get_by_role("button", name="▶ Start").click()
    expect(page.get_by_text(re.compile(r"Finished: test accuracy"))).to_be_visible(
        timeout=WORKER_START_MS)
    assert "Traceback" not in Path(log).read_text(errors="replace")
