"""2-D maps of MNIST: PCA, t-SNE and UMAP of raw pixels or of any layer's activations.

A :class:`ProjectionRequest` names everything that determines a map (method, split,
number of points, seed, method parameters, and for a layer the model's weights); its
:meth:`~ProjectionRequest.key` names the ``.npz`` file under
``$LAYERLAB_HOME/cache/projections`` that keeps the result, so re-opening a map is one
small file read. :func:`submit` computes a map in a background thread (one at a time per
process, shared by every session asking for the same key) and reports its progress; the
t-SNE and UMAP fits themselves run in a long-lived child process (:class:`EmbeddingWorker`)
because their compiled loops hold the GIL for seconds and would freeze the server.

t-SNE is openTSNE's FFT-accelerated implementation with a shortened schedule (see
:data:`TSNE_SCHEDULE`); openTSNE and umap-learn are imported only when used.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable

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

def _worker_loop(tasks: BinaryIO, events: BinaryIO) -> None:
    """The embedding process: runs t-SNE and UMAP fits and keeps fitted UMAP maps.

    Pickled tasks arrive on ``tasks``: ``("tsne"|"umap", key, features, params)`` or
    ``("place", key, features)``; pickled events go back on ``events``:
    ``("progress", fraction, message)``, ``("done", array)`` or ``("error", sentence)``.
    """
    fitted: dict[str, Any] = {}

    def send(event: tuple) -> None:
        pickle.dump(event, events, protocol=pickle.HIGHEST_PROTOCOL)
        events.flush()

    while True:
        try:
            task = pickle.load(tasks)
        except EOFError:                     # the server went away
            return
        try:
            kind, key, feats = task[0], task[1], task[2]
            if kind == "place":
                if key not in fitted:
                    send(("error", "This map is no longer in memory; fit it again."))
                else:
                    send(("done", np.asarray(fitted[key].transform(feats), np.float32)))
                continue
            params = task[3]

            def report(fraction: float, message: str) -> None:
                send(("progress", fraction, message))

            if kind == "tsne":
                emb = tsne_embedding(feats, params["perplexity"], params["seed"], report)
            else:
                report(0.2, "UMAP: neighbours, then the layout (it reports no finer progress)")
                reducer = fit_umap(feats, params["n_neighbors"], params["min_dist"],
                                   params["seed"])
                fitted.pop(key, None)
                fitted[key] = reducer
                while len(fitted) > MAX_FITTED:
                    fitted.pop(next(iter(fitted)))
                emb = reducer.embedding_
            send(("done", np.asarray(emb, np.float32)))
        except Exception as exc:  # noqa: BLE001 - sent back as a sentence
            send(("error", f"The map could not be computed ({type(exc).__name__}: {exc})."))


class EmbeddingWorker:
    """One long-lived child process (``python -m core.projections``) that runs the t-SNE
    and UMAP fits and keeps UMAP's fitted maps for :meth:`place`.

    Their numba and Cython loops hold Python's GIL for seconds at a time; in a separate
    process they never stall the server. A plain subprocess (not ``multiprocessing``)
    so the child never re-imports the caller's main script — under Streamlit that is
    the app itself. The child imports no TensorFlow; its imports and numba compilations
    are paid once per server. Calls are serialised.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.generation = 0                   # bumps when a new child starts

    @property
    def alive(self) -> bool:
        """Whether the child process is running (and so keeps its fitted maps)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive else None

    def _ensure(self) -> subprocess.Popen:
        if self.alive:
            return self._proc
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._proc = subprocess.Popen([sys.executable, "-m", "core.projections"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      cwd=root, env=env)
        self.generation += 1
        return self._proc

    def _call(self, task: tuple, progress: Progress) -> np.ndarray:
        proc = self._ensure()
        try:
            pickle.dump(task, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.flush()
            while True:
                event = pickle.load(proc.stdout)
                if event[0] == "progress":
                    progress(event[1], event[2])
                elif event[0] == "done":
                    return event[1]
                else:
                    raise LayerLabError(event[1])
        except (EOFError, OSError, pickle.UnpicklingError):
            proc.kill()
            self._proc = None
            raise LayerLabError("The process computing the map stopped (probably out of "
                                "memory). Try fewer points.") from None

    def embed(self, method: str, key: str, features: np.ndarray, params: dict[str, Any],
              progress: Progress = _quiet) -> tuple[np.ndarray, int]:
        """``(embedding, generation)`` of ``features`` by t-SNE or UMAP in the child."""
        with self._lock:
            emb = self._call((method, key, np.ascontiguousarray(features, np.float32),
                              params), progress)
            return emb, self.generation

    def place(self, key: str, features: np.ndarray, generation: int,
              wait_s: float = 2.0) -> np.ndarray:
        """``UMAP.transform`` of ``features`` on the map fitted for ``key``."""
        if not self._lock.acquire(timeout=wait_s):
            raise LayerLabError("Another map is being computed; place the digit once it "
                                "is done.")
        try:
            if generation != self.generation or not self.alive:
                raise LayerLabError("This map is no longer in memory; fit it again.")
            return self._call(("place", key, np.ascontiguousarray(features, np.float32)),
                              _quiet)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop the child process (it also ends when the server's pipe closes)."""
        with self._lock:
            if self.alive:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc = None


