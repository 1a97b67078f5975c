"""The embedding process: fits run in a child process, and a call interrupted half-way
(KeyboardInterrupt, Streamlit's StopException, an error in a progress callback) never
leaves its reply in the pipe for the next call. Its UMAP warm-up never holds up a t-SNE
map, compiles what a UMAP fit needs, and leaves numba's compilations in the disk cache
under LAYERLAB_HOME for the next process."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from core.embedding_worker import EmbeddingWorker, numba_cache_dir
from core.errors import LayerLabError

# A short t-SNE schedule: a few seconds, still several progress events.
PARAMS = {"seed": 0, "perplexity": 10.0, "n_neighbors": 10, "min_dist": 0.1,
          "schedule": {"early_exaggeration_iter": 50, "n_iter": 50}}


@pytest.fixture
def own_numba_cache(monkeypatch):
    """The child's numba cache goes under this test's LAYERLAB_HOME (empty)."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    return numba_cache_dir()


@pytest.fixture
def worker():
    """A worker of its own (not the server's), stopped afterwards."""
    w = EmbeddingWorker()
    yield w
    w.close()


def features(n: int, seed: int, dims: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dims)).astype(np.float32)


def test_an_interrupted_call_leaves_no_reply_for_the_next(worker):
    def interrupt(fraction: float, message: str) -> None:
        raise KeyboardInterrupt("the page went away")    # any BaseException, mid-call

    with pytest.raises(KeyboardInterrupt):
        worker.embed("tsne", "first", features(300, 0), PARAMS, interrupt)
    assert not worker.alive                      # killed: its events die with it
    emb, generation = worker.embed("tsne", "second", features(200, 1), PARAMS)
    assert emb.shape == (200, 2)                 # its own reply, not the first call's
    assert generation == 2 and worker.alive and worker.pid != os.getpid()


def test_the_child_reports_errors_as_sentences_and_keeps_running(worker):
    seen = []
    emb, _ = worker.embed("tsne", "ok", features(150, 2), PARAMS,
                          lambda f, m: seen.append(f))
    assert emb.shape == (150, 2) and seen == sorted(seen) and len(seen) > 2
    pid = worker.pid
    with pytest.raises(LayerLabError, match="no longer in memory"):
        worker.place("never fitted", features(1, 3), worker.generation)
    with pytest.raises(LayerLabError, match="could not be computed"):
        worker.embed("tsne", "bad", features(150, 4), {**PARAMS, "perplexity": None})
    assert worker.pid == pid                     # a sentence, not a restart
    assert worker.kept("ok") is None
    worker.keep("ok", worker.generation, "handle")
    assert worker.kept("ok") == "handle"
    worker.close()
    assert worker.kept("ok") is None             # its maps went with the child


def test_start_once_starts_the_child_once_unless_turned_off(monkeypatch):
    monkeypatch.setenv("LAYERLAB_WARM_UP_MAPS", "0")
    w = EmbeddingWorker()
    try:
        w.start_once()
        assert not w.alive                       # turned off: no early start
        monkeypatch.setenv("LAYERLAB_WARM_UP_MAPS", "1")
        w.start_once()
        assert w.alive and w.generation == 1
        w.close()
        w.start_once()                           # once per server; a map request restarts it
        assert not w.alive and w.generation == 1
    finally:
        w.close()


def test_a_tsne_map_asked_for_during_the_warm_up_is_served_at_once(own_numba_cache):
    w = EmbeddingWorker(warm_up=True)
    try:
        status = w.status()
        assert status["warm_up"] == "running"
        assert status["numba_cache_dir"] == str(own_numba_cache) and own_numba_cache.is_dir()
        emb, _ = w.embed("tsne", "during", features(150, 5), PARAMS)
        assert emb.shape == (150, 2)
        # an empty cache: numba compiles for tens of seconds, a 150-point t-SNE takes one
        assert w.status()["warm_up"] == "running"
    finally:
        w.close()


def wait_warm(worker: EmbeddingWorker, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while (status := worker.status())["warm_up"] == "running":
        assert time.monotonic() < deadline, "the warm-up did not finish"
        time.sleep(0.5)
    return status


@pytest.mark.slow
def test_the_warm_up_compiles_what_umap_needs_and_the_next_process_loads_it(own_numba_cache):
    umap = {"seed": 0, "n_neighbors": 10, "min_dist": 0.1}
    first = EmbeddingWorker(warm_up=True)
    try:
        # asked for during the warm-up: served once the compilations it needs are done
        emb, _ = first.embed("umap", "early", features(300, 6), umap)
        assert emb.shape == (300, 2)
        warmed = first.status()
        assert warmed["warm_up"] == "done" and warmed["compiles"] > 100
        # 6,000 points of 50: pynndescent's neighbours, its forest split at the top as
        # for the 10k test set
        emb, _ = first.embed("umap", "large", features(6000, 7, dims=50), umap)
        assert emb.shape == (6000, 2)
        assert first.status()["compiles"] == warmed["compiles"]            # nothing new
    finally:
        first.close()
    cached = {p.parent.name.split("_")[0] for p in own_numba_cache.rglob("*.nbi")}
    assert cached == {"umap", "pynndescent"}        # both packages' functions, ours alone
    second = EmbeddingWorker(warm_up=True)
    try:
        # a fresh process loads nearly everything from the disk cache
        assert wait_warm(second)["compiles"] < warmed["compiles"] / 4
    finally:
        second.close()
