"""Draw & inspect, "One number, explained": pick a layer and a cell of its output, see how
the value is computed from the layer's input (see :mod:`core.explain`), beside the
model's own value; and a sandbox for where a kernel goes."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.errors import LayerLabError
from core.explain import (SANDBOX_MAX, CellExplanation, WindowPlan, explain_cell,
                          explainable, input_field, not_explained, plan_grid, window_plan)
from core.imaging import colorize, enlarge, tile_grid
from core.inspector import on_worker
from core.layers import KERNEL, PADDINGS, STRIDES
from pages.common import show_error

FIELD_RGB = (0, 220, 255)          # the receptive field's frame (cyan: apart
                                   # from both colour maps' ends)
MAX_CHANNEL_TILES = 8              # input channels drawn as patch/kernel/products tiles
_SANDBOX_RGB = np.array([[225, 225, 225], [70, 70, 90], [255, 140, 0]], np.uint8)


def explain_section(model, digit: np.ndarray) -> None:
    """The section: layer and cell pickers, the arithmetic, the pictures, the sandbox."""
    st.subheader("One number, explained")
    st.caption("Pick a layer and one cell of its output: see exactly how that number is "
               "computed from the layer's input, and check it against the model's own.")
    layers = explainable(model)
    skipped = not_explained(model)
    if skipped:
        st.caption(skipped)
    if not layers:
        st.caption("This model has no convolution, pooling, batch-norm or Dense layer to "
                   "explain.")
    else:
        picked = _pick_cell(layers)
        if picked is not None:
            try:
                e = on_worker(explain_cell, model, digit, *picked)
                field = input_field(model, picked[0], *picked[1][:2]) \
                    if len(picked[1]) == 3 else None
            except LayerLabError as err:
                show_error(err)
            else:
                show_explanation(e, digit, field)
    with st.expander("Sandbox: where does a kernel go?"):
        sandbox()


def _pick_cell(layers: list[tuple[str, str, tuple[int, ...]]]):
    """(layer name, cell) from a layer box and row/column/channel (or unit) inputs."""
    shapes = {name: (kind, shape) for name, kind, shape in layers}
    c = st.columns(4)
    name = c[0].selectbox("Layer", list(shapes), key="draw_x_layer",
                          format_func=lambda n: f"{n} ({shapes[n][0]} "
                                                f"{'×'.join(map(str, shapes[n][1]))})")
    kind, shape = shapes[name]
    if len(shape) == 3:
        row = c[1].number_input("Row", 0, shape[0] - 1, shape[0] // 2,
                                key=f"draw_x_row_{name}")
        col = c[2].number_input("Column", 0, shape[1] - 1, shape[1] // 2,
                                key=f"draw_x_col_{name}")
        ch = c[3].number_input("Channel", 0, shape[2] - 1, 0, key=f"draw_x_ch_{name}")
        return name, (int(row), int(col), int(ch))
    if len(shape) == 1:
        unit = c[1].number_input("Unit", 0, shape[0] - 1, 0, key=f"draw_x_unit_{name}")
        return name, (int(unit),)
    st.caption(f"{name}'s output has an unusual shape; pick another layer.")
    return None


def show_explanation(e: CellExplanation, digit: np.ndarray, field) -> None:
    """The value beside the model's, the arithmetic, and the pictures for the kind."""
    m = st.columns(3)
    m[0].metric("Recomputed here", f"{e.value:.6g}")
    m[1].metric("The model's own value", f"{e.model_value:.6g}")
    m[2].metric("Match", "✓ equal" if e.matches else "✗ different",
                f"difference {abs(e.value - e.model_value):.1e}", delta_color="off")
    st.text("\n".join(e.steps))
    if e.kernel is not None:
        _conv_pictures(e, digit, field)
    elif e.winner is not None or e.type == "AveragePooling2D":
        _pool_pictures(e, digit, field)
    elif e.contributions is not None:
        _dense_pictures(e)
    elif e.source is not None and len(e.cell) == 3:
        r, c, ch = e.cell
        _image(st, _framed(e.source[..., ch], r, c, 1, 1),
               f"the input value at row {r}, column {c} of channel {ch} (framed)")


