"""2-D maps of MNIST: PCA, t-SNE and UMAP of raw pixels or of any layer's activations.

A :class:`ProjectionRequest` names everything that determines a map (method, split,
number of points, seed, method parameters, and for a layer the model's weights); its
:meth:`~ProjectionRequest.key` names the ``.npz`` file under
``$LAYERLAB_HOME/cache/projections`` that keeps the result, so re-opening a map is one
small file read. :func:`submit` computes a map in a background thread (one at a time per
process, shared by every session asking for the same key) and reports its progress.

t-SNE is openTSNE's FFT-accelerated implementation with a shortened schedule (see
:data:`TSNE_SCHEDULE`); openTSNE and umap-learn are imported only when used.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.data import stratified_subset
from core.errors import LayerLabError
from core.evaluation import (array_fingerprint, batched_probabilities, cache_root,
                             cached_evaluate, model_fingerprint)
from core.runs import atomic_write_bytes

METHODS = ("pca", "tsne", "umap")
METHOD_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
SPLITS = ("test", "train")
MIN_POINTS = 1000
PCA_DIMS = 50                      # t-SNE and UMAP run on the first 50 principal components
FORMAT_VERSION = 1
# openTSNE: 125 early-exaggeration + 250 normal iterations instead of 250 + 500. On the
# 10k test set this keeps the 10-NN accuracy of the default schedule (bench/) at about a
# third of its time; FFT gradients and Annoy neighbours make each iteration cheap.
TSNE_SCHEDULE = {"early_exaggeration_iter": 125, "n_iter": 250}

Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    """The default progress callback: ignore."""


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
    """Sorted indices of ``n_points`` images with the class proportions kept."""
    return stratified_subset(np.asarray(labels), n_points, seed)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 784)`` in [0, 1]."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


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
    """A sub-model from ``model.inputs`` to one layer's output (cached on the model)."""
    import keras  # noqa: PLC0415

    subs = model.__dict__.setdefault("_layerlab_sub_models", {})
    if layer_name not in subs:
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            names = ", ".join(n for n, _ in feature_layers(model))
            raise LayerLabError(f"The model has no layer called {layer_name!r}; it has "
                                f"{names}.") from None
        subs[layer_name] = keras.Model(model.inputs, layer.output,
                                       name=f"{model.name}_to_{layer_name}")
    return subs[layer_name]


def layer_features(model, layer_name: str, images: np.ndarray,
                   batch_size: int = 1000) -> np.ndarray:
    """One layer's activations for uint8 images, flattened: float32 ``(N, D)``."""
    from core.data import to_float  # noqa: PLC0415

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


# -- methods --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinearReduction:
    """A fitted PCA kept as plain arrays: ``(x - mean) @ components.T``."""

    mean: np.ndarray
    components: np.ndarray          # (k, D)
    explained_variance_ratio: np.ndarray

    def apply(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float32) - self.mean) @ self.components.T
                ).astype(np.float32)


def fit_pca(features: np.ndarray, n_components: int = PCA_DIMS,
            seed: int = 0) -> LinearReduction:
    """Principal components of ``features`` (at most ``n_components``)."""
    from sklearn.decomposition import PCA  # noqa: PLC0415

    k = int(min(n_components, features.shape[0], features.shape[1]))
    pca = PCA(n_components=k, random_state=seed).fit(features)
    return LinearReduction(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                           pca.explained_variance_ratio_.astype(np.float64))


