"""What Layer Lab builds once per Keras model: its compiled batched call, its inspector,
its sub-models to single layers. One owner for all of them.

Values are kept in a :class:`weakref.WeakKeyDictionary` keyed by the model object, never
as attributes on the model: Keras tracks a model's attributes (a dict of models
assigned to one adds their weights to it), and an attribute would also keep the value
alive as long as the model. A value must therefore not hold the model strongly, or the
model would never leave the cache: keep a ``weakref.ref`` to it instead.

Concurrency: one lock guards the dictionaries only and is never held while a value is
built (an inspector compiles for seconds). Each (model, name) pair has its own build lock,
so a second caller for the same pair waits for the first build and shares its value,
while callers for any other model or name go ahead.

These are per-object caches of *how* to compute, not of results: results (evaluations,
maps) are keyed by the model's content, see :func:`core.evaluation.model_fingerprint`.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, TypeVar

T = TypeVar("T")
_MISSING = object()

_lock = threading.Lock()               # guards the two dictionaries, never a build
_values: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()
_building: "weakref.WeakKeyDictionary[Any, dict[str, threading.Lock]]" = \
    weakref.WeakKeyDictionary()


def _lookup(model: Any, name: str) -> Any:
    """The stored value or ``_MISSING``; call with ``_lock`` held."""
    return _values.get(model, {}).get(name, _MISSING)


def cached(model: Any, name: str, build: Callable[[], T]) -> T:
    """The value ``build()`` made for ``model`` under ``name``, built at most once.

    A build that raises stores nothing (the next caller tries again).

    >>> class Model:                       # any object that supports weak references
    ...     pass
    >>> m = Model()
    >>> cached(m, "answer", lambda: 42)
    42
    >>> cached(m, "answer", lambda: 0)     # built once, kept
    42
    >>> names(m)
    ['answer']
    """
    with _lock:
        found = _lookup(model, name)
        if found is not _MISSING:
            return found
        key_lock = _building.setdefault(model, {}).setdefault(name, threading.Lock())
    with key_lock:
        with _lock:
            found = _lookup(model, name)
        if found is not _MISSING:               # built by the caller we waited for
            return found
        value = build()
        with _lock:
            _values.setdefault(model, {})[name] = value
            _building.get(model, {}).pop(name, None)
    return value


def names(model: Any) -> list[str]:
    """The names of the values kept for ``model``, sorted.

    >>> class Model:
    ...     pass
    >>> names(Model())
    []
    """
    with _lock:
        return sorted(_values.get(model, {}))


def size() -> int:
    """How many models have values kept (models that were garbage-collected do not count).

    >>> import gc, weakref
    >>> class Model:
    ...     pass
    >>> m = Model()
    >>> _ = cached(m, "x", lambda: 1)
    >>> size() >= 1 and names(m) == ["x"]
    True
    >>> alive = weakref.ref(m)
    >>> del m; _ = gc.collect()
    >>> alive() is None          # its entry went with it (counting other models raced)
    True
    """
    with _lock:
        return len(_values)
