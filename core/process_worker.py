"""The worker side of the process backend: one process of this machine per run.

The server (:class:`core.process_backend.ProcessJob`) starts ``python -m
core.process_worker`` for a run and drives its :class:`ProcessActor` (the Ray backend's
:class:`core.ray_worker.TrainingActor`, so both backends train and relay saves the same
way) with pickles on the child's stdin: ``(seq, kind, payload)``, kind ``start`` (payload
``(order, data)``), ``poll`` (payload: the number of the last reply taken), ``stop``
(payload: the interrupt sentence; no answer) or ``close``. Answers go to its stdout as
``(seq, "ok", value)`` or ``(seq, "error", sentence)``, the sentence empty when the error
is not one for users (its traceback goes to stderr, which is the server's log). The pipes are between the server and the child it
started, and nothing else writes to them.

The child ends with its stdin: a server that dies takes its runs with it, and no orphan
trains on.
"""
from __future__ import annotations

import logging
import os
import pickle
import sys
from typing import Any, BinaryIO

from core.errors import LayerLabError
from core.ray_worker import TrainingActor

_log = logging.getLogger(__name__)


class ProcessActor(TrainingActor):
    """A :class:`core.ray_worker.TrainingActor` outside Ray: TensorFlow keeps its own
    settings (the run's threads lower their priority themselves, core/priority.py)."""

    def _prepare(self) -> None:
        return None

    def _node(self) -> str:
        return "this machine"


def answer(actor: Any, kind: str, payload: Any) -> Any:
    """The actor's answer to one request (``stop`` has none: it is never sent back).

    >>> answer(None, "dance", None)
    Traceback (most recent call last):
    ...
    ValueError: unknown request 'dance'
    """
    if kind == "start":
        return actor.start(*payload)
    if kind == "poll":
        return actor.poll(payload)
    if kind == "stop":
        return actor.stop(payload)
    if kind == "close":
        return actor.close()
    raise ValueError(f"unknown request {kind!r}")


def serve(requests: BinaryIO, replies: BinaryIO, actor: Any = None) -> None:
    """Answer requests until ``close`` or the end of ``requests``; then clean up."""
    actor = actor if actor is not None else ProcessActor()

    def send(seq: int, status: str, value: Any) -> None:
        pickle.dump((seq, status, value), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    while True:
        try:
            seq, kind, payload = pickle.load(requests)
        except (EOFError, OSError, pickle.UnpicklingError):
            break                              # the server is gone: the run goes with it
        try:
            value = answer(actor, kind, payload)
        except LayerLabError as err:           # a sentence for the page
            value, status = str(err), "error"
        except Exception as exc:  # noqa: BLE001 - the details go to the log only
            _log.error("request %r failed in the training worker", kind, exc_info=exc)
            value, status = "", "error"
        else:
            status = "ok"
        if kind != "stop":
            send(seq, status, value)
        if kind == "close":
            return
    actor.close()


def _serve() -> None:
    """Entry point of the child: pickles on stdin/stdout, logs on stderr."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s training worker %(process)d %(levelname)s "
                               "%(name)s: %(message)s")
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # stray prints must not corrupt it
    serve(sys.stdin.buffer, protocol_out)
    protocol_out.flush()
    os._exit(0)            # now, even with TensorFlow's threads still winding down


if __name__ == "__main__":
    _serve()