def pca_embedding(features: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components and the explained-variance ratios of up to 50."""
    red = fit_pca(features, PCA_DIMS, seed)
    coords = red.apply(features)
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords[:, :2].copy(), red.explained_variance_ratio


def tsne_embedding(features: np.ndarray, perplexity: float = 30.0, seed: int = 0,
                   progress: Progress = _quiet, n_jobs: int = -1,
                   schedule: dict[str, int] | None = None) -> np.ndarray:
    """openTSNE (FFT gradients) on ``features``; ``schedule`` overrides the iterations."""
    import openTSNE  # noqa: PLC0415 - slow to import, only when used

    sched = dict(TSNE_SCHEDULE if schedule is None else schedule)
    total = sched.get("early_exaggeration_iter", 250) + sched.get("n_iter", 500)
    done = {"iters": 0}

    def report(iteration: int, error: float, embedding: Any) -> bool:
        done["iters"] += 25
        progress(0.15 + 0.8 * min(done["iters"] / total, 1.0),
                 f"t-SNE: iteration {min(done['iters'], total)} of {total}")
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
    """Leave-one-out accuracy of a ``k``-nearest-neighbour vote in the embedding."""
    from sklearn.neighbors import NearestNeighbors  # noqa: PLC0415

    labels = np.asarray(labels)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    idx = nn.kneighbors(embedding, return_distance=False)[:, 1:]
    votes = np.zeros((len(labels), int(labels.max()) + 1), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(labels)), k), labels[idx].ravel()), 1)
    return float((votes.argmax(axis=1) == labels).mean())


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
    """What :meth:`place` needs to put a new image on an existing UMAP map."""

    reduction: LinearReduction | None
    reducer: Any
    layer: str | None

    def place(self, image: np.ndarray, model=None) -> np.ndarray:
        """2-D coordinates of one uint8 image ``(28, 28)`` via ``UMAP.transform``."""
        feats = source_features(np.asarray(image)[None], model, self.layer)
        if self.reduction is not None:
            feats = self.reduction.apply(feats)
        return np.asarray(self.reducer.transform(feats), np.float32)[0]


_fitted: dict[str, FittedMap] = {}
_lock = threading.Lock()
MAX_FITTED = 2            # fitted UMAP maps kept in memory for placing drawn digits


def _remember(key: str, fitted: FittedMap) -> None:
    with _lock:
        _fitted.pop(key, None)
        _fitted[key] = fitted
        while len(_fitted) > MAX_FITTED:
            _fitted.pop(next(iter(_fitted)))


def fitted_map(key: str) -> FittedMap | None:
    """The UMAP map fitted for ``key`` in this process, if it is still kept."""
    with _lock:
        return _fitted.get(key)


def resolve(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
            model=None) -> tuple[ProjectionRequest, np.ndarray, str]:
    """Fill in the model id, check the request, pick the points; ``(request, idx, key)``."""
    if request.layer is not None and model is not None and not request.model_id:
        request = replace(request, model_id=model_fingerprint(model))
    request.check(len(labels))
    idx = select_indices(labels, request.n_points, request.seed)
    key = request.key(array_fingerprint(images[idx], labels[idx]))
    return request, idx, key


def _embed(request: ProjectionRequest, feats: np.ndarray, progress: Progress
           ) -> tuple[np.ndarray, np.ndarray | None, FittedMap | None]:
    """``(embedding, explained variance or None, fitted UMAP map or None)``."""
    if request.method == "pca":
        progress(0.3, "PCA")
        emb, explained = pca_embedding(feats, request.seed)
        return emb, explained, None
    progress(0.1, "Reducing to 50 principal components")
    reduction = fit_pca(feats, PCA_DIMS, request.seed) if feats.shape[1] > PCA_DIMS else None
    reduced = reduction.apply(feats) if reduction is not None else feats
    if request.method == "tsne":
        return tsne_embedding(reduced, request.perplexity, request.seed, progress), None, None
    progress(0.2, "UMAP: neighbours, then the layout (it reports no finer progress)")
    reducer = fit_umap(reduced, request.n_neighbors, request.min_dist, request.seed)
    return (np.asarray(reducer.embedding_, np.float32), None,
            FittedMap(reduction, reducer, request.layer))


def compute_projection(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
                       model=None, progress: Progress = _quiet,
                       cache_dir: Path | None = None, use_cache: bool = True) -> Projection:
    """The map for ``request`` on one split (uint8 ``images``): cached, else computed.

    ``model`` is needed only when the source is one of its layers. A freshly fitted UMAP
    map is also kept in memory (:func:`fitted_map`) to place drawn digits on it.
    """
    request, idx, key = resolve(request, images, labels, model)
    if use_cache:
        cached = load_projection(key, cache_dir)
        if cached is not None:
            progress(1.0, "Loaded from the cache")
            return cached
    t0 = time.perf_counter()
    progress(0.02, "Computing the features")
    feats = source_features(images[idx], model, request.layer)
    emb, explained, fitted = _embed(request, feats, progress)
    proj = Projection(np.asarray(emb, np.float32), idx, np.asarray(labels)[idx], request,
                      key, int(feats.shape[1]), time.perf_counter() - t0, explained)
    if fitted is not None:
        _remember(key, fitted)
    try:
        save_projection(proj, cache_dir)
    except OSError:
        pass                                   # a read-only home only loses the cache
    progress(1.0, f"Done in {proj.seconds:.1f} s")
    return proj


def fit_umap_map(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
                 model=None, progress: Progress = _quiet) -> FittedMap:
    """Fit again the seeded (so identical) UMAP of a cached map, to place new digits."""
    if request.method != "umap":
        raise LayerLabError("Only a UMAP map can place a new digit; choose UMAP.")
    request, idx, key = resolve(request, images, labels, model)
    progress(0.02, "Computing the features")
    feats = source_features(images[idx], model, request.layer)
    _, _, fitted = _embed(request, feats, progress)
    _remember(key, fitted)
    progress(1.0, "Map fitted")
    return fitted


def point_probabilities(model, images: np.ndarray, labels: np.ndarray,
                        indices: np.ndarray) -> np.ndarray:
    """A model's class probabilities for the mapped points, through the evaluation cache.

    A split of up to 10,000 images is evaluated whole (the test set then shares the
    Errors page's cached evaluation); a larger one only at ``indices``.
    """
    from core.data import to_float  # noqa: PLC0415

    if len(images) <= 10000:
        return cached_evaluate(model, to_float(images), labels).probabilities[indices]
    return cached_evaluate(model, to_float(images[indices]), labels[indices]).probabilities


def points_in_box(embedding: np.ndarray, x_range: tuple[float, float],
                  y_range: tuple[float, float]) -> np.ndarray:
    """Positions of the map points inside a rectangle (either corner order)."""
    (x0, x1), (y0, y1) = sorted(x_range), sorted(y_range)
    x, y = embedding[:, 0], embedding[:, 1]
    return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))


def nearest_images(images: np.ndarray, query: np.ndarray, k: int = 8,
                   chunk: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` images closest to ``query`` in pixel space: ``(indices, distances)``."""
    q = pixel_features(np.asarray(query)[None])[0]
    dists = np.empty(len(images), dtype=np.float32)
    for i in range(0, len(images), chunk):
        block = pixel_features(images[i:i + chunk])
        dists[i:i + chunk] = np.sqrt(((block - q) ** 2).sum(axis=1))
    k = min(k, len(images))
    best = np.argpartition(dists, k - 1)[:k]
    best = best[np.argsort(dists[best], kind="stable")]
    return best, dists[best]


# -- background jobs ------------------------------------------------------------------------

@dataclass
class ProjectionJob:
    """A projection (or a fitted map) being computed in the background."""

    key: str
    kind: str                                   # "projection" | "fit"
    fraction: float = 0.0
    message: str = "Waiting for the previous map to finish"
    started: float = field(default_factory=time.perf_counter)
    future: Any = None

    def report(self, fraction: float, message: str) -> None:
        self.fraction, self.message = float(fraction), message

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def result(self):
        """The Projection/FittedMap; re-raises the job's error (a LayerLabError stays one)."""
        return self.future.result()


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerlab-projection")
_jobs: dict[tuple[str, str], ProjectionJob] = {}


def submit(request: ProjectionRequest, images: np.ndarray, labels: np.ndarray,
           model=None, kind: str = "projection",
           cache_dir: Path | None = None) -> ProjectionJob:
    """Start (or join) the background computation of a map or of a fitted UMAP map.

    Jobs run one at a time per process; asking again for a key already being computed
    returns the running job instead of starting a second one.
    """
    request, _, key = resolve(request, images, labels, model)
    with _lock:
        job = _jobs.get((kind, key))
        if job is not None and not (job.done and job.future.exception() is not None):
            return job
        job = ProjectionJob(key, kind)

        def work():
            job.started = time.perf_counter()
            if kind == "fit":
                return fit_umap_map(request, images, labels, model, job.report)
            return compute_projection(request, images, labels, model, job.report, cache_dir)

        job.future = _executor.submit(work)
        _jobs[(kind, key)] = job
        return job


def forget_job(job: ProjectionJob) -> None:
    """Drop a finished job from the registry (its result lives in the disk cache)."""
    with _lock:
        if _jobs.get((job.kind, job.key)) is job and job.done:
            del _jobs[(job.kind, job.key)]
