"""Readable differences between two runs: their layer stacks and their recipes."""
from __future__ import annotations

import difflib
from typing import Any

from core.spec import ModelSpec, infer_shapes


def _shown(key: str, value: Any) -> bool:
    """Leave out unset options and the usual use_bias=True."""
    return value is not None and not (key == "use_bias" and value is True)


def _layer_line(info) -> str:
    p = ", ".join(f"{k}={v}" for k, v in info.params.items() if _shown(k, v))
    return f"{info.type}({p})" if p else info.type


def spec_lines(spec: ModelSpec | dict[str, Any]) -> list[str]:
    """One readable line per layer, defaults filled in.

    >>> spec_lines({"layers": [{"type": "Flatten"},
    ...                        {"type": "Dense", "units": 10, "activation": "softmax"}]})
    ['Flatten', 'Dense(units=10, activation=softmax)']
    """
    if isinstance(spec, dict):
        spec = ModelSpec.from_dict(spec)
    return [_layer_line(info) for info in infer_shapes(spec)]


def diff_specs(a: ModelSpec | dict, b: ModelSpec | dict) -> list[tuple[str, str, str]]:
    """Aligned layer rows ``(status, left, right)``; status is same/changed/added/removed.

    >>> out = {"type": "Dense", "units": 10, "activation": "softmax"}
    >>> diff_specs({"layers": [{"type": "Flatten"}, out]},
    ...            {"layers": [{"type": "Flatten"}, {"type": "Dropout", "rate": 0.5}, out]})
    ... # doctest: +NORMALIZE_WHITESPACE
    [('same', 'Flatten', 'Flatten'), ('added', '', 'Dropout(rate=0.5)'),
     ('same', 'Dense(units=10, activation=softmax)', 'Dense(units=10, activation=softmax)')]
    """
    left, right = spec_lines(a), spec_lines(b)
    rows: list[tuple[str, str, str]] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [("same", left[i], right[j]) for i, j in zip(range(i1, i2), range(j1, j2))]
        elif op == "replace":
            n = max(i2 - i1, j2 - j1)
            for k in range(n):
                l = left[i1 + k] if i1 + k < i2 else ""
                r = right[j1 + k] if j1 + k < j2 else ""
                rows.append(("changed" if l and r else "removed" if l else "added", l, r))
        elif op == "delete":
            rows += [("removed", left[i], "") for i in range(i1, i2)]
        else:
            rows += [("added", "", right[j]) for j in range(j1, j2)]
    return rows


def diff_recipes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Settings that differ: ``(name, value in a, value in b)``, in a stable order.

    >>> diff_recipes({"epochs": 3, "batch_size": 128}, {"epochs": 5, "batch_size": 128})
    [('epochs', 3, 5)]
    """
    keys = list(dict.fromkeys(list(a) + list(b)))
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]
