"""The Draw page's uploader in a real browser (issue 12 §1): a picture over the 5 MB limit
gets a readable sentence naming the limit, never Streamlit's "AxiosError … 413"; a small
valid picture of a digit still works afterwards. (The ``?ws=`` markdown payload in the
browser is tests/test_workspace.py's test_markdown_payload_renders_no_link_or_image_in_chromium.)"""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from bench._browser import STROKES, open_draw, predicted_digit, rasterize, wait_idle
from core.preprocess import MAX_FILE_BYTES, MAX_FILE_MB

pytestmark = pytest.mark.browser


def png_of(pixels: np.ndarray, pad_to: int = 0) -> bytes:
    """``pixels`` as a PNG, made ``pad_to`` bytes long with a private ancillary chunk
    (decoders skip it), so the file is large but still a valid picture."""
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    data = buf.getvalue()
    need = pad_to - len(data) - 12
    if need <= 0:
        return data
    body = np.random.default_rng(0).bytes(need)
    chunk = (struct.pack(">I", need) + b"prVt" + body
             + struct.pack(">I", zlib.crc32(b"prVt" + body) & 0xFFFFFFFF))
    end = data.rindex(b"IEND") - 4                       # before IEND's length field
    return data[:end] + chunk + data[end:]


def choose_upload(page) -> None:
    page.locator(".st-key-draw_source").get_by_text("Upload", exact=True).click()
    expect(page.locator(".st-key-draw_upload input[type=file]")).to_be_attached()
    wait_idle(page)


def upload(page, name: str, data: bytes) -> None:
    page.locator(".st-key-draw_upload input[type=file]").set_input_files(
        {"name": name, "mimeType": "image/png", "buffer": data})


def test_a_picture_over_the_limit_gets_a_sentence_then_a_small_one_works(small_cnn, server,
                                                                          page):
    big = png_of(rasterize(7), pad_to=int(5.6 * 1024 * 1024))
    assert len(big) > MAX_FILE_BYTES
    small = png_of(rasterize(7), pad_to=100 * 1024)
    open_draw(page, server.url)
    choose_upload(page)
    box = page.locator(".st-key-draw_upload")
    expect(box).to_contain_text(f"at most {MAX_FILE_MB} MB")    # the limit, stated

    upload(page, "big.png", big)
    # the browser refuses it before sending (Streamlit's own sentence), so no request
    # reaches the server's 413
    expect(box).to_contain_text(re.compile(rf"File must be {MAX_FILE_MB}(\.0)? ?MB or "
                                           r"smaller\."))
    expect(page.get_by_text(re.compile(r"AxiosError|413"))).to_have_count(0)
    expect(page.get_by_role("heading", name="Prediction")).to_have_count(0)
    wait_idle(page)

    upload(page, "seven.png", small)
    expect(page.get_by_role("heading", name="Prediction")).to_be_visible()
    wait_idle(page)
    assert predicted_digit(page) == "7"
    body = page.locator("body").inner_text()
    assert "AxiosError" not in body and "413" not in body
    expect(page.get_by_test_id("stException")).to_have_count(0)
