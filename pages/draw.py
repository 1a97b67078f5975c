"""Draw & inspect: draw a digit (or upload one, or pick a test image), watch it being
preprocessed the MNIST way, and see what every layer of a model makes of it."""
from __future__ import annotations

import hashlib
import logging
import time

import numpy as np
import streamlit as st

from core.errors import LayerLabError
from core.imaging import (SEPARATOR, anchors, colorize, enlarge, labelled_grid, overlay,
                          tile_grid)
from core.inspector import (Inspection, Inspector, filter_images, inspector_for,
                            robustness_variants)
from core.page_warm_up import DRAW_MODEL
from core.preprocess import MAX_FILE_MB, EmptyDrawing, Step, as_digit, preprocess
from core.wording import plain, plural
from pages import handoff
from pages.common import PRETRAINED_PREFIX, load_choice, mnist, model_choices, show_error
from pages.draw_explain import explain_section
from pages.draw_fool import fool_section
from pages.draw_personal import add_to_my_digits
from pages.widgets import digit_grid

PAGE_START = time.perf_counter()
log = logging.getLogger(__name__)
CANVAS_SIDE = 280
MAX_MAPS = 32                 # feature maps / filters shown at a time
SOURCES = ("Draw", "Upload", "Test set")

st.session_state.setdefault("draw_updates", 0)
st.session_state.setdefault("draw_last_digest", "")
st.session_state.setdefault("draw_canvas_gen", 0)


# -- small view helpers ------------------------------------------------------------------
def chart(spec: dict, width: str = "stretch") -> None:
    """A Vega-Lite chart from a plain spec (cheaper per stroke than building Altair
    objects, which validate against the whole schema every rerun)."""
    st.vega_lite_chart(spec=spec, width=width)


def legend(vmin: float, vmax: float, cmap: str, title: str) -> None:
    """A horizontal colour bar with a value axis: the legend of an image grid."""
    if vmax <= vmin:
        vmax = vmin + 1.0
    edges = np.linspace(vmin, vmax, 65)
    values = [{"x": float(a), "x2": float(b), "mid": float((a + b) / 2)}
              for a, b in zip(edges[:-1], edges[1:])]
    colours = anchors(cmap)
    stops = [float(v) for v in np.linspace(vmin, vmax, len(colours))]
    chart({"data": {"values": values}, "mark": "rect",
           "title": {"text": title, "fontSize": 12, "anchor": "start"},
           "width": 320, "height": 16, "autosize": {"type": "pad"},
           "encoding": {
               "x": {"field": "x", "type": "quantitative", "title": None,
                     "scale": {"domain": [vmin, vmax], "nice": False}},
               "x2": {"field": "x2"},
               "color": {"field": "mid", "type": "quantitative", "legend": None,
                         "scale": {"domain": stops, "range": colours}}}},
          width="content")


def canvas_input(stroke: int, key: str) -> np.ndarray | None:
    """The freehand canvas (white on black); its RGBA pixels, or None before a stroke."""
    try:
        from streamlit_drawable_canvas import st_canvas  # noqa: PLC0415
    except Exception:  # the component could not be registered here
        log.exception("The drawing canvas component could not be loaded")
        st.info("The drawing canvas is not available on this server; upload a picture or "
                "pick a test image instead.")
        return None
    result = st_canvas(stroke_width=stroke, stroke_color="#FFFFFF",
                       background_color="#000000", height=CANVAS_SIDE, width=CANVAS_SIDE,
                       drawing_mode="freedraw", return_image_data=True, key=key)
    return result.image_data


