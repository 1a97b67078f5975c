"""View pieces shared by the pages: the confusion-matrix chart, the layer table and the
grid of MNIST digits. Each page draws them with its own widget keys."""
from __future__ import annotations

import hashlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.evaluation import row_normalise
from core.imaging import tile_grid
from core.stats import LayerRow, human_bytes, shape_text

CELL = "cell"            # the confusion chart's click selection (``selection_mode=[CELL]``)


def frame_key(frame: pd.DataFrame) -> str:
    """A digest of a small DataFrame's content, as the key of a chart cached per content.

    ``st.cache_data`` hashes a DataFrame argument with pandas' row hashing, about 1.5 ms
    a call for a chart's few hundred rows, and four charts redrawn at every view of
    Models and Compare paid it (a profile under a class's load put it at a sixth of the
    server's samples; a quiet warm view went from 19 to 18 ms of CPU without it). Pickling
    the frame and hashing the bytes takes about 0.07 ms. Equal content gives equal keys;
    a frame built differently may give another key, which only costs one more build.

    >>> a = pd.DataFrame({"run": ["x", "y"], "epoch": [1.0, 2.0]})
    >>> frame_key(a) == frame_key(a.copy()), frame_key(a) == frame_key(a.assign(epoch=3.0))
    (True, False)
    """
    return hashlib.sha1(pickle.dumps(frame, protocol=5)).hexdigest()


ARROW_KEPT = 256                    # tables kept by arrow_table, the newest first
_arrow_tables: OrderedDict[str, Any] = OrderedDict()
_arrow_lock = threading.Lock()


def arrow_table(frame: pd.DataFrame) -> Any:
    """``frame`` as a pyarrow Table for ``st.dataframe``, converted once per content
    (:func:`frame_key`; the newest :data:`ARROW_KEPT` are kept). Given a pandas frame,
    Streamlit converts it at every view through pandas' column access: about 1.2 ms for
    a layer table on a quiet server, and under a class's load the conversions were a
    third of the Compare page's time holding the interpreter lock (py-spy --gil); a
    Table it only serialises. A frame Arrow cannot take as it is comes back unchanged,
    for Streamlit's own fallback.

    >>> table = arrow_table(pd.DataFrame({"layer": ["conv"], "params": [320]}))
    >>> table.column_names, table.num_rows, arrow_table(pd.DataFrame({"a": [1]})) is not table
    (['layer', 'params'], 1, True)
    """
    import pyarrow as pa  # noqa: PLC0415

    key = frame_key(frame)
    with _arrow_lock:
        if key in _arrow_tables:
            _arrow_tables.move_to_end(key)
            return _arrow_tables[key]
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, OverflowError):
        return frame
    with _arrow_lock:
        _arrow_tables[key] = table
        while len(_arrow_tables) > ARROW_KEPT:
            _arrow_tables.popitem(last=False)
    return table


def arrow_datasets(spec: dict) -> dict:
    """``spec`` (a Vega-Lite dict from Altair) with each named dataset already as Arrow
    IPC bytes, the very bytes ``st.vega_lite_chart`` would make from the records at every
    call (it passes bytes through). Done once inside a cached spec, it takes the largest
    share of a chart's server CPU off each page view: under a class's load the conversion
    was about a tenth of all the server's page work (bench/load_bench.py).

    >>> s = arrow_datasets({"data": {"name": "d"}, "datasets": {"d": [{"a": 1}]}})
    >>> isinstance(s["datasets"]["d"], bytes), s["data"]
    (True, {'name': 'd'})
    """
    from streamlit import dataframe_util

    out = dict(spec)
    if "datasets" in out:
        out["datasets"] = {name: rows if isinstance(rows, bytes)
                           else dataframe_util.convert_anything_to_arrow_bytes(rows)
                           for name, rows in out["datasets"].items()}
    return out


