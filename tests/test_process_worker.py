"""The worker side of the process backend (core/process_worker.py): its request protocol
over real pipes, with a stand-in actor (the real one, training, is exercised by
tests/test_process_backend.py): answers carry the request's number, ``stop`` gets none,
sentences come back as sentences, other errors as an empty one, and the worker cleans up
when its server goes away."""
from __future__ import annotations

import os
import pickle
import threading

from core.errors import LayerLabError
from core.process_worker import ProcessActor, serve


class Actor:
    """Answers like a TrainingActor and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, order, data):
        self.calls.append(("start", order))
        if order == "bad":
            raise LayerLabError("That network does not fit.")
        if order == "boom":
            raise RuntimeError("/secret/path exploded")
        return {"pid": 1, "node": "here"}

    def poll(self, taken):
        self.calls.append(("poll", taken))
        return {"events": []}

    def stop(self, interrupt):
        self.calls.append(("stop", interrupt))

    def close(self):
        self.calls.append(("close",))


def exchange(requests: list[tuple], actor: Actor, close_input: bool = True) -> list[tuple]:
    """Serve ``requests`` over two real pipes; every answer written back."""
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    with os.fdopen(req_r, "rb") as rin, os.fdopen(rep_w, "wb") as rout:
        server = threading.Thread(target=serve, args=(rin, rout, actor))
        server.start()
        with os.fdopen(req_w, "wb") as wout:
            for request in requests:
                pickle.dump(request, wout)
            wout.flush()
            if not close_input:
                server.join(timeout=10)
        server.join(timeout=10)
        assert not server.is_alive()
    answers = []
    with os.fdopen(rep_r, "rb") as got:
        while True:
            try:
                answers.append(pickle.load(got))
            except EOFError:
                return answers


def test_answers_carry_their_requests_number_and_stop_gets_none():
    actor = Actor()
    answers = exchange([(1, "start", ("order", None)), (2, "poll", 7),
                        (3, "stop", "Server restarting."), (4, "close", None)], actor)
    assert answers == [(1, "ok", {"pid": 1, "node": "here"}), (2, "ok", {"events": []}),
                       (4, "ok", None)]
    assert actor.calls == [("start", "order"), ("poll", 7), ("stop", "Server restarting."),
                           ("close",)]


def test_sentences_come_back_and_other_errors_stay_in_the_log():
    answers = exchange([(1, "start", ("bad", None)), (2, "start", ("boom", None)),
                        (3, "dance", None), (4, "close", None)], Actor())
    assert answers == [(1, "error", "That network does not fit."), (2, "error", ""),
                       (3, "error", ""), (4, "ok", None)]
    assert "secret" not in repr(answers)


def test_a_server_that_goes_away_ends_the_worker_which_cleans_up():
    actor = Actor()
    answers = exchange([(1, "poll", None)], actor)     # then the input ends, no close
    assert answers == [(1, "ok", {"events": []})]
    assert actor.calls[-1] == ("close",)


def test_the_process_actor_names_this_machine_and_skips_rays_settings():
    actor = ProcessActor()
    assert actor._node() == "this machine"
    assert actor._prepare() is None
