"""The Train page on the backends that train outside the server's process, in a real
browser: ``streamlit run app.py`` with ``LAYERLAB_RAY_ADDRESS=local`` (the server starts
its own small Ray) and with ``LAYERLAB_TRAIN_IN=process`` (a worker process per run);
then Start a run, watch it train, Stop it, resume it and see it finish. The sidebar and
the progress say where it trains."""
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
WORKER_START_MS = 240_000        # a worker process starts and imports TensorFlow
# backend: (server environment, the sidebar's words, the progress's words for the device)
BACKENDS = {
    "ray": ({"LAYERLAB_RAY_ADDRESS": "local", "RAY_AUTH_MODE": "disabled"},  # no token
            r"Training: Ray cluster", r"Training on .* \(Ray worker on "),       # in ~/.ray
    "process": ({"LAYERLAB_TRAIN_IN": "process"},
                r"Training: this machine, 2 runs at once, each in a process of its own",
                r"Training on .*, in a process of its own"),
}


@pytest.fixture(scope="module", params=list(BACKENDS))
def remote_server(request, tmp_path_factory):
    """A server of its own whose runs train in Ray workers or worker processes (a fresh
    LAYERLAB_HOME): ``(backend, url, log)``."""
    import shutil

    from bench._util import start_app, stop_app, wait_healthy

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI is set, so this is a failure)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    home = tmp_path_factory.mktemp(f"e2e_{request.param}_home")
    log = home / "streamlit.log"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")   # short: Ray's socket paths
    proc, url = start_app({"LAYERLAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3",
                           "RAY_TMPDIR": ray_tmp, "LAYERLAB_MAX_RUNS": "2",
                           **BACKENDS[request.param][0]}, log_path=log)
    try:
        wait_healthy(url, timeout=90, proc=proc)
    except (RuntimeError, TimeoutError) as err:
        stop_app(proc)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        pytest.fail(f"streamlit did not start ({err}):\n" + log.read_text(errors="replace"))
    yield request.param, url, log
    stop_app(proc)                  # its workers end with the server that started them
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_run_trains_stops_and_resumes_outside_the_server(remote_server, page):
    backend, url, log = remote_server
    _, in_sidebar, on_device = BACKENDS[backend]
    open_app(page, url, "Train", path="train")
    expect(sidebar(page).get_by_text(re.compile(in_sidebar))).to_be_visible()
    choose(page, "train_preset", "fast_cnn")
    set_slider(page, "tr_ep_Preset_fast_cnn", 10)
    choose(page, "tr_sub_Preset_fast_cnn", "5,000")
    set_text(page, "tr_name_Preset_fast_cnn", f"through_{backend}")
    page.get_by_role("button", name="▶ Start").click()
    if backend == "ray":        # the page reran after Start: it has seen the cluster by now
        expect(sidebar(page).get_by_text(re.compile(r"Ray cluster, 1 node, \d+ CPUs")
                                         )).to_be_visible()
    expect(page.get_by_text(re.compile(r"Epoch \d+/10 · step"))).to_be_visible(
        timeout=WORKER_START_MS)
    expect(page.get_by_text(re.compile(on_device))).to_be_visible()
    expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible()      # the curves
    expect(page.get_by_text(re.compile(r"Epoch ([2-9]|10)/10 · step"))).to_be_visible()
    page.get_by_role("button", name="■ Stop").click()
    expect(page.get_by_text(re.compile(r"Stopped by you after [1-9]"))).to_be_visible()
    wait_idle(page)

    page.locator(".st-key-train_source").get_by_text("Resume one of my runs").click()
    wait_idle(page)
    expect(page.locator(".st-key-train_resume [role=combobox]")).to_have_value(
        re.compile(f"^through_{backend}"))
    page.get_by_role("button", name="▶ Start").click()
    expect(page.get_by_text(re.compile(r"Finished: test accuracy"))).to_be_visible(
        timeout=WORKER_START_MS)
    assert "Traceback" not in Path(log).read_text(errors="replace")