def square(image: np.ndarray, side: int = 112) -> np.ndarray:
    """Pad an image to a square (black margins) and enlarge it crisply towards ``side``."""
    h, w = image.shape[:2]
    n = max(h, w)
    padded = np.zeros((n, n, *image.shape[2:]), image.dtype)
    padded[(n - h) // 2:(n - h) // 2 + h, (n - w) // 2:(n - w) // 2 + w] = image
    return enlarge(padded, side)


def show_steps(steps: list[Step]) -> None:
    """The preprocessing steps as a strip of small images."""
    cols = st.columns(len(steps))
    for col, step in zip(cols, steps):
        col.image(square(step.image), width=112, output_format="PNG",
                  caption=f"{step.title} · {step.note}" if step.note else step.title)


def read_input(inspector: Inspector) -> tuple[np.ndarray | None, list[Step], str]:
    """The current 28×28 digit (None with a hint shown), its steps and a label."""
    sent = handoff.sent_digit()
    if sent is not None:
        where = ""
        if sent.index is not None:
            try:
                where = (f" — test image #{sent.index}, true label "
                         f"**{int(mnist().y_test[sent.index])}**")
            except (LayerLabError, IndexError):
                where = f" — test image #{sent.index}"
        st.info(f"Showing the digit sent from {sent.source}{where}.", icon="📨")
        if st.button("Draw my own instead", key="draw_forget_sent"):
            handoff.forget_sent_digit()
            st.rerun()
        try:
            return as_digit(sent.image), [], "sent digit"
        except LayerLabError as err:
            show_error(err)
            return None, [], ""

    source = st.radio("Input", SOURCES, horizontal=True, key="draw_source",
                      label_visibility="collapsed")
    if source == SOURCES[0]:
        stroke = st.slider("Stroke width", 6, 40, 20, key="draw_stroke",
                           on_change=new_drawing,
                           help="A new width starts a new drawing (the canvas is cleared).")
        rgba = canvas_input(stroke, f"draw_canvas_{st.session_state.draw_canvas_gen}")
        st.caption("Draw one digit, large, in the black box. Undo, redo and clear (the "
                   "bin) are in the canvas toolbar.")
        if rgba is None or not np.asarray(rgba)[..., :3].any():
            st.info("✏️ Draw a digit in the box to see what the model makes of it.")
            return None, [], ""
        digit, steps = _preprocessed(rgba, min_extent=0.1, name="The drawing")
        return digit, steps, "drawing"
    if source == SOURCES[1]:
        upload = st.file_uploader(f"A picture of one digit (PNG or JPEG, any colours, at "
                                  f"most {MAX_FILE_MB} MB)", key="draw_upload",
                                  max_upload_size=MAX_FILE_MB)
        if upload is None:
            st.info("📁 Upload a PNG or JPEG picture of a handwritten digit.")
            return None, [], ""
        digit, steps = _preprocessed(upload.getvalue(), min_extent=0.03,
                                     name=f"“{plain(upload.name, 60)}”")
        return digit, steps, "upload"
    return test_image(inspector)


def new_drawing() -> None:
    """The stroke width changed: the canvas starts empty, so the panels must too (a new
    canvas key: the old drawing's pixels are no longer read)."""
    st.session_state.draw_canvas_gen += 1


def _preprocessed(image, min_extent: float, name: str) -> tuple[np.ndarray | None,
                                                                  list[Step]]:
    start = time.perf_counter()
    try:
        result = preprocess(image, min_extent=min_extent, name=name)
    except EmptyDrawing as hint:
        st.info(f"✏️ {hint}")
        return None, []
    except LayerLabError as err:
        show_error(err)
        return None, []
    st.session_state.draw_prep_ms = (time.perf_counter() - start) * 1000
    if result.hint:
        st.text(result.hint)
    return result.digit, result.steps


def test_image(inspector: Inspector) -> tuple[np.ndarray | None, list[Step], str]:
    """A test-set digit: by index, by class, or a random misclassified one."""
    try:
        data = mnist()
    except LayerLabError as err:
        show_error(err)
        return None, [], ""
    n = len(data.x_test)
    mode = st.radio("Pick", ("By index", "By class", "Misclassified"), horizontal=True,
                    key="draw_test_mode")
    rng = np.random.default_rng()
    if mode == "By index":
        index = int(st.number_input("Test image index", 0, n - 1, 0, key="draw_test_index"))
    elif mode == "By class":
        c = st.columns([2, 1])
        digit = int(c[0].selectbox("Digit", range(10), key="draw_test_class"))
        pool = np.flatnonzero(data.y_test == digit)
        if c[1].button("Another one", key="draw_test_another") \
                or st.session_state.get("draw_test_pick_class") != digit:
            st.session_state.draw_test_pick = int(rng.choice(pool))
            st.session_state.draw_test_pick_class = digit
        index = st.session_state.draw_test_pick
    else:
        with st.spinner("Finding the test images this model gets wrong…"):
            wrong = inspector.misclassified(data.x_test, data.y_test)
        if len(wrong) == 0:
            st.success("This model reads every test image correctly.")
            return None, [], ""
        st.caption(f"This model gets {len(wrong):,} of {plural(n, 'test image')} wrong.")
        key = f"draw_test_wrong_{id(inspector)}"
        if st.button("Another misclassified one", key="draw_test_wrong") \
                or key not in st.session_state:
            st.session_state[key] = int(rng.choice(wrong))
        index = st.session_state[key]
    st.caption(f"Test image #{index} · true label **{int(data.y_test[index])}** · test "
               "images are already MNIST-style, so no preprocessing is needed.")
    return data.x_test[index], [], f"test image #{index}"


# -- the page ----------------------------------------------------------------------------
st.title("✏️ Draw & inspect")
st.caption("Draw a digit and see what every layer sees: the MNIST-style preprocessing, "
           "the prediction, the filters, the feature maps and where the model looked.")

choices = model_choices()
if not choices:
    st.info("No model is ready yet: the pretrained presets are missing from "
            "cached_models/. Train one on the **Train** page, then come back.")
    st.stop()
choice = handoff.model_select("draw", "Model", choices, widget_key="draw_model",
                              default=PRETRAINED_PREFIX + DRAW_MODEL)
try:
    model = load_choice(choice)
    with st.spinner("Compiling the model's feature extractor (once per model)…"):
        inspector: Inspector = inspector_for(model)
except LayerLabError as err:
    show_error(err)
    st.stop()

left, right = st.columns([5, 6], gap="large")
with left:
    digit, steps, source_label = read_input(inspector)

if digit is None:
    handoff.clear_digit()
    st.stop()

start = time.perf_counter()
result: Inspection = inspector.run(digit)
infer_ms = (time.perf_counter() - start) * 1000
digest = hashlib.sha1(digit.tobytes()).hexdigest()[:10]
if digest != st.session_state.draw_last_digest:
    st.session_state.draw_last_digest = digest
    st.session_state.draw_updates += 1
handoff.show_digit(as_digit(digit), model_key=choice)   # Projections places it on UMAP

with right:
    st.subheader("Prediction")
    m = st.columns([1.2, 3.8, 2])    # "100.0%" fits at 1024 px (it read "100.…")
    m[0].metric("Digit", str(result.top))
    m[1].metric("Confidence", f"{result.confidence:.1%}")
    m[2].image(enlarge(digit, 84), width=84, caption="28×28 input", output_format="PNG")
    note = result.uncertainty()
    if note:
        st.warning(note, icon="🤔")
    chart({"data": {"values": [{"digit": str(d), "probability": float(p),
                                "top": d == result.top}
                               for d, p in enumerate(result.probabilities)]},
           "mark": "bar", "title": "Probability of each digit", "height": 230,
           "encoding": {
               "x": {"field": "digit", "type": "nominal", "sort": None, "title": "digit",
                     "axis": {"labelAngle": 0}},
               "y": {"field": "probability", "type": "quantitative", "title": "probability",
                     "scale": {"domain": [0, 1]}},
               "color": {"field": "top", "type": "nominal", "legend": None,
                         "scale": {"domain": [True, False],
                                   "range": ["#e4572e", "#8fa8c8"]}},
               "tooltip": [{"field": "digit", "type": "nominal"},
                           {"field": "probability", "type": "quantitative",
                            "format": ".2%"}]}})
    prep = (f"preprocessing {st.session_state.get('draw_prep_ms', 0):.1f} ms · "
            if steps else "")
    st.caption(f"Update {st.session_state.draw_updates} · {source_label} · {prep}"
               f"model {infer_ms:.1f} ms (probabilities and all {len(result.activations)} "
               f"layer outputs in one compiled call)")
add_to_my_digits(right, result.top)        # the personal set (My digits page)

if steps:
    st.subheader("Preprocessing, the MNIST way")
    st.caption("Grayscale → white ink on black → crop to the ink → longer side scaled to "
               "20 px (anti-aliased) → placed in 28×28 by its centre of mass.")
    show_steps(steps)

# -- what it looked at -------------------------------------------------------------------
st.subheader("What it looked at")
c = st.columns([2, 2, 3])
target_choice = c[0].selectbox("Explain the class", ["predicted"] + list(range(10)),
                               key="draw_explain_target")
smooth = c[1].checkbox("SmoothGrad", key="draw_smooth",
                       help="Average the gradient over 16 noisy copies: a calmer map.")
occl = c[2].checkbox("Occlusion sensitivity", key="draw_occlusion",
                     help="Black out 6×6 squares one at a time and measure how much the "
                          "probability drops (145 model calls in one batch).")
target = result.top if target_choice == "predicted" else int(target_choice)
expl = inspector.explain(digit, target, smooth=16 if smooth else 0, occlusion=occl)
panels = [("Input", enlarge(digit_grid(digit[None], cols=1), 168)),
          (f"Gradient saliency for {target}", overlay(digit, expl.saliency, 6))]
if expl.gradcam is not None:
    panels.append((f"{expl.gradcam_method} on {expl.gradcam_layer} for {target}",
                   overlay(digit, expl.gradcam, 6)))
if expl.occlusion is not None:
    panels.append((f"Occlusion: drop in p({target})", overlay(digit, expl.occlusion, 6)))
cols = st.columns(4)
for col, (title, img) in zip(cols, panels):
    col.image(img, caption=title, width=168, output_format="PNG")
if expl.gradcam is None:
    st.caption("Grad-CAM needs a convolutional layer; this model has none.")
elif expl.gradcam_method == "HiResCAM":
    st.caption("Grad-CAM is flat for this digit (its channel-averaged weights cancel out), "
               "so HiResCAM — gradient × activation at each position — is shown instead.")
legend(0.0, 1.0, "heat", "importance (relative to the largest)")

# -- robustness probe --------------------------------------------------------------------
st.subheader("Robustness probe")
variants = robustness_variants(digit)
vprobs = inspector.probabilities(np.stack([img for _, img in variants]))
reads = vprobs.argmax(axis=1)
changed = [f"{name} (→ {int(r)})" for (name, _), r in zip(variants[1:], reads[1:])
           if r != result.top]
st.caption(f"{len(variants) - 1 - len(changed)} of {len(variants) - 1} variants are still "
           f"read as {result.top}."
           + (f" It changes its mind on: {', '.join(changed)}." if changed else ""))
st.image(labelled_grid([img for _, img in variants],
                       [(name, f"reads {int(r)} ({p.max():.0%})")
                        for (name, _), r, p in zip(variants, reads, vprobs)],
                       [bool(r != result.top) for r in reads], cols=6),
         width="content", output_format="PNG",
         caption="Each variant with the model's reading; red: a different digit.")

# -- feature maps ------------------------------------------------------------------------
spatial = inspector.views("deskew", "conv", "pool")
st.subheader("Feature maps")
if not spatial:
    st.caption("This model has no convolution or pooling layers: see the dense layers "
               "below.")
else:
    c = st.columns([3, 2])
    names = [v.name for v in spatial]
    picked = c[0].radio("Layer", names, horizontal=True, key="draw_fm_layer",
                        format_func=lambda n: next(f"{v.name} ({v.type} "
                                                   f"{'×'.join(map(str, v.shape))})"
                                                   for v in spatial if v.name == n))
    shared = c[1].radio("Colour scale", ("Shared by the layer's maps",
                                         "Each map on its own"), horizontal=True,
                        key="draw_fm_scale") == "Shared by the layer's maps"
    view = next(v for v in spatial if v.name == picked)
    maps = np.moveaxis(result.activations[view.name], -1, 0)           # (C, h, w)
    n = len(maps)
    first = 0
    if n > MAX_MAPS:
        pages = [f"{i}–{min(i + MAX_MAPS, n) - 1}" for i in range(0, n, MAX_MAPS)]
        page = st.radio("Channels", pages, horizontal=True, key=f"draw_fm_page_{view.name}")
        first = pages.index(page) * MAX_MAPS
    shown = maps[first:first + MAX_MAPS]
    scale = max(1, 84 // max(shown.shape[1:]))
    if shared:
        lo, hi = float(maps.min()), float(maps.max())
        imgs = [colorize(mp, lo, hi, "viridis", scale) for mp in shown]
    else:
        imgs = [colorize(mp, float(mp.min()), float(mp.max()), "viridis", scale)
                for mp in shown]
    st.image(tile_grid(np.stack(imgs), cols=8), width="content", output_format="PNG",
             caption=f"{view.name}: channels {first}–{first + len(shown) - 1} of {n}, left "
                     f"to right, top to bottom")
    if shared:
        legend(lo, hi, "viridis", f"{view.name} activation (shared scale)")
    else:
        legend(0.0, 1.0, "viridis", "each map from its own minimum (0) to maximum (1)")
explain_section(model, digit)

# -- dense layers ------------------------------------------------------------------------
dense = inspector.views("dense")[:-1]
if dense:
    st.subheader("Dense layers")
    for view in dense:
        values = np.asarray(result.activations[view.name], float).ravel()
        chart({"data": {"values": [{"unit": i, "activation": float(v)}
                                   for i, v in enumerate(values)]},
               "mark": "bar", "title": f"{view.name} · {len(values)} units",
               "height": 100, "autosize": {"type": "pad"},
               "encoding": {
                   "x": {"field": "unit", "type": "quantitative", "title": "unit",
                         "scale": {"domain": [-0.5, len(values) - 0.5], "nice": False}},
                   # no stacking: one bar per unit (a stack's activation_start/end
                   # fields made Vega warn of an infinite extent on every update)
                   "y": {"field": "activation", "type": "quantitative",
                         "title": "activation", "stack": None},
                   "tooltip": [{"field": "unit", "type": "quantitative"},
                               {"field": "activation", "type": "quantitative",
                                "format": ".3f"}]}})

# -- filters -----------------------------------------------------------------------------
convs = inspector.views("conv")
if convs:
    st.subheader("Filters")
    st.caption("Each small square is one filter's weights: red adds to the feature map, "
               "blue subtracts, white is zero; gray lines separate the filters.")
    c = st.columns([3, 2])
    picked = c[0].radio("Layer", [v.name for v in convs], horizontal=True,
                        key="draw_filt_layer",
                        format_func=lambda n: f"{n} ({inspector.conv_kernel(n).shape[-1]} "
                                              "filters)")
    kernel = inspector.conv_kernel(picked)                              # (k, k, in, out)
    k, _, n_in, n_out = kernel.shape
    channel = None
    if n_in > 1:
        options = ["mean over inputs"] + [str(i) for i in range(n_in)]
        pick = c[1].selectbox(f"Input channel (of {n_in})", options,
                              key=f"draw_filt_ch_{picked}")
        channel = None if pick == options[0] else int(pick)
    first, per_page = 0, 2 * MAX_MAPS
    if n_out > per_page:
        pages = [f"{i}–{min(i + per_page, n_out) - 1}" for i in range(0, n_out, per_page)]
        page = st.radio("Filters", pages, horizontal=True, key=f"draw_filt_page_{picked}")
        first = pages.index(page) * per_page
    images = filter_images(kernel, channel)[first:first + per_page]
    bound = float(np.abs(images).max()) or 1.0
    tiles = np.stack([colorize(f, -bound, bound, "diverging", max(1, 36 // k))
                      for f in images])
    which = ("the input image" if n_in == 1 else "the mean over input channels"
             if channel is None else f"input channel {channel}")
    st.image(tile_grid(tiles, cols=16 if k < 5 else 8, pad=3, pad_value=SEPARATOR),
             width="content",
             output_format="PNG",
             caption=f"{picked}: {k}×{k} weights of filters {first}–"
                     f"{first + len(images) - 1}, as seen by {which}")
    legend(-bound, bound, "diverging", "weight (0 = white)")

st.caption(f"Server time for this page: {(time.perf_counter() - PAGE_START) * 1000:.0f} ms "
           "(preprocessing, model, explanations, probe, maps and charts).")
fool_section(model)