def _framed(values: np.ndarray, top: int, left: int, height: int, width: int,
            side: int = 168, cmap: str = "viridis") -> np.ndarray:
    """A map coloured and enlarged, the cells top..top+height, left..left+width framed
    (clipped to the map: a window reaching into the padding is framed where inside)."""
    values = np.asarray(values, np.float32)
    scale = max(1, side // max(values.shape))
    rgb = colorize(values, float(values.min()), float(values.max()), cmap, scale).copy()
    h, w = values.shape
    t, b = max(top, 0) * scale, min(top + height, h) * scale
    x0, x1 = max(left, 0) * scale, min(left + width, w) * scale
    if b <= t or x1 <= x0:
        return rgb
    line = max(1, scale // 3)
    rgb[t:t + line, x0:x1] = rgb[b - line:b, x0:x1] = FIELD_RGB
    rgb[t:b, x0:x0 + line] = rgb[t:b, x1 - line:x1] = FIELD_RGB
    return rgb


def _image(where, img: np.ndarray, caption: str) -> None:
    """An image at its own pixel size (small pictures are enlarged in NumPy, crisply)."""
    where.image(img, width=int(img.shape[1]), output_format="PNG", caption=caption)


def _on_input(digit: np.ndarray, field) -> tuple[np.ndarray, str]:
    img = np.asarray(digit, np.float32)
    if field is None:
        return _framed(img, 0, 0, 0, 0, cmap="heat"), "input digit"
    top, left, bottom, right = field
    return (_framed(img, top, left, bottom - top + 1, right - left + 1, cmap="heat"),
            f"receptive field on the input: rows {top}–{bottom}, columns {left}–{right}")


def _conv_pictures(e: CellExplanation, digit: np.ndarray, field) -> None:
    """Receptive field on the input and the previous maps; per input channel the patch,
    the kernel and their products."""
    order = np.argsort(-np.abs(e.channel_sums))[:MAX_CHANNEL_TILES]
    first = int(order[0])
    cols = st.columns(2)
    img, caption = _on_input(digit, field)
    _image(cols[0], img, caption)
    in_ch = e.cell[2] // e.kernel.shape[-1] if e.type == "DepthwiseConv2D" else first
    _image(cols[1], _framed(e.source[..., in_ch], e.top, e.left, e.size, e.size),
           f"its {e.size}×{e.size} window on the layer's input, channel "
                          f"{in_ch} (cyan frame)")
    bound = float(np.abs(e.products).max()) or 1.0
    scale = max(1, 40 // e.size)
    tiles = []
    for i in order:
        wb = float(np.abs(e.kernel[..., i]).max()) or 1.0
        tiles += [colorize(e.patch[..., i], float(e.patch.min()), float(e.patch.max()),
                           "viridis", scale),
                  colorize(e.kernel[..., i], -wb, wb, "diverging", scale),
                  colorize(e.products[..., i], -bound, bound, "diverging", scale)]
    _image(st, tile_grid(np.stack(tiles), cols=3 * min(2, len(order)), pad=4),
           "each row: input window · kernel slice · products (red adds, blue "
                     "subtracts), for the input channels with the largest sums")
    st.text("sum per input channel: " + ", ".join(
        f"ch {int(i)}: {e.channel_sums[i]:+.4g}" for i in order)
        + (f" … ({len(e.channel_sums)} in all)" if len(e.channel_sums) > len(order)
           else ""))
    if e.size <= 5:
        names = [str(i) for i in range(e.size)]
        t = st.columns(3)
        for col, (title, arr) in zip(t, (("input window", e.patch), ("kernel", e.kernel),
                                         ("products", e.products))):
            col.caption(f"{title} (channel {first})")
            col.dataframe({n: arr[:, j, first] for j, n in enumerate(names)},
                          hide_index=True)


def _pool_pictures(e: CellExplanation, digit: np.ndarray, field) -> None:
    cols = st.columns(2)
    img, caption = _on_input(digit, field)
    _image(cols[0], img, caption)
    ch = e.cell[2]
    if e.winner is not None:
        _image(cols[1], _framed(e.source[..., ch], *e.winner, 1, 1),
               f"the winner on the layer's input, channel {ch}, row {e.winner[0]}, "
               f"column {e.winner[1]}")
    else:
        _image(cols[1], _framed(e.source[..., ch], e.top, e.left, e.size, e.size),
               f"the {e.size}×{e.size} window averaged, channel {ch}")


def _dense_pictures(e: CellExplanation) -> None:
    if e.picture is not None:
        bound = float(np.abs(e.picture).max()) or 1.0
        _image(st, enlarge(colorize(e.picture, -bound, bound, "diverging"), 168),
               "contribution of each position of the previous map (summed over "
                         "its channels): red pushes this unit up, blue down")
    top = np.argsort(-np.abs(e.contributions))[:10]
    st.vega_lite_chart(spec={
        "data": {"values": [{"input": _input_label(int(i), e.picture, len(e.contributions)),
                             "contribution": float(e.contributions[i])} for i in top]},
        "mark": "bar", "title": "The largest contributions (input × weight)", "height": 180,
        "encoding": {"x": {"field": "input", "type": "nominal", "sort": None,
                           "axis": {"labelAngle": 0}},
                     "y": {"field": "contribution", "type": "quantitative"}}},
        width="stretch")


def _input_label(i: int, picture: np.ndarray | None, n: int) -> str:
    """A flattened input's index, as row/column/channel of the map it came from."""
    if picture is None:
        return str(i)
    h, w = picture.shape
    r, rest = divmod(i, w * (n // (h * w)))
    c, ch = divmod(rest, n // (h * w))
    return f"r{r} c{c} ch{ch}"


# -- the sandbox -------------------------------------------------------------------------
def sandbox() -> None:
    """Input size, kernel, stride and padding → output size, formula, and each position."""
    c = st.columns(4)
    size = int(c[0].number_input("Input size", 1, SANDBOX_MAX, 7, key="draw_sb_size"))
    kernel = int(c[1].number_input("Kernel", KERNEL.low, KERNEL.high, 3, key="draw_sb_k"))
    stride = int(c[2].number_input("Stride", STRIDES.low, STRIDES.high, 2, key="draw_sb_s"))
    padding = c[3].radio("Padding", PADDINGS, horizontal=True, key="draw_sb_pad")
    try:
        plan = window_plan(size, kernel, stride, padding)
    except LayerLabError as err:
        show_error(err)
        return
    st.text(f"Output: {plan.out}×{plan.out}   ({plan.formula})")
    steps = len(plan.positions)
    step = 1
    if steps > 1:                 # one key per plan: a stored step never exceeds the range
        step = st.slider("Kernel position", 1, steps, 1,
                         key=f"draw_sb_step_{size}_{kernel}_{stride}_{padding}")
    _image(st, sandbox_picture(plan, step - 1),
           f"position {step} of {steps}: dark input cells, light gray padding, orange the "
           "kernel's window")


def sandbox_picture(plan: WindowPlan, step: int, cell: int = 18) -> np.ndarray:
    """The grid at one step, each cell ``cell`` px with a 1 px white line between."""
    codes = plan_grid(plan, step)
    tiles = _SANDBOX_RGB[codes.ravel()][:, None, None, :].repeat(cell, 1).repeat(cell, 2)
    return tile_grid(tiles, cols=codes.shape[1], pad=1)
