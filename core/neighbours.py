"""Exact nearest neighbours of a map's point, in the features the map was computed from.

A map's 2-D layout distorts distances (t-SNE and UMAP keep only local structure), so the
neighbours listed for a clicked point are searched in the source itself: the raw pixels
or the chosen layer's flattened activations, never in the 2-D embedding. The search is
exact (Euclidean, numpy, in blocks) on at most a map's points, and ties keep the map's
order, so the same click always lists the same images.

A :class:`NeighbourIndex` keeps a map's features in memory when they are small enough
(:data:`MAX_KEPT_BYTES`); a larger source (a wide conv layer on 60,000 images) is
recomputed block by block at each query instead of filling the server's memory.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from core.projections import source_features

K = 10                           # neighbours listed for a point
BLOCK = 2000                     # images per block when features are streamed
MAX_KEPT_BYTES = 128 * 2 ** 20   # a map's features kept in memory up to this size


def block_distances(features: np.ndarray, query: np.ndarray,
                    block: int = 4096) -> np.ndarray:
    """Euclidean distances (float64) from ``query`` ``(D,)`` to each row of ``features``.

    Computed as differences, not via ``|a|² - 2ab + |b|²``, so identical rows are at
    exactly 0 and near ties are not reordered by rounding.

    >>> block_distances(np.array([[0., 0.], [3., 4.], [1., 0.]]), np.zeros(2)).tolist()
    [0.0, 5.0, 1.0]
    """
    features = np.asarray(features)
    q = np.asarray(query, np.float64).reshape(-1)
    if features.ndim != 2 or features.shape[1] != q.size:
        raise ValueError(f"features {features.shape} and query {q.shape} do not match")
    out = np.empty(len(features), np.float64)
    for i in range(0, len(features), block):
        diff = features[i:i + block].astype(np.float64) - q
        out[i:i + block] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def streamed_distances(blocks: Iterable[np.ndarray], query: np.ndarray) -> np.ndarray:
    """:func:`block_distances` over feature blocks that arrive one at a time.

    >>> blocks = iter([np.array([[0., 0.]]), np.array([[3., 4.], [1., 0.]])])
    >>> streamed_distances(blocks, np.zeros(2)).tolist()
    [0.0, 5.0, 1.0]
    """
    parts = [block_distances(b, query) for b in blocks]
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def top_k(distances: np.ndarray, k: int = K,
          exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and distances of the ``k`` smallest ``distances``, nearest first; equal
    distances keep their order (lower position first). ``exclude`` (the clicked point
    itself) is never listed.

    >>> top_k(np.array([2.0, 0.0, 1.0, 1.0]), k=3, exclude=1)
    (array([2, 3, 0]), array([1., 1., 2.]))
    """
    d = np.asarray(distances, np.float64)
    order = np.argsort(d, kind="stable")
    if exclude is not None:
        order = order[order != exclude]
    best = order[:max(int(k), 0)]
    return best, d[best]


def nearest(features: np.ndarray, query: np.ndarray, k: int = K,
            exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``features`` nearest to ``query``: ``(positions, distances)``.

    >>> feats = np.array([[0., 0.], [1., 0.], [0., 2.], [5., 5.]])
    >>> nearest(feats, feats[0], k=2, exclude=0)[0].tolist()
    [1, 2]
    """
    return top_k(block_distances(features, query), k, exclude)


@dataclass
class NeighbourIndex:
    """Exact neighbour search among one map's points (positions ``0..N-1`` follow the
    map's ``indices`` into its split).

    ``features`` is kept when it fits in :data:`MAX_KEPT_BYTES`; otherwise each query
    recomputes the source in blocks (``model`` is then passed to every query, so the
    index never keeps a model alive).
    """

    images: np.ndarray               # the split's uint8 images (not copied)
    indices: np.ndarray              # the map's points: positions in the split
    layer: str | None = None         # None: raw pixels
    dim: int = 784
    features: np.ndarray | None = None

    @classmethod
    def build(cls, images: np.ndarray, indices: np.ndarray, model=None,
              layer: str | None = None, dim: int = 784,
              max_bytes: int = MAX_KEPT_BYTES) -> "NeighbourIndex":
        """An index over ``images[indices]``; ``dim`` is the source's size per image.

        >>> imgs = np.zeros((4, 28, 28), np.uint8)
        >>> NeighbourIndex.build(imgs, np.arange(4)).features.shape
        (4, 784)
        >>> NeighbourIndex.build(imgs, np.arange(4), max_bytes=100).features is None
        True
        """
        index = cls(images, np.asarray(indices), layer, int(dim))
        if len(index.indices) * index.dim * 4 <= max_bytes:
            index.features = np.concatenate(list(index._blocks(model)) or
                                            [np.zeros((0, index.dim), np.float32)])
        return index

    def _blocks(self, model) -> Iterator[np.ndarray]:
        for i in range(0, len(self.indices), BLOCK):
            yield source_features(self.images[self.indices[i:i + BLOCK]], model, self.layer)

    def _distances(self, query: np.ndarray, model) -> np.ndarray:
        if self.features is not None:
            return block_distances(self.features, query)
        return streamed_distances(self._blocks(model), query)

    def of_point(self, position: int, model=None,
                 k: int = K) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` map points nearest to map point ``position`` (itself excluded)."""
        if not 0 <= position < len(self.indices):
            raise IndexError(f"no map point {position}")
        if self.features is not None:
            query = self.features[position]
        else:
            query = source_features(self.images[self.indices[position]][None], model,
                                    self.layer)[0]
        return top_k(self._distances(query, model), k, exclude=position)

    def of_image(self, image: np.ndarray, model=None,
                 k: int = K) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` map points nearest to a new uint8 image ``(28, 28)`` (a drawn digit)."""
        query = source_features(np.asarray(image, np.uint8).reshape(1, 28, 28), model,
                                self.layer)[0]
        return top_k(self._distances(query, model), k)


def map_position(indices: np.ndarray, split_index: int) -> int | None:
    """The map position of split image ``split_index`` (``indices`` sorted), or None.

    >>> map_position(np.array([3, 7, 9]), 7), map_position(np.array([3, 7, 9]), 8)
    (1, None)
    """
    pos = int(np.searchsorted(indices, split_index))
    return pos if pos < len(indices) and int(indices[pos]) == int(split_index) else None
