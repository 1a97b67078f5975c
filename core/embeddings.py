"""The embedding methods: PCA, t-SNE and UMAP of a feature matrix, and a score for a map.

Plain functions of ``features`` (N, D) float32. PCA is scikit-learn's; t-SNE is
openTSNE's FFT-accelerated implementation with a shortened schedule (see
:data:`TSNE_SCHEDULE`); UMAP is umap-learn's. openTSNE and umap-learn are slow to import
and are imported only when used: the server runs them in its embedding process
(:mod:`core.embedding_worker`), which needs nothing else from Layer Lab.

UMAP's first fit in a process used to spend most of its time in numba compiling
umap-learn's and pynndescent's loops (about 25 of 34 s on the 10k test set).
:func:`import_umap` keeps those compilations in numba's disk cache when the process has
one (``NUMBA_CACHE_DIR``), and :func:`warm_up_umap` compiles (or loads) what a real fit
needs on a tiny data set, so the embedding process can do it before anyone asks.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

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


UMAP_LARGE = 10_000          # from this many points, the large-data layout schedule
UMAP_LARGE_EPOCHS = 200


def umap_epochs(n_points: int) -> int | None:
    """Layout epochs for a UMAP of ``n_points``: umap-learn's own large-data figure (200)
    from 10,000 points on, else None (umap-learn's choice: 500 for small data).

    umap-learn switches only above 10,000, so the 10k test set, exactly 10,000, got 500
    epochs: 200 took its warm fit from 13.9 to 8.4 s of CPU here with the same 10-NN
    accuracy in 2-D (0.9544 and 0.9543).

    >>> umap_epochs(10_000), umap_epochs(9_999)
    (200, None)
    """
    return UMAP_LARGE_EPOCHS if n_points >= UMAP_LARGE else None


def fit_umap(features: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1,
             seed: int = 0, *, approximate: bool = False, n_epochs: int | None = None):
    """A fitted ``umap.UMAP`` (seeded, hence deterministic and single-threaded), with
    :func:`umap_epochs` layout epochs unless ``n_epochs`` says otherwise.

    umap-learn finds exact neighbours below 4,096 points and pynndescent's approximate
    ones above; ``approximate`` forces the latter (the warm-up uses it on few points).
    """
    import warnings  # noqa: PLC0415

    umap = import_umap()
    features = np.asarray(features, np.float32)
    n_epochs = n_epochs if n_epochs is not None else umap_epochs(len(features))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                        n_components=2, n_epochs=n_epochs,
                        force_approximation_algorithm=approximate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "n_jobs overridden by random_state"
        reducer.fit(features)
    return reducer


_umap_lock = threading.Lock()      # the warm-up thread and a request may import at once
_umap_ready = False
_compilations = [0]


def import_umap():
    """umap-learn, its compilations kept in numba's disk cache when there is one."""
    global _umap_ready
    with _umap_lock:
        if not _umap_ready:
            _count_compilations()        # before umap's import compiles anything
        import umap  # noqa: PLC0415 - slow to import (numba), only when used

        if not _umap_ready:
            cache_compilations(("umap", "pynndescent"))
            _umap_ready = True
    return umap


def compilations() -> int:
    """How many functions numba compiled (not loaded from its cache) in this process since
    umap-learn was first imported here (0 before): the warm-up's effect, for tests.
    """
    return _compilations[0]


def _count_compilations() -> None:
    from numba.core import event  # noqa: PLC0415

    class Count(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            pass

        def on_end(self, ev: event.Event) -> None:
            _compilations[0] += 1

    event.register("numba:compile", Count())


def _dispatchers(packages: Iterable[str]) -> list:
    """The numba functions defined at module level in the (imported) ``packages``."""
    import sys  # noqa: PLC0415

    from numba.core.dispatcher import Dispatcher  # noqa: PLC0415

    found: dict[int, Any] = {}
    for name, module in sorted(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for value in vars(module).values():
            if (isinstance(value, Dispatcher)
                    and value.py_func.__module__.split(".")[0] in packages):
                found.setdefault(id(value), value)
    return list(found.values())


def _name_by_function(dispatcher) -> None:
    """Give ``dispatcher`` an identity that is the same in every process.

    pynndescent passes its distance functions to its compiled loops as arguments, so
    those loops' cache entries are keyed by the distance's numba uuid, which is random
    per process: every process missed the cache and added an entry. Named by module,
    function and options instead, the next process finds the entry. (numba's private
    ``_set_uuid``; if it changes, caching those loops is simply lost.)
    """
    from numba.core.dispatcher import Dispatcher  # noqa: PLC0415

    options = ",".join(f"{k}={v!r}" for k, v in sorted(dispatcher.targetoptions.items()))
    name = (f"layerlab:{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
            f"[{options}]")
    try:
        if dispatcher._MemoMixin__uuid is None and name not in Dispatcher._memo:
            dispatcher._set_uuid(name)
    except AttributeError:
        pass


def cache_compilations(packages: Iterable[str]) -> int:
    """Turn on numba's disk cache for the compiled functions of ``packages`` that do not
    ask for it themselves (most of umap-learn's); returns how many were turned on.

    Nothing happens unless ``NUMBA_CACHE_DIR`` was set before numba was imported: the
    cache then goes where Layer Lab keeps its caches, never beside the installed
    packages. The few functions numba cannot cache still compile, once per process.
    """
    import warnings  # noqa: PLC0415

    from numba.core import config  # noqa: PLC0415
    from numba.core.caching import NullCache  # noqa: PLC0415

    if not config.CACHE_DIR:
        return 0
    # nn_descent reads "dynamic globals": numba says so at each compile; nothing to do.
    warnings.filterwarnings("ignore", message=".*Cannot cache compiled function")
    found = _dispatchers(set(packages))
    for dispatcher in found:
        _name_by_function(dispatcher)
    turned_on = 0
    for dispatcher in found:
        if isinstance(dispatcher._cache, NullCache):
            try:
                dispatcher.enable_caching()
                turned_on += 1
            except RuntimeError:             # no writable cache folder: compile as before
                return turned_on
    return turned_on


WARM_UP_SHAPE = (400, 1024)


def warm_up_umap(shape: tuple[int, int] = WARM_UP_SHAPE) -> float:
    """Fit two tiny UMAPs (exact and approximate neighbours) so numba compiles, or loads
    from its disk cache, what real fits of any size need; returns the seconds it took.

    Random float32 data in C order, like the real input, gives the same compiled
    signatures. Its rows are wide (4 KiB) so that pynndescent's forest splits at the top
    before building local subtrees, as it does for large maps (it keeps about 1 MiB of
    rows local), although there are few of them.
    """
    t0 = time.perf_counter()
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    fit_umap(x, n_epochs=10)                           # < 4,096 points: exact neighbours
    fit_umap(x, n_epochs=10, approximate=True)         # larger maps: pynndescent
    return time.perf_counter() - t0


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
