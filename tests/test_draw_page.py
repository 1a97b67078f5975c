"""AppTest: the Draw & inspect page with a small model trained here (saved as a run of
this session's workspace), a digit sent through session state, test-set picks, and a
dozen hostile uploads that are each refused or handled with a plain sentence."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

TIMEOUT = 120
WORKSPACE = "drawtest"
RUN_ID = "20260101-000000-tiny01"
SECTIONS = ("Prediction", "What it looked at", "Robustness probe", "Feature maps",
            "Dense layers", "Filters")


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(mnist):
    """(spec, model, confident test indices): a small CNN trained briefly on 4,000 images.

    conv2 has 40 filters so that feature-map paging (32 at a time) is exercised."""
    import keras

    from core.build import build_model
    from core.data import stratified_subset, to_float
    from core.evaluation import batched_probabilities
    from core.spec import ModelSpec

    spec = ModelSpec("tiny_cnn", [
        {"type": "Conv2D", "filters": 8, "kernel_size": 3},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 40, "kernel_size": 3},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 32},
        {"type": "Dense", "units": 10, "activation": "softmax"}])
    model = build_model(spec, seed=0)
    idx = stratified_subset(mnist.y_train, 4000)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy")
    model.fit(to_float(mnist.x_train[idx]), mnist.y_train[idx], epochs=2, batch_size=64,
              verbose=0)
    probs = batched_probabilities(model, to_float(mnist.x_test[:200]))
    confident = [i for i in range(200) if probs[i].argmax() == mnist.y_test[i]
                 and probs[i].max() > 0.95]
    assert len(confident) > 50, "the fixture model did not learn"
    return spec, model, confident


@pytest.fixture()
def page(tiny, open_page):
    """The Draw page with the tiny model saved as a finished run and selected."""
    from core.runs import Run, RunStore

    spec, model, _ = tiny
    store = RunStore()
    run = Run(id=RUN_ID, name="tiny_cnn", spec=spec.to_dict(),
              recipe={}, workspace=WORKSPACE, status="finished", epochs_done=2,
              test_accuracy=0.9)
    store.save_run(run)
    store.save_model(run.id, model)
    at = open_page("draw", timeout=TIMEOUT, state={"workspace": WORKSPACE}, run=False)
    at.session_state["draw_model"] = "tiny_cnn · run tiny01, 90.00%"
    return at


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def assert_sections(at: AppTest) -> None:
    heads = [h.value for h in at.subheader]
    for section in SECTIONS:
        assert section in heads, (section, heads)


# -- the page ----------------------------------------------------------------------------
def test_page_is_in_navigation_and_hints_before_drawing(page):
    page.run()
    assert_clean(page)
    assert page.title[0].value.endswith("Draw & inspect")
    picker = page.selectbox(key="draw_model")       # options are model keys, shown by label
    assert picker.value == RUN_ID and picker.options[picker.index].startswith("tiny_cnn")
    assert "Draw a digit" in texts(page.info)          # empty canvas: a hint, no prediction
    assert not page.metric


def test_sent_digit_shows_prediction_and_every_section(page, tiny, mnist):
    index = tiny[2][0]
    page.session_state["draw_image"] = mnist.x_test[index]      # as the Errors page does
    page.session_state["draw_image_index"] = index
    page.run()
    assert_clean(page)
    assert not page.error
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Digit"] == str(mnist.y_test[index])
    assert metrics["Confidence"].endswith("%")
    assert_sections(page)
    assert (f"sent from another page — test image #{index}, true label "
            f"**{mnist.y_test[index]}**") in texts(page.info)
    assert "one compiled call" in texts(page.caption)
    # the current digit is shared with the Projections page (UMAP placement)
    assert page.session_state["drawn_digit"].shape == (28, 28)
    assert page.session_state["drawn_digit"].dtype.name == "uint8"
    # feature-map paging (40 channels -> two pages) and per-map scaling
    for layer in ("conv1", "maxpool1", "conv2", "maxpool2"):
        page.radio(key="draw_fm_layer").set_value(layer).run()
        assert_clean(page)
    page.radio(key="draw_fm_layer").set_value("conv2").run()
    page.radio(key="draw_fm_page_conv2").set_value("32–39").run()
    page.radio(key="draw_fm_scale").set_value("Each map on its own").run()
    assert_clean(page)
    # explanations: another class, SmoothGrad, occlusion
    page.selectbox(key="draw_explain_target").set_value(3).run()
    page.checkbox(key="draw_smooth").check().run()
    page.checkbox(key="draw_occlusion").check().run()
    assert_clean(page)
    # filters of a deeper layer, by input channel
    page.radio(key="draw_filt_layer").set_value("conv2").run()
    page.selectbox(key="draw_filt_ch_conv2").set_value("5").run()
    assert_clean(page)
    # back to drawing
    page.button(key="draw_forget_sent").click().run()
    assert_clean(page)
    assert page.session_state["draw_image"] is None
    assert "Draw a digit" in texts(page.info)


def test_test_set_pick_by_index_class_and_misclassified(page, tiny, mnist):
    page.run()
    page.radio(key="draw_source").set_value("Test set").run()
    assert_clean(page)
    index = tiny[2][3]
    page.number_input(key="draw_test_index").set_value(index).run()
    assert_clean(page)
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Digit"] == str(mnist.y_test[index])
    assert f"true label **{mnist.y_test[index]}**" in texts(page.caption)
    assert_sections(page)

    page.radio(key="draw_test_mode").set_value("By class").run()
    page.selectbox(key="draw_test_class").set_value(4).run()
    assert_clean(page)
    assert "true label **4**" in texts(page.caption)
    page.button(key="draw_test_another").click().run()
    assert "true label **4**" in texts(page.caption)

    page.radio(key="draw_test_mode").set_value("Misclassified").run()
    assert_clean(page)
    assert "test images wrong" in texts(page.caption)
    metrics = {m.label: m.value for m in page.metric}
    shown = [c.value for c in page.caption if "true label" in c.value][0]
    true = shown.split("true label **")[1][0]
    assert metrics["Digit"] != true       # a misclassified one indeed
    page.button(key="draw_test_wrong").click().run()
    assert_clean(page)


# -- hostile uploads ---------------------------------------------------------------------
def _png(arr: np.ndarray, mode: str | None = None, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode=mode)
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) \
        + chunk(b"IEND", b"")


def hostile_files(digit: np.ndarray) -> list[tuple[str, bytes, str, str]]:
    """(file name, bytes, expected outcome, phrase): outcome is refused, hint or read."""
    from PIL import Image

    big = np.asarray(Image.fromarray(255 - digit).resize((280, 280)))   # black on white
    def save(img, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    good = _png(big)
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = 255 - big                     # black ink, transparent background
    gif = save(Image.fromarray(big), "GIF")
    bmp = save(Image.fromarray(big), "BMP")
    cmyk = save(Image.fromarray(np.stack([big] * 3, -1)).convert("CMYK"), "JPEG",
                quality=95)
    palette = save(Image.fromarray(np.stack([big] * 3, -1)).convert("P"), "PNG")
    sixteen = save(Image.fromarray(big.astype(np.uint16) * 257), "PNG")
    huge = save(Image.new("L", (4200, 4000), 255), "PNG")
    return [
        ("truncated.png", good[:len(good) // 2], "refused", "truncated"),
        ("bomb.png", _bomb_png(100_000, 100_000), "refused", "too many pixels"),
        ("huge.png", huge, "refused", "megapixels"),
        ("animation.png", gif, "refused", "GIF"),
        ("bitmap.png", bmp, "refused", "BMP"),
        ("notes.png", b"These are my notes, not a picture.\n" * 20, "refused",
         "not an image"),
        ("empty.png", b"", "refused", "empty"),
        ("dot.png", _png(np.full((1, 1), 255, np.uint8)), "hint", "Draw a digit"),
        ("deep.png", sixteen, "read", ""),
        ("print.jpg", cmyk, "read", ""),
        ("palette.png", palette, "read", ""),
        ("sticker.png", _png(rgba, mode="RGBA"), "read", ""),
        ("photo.png", save(Image.fromarray(big), "JPEG"), "read", ""),   # JPEG named .png
    ]


def test_hostile_uploads_are_refused_or_handled_with_a_sentence(page, tiny, mnist):
    index = tiny[2][1]
    label = str(mnist.y_test[index])
    page.run()
    page.radio(key="draw_source").set_value("Upload").run()
    assert_clean(page)
    problems = []
    for name, data, outcome, phrase in hostile_files(mnist.x_test[index]):
        page.file_uploader(key="draw_upload").set_value((name, data, "image/png")).run()
        if page.exception:
            problems.append(f"{name}: exception {page.exception[0].value}")
            continue
        errors, infos = texts(page.error), texts(page.info)
        metrics = {m.label: m.value for m in page.metric}
        if outcome == "refused":
            if phrase not in errors or metrics:
                problems.append(f"{name}: expected a refusal with {phrase!r}, got "
                                f"errors={errors!r} metrics={metrics}")
            elif "Traceback" in errors or not errors.rstrip().endswith("."):
                problems.append(f"{name}: the refusal is not a plain sentence: {errors!r}")
        elif outcome == "hint":
            if phrase not in infos or metrics or errors:
                problems.append(f"{name}: expected the hint {phrase!r}, got {infos!r}")
        else:
            if errors or metrics.get("Digit") != label:
                problems.append(f"{name}: expected {label}, got errors={errors!r} "
                                f"metrics={metrics}")
            elif "Preprocessing, the MNIST way" not in [h.value for h in page.subheader]:
                problems.append(f"{name}: the preprocessing steps are missing")
    assert not problems, "\n".join(problems)


def test_stroke_width_change_starts_a_new_drawing(page, mnist):
    """A new stroke width gives the canvas a new key (an empty canvas): the panels and the
    digit shared with Projections no longer describe the erased drawing."""
    page.run()
    gen = page.session_state["draw_canvas_gen"]
    page.session_state["drawn_digit"] = mnist.x_test[0]        # the previous drawing
    page.slider(key="draw_stroke").set_value(30).run()
    assert_clean(page)
    assert page.session_state["draw_canvas_gen"] == gen + 1
    assert not page.metric and "Draw a digit" in texts(page.info)
    assert "drawn_digit" not in page.session_state


def test_a_deskewing_model_shows_the_straightened_digit_first(open_page, mnist):
    """frontier_1k straightens the digit before its first convolution: its first feature
    map is that digit, and the page reads it without an exception."""
    at = open_page("draw", timeout=TIMEOUT, state={"workspace": WORKSPACE}, run=False)
    at.session_state["draw_model"] = "pretrained:frontier_1k"
    at.session_state["draw_image"] = mnist.x_test[0]
    at.session_state["draw_image_index"] = 0
    at.run()
    assert_clean(at)
    assert at.selectbox(key="draw_model").value == "pretrained:frontier_1k"
    maps = at.radio(key="draw_fm_layer")
    assert maps.options[0].startswith("deskew1 (Deskew 28×28×1)"), maps.options
    maps.set_value("deskew1").run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Digit"] == str(mnist.y_test[0])
