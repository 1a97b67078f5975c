"""The network drawn: the boxes of :mod:`core.diagram` as an Altair chart, with PNG and SVG
downloads (converted offline by vl-convert, the engine behind Altair's ``chart.save``)."""
from __future__ import annotations

import io

import altair as alt
import pandas as pd
import streamlit as st

from core.diagram import Box, boxes, faces
from core.errors import LayerLabError
from core.spec import ModelSpec, shape_text

PAD = 12            # pixels around the drawing
LINE = 13           # a label line's height in pixels
WIDTH = 900         # the page's width at 1,400 px: a stack is drawn larger or smaller to fit
FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def _details(b: Box) -> dict:
    """The tooltip fields of one box, numbers with thousands separators."""
    return {"name": b.name, "type": b.label, "output shape": shape_text(b.shape),
            "params": f"{b.params:,}", "MACs": f"{b.macs:,}"}


def _labels(placed: list[Box], bottom: float, top: float) -> pd.DataFrame:
    """One caption per box, alternately below and above the row so neighbours never meet.

    Vega anchors a caption's first line, so one above the row starts two lines higher."""
    return pd.DataFrame([{"x": b.x + (b.width + b.depth) / 2, "caption": b.caption,
                          "y": bottom if k % 2 == 0 else top + 2 * LINE,
                          "baseline": "top" if k % 2 == 0 else "bottom", **_details(b)}
                         for k, b in enumerate(placed)])


def network_chart(placed: list[Box]) -> alt.LayerChart:
    """The boxes drawn to scale, labelled: a unit is a pixel, zoomed (0.8 to 1.5, text
    alike) towards the page's width; a longer stack runs wider than the page."""
    details = {b.index: _details(b) for b in placed}
    shapes = pd.DataFrame([{**row, **details[row["layer"]]} for row in faces(placed)])
    bottom = float(shapes["y"].min()) - 6
    top = float(shapes["y2"].max()) + 6
    x0, x1 = -PAD, max(b.x + b.width + b.depth for b in placed) + 3 * PAD
    y0, y1 = bottom - 3 * LINE - PAD, top + 3 * LINE
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[x0, x1], nice=False, zero=False))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[y0, y1], nice=False, zero=False))
    zoom = min(1.5, max(0.8, WIDTH / (x1 - x0)))    # both axes alike: boxes keep their shape
    tooltip = [alt.Tooltip("name:N", title="layer"), "type:N", "output shape:N", "params:N",
               "MACs:N"]
    solid = alt.Chart(shapes).mark_area(stroke="#333333", strokeWidth=0.6, opacity=1).encode(
        x=x, y=y, y2="y2:Q", detail="face:N", color=alt.Color("colour:N", scale=None),
        tooltip=tooltip)
    labels = _labels(placed, bottom, top)
    text = [alt.Chart(labels[labels["baseline"] == where]).mark_text(
        baseline=where, lineBreak="\n", fontSize=round(10 * zoom, 1),
        lineHeight=LINE * zoom).encode(
        x=x, y=y, text="caption:N", tooltip=tooltip) for where in ("top", "bottom")]
    return alt.layer(solid, *text).properties(
        width=round(zoom * (x1 - x0)), height=round(zoom * (y1 - y0))
    ).configure_view(stroke=None)


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
    try:
        placed = boxes(spec)
    except LayerLabError as err:
        st.caption(f"The picture appears once the stack is valid: {err}")
        return
    st.altair_chart(network_chart(placed), width="content", key=f"{key}_chart")
    st.caption("Each box is one layer's output: height follows the map size (or a vector's "
               "length), thickness the channels, slant the map width, on a log scale.")
    spec_json = spec.to_json()
    cols = st.columns(2)
    for col, fmt in zip(cols, FORMATS):
        col.download_button(
            f"Download the picture ({fmt.upper()})", lambda f=fmt: network_file(spec_json, f),
            file_name=f"{spec.name}_network.{fmt}", mime=FORMATS[fmt], key=f"{key}_{fmt}",
            on_click="ignore")
