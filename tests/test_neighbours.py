"""Nearest neighbours on the maps (issue 16 §4): the exact search in core.neighbours, and
the Projections page listing and ringing a point's 10 neighbours."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from core.neighbours import (NeighbourIndex, block_distances, map_position, nearest,
                             streamed_distances, top_k)



def brute_force(features: np.ndarray, query: np.ndarray, k: int, exclude=None):
    """Sorted by (distance, position), one Python loop: the reference."""
    rows = [(float(np.sqrt(((f.astype(np.float64) - query) ** 2).sum())), i)
            for i, f in enumerate(features) if i != exclude]
    rows.sort()
    return [i for _, i in rows[:k]], [d for d, _ in rows[:k]]


def test_search_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    feats = rng.integers(0, 3, size=(500, 6)).astype(np.float32)   # many exact ties
    for q in (0, 17, 499):
        pos, dist = nearest(feats, feats[q], k=10, exclude=q)
        want_pos, want_dist = brute_force(feats, feats[q].astype(np.float64), 10, q)
        assert pos.tolist() == want_pos
        np.testing.assert_allclose(dist, want_dist, rtol=0, atol=1e-12)


def test_point_excluded_distances_sorted_and_duplicates_kept():
    feats = np.array([[0, 0], [0, 0], [3, 4], [1, 0], [0, 0]], np.float32)
    pos, dist = nearest(feats, feats[0], k=4, exclude=0)
    assert 0 not in pos.tolist()
    assert pos.tolist() == [1, 4, 3, 2]                 # exact duplicates first, in order
    assert np.all(np.diff(dist) >= 0) and dist[0] == 0.0
    assert len(top_k(np.arange(3.0), k=10, exclude=1)[0]) == 2


def test_streamed_distances_equal_whole_and_shapes_checked():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(1234, 9))
    q = rng.normal(size=9)
    blocks = (feats[i:i + 100] for i in range(0, len(feats), 100))
    np.testing.assert_array_equal(streamed_distances(blocks, q), block_distances(feats, q))
    with pytest.raises(ValueError):
        block_distances(feats, np.zeros(3))


def test_map_position():
    idx = np.array([2, 5, 11])
    assert [map_position(idx, i) for i in (2, 5, 11, 0, 6, 12)] == [0, 1, 2, None, None, None]


def test_pixel_neighbours_come_from_pixels_not_the_2d_map(mnist, tmp_path):
    from core.projections import ProjectionRequest, compute_projection, pixel_features

    proj = compute_projection(ProjectionRequest("pca", n_points=1000), mnist.x_test,
                              mnist.y_test, cache_dir=tmp_path)
    index = NeighbourIndex.build(mnist.x_test, proj.indices)
    feats = pixel_features(mnist.x_test[proj.indices])
    differs = 0
    for q in (0, 100, 999):
        pos, dist = index.of_point(q)
        want, want_d = brute_force(feats, feats[q].astype(np.float64), 10, q)
        assert pos.tolist() == want and q not in pos.tolist()
        np.testing.assert_allclose(dist, want_d, rtol=1e-6)
        in_2d = nearest(proj.embedding, proj.embedding[q], k=10, exclude=q)[0]
        differs += set(pos.tolist()) != set(in_2d.tolist())
    assert differs == 3                      # the 2-D layout would list other images


def test_layer_neighbours_kept_and_streamed_agree(tiny_trained, mnist):
    from core.projections import layer_features

    _, model = tiny_trained
    idx = np.arange(0, 3000, 3)
    kept = NeighbourIndex.build(mnist.x_test, idx, model, "dense1", 32)
    streamed = NeighbourIndex.build(mnist.x_test, idx, model, "dense1", 32, max_bytes=0)
    assert kept.features is not None and streamed.features is None
    feats = layer_features(model, "dense1", mnist.x_test[idx])
    for q in (0, 500):
        want, _ = brute_force(feats, feats[q].astype(np.float64), 10, q)
        assert kept.of_point(q)[0].tolist() == want
        assert streamed.of_point(q, model)[0].tolist() == want
    drawn = mnist.x_test[idx[7]]
    pos, dist = kept.of_image(drawn, model)
    assert pos[0] == 7 and dist[0] == pytest.approx(0.0, abs=1e-5)   # itself, not excluded


# -- the page --------------------------------------------------------------------------------

def png_side(url: str) -> tuple[int, int]:
    from PIL import Image

    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data))).size


def chart_rows(at) -> list[dict]:
    """Every data row of the map (Streamlit sends each layer's data as Arrow)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    proto = at.get("vega_lite_chart")[0].proto
    return [row for ds in proto.datasets
            for row in convert_arrow_bytes_to_pandas_df(ds.data.data).to_dict("records")]


def neighbour_table(at):
    """The neighbours' table (the one with a distance column), or None."""
    return next((d.value for d in at.dataframe if "distance" in d.value.columns), None)


def test_clicked_index_reads_the_point_selection():
    from pages.neighbours_view import clicked_index

    assert clicked_index({"selection": {"pick": [{"index": 42}], "region": {}}}) == 42
    assert clicked_index({"selection": {"pick": []}}) is None
    assert clicked_index(None) is None and clicked_index({"selection": "junk"}) is None


def test_page_lists_and_rings_ten_neighbours(open_page, mnist):
    from core.projections import select_indices

    chosen = int(select_indices(mnist.y_test, 2000, 0)[5])
    at = open_page("projections", state={"proj_nn_image": chosen})
    assert not at.exception, at.exception
    table = neighbour_table(at)
    assert len(table) == 10 and chosen not in table["index"].tolist()
    assert (np.diff(table["distance"].to_numpy()) >= 0).all()
    assert all(png_side(u)[0] >= 56 for u in table["image"])
    assert any(f"test image #{chosen}" in s.value for s in at.subheader)
    rows = chart_rows(at)
    ringed = [r for r in rows if "rank" in r]
    assert sorted(r["index"] for r in ringed) == sorted(table["index"].tolist())
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert "pick" in [p["name"] for p in spec["params"]]


def test_tooltip_thumbnails_are_readable(open_page):
    at = open_page("projections")
    assert not at.exception, at.exception
    sides = {png_side(r["image"]) for r in chart_rows(at) if r.get("image")}
    assert sides and min(min(s) for s in sides) >= 56


def test_page_lists_the_drawn_digits_neighbours(open_page, mnist):
    from core.projections import select_indices

    on_map = int(select_indices(mnist.y_test, 2000, 0)[3])     # drawn: a copy of it
    at = open_page("projections",
                   state={"drawn_digit": mnist.x_test[on_map], "proj_nn_drawn": True})
    assert not at.exception, at.exception
    table = neighbour_table(at)
    assert len(table) == 10
    assert table["index"].iloc[0] == on_map and table["distance"].iloc[0] == pytest.approx(0)
    assert any("your drawn digit" in s.value for s in at.subheader)


def test_an_image_not_on_the_map_is_a_sentence(open_page, mnist):
    from core.projections import select_indices

    on_map = set(select_indices(mnist.y_test, 2000, 0).tolist())
    missing = next(i for i in range(10000) if i not in on_map)
    at = open_page("projections", state={"proj_nn_image": missing})
    assert not at.exception, at.exception
    assert any("is not on this map" in w.value for w in at.warning)
    assert neighbour_table(at) is None


def trace_len(values) -> int:
    """Points in a plotly trace axis (plain list, or plotly's base64 typed array)."""
    if isinstance(values, dict):
        return len(np.frombuffer(base64.b64decode(values["bdata"]), values["dtype"]))
    return len(values)


def test_pca_3d_view_rings_the_neighbours(open_page, mnist):
    from core.projections import select_indices

    chosen = int(select_indices(mnist.y_test, 2000, 0)[9])
    at = open_page("projections", state={"proj_nn_image": chosen, "proj_3d": True})
    assert not at.exception, at.exception
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = fig["data"]
    assert sum(trace_len(t["x"]) for t in traces if t["name"] != "neighbours") == 2000
    ringed = next(t for t in traces if t["name"] == "neighbours")
    assert trace_len(ringed["x"]) == trace_len(ringed["z"]) == 10


def test_page_searches_the_chosen_layer(open_page, tiny_trained, mnist):
    """With a model's layer as the source, the list comes from that layer's activations."""
    from core.projections import layer_features, select_indices
    from core.runs import Run, RunStore, new_run_id

    spec, model = tiny_trained
    ws = "1a7e4b0c" * 4
    run = Run(id=new_run_id(), name="tiny", spec=spec.to_dict(), recipe={}, workspace=ws,
              status="finished", epochs_done=1, test_accuracy=0.9)
    RunStore().save_run(run)
    RunStore().save_model(run.id, model)
    idx = select_indices(mnist.y_test, 2000, 0)
    at = open_page("projections", query={"ws": ws}, state={"proj_nn_image": int(idx[4])})
    at.selectbox(key="proj_model").set_value(f"tiny · run {run.id[-6:]}, 90.00%").run()
    assert not at.exception, at.exception
    feats = layer_features(model, "dense1", mnist.x_test[idx])
    _, want_d = brute_force(feats, feats[4].astype(np.float64), 10, 4)
    listed = neighbour_table(at)
    pos = np.searchsorted(idx, listed["index"].to_numpy())
    got_d = np.sqrt(((feats[pos].astype(np.float64) - feats[4]) ** 2).sum(axis=1))
    # the listed images are the layer's ten nearest (batching may swap exact near-ties)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-4)
    np.testing.assert_allclose(listed["distance"], want_d, rtol=1e-4)
    assert any("dense1 (32 values)" in c.value for c in at.caption)
