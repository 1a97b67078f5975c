"""End-to-end fixtures: ``streamlit run app.py`` on a free port and headless chromium.

Without chromium or the pretrained small_cnn these tests skip with the reason; with the CI
environment variable set, either missing is a failure. Playwright comes with
requirements-dev.txt. Page helpers are in bench/_browser.py (shared with the browser bench
and the screenshot script).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SMALL_CNN = ROOT / "cached_models" / "small_cnn.keras"


def missing(reason: str) -> None:
    """Skip, or fail when running in CI (where everything must be present)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def small_cnn() -> Path:
    """The pretrained small_cnn the drawing tests read digits with."""
    if not SMALL_CNN.is_file():
        missing("cached_models/small_cnn.keras is absent; run `python -m core pretrain "
                "small_cnn`")
    return SMALL_CNN


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/: screenshots and timings kept for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@dataclass
class Server:
    """A running ``streamlit run app.py``."""

    url: str
    log: Path
    pid: int = 0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _start(tmp_path_factory) -> tuple:
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        missing("chromium is not installed (apt-get install chromium)")
    from bench._util import start_app, stop_app, wait_healthy

    home = tmp_path_factory.mktemp("e2e_home")
    log = home / "streamlit.log"
    proc, url = start_app({"LAYERLAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"},
                          log_path=log)
    try:
        wait_healthy(url, timeout=90, proc=proc)
    except (RuntimeError, TimeoutError) as err:
        stop_app(proc)
        pytest.fail(f"streamlit did not start ({err}):\n"
                    + log.read_text(errors="replace")[-3000:])
    return proc, Server(url, log, proc.pid)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One server for the tests that do not need a fresh process."""
    from bench._util import stop_app

    proc, srv = _start(tmp_path_factory)
    yield srv
    stop_app(proc)


@pytest.fixture
def fresh_server(tmp_path_factory):
    """A server that has not run the app yet: the first request is the test's."""
    from bench._util import stop_app

    proc, srv = _start(tmp_path_factory)
    yield srv
    stop_app(proc)


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Per module, not per session: Playwright's sync API
    runs an asyncio loop on this thread while it is open, and tests after tests/e2e (the
    workspace check, AppSession tests) need the thread without a running loop."""
    from playwright.sync_api import sync_playwright

    from bench._util import launch_chromium

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.e2e_failed = report.failed
    return report


@pytest.fixture
def page(browser, request):
    """A fresh browser tab (1400×1000); on failure its screenshot goes to test-artifacts/."""
    from bench._browser import TIMEOUT_MS, VIEWPORT

    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    yield tab
    if getattr(request.node, "e2e_failed", False):
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"e2e_failure_{request.node.name}.png"))
    context.close()
