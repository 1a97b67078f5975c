"""2-D maps of MNIST: PCA, t-SNE and UMAP of raw pixels or of any layer's activations.

A :class:`ProjectionRequest` names everything that determines a map (method, split,
number of points, seed, method parameters, and for a layer the model's weights); its
:meth:`~ProjectionRequest.key` names the ``.npz`` file under
``$LAYERLAB_HOME/cache/projections`` that keeps the result, so re-opening a map is one
small file read. Maps are keyed by content (the model's weights, not its run id), so a
resumed run gets fresh maps.

The methods themselves are in :mod:`core.embeddings`; t-SNE and UMAP run in the
embedding process (:mod:`core.embedding_worker`); background jobs and the page's
"show, compute or offer" decision are in :mod:`core.projection_jobs`.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.data import stratified_subset, to_float
from core.embedding_worker import WORKER
from core.embeddings import (PCA_DIMS, TSNE_SCHEDULE, LinearReduction, Progress, fit_pca,
                             no_progress, pca_embedding, umap_epochs)
from core.errors import LayerLabError
from core.evaluation import (array_fingerprint, batched_probabilities, cache_root,
                             cached_evaluate, model_fingerprint)
from core.model_cache import cached
from core.runs import atomic_write_bytes

METHODS = ("pca", "tsne", "umap")
METHOD_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
SPLITS = ("test", "train")
MIN_POINTS = 1000
FORMAT_VERSION = 1

# -- requests and results -----------------------------------------------------------------

@dataclass(frozen=True)
class ProjectionRequest:
    """Everything that determines a projection. ``layer=None`` means raw pixels."""

    method: str = "pca"
    split: str = "test"
    n_points: int = 2000
    seed: int = 0
    perplexity: float = 30.0
    n_neighbors: int = 15
    min_dist: float = 0.1
    layer: str | None = None
    model_id: str = ""             # model fingerprint; required with a layer

    def check(self, split_size: int | None = None) -> "ProjectionRequest":
        """Raise LayerLabError with a plain sentence when a setting is out of range."""
        if self.method not in METHODS:
            raise LayerLabError(f"Unknown projection method {self.method!r}; choose PCA, "
                                f"t-SNE or UMAP.")
        if self.split not in SPLITS:
            raise LayerLabError(f"Unknown split {self.split!r}; choose test or train.")
        if self.split == "train" and self.method != "umap":
            raise LayerLabError("The 60,000 training images can be mapped with UMAP only; "
                                "use the test set for PCA and t-SNE.")
        if self.n_points < MIN_POINTS:
            raise LayerLabError(f"A map needs at least {MIN_POINTS:,} points, got "
                                f"{self.n_points:,}.")
        if split_size is not None and self.n_points > split_size:
            raise LayerLabError(f"The {self.split} set has {split_size:,} images; "
                                f"{self.n_points:,} points were asked for.")
        if self.method == "tsne" and not 2 <= self.perplexity <= min(100, self.n_points / 4):
            raise LayerLabError(f"The perplexity must be between 2 and "
                                f"{min(100, self.n_points // 4)}, got {self.perplexity:g}.")
        if self.method == "umap" and not 2 <= self.n_neighbors <= 200:
            raise LayerLabError(f"n_neighbors must be between 2 and 200, got "
                                f"{self.n_neighbors}.")
        if self.method == "umap" and not 0.0 <= self.min_dist <= 1.0:
            raise LayerLabError(f"min_dist must be between 0 and 1, got {self.min_dist:g}.")
        if self.layer is not None and not self.model_id:
            raise LayerLabError("A layer's activations need the model they come from.")
        return self

    def determining(self) -> dict[str, Any]:
        """Only the settings this method uses (so unrelated sliders never miss the cache)."""
        out = {"method": self.method, "split": self.split, "n_points": self.n_points,
               "seed": self.seed, "layer": self.layer,
               "model_id": self.model_id if self.layer is not None else ""}
        if self.method == "tsne":
            out["perplexity"] = float(self.perplexity)
            out["schedule"] = TSNE_SCHEDULE
        if self.method == "umap":
            out["n_neighbors"] = int(self.n_neighbors)
            out["min_dist"] = float(self.min_dist)
            out["n_epochs"] = umap_epochs(self.n_points)     # maps made with 500 differ
        return out

    def key(self, data_id: str) -> str:
        """The cache key: a hash of :meth:`determining`, the data and the format version."""
        blob = json.dumps({"v": FORMAT_VERSION, "data": data_id, **self.determining()},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class Projection:
    """A computed map: 2-D coordinates of the chosen images of one split."""

    embedding: np.ndarray                      # (N, 2) float32
    indices: np.ndarray                        # (N,) positions in the split
    labels: np.ndarray                         # (N,) true classes
    request: ProjectionRequest
    key: str
    feature_dim: int                           # dimensionality of the source
    seconds: float                             # compute time (not the cache read)
    explained_variance: np.ndarray | None = None   # PCA: ratio per component
    from_cache: bool = False


# -- sources --------------------------------------------------------------------------------

def select_indices(labels: np.ndarray, n_points: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n_points`` images with the class proportions kept.

    >>> labels = np.repeat(np.arange(10), 100)
    >>> idx = select_indices(labels, 100, seed=0)
    >>> len(idx), np.bincount(labels[idx]).tolist() == [10] * 10
    (100, True)
    """
    return stratified_subset(np.asarray(labels), n_points, seed)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 784)`` in [0, 1].

    >>> pixel_features(np.full((2, 28, 28), 255, np.uint8)).shape
    (2, 784)
    """
    x = to_float(images)
    return x.reshape(len(x), -1)


def feature_layers(model) -> list[tuple[str, int]]:
    """``(layer name, flattened output size)`` for every layer a map can be drawn from."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        shape = tuple(layer.output.shape[1:])
        out.append((layer.name, int(np.prod(shape))))
    return out