WORKER = EmbeddingWorker()


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


_fitted: dict[str, FittedMap] = {}
_lock = threading.Lock()
MAX_FITTED = 2            # fitted UMAP maps kept for placing drawn digits


def _remember(fitted: FittedMap) -> None:
    with _lock:
        _fitted.pop(fitted.key, None)
        _fitted[fitted.key] = fitted
        while len(_fitted) > MAX_FITTED:
            _fitted.pop(next(iter(_fitted)))


def fitted_map(key: str) -> FittedMap | None:
    """The UMAP map fitted for ``key``, if the embedding process still keeps it."""
    with _lock:
        found = _fitted.get(key)
    if found is None or found.generation != WORKER.generation or not WORKER.alive:
        return None
    return found


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
              "n_neighbors": request.n_neighbors, "min_dist": request.min_dist}
    progress(0.12, "Starting the embedding process")
    emb, generation = WORKER.embed(request.method, key, reduced, params, progress)
    fitted = FittedMap(key, reduction, request.layer, generation) \
        if request.method == "umap" else None
    return emb, None, fitted


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
                 model=None, progress: Progress = _quiet) -> FittedMap:
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

    Jobs run one at a time per process; asking again for a key that is still queued or
    running returns that job instead of starting a second one. A finished job leaves the
    registry at once: its map is in the disk cache, its fitted UMAP in :func:`fitted_map`.
    """
    request, _, key = resolve(request, images, labels, model)
    with _lock:
        job = _jobs.get((kind, key))
        if job is not None:
            return job
        job = ProjectionJob(key, kind)

        def work():
            job.started = time.perf_counter()
            try:
                if kind == "fit":
                    return fit_umap_map(request, images, labels, model, job.report)
                return compute_projection(request, images, labels, model, job.report,
                                          cache_dir)
            finally:
                with _lock:
                    if _jobs.get((kind, key)) is job:
                        del _jobs[(kind, key)]

        _jobs[(kind, key)] = job
        job.future = _executor.submit(work)
        return job


def _serve() -> None:
    """Entry point of the embedding process: pickles on stdin/stdout, logs on stderr."""
    # umap-learn imports TensorFlow for ParametricUMAP when it can: seconds and hundreds
    # of MB this process never needs. Marking it absent makes umap skip that import.
    sys.modules.setdefault("tensorflow", None)  # type: ignore[arg-type]
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # stray prints must not corrupt it
    _worker_loop(sys.stdin.buffer, protocol_out)


if __name__ == "__main__":
    _serve()
