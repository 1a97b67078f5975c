"""Importing a model on the Models page in a real browser: the page polls the import
while it is pending, then its outcome stays on the page (a fragment that kept polling
drew it once, then blanked it a second later) and the page stops asking the server for
reruns (tests/e2e/test_idle_polling.py)."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from bench._browser import open_app, sidebar, wait_idle

pytestmark = pytest.mark.browser


def test_an_imported_model_is_announced_and_stays(server, page, tmp_path, small_cnn):
    from core.modelio import weights_to_npz
    from core.presets import get_preset
    from core.pretrained import shared_model

    spec = tmp_path / "net.json"
    spec.write_text(get_preset("small_cnn").spec.to_json())
    weights = tmp_path / "net.npz"
    weights.write_bytes(weights_to_npz(shared_model("small_cnn")))
    open_app(page, server.url, "Layer Lab")
    sidebar(page).get_by_role("link", name="Models").click()
    wait_idle(page)
    for key, path in (("import_spec", spec), ("import_weights", weights)):
        page.locator(f".st-key-{key} input[type=file]").set_input_files(str(path))
        expect(page.locator(f".st-key-{key}").get_by_text(path.name)).to_be_visible()
        wait_idle(page)
    name = page.locator(".st-key-import_name input")
    name.fill("my import")
    name.press("Enter")
    wait_idle(page)
    expect(page.locator(".st-key-import_go button")).to_be_enabled(timeout=60_000)
    page.locator(".st-key-import_go button").click()
    done = page.get_by_text(re.compile(r"Imported “my import”: [\d,]+ parameters, test "
                                       r"accuracy 9\d\.\d\d%\."))
    expect(done).to_be_visible(timeout=180_000)
    time.sleep(3)                       # three of the old poll's seconds: still there
    expect(done).to_be_visible()
    expect(page.locator(".st-key-import_go button")).to_be_enabled()