def layer_model(model, layer_name: str):
    """A sub-model from ``model.inputs`` to one layer's output (kept per model by
    :mod:`core.model_cache`)."""
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = ", ".join(n for n, _ in feature_layers(model))
        raise LayerLabError(f"The model has no layer called {layer_name!r}; it has "
                            f"{names}.") from None
    return cached(model, f"layer:{layer_name}", lambda: _sub_model(model, layer))


def _sub_model(model, layer):
    import keras  # noqa: PLC0415 - heavy, only when a layer is mapped

    return keras.Model(model.inputs, layer.output, name=f"{model.name}_to_{layer.name}")


def layer_features(model, layer_name: str, images: np.ndarray,
                   batch_size: int = 1000) -> np.ndarray:
    """One layer's activations for uint8 images, flattened: float32 ``(N, D)``."""
    sub = layer_model(model, layer_name)
    images = np.asarray(images)
    outs = [batched_probabilities(sub, to_float(images[i:i + batch_size]), batch_size)
            for i in range(0, len(images), batch_size)]
    feats = np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
    return feats.reshape(len(images), -1).astype(np.float32)


def source_features(images: np.ndarray, model=None, layer: str | None = None) -> np.ndarray:
    """Raw pixels when ``layer`` is None, else that layer's flattened activations."""
    if layer is None:
        return pixel_features(images)
    if model is None:
        raise LayerLabError("A layer's activations need the model they come from.")
    return layer_features(model, layer, images)


# -- the disk cache -------------------------------------------------------------------------

def projection_cache_dir() -> Path:
    """``$LAYERLAB_HOME/cache/projections`` (default under ``~/.layerlab``)."""
    return cache_root() / "projections"


