"""Projections: shapes, determinism with a seed, the disk cache and its key, layer sources
and placing a new digit on a UMAP map. Small N throughout."""
from __future__ import annotations

import time

import numpy as np
import pytest

from core import projections as pj
from core.embedding_worker import WORKER
from core.embeddings import knn_accuracy
from core.errors import LayerLabError

N = 1000


@pytest.fixture(scope="module")
def tiny_model(tiny_trained):
    """A small CNN with a named penultimate Dense layer, trained for one epoch."""
    return tiny_trained[1]


def test_request_checks_are_sentences():
    with pytest.raises(LayerLabError, match="at least 1,000"):
        pj.ProjectionRequest(n_points=10).check()
    with pytest.raises(LayerLabError, match="UMAP only"):
        pj.ProjectionRequest(method="tsne", split="train").check()
    with pytest.raises(LayerLabError, match="perplexity"):
        pj.ProjectionRequest(method="tsne", perplexity=500).check()
    with pytest.raises(LayerLabError, match="10,000 images"):
        pj.ProjectionRequest(n_points=20000).check(10000)
    with pytest.raises(LayerLabError, match="model"):
        pj.ProjectionRequest(layer="dense1").check()


def test_key_changes_only_with_what_determines_the_map():
    base = pj.ProjectionRequest(method="pca", n_points=2000, seed=0)
    key = base.key("data")
    assert base.key("data") == key
    # PCA ignores t-SNE and UMAP parameters
    assert pj.ProjectionRequest(method="pca", n_points=2000, perplexity=5).key("data") == key
    for other in (pj.ProjectionRequest(method="pca", n_points=3000),
                  pj.ProjectionRequest(method="pca", n_points=2000, seed=1),
                  pj.ProjectionRequest(method="tsne", n_points=2000),
                  pj.ProjectionRequest(method="pca", n_points=2000, layer="d", model_id="m")):
        assert other.key("data") != key
    assert base.key("other data") != key
    t1 = pj.ProjectionRequest(method="tsne", perplexity=30)
    assert t1.key("d") != pj.ProjectionRequest(method="tsne", perplexity=20).key("d")
    u1 = pj.ProjectionRequest(method="umap", n_neighbors=15)
    assert u1.key("d") != pj.ProjectionRequest(method="umap", n_neighbors=30).key("d")
    assert u1.key("d") != pj.ProjectionRequest(method="umap", min_dist=0.5).key("d")
    # the test set's 10,000 points take umap-learn's large-data schedule: its own key
    assert pj.ProjectionRequest(method="umap", n_points=10000).determining()["n_epochs"] == 200
    a = pj.ProjectionRequest(method="pca", layer="d", model_id="m1")
    assert a.key("d") != pj.ProjectionRequest(method="pca", layer="d", model_id="m2").key("d")


def test_pca_shapes_cache_hit_and_determinism(mnist, tmp_path):
    req = pj.ProjectionRequest(method="pca", n_points=N, seed=3)
    proj = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    assert proj.embedding.shape == (N, 2) and proj.embedding.dtype == np.float32
    assert proj.indices.shape == (N,) and len(np.unique(proj.indices)) == N
    assert (proj.labels == mnist.y_test[proj.indices]).all()
    assert proj.feature_dim == 784 and not proj.from_cache
    ev = proj.explained_variance
    assert ev is not None and len(ev) == 50 and (np.diff(ev) <= 1e-9).all() and ev.sum() < 1
    assert len(list(tmp_path.glob("*.npz"))) == 1
    t0 = time.perf_counter()
    again = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 1.0
    assert again.from_cache and again.key == proj.key
    np.testing.assert_array_equal(again.embedding, proj.embedding)
    fresh = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path,
                                  use_cache=False)
    np.testing.assert_allclose(fresh.embedding, proj.embedding, atol=1e-4)
    other = pj.compute_projection(pj.ProjectionRequest(method="pca", n_points=N, seed=4),
                                  mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    assert other.key != proj.key and not (other.indices == proj.indices).all()
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_damaged_cache_file_is_recomputed(mnist, tmp_path):
    req = pj.ProjectionRequest(method="pca", n_points=N)
    proj = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    (tmp_path / f"{proj.key}.npz").write_bytes(b"not a zip")
    assert pj.load_projection(proj.key, tmp_path) is None
    again = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    assert not again.from_cache and again.embedding.shape == (N, 2)


def test_tsne_is_deterministic_and_separates_digits(mnist, tmp_path):
    req = pj.ProjectionRequest(method="tsne", n_points=N, seed=0, perplexity=20)
    seen = []
    a = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path,
                              progress=lambda f, m: seen.append(f))
    b = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path,
                              use_cache=False)
    assert a.embedding.shape == (N, 2)
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-3)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert knn_accuracy(a.embedding, a.labels) > 0.8


