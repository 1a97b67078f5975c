"""core.embeddings called directly (the projection pipeline and its cache are in
tests/test_projections.py): PCA's reduction, a short seeded t-SNE, the k-NN score."""
from __future__ import annotations

import numpy as np
import pytest

from core.embeddings import PCA_DIMS, fit_pca, knn_accuracy, pca_embedding, tsne_embedding


def clusters(n_per: int = 60, dims: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs: (features, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(3, dims))
    labels = np.repeat(np.arange(3), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


def test_pca_is_capped_by_the_data_and_reconstructs_it():
    x, _ = clusters(dims=20)
    red = fit_pca(x)
    assert red.components.shape == (20, 20) and PCA_DIMS > 20
    back = red.apply(x) @ red.components + red.mean                # all components: lossless
    np.testing.assert_allclose(back, x, atol=1e-3)
    assert np.isclose(red.explained_variance_ratio.sum(), 1.0)
    assert (np.diff(red.explained_variance_ratio) <= 1e-12).all()


def test_pca_embedding_separates_the_clusters():
    x, labels = clusters()
    coords, ratios = pca_embedding(x)
    assert coords.shape == (len(x), 2) and coords.dtype == np.float32 and len(ratios) == 20
    assert knn_accuracy(coords, labels, k=5) == 1.0


def test_tsne_is_seeded_reports_progress_and_separates_the_clusters():
    x, labels = clusters()
    seen: list[float] = []
    schedule = {"early_exaggeration_iter": 50, "n_iter": 50}
    a = tsne_embedding(x, perplexity=15, seed=1, progress=lambda f, m: seen.append(f),
                       n_jobs=1, schedule=schedule)
    b = tsne_embedding(x, perplexity=15, seed=1, n_jobs=1, schedule=schedule)
    assert a.shape == (len(x), 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.95)   # the caller ends
    assert knn_accuracy(a, labels, k=5) == 1.0


def test_knn_accuracy_is_leave_one_out():
    emb = np.array([[0.0], [0.1], [5.0], [5.1]], np.float32)
    # each point's one neighbour is the other of its pair, never itself
    assert knn_accuracy(emb, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert knn_accuracy(emb, np.array([0, 1, 0, 1]), k=1) == 0.0