def confusion_chart(cm: np.ndarray, *, normalised: bool = False, diff: bool = False,
                    selectable: bool = False, height: int = 420) -> alt.LayerChart:
    """Rows = true class, columns = predicted class, each cell labelled with its value.

    ``normalised`` shows each row's shares; ``diff`` takes a B − A difference matrix and
    shows it on a diverging scale symmetric about 0 (as dark for +n as for −n) with the
    diagonal (correct answers) left blank;
    ``selectable`` lets a click pick a cell (selection :data:`CELL`, fields ``true`` and
    ``predicted``).
    """
    cm = np.asarray(cm)
    values = row_normalise(cm) if normalised else cm.astype(np.float64)
    if diff:
        values = values * (1 - np.eye(len(cm)))
    n = len(cm)
    df = pd.DataFrame([(t, p, int(cm[t, p]), float(values[t, p]))
                       for t in range(n) for p in range(n)],
                      columns=["true", "predicted", "count", "value"])
    if normalised:
        df["text"] = df["value"].map(lambda v: f"{v:.1%}" if v >= 0.0005 else "")
    elif diff:
        df["text"] = df["value"].map(lambda v: f"{int(v):+d}" if v else "")
    else:
        df["text"] = df["count"].map(lambda c: str(c) if c else "")
    top = float(np.abs(values).max()) or 1.0
    df["dark"] = np.abs(df["value"]) >= (0.6 if diff else 0.35) * top
    if diff:
        # symmetric about 0, so +9 is as pale as −9 is (not as dark as the worst −87)
        colour = alt.Color("value:Q", title="B − A", scale=alt.Scale(
            scheme="redblue", reverse=True, domain=[-top, top]))
    else:
        colour = alt.Color("value:Q", title="share of row" if normalised else "images",
                           scale=alt.Scale(scheme="blues",
                                           type="linear" if normalised else "symlog"))
    base = alt.Chart(df).encode(
        x=alt.X("predicted:O", title="predicted class (columns)",
                axis=alt.Axis(orient="top", labelAngle=0)),
        y=alt.Y("true:O", title="true class (rows)"))
    tips = [alt.Tooltip("true:O", title="true"), alt.Tooltip("predicted:O", title="predicted"),
            alt.Tooltip("value:Q", title="B − A") if diff
            else alt.Tooltip("count:Q", title="images")]
    if normalised:
        tips.append(alt.Tooltip("value:Q", title="share of row", format=".2%"))
    rect = base.mark_rect(stroke="white").encode(color=colour, tooltip=tips)
    if selectable:
        cell = alt.selection_point(name=CELL, fields=["true", "predicted"], on="click",
                                   clear="dblclick")
        rect = rect.encode(opacity=alt.condition(cell, alt.value(1.0), alt.value(0.6)))
        rect = rect.add_params(cell)
    text = base.mark_text(fontSize=11).encode(
        text="text:N",
        color=alt.condition("datum.dark", alt.value("white"), alt.value("black")))
    return (rect + text).properties(height=height)


@st.cache_data(max_entries=64, show_spinner=False)
def confusion_spec(cm: np.ndarray, *, normalised: bool = False, diff: bool = False,
                   selectable: bool = False, height: int = 420) -> dict:
    """:func:`confusion_chart` as a Vega-Lite spec for ``st.vega_lite_chart``, made once
    per matrix: Altair spends about 0.05 s of the server's CPU building and validating
    the chart, on every page view of every session otherwise."""
    return arrow_datasets(confusion_chart(cm, normalised=normalised, diff=diff,
                                          selectable=selectable, height=height).to_dict())


@st.cache_data(max_entries=1024, show_spinner=False)
def test_digit_url(index: int, size: int = 84) -> str:
    """Test image ``index`` enlarged to ``size`` pixels as a PNG ``data:`` URL, made once
    per server: a gallery shows two dozen on every view, and ``st.image`` passes a URL on
    untouched, where it would open PNG bytes again and re-encode them as JPEG (a PNG
    without alpha counts as a photo) each time (most of the Errors page's CPU under load)."""
    from core.analysis import png_data_url
    from core.imaging import enlarge
    from pages.common import mnist

    return png_data_url(enlarge(mnist().x_test[index], size))


DIGIT = "digit"          # a gallery chart's click selection (field ``index``)
GALLERY_COLS, GALLERY_W, GALLERY_H = 4, 136, 124     # 4 a row: whole in a 1024 px window


