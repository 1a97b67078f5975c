"""The embedding methods: PCA, t-SNE and UMAP of a feature matrix, and a score for a map.

Plain functions of ``features`` (N, D) float32. PCA is scikit-learn's; t-SNE is
openTSNE's FFT-accelerated implementation with a shortened schedule (see
:data:`TSNE_SCHEDULE`); UMAP is umap-learn's. openTSNE and umap-learn are slow to import
and are imported only when used: the server runs them in its embedding process
(:mod:`core.embedding_worker`), which needs nothing else from Layer Lab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

PCA_DIMS = 50                      # t-SNE and UMAP run on the first 50 principal components
# openTSNE: 125 early-exaggeration + 250 normal iterations instead of 250 + 500. On the
# 10k test set this keeps the 10-NN accuracy of the default schedule (bench/) at about a
# third of its time; FFT gradients and Annoy neighbours make each iteration cheap.
TSNE_SCHEDULE = {"early_exaggeration_iter": 125, "n_iter": 250}

Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """The default progress callback: ignore.

    >>> no_progress(0.5, "halfway")
    """


@dataclass(frozen=True)
class LinearReduction:
    """A fitted PCA kept as plain arrays: ``(x - mean) @ components.T``."""

    mean: np.ndarray
    components: np.ndarray          # (k, D)
    explained_variance_ratio: np.ndarray

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Project ``features`` (N, D) onto the components: float32 (N, k)."""
        return ((np.asarray(features, np.float32) - self.mean) @ self.components.T
                ).astype(np.float32)


def fit_pca(features: np.ndarray, n_components: int = PCA_DIMS,
            seed: int = 0) -> LinearReduction:
    """Principal components of ``features`` (at most ``n_components``).

    >>> x = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    >>> red = fit_pca(x, n_components=3)
    >>> red.components.shape, red.apply(x).shape, bool(red.explained_variance_ratio[0] < 1)
    ((3, 5), (100, 3), True)
    """
    from sklearn.decomposition import PCA  # noqa: PLC0415

    k = int(min(n_components, features.shape[0], features.shape[1]))
    pca = PCA(n_components=k, random_state=seed).fit(features)
    return LinearReduction(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                           pca.explained_variance_ratio_.astype(np.float64))


def pca_embedding(features: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components and the explained-variance ratios of up to 50.

    >>> x = np.random.default_rng(0).normal(size=(100, 1)).astype(np.float32)
    >>> coords, ratios = pca_embedding(x)          # one dimension: padded to two
    >>> coords.shape, ratios.tolist()
    ((100, 2), [1.0])
    """
    red = fit_pca(features, PCA_DIMS, seed)
    coords = red.apply(features)
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords[:, :2].copy(), red.explained_variance_ratio


def tsne_embedding(features: np.ndarray, perplexity: float = 30.0, seed: int = 0,
                   progress: Progress = no_progress, n_jobs: int = -1,
                   schedule: dict[str, int] | None = None) -> np.ndarray:
    """openTSNE (FFT gradients) on ``features``; ``schedule`` overrides the iterations."""
    import openTSNE  # noqa: PLC0415 - slow to import, only when used

    sched = dict(TSNE_SCHEDULE if schedule is None else schedule)
    total = sched.get("early_exaggeration_iter", 250) + sched.get("n_iter", 500)
    done = 0

    def report(iteration: int, error: float, embedding: Any) -> bool:
        nonlocal done
        done += 25
        progress(0.15 + 0.8 * min(done / total, 1.0),
                 f"t-SNE: iteration {min(done, total)} of {total}")
        return False

    progress(0.12, "t-SNE: finding nearest neighbours")
    tsne = openTSNE.TSNE(perplexity=perplexity, random_state=seed, n_jobs=n_jobs,
                         negative_gradient_method="fft", callbacks=report,
                         callbacks_every_iters=25, verbose=False, **sched)
    return np.asarray(tsne.fit(np.asarray(features, np.float32)), dtype=np.float32)


def fit_umap(features: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1,
             seed: int = 0):
    """A fitted ``umap.UMAP`` (seeded, hence deterministic and single-threaded)."""
    import warnings  # noqa: PLC0415

    import umap  # noqa: PLC0415 - slow to import (numba), only when used

    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                        n_components=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "n_jobs overridden by random_state"
        reducer.fit(np.asarray(features, np.float32))
    return reducer


def knn_accuracy(embedding: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out accuracy of a ``k``-nearest-neighbour vote in the embedding.

    >>> emb = np.array([[0, 0], [0, 1], [1, 0], [9, 9], [9, 8], [8, 9]], np.float32)
    >>> knn_accuracy(emb, np.array([0, 0, 0, 1, 1, 1]), k=2)
    1.0
    """
    from sklearn.neighbors import NearestNeighbors  # noqa: PLC0415

    labels = np.asarray(labels)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    idx = nn.kneighbors(embedding, return_distance=False)[:, 1:]
    votes = np.zeros((len(labels), int(labels.max()) + 1), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(labels)), k), labels[idx].ravel()), 1)
    return float((votes.argmax(axis=1) == labels).mean())
