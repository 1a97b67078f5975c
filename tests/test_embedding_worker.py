"""The embedding process: fits run in a child process, and a call interrupted half-way
(KeyboardInterrupt, Streamlit's StopException, an error in a progress callback) never
leaves its reply in the pipe for the next call."""
from __future__ import annotations

import os

import numpy as np
import pytest

from core.embedding_worker import EmbeddingWorker
from core.errors import LayerLabError

# A short t-SNE schedule: a few seconds, still several progress events.
PARAMS = {"seed": 0, "perplexity": 10.0, "n_neighbors": 10, "min_dist": 0.1,
          "schedule": {"early_exaggeration_iter": 50, "n_iter": 50}}


@pytest.fixture
def worker():
    """A worker of its own (not the server's), stopped afterwards."""
    w = EmbeddingWorker()
    yield w
    w.close()


def features(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 10)).astype(np.float32)


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
