"""Take a run home in a real browser (issue 17 §4): the Models page's notebook and script
downloads are a valid notebook and Python that rebuild the preset."""
from __future__ import annotations

import ast
import json

import pytest
from playwright.sync_api import Page, expect

from bench._browser import open_app, sidebar, wait_idle

pytestmark = pytest.mark.browser


def download(page: Page, label: str) -> bytes:
    """Click the download button labelled ``label``; the file's bytes."""
    with page.expect_download() as info:
        page.get_by_role("button", name=label).first.click()
    return open(info.value.path(), "rb").read()


def test_models_page_downloads_a_notebook_and_a_script(server, page):
    open_app(page, server.url, "Layer Lab")
    sidebar(page).get_by_role("link", name="Models", exact=True).click()
    expect(page.locator("h1", has_text="Models")).to_be_visible()
    wait_idle(page)
    notebook = json.loads(download(page, "Download notebook (.ipynb)"))
    assert notebook["nbformat"] == 4
    code = "\n".join("".join(c["source"]) for c in notebook["cells"]
                     if c["cell_type"] == "code")
    assert "keras.Input" in code and "model.fit(" in code
    assert any(c["cell_type"] == "markdown" for c in notebook["cells"])
    script = download(page, "Download training script (.py)").decode()
    ast.parse(script)                                    # valid Python
    assert "keras.Input" in script and "model.fit(" in script
