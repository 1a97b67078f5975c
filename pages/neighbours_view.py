"""The Projections page's nearest neighbours: of a clicked point (or a typed image #) or of
the drawn digit, searched in the features the map was made from (core.neighbours), listed
with thumbnails, labels and distances, and ringed on the map."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import png_data_url
from core.imaging import enlarge
from core.neighbours import K, NeighbourIndex, map_position

PICK = "pick"                       # the map's point selection (a click on a dot)
IMAGE_KEY = "proj_nn_image"         # the image # whose neighbours are listed
DRAWN_KEY = "proj_nn_drawn"         # list the drawn digit's neighbours instead
LAST_CLICK = "proj_nn_last_click"   # the click already applied (a new one wins once)
THUMB_PX = 56                       # thumbnails at twice MNIST's size, readable


def thumbnail(image: np.ndarray) -> str:
    """A digit as a PNG data URL at :data:`THUMB_PX` pixels (28×28 is too small to read)."""
    return png_data_url(enlarge(np.asarray(image, np.uint8), THUMB_PX))


def clicked_index(chart_state) -> int | None:
    """The split image # of the dot clicked on the map, from the chart's selection state."""
    try:
        picked = (chart_state or {}).get("selection", {}).get(PICK) or []
        return int(picked[0]["index"]) if picked else None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Query:
    """Whose neighbours: map position ``position`` or the drawn digit (``drawn`` set)."""

    position: int | None = None
    drawn: np.ndarray | None = None

    def key(self) -> str:
        if self.drawn is not None:
            return "drawn:" + hashlib.sha1(np.asarray(self.drawn, np.uint8).tobytes()).hexdigest()
        return f"point:{self.position}"


def choose(chart_state, indices: np.ndarray, split: str, drawn) -> Query | None:
    """Controls above the map: an image # (a click on a dot fills it in) and, when a
    digit is drawn, a toggle for its neighbours. Returns the query or None."""
    click = clicked_index(chart_state)
    if click is not None and click != st.session_state.get(LAST_CLICK):
        st.session_state[IMAGE_KEY] = click         # before the widget: a click wins once
        st.session_state[DRAWN_KEY] = False
    st.session_state[LAST_CLICK] = click
    c = st.columns([2, 3])
    number = c[0].number_input(
        f"Nearest neighbours of {split} image #", 0, 59999, value=None, step=1,
        key=IMAGE_KEY, placeholder="click a dot",
        help=f"Click a dot on the map, or type the number of an image on it: its {K} "
             f"nearest neighbours are listed below and ringed on the map.")
    use_drawn = drawn is not None and c[1].toggle(
        "Neighbours of my drawn digit", key=DRAWN_KEY,
        help="The digit on the Draw & inspect page, compared with the map's images.")
    if use_drawn:
        return Query(drawn=np.asarray(drawn, np.uint8))
    if number is None:
        return None
    position = map_position(indices, int(number))
    if position is None:
        c[1].warning(f"{split.capitalize()} image #{int(number)} is not on this map: click "
                     f"a dot or type a number from a dot's tooltip.")
        return None
    return Query(position=position)


@st.cache_resource(show_spinner="Computing the features the map was made from…",
                   max_entries=2)
def neighbour_index(map_key: str, _images: np.ndarray, _indices: np.ndarray, _model,
                    layer: str | None, dim: int) -> NeighbourIndex:
    """One index per map (``map_key`` names the images, the model's weights and layer)."""
    return NeighbourIndex.build(_images, _indices, _model, layer, dim)


@st.cache_data(show_spinner="Finding the nearest neighbours…", max_entries=64)
def search(map_key: str, query_key: str, _query: Query, _index: NeighbourIndex,
           _model) -> tuple[np.ndarray, np.ndarray]:
    if _query.drawn is not None:
        return _index.of_image(_query.drawn, _model)
    return _index.of_point(_query.position, _model)


def find(query: Query, map_key: str, proj, images: np.ndarray, model,
         layer: str | None) -> pd.DataFrame:
    """The neighbours as rows: rank, map position, image #, digit, distance, thumbnail."""
    index = neighbour_index(map_key, images, proj.indices, model, layer, proj.feature_dim)
    pos, dist = search(map_key, query.key(), query, index, model)
    split_idx = proj.indices[pos].astype(int)
    hits = pd.DataFrame({
        "rank": np.arange(1, len(pos) + 1), "position": pos, "index": split_idx,
        "digit": proj.labels[pos].astype(int).astype(str), "distance": dist,
        "image": [thumbnail(images[i]) for i in split_idx],
        "x": proj.embedding[pos, 0], "y": proj.embedding[pos, 1]})
    if query.position is not None:
        hits.attrs["query_index"] = int(proj.indices[query.position])
        hits.attrs["query_xy"] = tuple(float(v) for v in proj.embedding[query.position])
    return hits