def test_umap_deterministic_and_places_a_digit(mnist, tmp_path):
    req = pj.ProjectionRequest(method="umap", n_points=N, seed=0, n_neighbors=10)
    a = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    b = pj.compute_projection(req, mnist.x_test, mnist.y_test, cache_dir=tmp_path,
                              use_cache=False)
    assert a.embedding.shape == (N, 2)
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-4)
    fitted = pj.fitted_map(a.key)
    assert fitted is not None
    # a training "7" lands among the test 7s of the map
    seven = mnist.x_train[np.flatnonzero(mnist.y_train == 7)[0]]
    xy = fitted.place(seven)
    assert xy.shape == (2,)
    d = np.linalg.norm(a.embedding - xy, axis=1)
    assert (a.labels[np.argsort(d)[:10]] == 7).mean() >= 0.6
    # the fits ran in the embedding process, not in this one
    import os
    import sys

    assert WORKER.alive and WORKER.pid != os.getpid()
    assert "umap" not in sys.modules
    WORKER.close()                          # its maps go with it
    assert pj.fitted_map(a.key) is None
    with pytest.raises(LayerLabError, match="no longer in memory"):
        fitted.place(seven)
    idx, dist = pj.nearest_images(mnist.x_train[:5000], seven, k=5)
    assert idx[0] == np.flatnonzero(mnist.y_train == 7)[0] and dist[0] == 0
    assert (np.diff(dist) >= 0).all()


def test_layer_source_has_the_layer_dimensionality(tiny_model, mnist, tmp_path):
    layers = dict(pj.feature_layers(tiny_model))
    assert layers == {"conv1": 13 * 13 * 8 * 0 + 26 * 26 * 8, "maxpool1": 13 * 13 * 8,
                      "flatten1": 1352, "dense1": 32, "dense2": 10}
    feats = pj.layer_features(tiny_model, "dense1", mnist.x_test[:1500], batch_size=1000)
    assert feats.shape == (1500, 32) and feats.dtype == np.float32
    req = pj.ProjectionRequest(method="pca", n_points=N, layer="dense1")
    proj = pj.compute_projection(req, mnist.x_test, mnist.y_test, tiny_model,
                                 cache_dir=tmp_path)
    assert proj.feature_dim == 32 and proj.embedding.shape == (N, 2)
    assert proj.request.model_id and len(proj.explained_variance) == 32
    pixels = pj.compute_projection(pj.ProjectionRequest(method="pca", n_points=N),
                                   mnist.x_test, mnist.y_test, cache_dir=tmp_path)
    assert pixels.key != proj.key
    # the penultimate layer separates classes better than raw pixels do in 2-D
    assert knn_accuracy(proj.embedding, proj.labels) > \
        knn_accuracy(pixels.embedding, pixels.labels)
    with pytest.raises(LayerLabError, match="no layer called"):
        pj.layer_features(tiny_model, "nope", mnist.x_test[:2])
    probs = pj.point_probabilities(tiny_model, mnist.x_test, mnist.y_test, proj.indices)
    assert probs.shape == (N, 10)


def test_points_in_box():
    emb = np.array([[0, 0], [1, 1], [2, 2], [1, 3]], np.float32)
    assert pj.points_in_box(emb, (0.5, 2.5), (0.5, 2.5)).tolist() == [1, 2]
    assert pj.points_in_box(emb, (2.5, 0.5), (3.5, 0)).tolist() == [1, 2, 3]
    assert pj.points_in_box(emb, (5, 6), (5, 6)).tolist() == []
