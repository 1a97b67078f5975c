"""Work a page will need, done in the background before anyone asks for it.

The Errors page opens on the first pretrained model compared with the second, and its
first view used to load both and evaluate them on the 10,000 test images while every
visitor waited (about 20 s on a fresh server under load; Draw & inspect loaded its model
the same way). :func:`start_errors_warm_up`, called at the server's first page view, does
that on a low-priority thread (:mod:`core.priority`): the models are loaded into
:func:`core.pretrained.shared_model`, which the pages use too, and the evaluations go
through :func:`core.evaluation.cached_evaluate`, so the page then only reads the
probabilities from disk, and a visitor who comes earlier waits on this very work instead
of starting it a second time. ``LAYERLAB_WARM_UP_ERRORS=0`` turns it off (the tests do).
"""
from __future__ import annotations

import logging
import os
import threading
import time

from core import priority

_log = logging.getLogger(__name__)
_lock = threading.Lock()
errors_thread: threading.Thread | None = None
errors_state = "off"         # off | running | done | failed
START_DELAY_S = 3.0          # the first page view renders in about 2 s on a fresh server


def warms_up_errors() -> bool:
    """Whether the server warms the Errors page up (``LAYERLAB_WARM_UP_ERRORS=0``: no).

    >>> os.environ["LAYERLAB_WARM_UP_ERRORS"] = "0"; warms_up_errors()
    False
    >>> del os.environ["LAYERLAB_WARM_UP_ERRORS"]; warms_up_errors()
    True
    """
    return os.environ.get("LAYERLAB_WARM_UP_ERRORS", "1") != "0"


DRAW_MODEL = "small_cnn"     # the model Draw & inspect opens on


def errors_defaults(names: list[str]) -> list[str]:
    """The models the Errors page opens on, from the pretrained ``names`` in the presets'
    order: its model A and the model B it compares A with (under a class's load, 30
    first views waited on B's evaluation once A's was warm).

    >>> errors_defaults(["warmup_mlp", "bulky_cnn", "small_cnn"]), errors_defaults([])
    (['warmup_mlp', 'bulky_cnn'], [])
    """
    return names[:2]


def start_errors_warm_up() -> threading.Thread | None:
    """Start the Errors page's first evaluation in the background, once per process;
    the thread, or None when it is turned off."""
    global errors_thread, errors_state
    with _lock:
        if errors_thread is None and warms_up_errors():
            errors_state = "running"
            errors_thread = threading.Thread(target=_warm_errors, name="errors-warm-up",
                                             daemon=True)
            errors_thread.start()
        return errors_thread


def _warm_errors() -> None:
    """Evaluate the Errors page's default models on the test set (disk-cached), after the
    first page has had its moment: importing TensorFlow holds the interpreter's lock for
    seconds, which the first page view of a fresh server should not wait behind."""
    global errors_state
    time.sleep(START_DELAY_S)
    priority.lower_this_thread()
    try:
        from core import pretrained  # noqa: PLC0415
        from core.analysis import evaluate_any  # noqa: PLC0415
        from core.data import load_mnist  # noqa: PLC0415

        names = pretrained.available()
        if names:
            priority.ensure_tensorflow()
            data = load_mnist()
        for name in errors_defaults(names):
            evaluate_any(pretrained.shared_model(name), data.x_test, data.y_test)
        if DRAW_MODEL in names:
            # loaded and its inspector compiled: a class opening Draw at once otherwise
            # waits, every session, on one compile of several seconds
            from core.inspector import inspector_for  # noqa: PLC0415

            inspector_for(pretrained.shared_model(DRAW_MODEL))
        errors_state = "done"
    except Exception as exc:  # noqa: BLE001 - the page reports the problem when it comes
        _log.warning("The Errors page's warm-up failed", exc_info=exc)
        errors_state = "failed"