def rings(hits: pd.DataFrame, query_xy: tuple[float, float] | None) -> alt.Chart:
    """The neighbours ringed on the map (and the queried dot crossed), as a second layer."""
    tip = ["image", alt.Tooltip("rank:Q", title="neighbour"),
           alt.Tooltip("digit:N", title="true digit"),
           alt.Tooltip("distance:Q", title="distance", format=".3f")]
    layer = alt.Chart(hits).mark_point(size=260, strokeWidth=2.5, color="black",
                                       filled=False).encode(x="x:Q", y="y:Q", tooltip=tip)
    if query_xy is None:
        return layer
    cross = alt.Chart(pd.DataFrame({"x": [query_xy[0]], "y": [query_xy[1]],
                                    "what": ["the chosen image"]})).mark_point(
        shape="cross", size=320, filled=True, color="black", stroke="white",
        strokeWidth=1).encode(x="x:Q", y="y:Q", tooltip=["what"])
    return layer + cross


def show(hits: pd.DataFrame, query: Query, split: str, source: str,
         images: np.ndarray) -> None:
    """The list under the map: thumbnails, labels and distances, nearest first."""
    who = ("your drawn digit" if query.drawn is not None
           else f"{split} image #{hits.attrs['query_index']}")
    st.subheader(f"The {len(hits)} nearest neighbours of {who}")
    left, right = st.columns([1, 5])
    with left:
        me = query.drawn if query.drawn is not None else images[hits.attrs["query_index"]]
        st.image(enlarge(np.asarray(me, np.uint8), 112), width=112, caption=who)
    with right:
        st.caption(f"Searched in {source}, the features the map was made from (not the "
                   f"2-D layout, which distorts distances); Euclidean distance.")
        st.dataframe(hits[["rank", "image", "index", "digit", "distance"]],
                     key="proj_nn_table", hide_index=True, row_height=THUMB_PX + 4,
                     height=(len(hits) + 1) * (THUMB_PX + 4) + 3,    # all ten, no scroll
                     column_config={
                         "rank": st.column_config.NumberColumn("#", width="small"),
                         "image": st.column_config.ImageColumn("image", width="small"),
                         "index": st.column_config.NumberColumn(f"{split} image #",
                                                                format="%d"),
                         "digit": st.column_config.TextColumn("true digit"),
                         "distance": st.column_config.NumberColumn("distance",
                                                                   format="%.3f")})


@st.cache_data(show_spinner="Three principal components…", max_entries=4)
def coords_3d(map_key: str, _index: NeighbourIndex, seed: int) -> np.ndarray:
    from core.projections import pca_3d

    return pca_3d(_index.features, seed)


def show_3d(map_key: str, proj, images: np.ndarray, model, layer: str | None,
            hits: pd.DataFrame | None) -> None:
    """A rotatable 3-D PCA of the same points (plotly), the neighbours ringed."""
    import plotly.graph_objects as go

    index = neighbour_index(map_key, images, proj.indices, model, layer, proj.feature_dim)
    if index.features is None:
        st.info("This source is too large to keep in memory for a 3-D view; choose fewer "
                "points or a smaller layer.")
        return
    xyz = coords_3d(map_key, index, proj.request.seed)
    fig = go.Figure()
    for d in range(10):
        m = proj.labels == d
        fig.add_trace(go.Scatter3d(
            x=xyz[m, 0], y=xyz[m, 1], z=xyz[m, 2], mode="markers", name=str(d),
            marker={"size": 2.5, "opacity": 0.7}, customdata=proj.indices[m],
            hovertemplate=f"true digit {d}<br>image #%{{customdata}}<extra></extra>"))
    if hits is not None:
        pos = hits["position"].to_numpy()
        fig.add_trace(go.Scatter3d(
            x=xyz[pos, 0], y=xyz[pos, 1], z=xyz[pos, 2], mode="markers",
            name="neighbours", marker={"size": 7, "color": "rgba(0,0,0,0)",
                                       "line": {"color": "black", "width": 3}}))
    fig.update_layout(height=600, margin={"l": 0, "r": 0, "t": 0, "b": 0},
                      legend={"title": {"text": "true digit"}},
                      scene={"xaxis_title": "PC1", "yaxis_title": "PC2",
                             "zaxis_title": "PC3"})
    st.plotly_chart(fig, key="proj_3d_chart", width="stretch")
    st.caption("Drag to rotate, scroll to zoom. The first three principal components of "
               "the same source; the neighbours (searched in all its dimensions) are ringed.")