def gallery_frame(indices: Sequence[int], tops: Sequence[str], lines: Sequence[str],
                  urls: Sequence[str], cols: int = GALLERY_COLS) -> pd.DataFrame:
    """One row per digit of a gallery chart: its test index, picture, two caption lines
    and its place in pixels (``x`` the centre, ``y`` the top), ``cols`` to a row.

    >>> gallery_frame([7, 9], ["a", "b"], ["c", "d"], ["u", "v"], cols=1)[["index", "x", "y"]]
       index   x    y
    0      7  68    0
    1      9  68  124
    """
    n = np.arange(len(indices))
    return pd.DataFrame({"index": list(indices), "url": list(urls), "top": list(tops),
                         "probs": list(lines), "x": (n % cols) * GALLERY_W + GALLERY_W // 2,
                         "y": (n // cols) * GALLERY_H})


def gallery_chart(frame: pd.DataFrame, size: int = 84,
                  cols: int = GALLERY_COLS) -> alt.LayerChart:
    """Digits laid out in a grid, each with its two caption lines; a click selects one
    (selection :data:`DIGIT`, field ``index``). One chart, where a grid of pictures and
    buttons took two elements a digit on every page view."""
    rows = max(1, -(-len(frame) // cols))
    place = {"x": alt.X("x:Q", scale=None, axis=None),
             "y": alt.Y("y:Q", scale=None, axis=None)}
    digit = alt.selection_point(name=DIGIT, fields=["index"], on="click", clear=False)
    # (a tooltip titled "image" would be drawn as a picture by Vega's tooltip)
    tips = [alt.Tooltip("top:N", title="test digit"), alt.Tooltip("probs:N", title="read as")]
    pictures = alt.Chart(frame).mark_image(
        width=size, height=size, align="center", baseline="top", cursor="pointer",
    ).encode(url="url:N", tooltip=tips, **place).add_params(digit)
    captions = [alt.Chart(frame).transform_calculate(y=f"datum.y + {size + dy}")
                .mark_text(fontSize=11, baseline="middle").encode(text=f"{field}:N", **place)
                for field, dy in (("top", 10), ("probs", 24))]
    return alt.layer(pictures, *captions).properties(
        width=cols * GALLERY_W, height=rows * GALLERY_H).configure_view(strokeWidth=0)


@st.cache_data(max_entries=256, show_spinner=False)
def gallery_spec(indices: tuple[int, ...], tops: tuple[str, ...],
                 lines: tuple[str, ...]) -> dict:
    """:func:`gallery_chart` of test images as a Vega-Lite spec, made once per content."""
    urls = [test_digit_url(i, 84) for i in indices]
    return arrow_datasets(gallery_chart(gallery_frame(indices, tops, lines, urls)).to_dict())


# -- the layer table ---------------------------------------------------------------------
LAYER_COLUMNS: dict[str, Callable[[LayerRow], object]] = {
    "#": lambda r: r.index,
    "layer": lambda r: r.name,
    "type": lambda r: r.layer,
    "output shape": lambda r: shape_text(r.output_shape),
    "params": lambda r: r.params,
    "trainable": lambda r: r.trainable,
    "non-trainable": lambda r: r.non_trainable,
    "MACs": lambda r: r.macs,
    "activations": lambda r: r.activations,
    "weights fp32": lambda r: human_bytes(r.weight_bytes_fp32),
    "activation memory": lambda r: human_bytes(4 * r.activations),
}
_COUNTS = ("params", "trainable", "non-trainable", "MACs", "activations")


def layer_table(rows: Sequence[LayerRow], columns: Sequence[str]) -> pd.DataFrame:
    """One row per layer (``core.stats.summarize``) with the named columns, in order."""
    return pd.DataFrame([{c: LAYER_COLUMNS[c](r) for c in columns} for r in rows],
                        columns=list(columns))


def show_layer_table(table: pd.DataFrame, key: str) -> None:
    """A :func:`layer_table`, counts with thousands separators."""
    config = {c: st.column_config.NumberColumn(format="localized")
              for c in _COUNTS if c in table}
    # wide enough for "BatchNormalization" and "GlobalAveragePooling2D" in full
    config["type"] = st.column_config.TextColumn(width="medium")
    st.dataframe(arrow_table(table), hide_index=True, width="stretch", key=key,
                 column_config=config)


# -- images ------------------------------------------------------------------------------
def digit_grid(images: np.ndarray, cols: int = 8, pad: int = 2) -> np.ndarray:
    """Gray uint8 digits (N, 28, 28) -> one RGB grid image, row by row, ``pad`` px apart
    on white (one digit gives that digit in RGB)."""
    gray = np.asarray(images, np.uint8)
    return tile_grid(np.repeat(gray[..., None], 3, axis=-1), cols=cols, pad=pad)
