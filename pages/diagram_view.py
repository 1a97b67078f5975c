"""The network drawn: the boxes of :mod:`core.diagram` as an Altair chart, with PNG and SVG
downloads (converted offline by vl-convert, the engine behind Altair's ``chart.save``)."""
from __future__ import annotations

import io

import altair as alt
import pandas as pd
import streamlit as st

from core.diagram import LABEL_ROOM, Box, boxes, faces, wrap
from core.errors import LayerLabError
from core.spec import ModelSpec, shape_text
from pages.widgets import arrow_datasets

PAD = 12            # pixels around the drawing
LINE = 13           # a label line's height in pixels
WIDTH = 520         # within the page's width at 1,024 px: a longer stack is in rows
FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def _details(b: Box) -> dict:
    """The tooltip fields of one box, numbers with thousands separators."""
    return {"name": b.name, "type": b.label, "output shape": shape_text(b.shape),
            "params": f"{b.params:,}", "MACs": f"{b.macs:,}"}


def _labels(placed: list[Box], above: float, below: float) -> pd.DataFrame:
    """One caption per box, alternately below and above its row so neighbours never meet
    (``above``/``below``: the room from a row's centre to its boxes' top/bottom).

    Vega anchors a caption's first line, so one above the row starts two lines higher."""
    return pd.DataFrame([{"x": b.x + (b.width + b.depth) / 2, "caption": b.caption,
                          "y": b.y - below if k % 2 == 0 else b.y + above + 2 * LINE,
                          "baseline": "top" if k % 2 == 0 else "bottom", **_details(b)}
                         for k, b in enumerate(placed)])


def _extent(placed: list[Box]) -> tuple[float, float]:
    """The drawing's left and right ends: its boxes and (about 6 px a letter) its labels."""
    ends = [(b.x + (b.width + b.depth) / 2 - 3.2 * n, b.x + (b.width + b.depth) / 2 + 3.2 * n)
            for b in placed for n in [max(map(len, b.caption.split("\n")))]]
    return (min(-PAD, *(e[0] for e in ends)) - 4,
            max(*(b.x + b.width + b.depth + PAD for b in placed), *(e[1] for e in ends)) + 4)


def network_chart(row: list[Box]) -> alt.LayerChart:
    """The boxes drawn to scale, labelled: a unit is a pixel (up to 1.5 for a short stack,
    text alike), and a stack wider than the page is broken into rows."""
    above = max(b.height / 2 + b.depth for b in row) + 6
    below = max(b.height / 2 for b in row) + 6
    # Rows leave room for the labels that overhang the boxes at either end.
    placed = wrap(row, WIDTH - 2 * LABEL_ROOM, above + below + 6 * LINE + PAD)
    details = {b.index: _details(b) for b in placed}
    shapes = pd.DataFrame([{**r, **details[r["layer"]]} for r in faces(placed)])
    x0, x1 = _extent(placed)
    zoom = min(1.5, max(1.0, WIDTH / (x1 - x0)))    # both axes alike: boxes keep their shape
    y0, y1 = placed[-1].y - below - 3 * LINE - PAD, above + 3 * LINE
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[x0, x1], nice=False, zero=False))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[y0, y1], nice=False, zero=False))
    tooltip = [alt.Tooltip("name:N", title="layer"), "type:N", "output shape:N", "params:N",
               "MACs:N"]
    solid = alt.Chart(shapes).mark_area(stroke="#333333", strokeWidth=0.6, opacity=1).encode(
        x=x, y=y, y2="y2:Q", detail="face:N", color=alt.Color("colour:N", scale=None),
        tooltip=tooltip)
    labels = _labels(placed, above, below)
    text = [alt.Chart(labels[labels["baseline"] == where]).mark_text(
        baseline=where, lineBreak="\n", fontSize=round(10 * zoom, 1),
        lineHeight=LINE * zoom).encode(
        x=x, y=y, text="caption:N", tooltip=tooltip) for where in ("top", "bottom")]
    return alt.layer(solid, *text).properties(
        width=round(zoom * (x1 - x0)), height=round(zoom * (y1 - y0))
    ).configure_view(stroke=None)


@st.cache_data(max_entries=64, show_spinner=False)
def network_spec(spec_json: str) -> dict:
    """The network chart of a (valid) spec as a Vega-Lite spec, made once per spec: Altair
    spends about 0.1 s of the server's CPU building and validating it otherwise, on
    every view of the Models and Builder pages."""
    return arrow_datasets(network_chart(boxes(ModelSpec.from_json(spec_json))).to_dict())


@st.cache_data(max_entries=64, show_spinner=False)
def network_file(spec_json: str, fmt: str) -> bytes:
    """The picture of a spec as PNG (twice the pixels, for sharp print) or SVG bytes."""
    chart = network_chart(boxes(ModelSpec.from_json(spec_json)))
    out = io.BytesIO() if fmt == "png" else io.StringIO()
    chart.save(out, format=fmt, **({"scale_factor": 2} if fmt == "png" else {}))
    value = out.getvalue()
    return value if isinstance(value, bytes) else value.encode("utf-8")


def show_network(spec: ModelSpec, key: str) -> None:
    """The stack drawn as boxes sized by each layer's output, with PNG and SVG downloads;
    a stack that does not hold together is refused with its sentence."""
    spec_json = spec.to_json()
    try:
        chart = network_spec(spec_json)
    except LayerLabError as err:
        st.caption(f"The picture appears once the stack is valid: {err}")
        return
    st.vega_lite_chart(spec=chart, width="content", key=f"{key}_chart")
    st.caption("Each box is one layer's output: height follows the map size (or a vector's "
               "length), thickness the channels, slant the map width, on a log scale.")
    cols = st.columns(2)
    for col, fmt in zip(cols, FORMATS):
        col.download_button(
            f"Download the picture ({fmt.upper()})", lambda f=fmt: network_file(spec_json, f),
            file_name=f"{spec.name}_network.{fmt}", mime=FORMATS[fmt], key=f"{key}_{fmt}",
            on_click="ignore")