def save_projection(proj: Projection, cache_dir: Path | None = None) -> Path:
    """Write a projection atomically as ``<key>.npz`` (no pickles)."""
    folder = Path(cache_dir) if cache_dir is not None else projection_cache_dir()
    arrays = {"embedding": proj.embedding, "indices": proj.indices, "labels": proj.labels,
              "meta": np.array(json.dumps({"request": asdict(proj.request),
                                           "feature_dim": proj.feature_dim,
                                           "seconds": proj.seconds}))}
    if proj.explained_variance is not None:
        arrays["explained_variance"] = proj.explained_variance
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = folder / f"{proj.key}.npz"
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_projection(key: str, cache_dir: Path | None = None) -> Projection | None:
    """The cached projection for ``key``, or None (also when the file is damaged)."""
    folder = Path(cache_dir) if cache_dir is not None else projection_cache_dir()
    path = folder / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            return Projection(
                embedding=npz["embedding"], indices=npz["indices"], labels=npz["labels"],
                request=ProjectionRequest(**meta["request"]), key=key,
                feature_dim=int(meta["feature_dim"]), seconds=float(meta["seconds"]),
                explained_variance=npz["explained_variance"]
                if "explained_variance" in npz else None,
                from_cache=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- computing ------------------------------------------------------------------------------

@dataclass
class FittedMap:
    """A UMAP map kept in the embedding process, ready to place new images on it."""

    key: str
    reduction: LinearReduction | None
    layer: str | None
    generation: int

    def place(self, image: np.ndarray, model=None) -> np.ndarray:
        """2-D coordinates of one uint8 image ``(28, 28)`` via ``UMAP.transform``."""
        feats = source_features(np.asarray(image)[None], model, self.layer)
        if self.reduction is not None:
            feats = self.reduction.apply(feats)
        return WORKER.place(self.key, feats, self.generation)[0]


def fitted_map(key: str) -> FittedMap | None:
    """The UMAP map fitted for ``key``, if the embedding process still keeps it."""
    return WORKER.kept(key)


def _remember(fitted: FittedMap) -> None:
    WORKER.keep(fitted.key, fitted.generation, fitted)


def resolve(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
            model=None) -> tuple[ProjectionRequest, np.ndarray, str]:
    """Fill in the model id, check the request, pick the points; ``(request, idx, key)``."""
    if request.layer is not None and model is not None and not request.model_id:
        request = replace(request, model_id=model_fingerprint(model))
    request.check(len(labels))
    idx = select_indices(labels, request.n_points, request.seed)
    key = request.key(array_fingerprint(images[idx], labels[idx]))
    return request, idx, key


def _embed(request: ProjectionRequest, key: str, feats: np.ndarray, progress: Progress
           ) -> tuple[np.ndarray, np.ndarray | None, FittedMap | None]:
    """``(embedding, explained variance or None, fitted UMAP map or None)``.

    PCA runs here; t-SNE and UMAP run in the embedding process (:data:`WORKER`).
    """
    if request.method == "pca":
        progress(0.3, "PCA")
        emb, explained = pca_embedding(feats, request.seed)
        return emb, explained, None
    progress(0.1, "Reducing to 50 principal components")
    reduction = fit_pca(feats, PCA_DIMS, request.seed) if feats.shape[1] > PCA_DIMS else None
    reduced = reduction.apply(feats) if reduction is not None else feats
    params = {"seed": request.seed, "perplexity": request.perplexity,
              "n_neighbors": request.n_neighbors, "min_dist": request.min_dist,
              "schedule": TSNE_SCHEDULE}
    progress(0.12, "Starting the embedding process")
    emb, generation = WORKER.embed(request.method, key, reduced, params, progress)
    fitted = FittedMap(key, reduction, request.layer, generation) \
        if request.method == "umap" else None
    return emb, None, fitted


def compute_projection(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
                       model=None, progress: Progress = no_progress,
                       cache_dir: Path | None = None, use_cache: bool = True) -> Projection:
    """The map for ``request`` on one split (uint8 ``images``): cached, else computed.

    ``model`` is needed only when the source is one of its layers. A freshly fitted UMAP
    map is also kept in memory (:func:`fitted_map`) to place drawn digits on it.
    """
    request, idx, key = resolve(request, images, labels, model)
    if use_cache:
        found = load_projection(key, cache_dir)
        if found is not None:
            progress(1.0, "Loaded from the cache")
            return found
    t0 = time.perf_counter()
    progress(0.02, "Computing the features")
    feats = source_features(images[idx], model, request.layer)
    emb, explained, fitted = _embed(request, key, feats, progress)
    proj = Projection(np.asarray(emb, np.float32), idx, np.asarray(labels)[idx], request,
                      key, int(feats.shape[1]), time.perf_counter() - t0, explained)
    if fitted is not None:
        _remember(fitted)
    try:
        save_projection(proj, cache_dir)
    except OSError:
        pass                                   # a read-only home only loses the cache
    progress(1.0, f"Done in {proj.seconds:.1f} s")
    return proj


def fit_umap_map(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
                 model=None, progress: Progress = no_progress) -> FittedMap:
    """Fit again the seeded (so identical) UMAP of a cached map, to place new digits."""
    if request.method != "umap":
        raise LayerLabError("Only a UMAP map can place a new digit; choose UMAP.")
    request, idx, key = resolve(request, images, labels, model)
    progress(0.02, "Computing the features")
    feats = source_features(images[idx], model, request.layer)
    _, _, fitted = _embed(request, key, feats, progress)
    _remember(fitted)
    progress(1.0, "Map fitted")
    return fitted


def pca_3d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """The first three principal components of ``features``: float32 ``(N, 3)`` (zeros
    pad a source of fewer than three dimensions), for the rotatable 3-D view.

    >>> pca_3d(np.random.default_rng(0).normal(size=(50, 1)).astype(np.float32)).shape
    (50, 3)
    """
    coords = fit_pca(features, 3, seed).apply(features)
    return np.pad(coords, ((0, 0), (0, 3 - coords.shape[1]))) if coords.shape[1] < 3 \
        else coords


def point_probabilities(model, images: np.ndarray, labels: np.ndarray,
                        indices: np.ndarray) -> np.ndarray:
    """A model's class probabilities for the mapped points, through the evaluation cache.

    A split of up to 10,000 images is evaluated whole (the test set then shares the
    Errors page's cached evaluation); a larger one only at ``indices``.
    """
    if len(images) <= 10000:
        return cached_evaluate(model, to_float(images), labels).probabilities[indices]
    return cached_evaluate(model, to_float(images[indices]), labels[indices]).probabilities


def points_in_box(embedding: np.ndarray, x_range: tuple[float, float],
                  y_range: tuple[float, float]) -> np.ndarray:
    """Positions of the map points inside a rectangle (either corner order).

    >>> emb = np.array([[0, 0], [1, 1], [2, 2], [1, 3]], np.float32)
    >>> points_in_box(emb, (2.5, 0.5), (3.5, 0)).tolist()
    [1, 2, 3]
    """
    (x0, x1), (y0, y1) = sorted(x_range), sorted(y_range)
    x, y = embedding[:, 0], embedding[:, 1]
    return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))


def nearest_images(images: np.ndarray, query: np.ndarray, k: int = 8,
                   chunk: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` images closest to ``query`` in pixel space: ``(indices, distances)``.

    >>> images = np.stack([np.full((28, 28), v, np.uint8) for v in (0, 200, 100)])
    >>> nearest_images(images, np.full((28, 28), 90, np.uint8), k=2)[0].tolist()
    [2, 0]
    """
    q = pixel_features(np.asarray(query)[None])[0]
    dists = np.empty(len(images), dtype=np.float32)
    for i in range(0, len(images), chunk):
        block = pixel_features(images[i:i + chunk])
        dists[i:i + chunk] = np.sqrt(((block - q) ** 2).sum(axis=1))
    k = min(k, len(images))
    best = np.argpartition(dists, k - 1)[:k]
    best = best[np.argsort(dists[best], kind="stable")]
    return best, dists[best]
