"""Readable differences between two runs: their layer stacks and their recipes; and the
public record points the Compare page draws beside them."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from core.recipe import Recipe
from core.spec import ModelSpec, infer_shapes

MNIST_TRAIN = 60_000
# Recipe settings under the names the Train page gives them.
RECIPE_NAMES = {"train_subset": "training images", "validation_split": "validation split",
                "learning_rate": "learning rate", "batch_size": "batch size",
                "mixed_precision": "mixed precision", "label_smoothing": "label smoothing",
                "split_seed": "validation split's seed", "teacher": "teacher",
                "distill_weight": "teacher's weight",
                "distill_temperature": "teacher's temperature"}


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

    A setting missing from an older record has the value it trained with, the default:

    >>> diff_recipes({"epochs": 3, "batch_size": 128}, {"epochs": 5, "batch_size": 128,
    ...                                                "label_smoothing": 0.0})
    [('epochs', 3, 5)]
    """
    defaults = Recipe().to_dict()
    a, b = {**defaults, **a}, {**defaults, **b}
    keys = list(dict.fromkeys(list(a) + list(b)))
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def display_value(key: str, value: Any) -> str:
    """A recipe value as a person reads it (``None`` training images means all of them).

    >>> display_value("train_subset", None), display_value("train_subset", 5000)
    ('all 60,000', '5,000')
    >>> display_value("augment", True), display_value("learning_rate", 0.001)
    ('on', '0.001')
    >>> display_value("validation_split", 0.1), display_value("schedule", "one_cycle")
    ('10%', 'one_cycle')
    >>> display_value("split_seed", None), display_value("split_seed", 0)
    ("the seed's", '0')
    """
    if key == "train_subset" and value is None:
        return f"all {MNIST_TRAIN:,}"
    if key == "split_seed" and value is None:
        return "the seed's"
    if key == "teacher" and value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if key == "validation_split" and isinstance(value, (int, float)):
        return f"{value:.0%}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def recipe_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Each differing recipe setting as ``"name: value in a → value in b"``, for display.

    >>> recipe_changes({"train_subset": None, "epochs": 3}, {"train_subset": 5000, "epochs": 3})
    ['training images: all 60,000 → 5,000']
    """
    return [f"{RECIPE_NAMES.get(k, k)}: {display_value(k, va)} → {display_value(k, vb)}"
            for k, va, vb in diff_recipes(a, b)]


def smooth(values: list[float], weight: float) -> list[float]:
    """An exponential moving average of a curve (TensorBoard's smoothing): ``weight`` 0
    leaves it as it is, near 1 flattens it. The first value is kept.

    >>> smooth([0.0, 1.0, 1.0], 0.5)
    [0.0, 0.5, 0.75]
    >>> smooth([3.0, 1.0], 0.0)
    [3.0, 1.0]
    """
    out: list[float] = []
    for v in values:
        out.append(v if not out else weight * out[-1] + (1 - weight) * v)
    return out


# -- other people's figures ------------------------------------------------------------------

EXTERNAL = "external, not trained here"


@dataclass(frozen=True)
class ExternalPoint:
    """A published MNIST result, drawn for scale beside the runs: never trained here.

    ``test_accuracy`` and ``params`` are what the chart plots (a lower bound for "> 99.4%",
    the round figure for "~4.9k"); ``claim`` is the figure as published and ``source``
    says who reported it and how, so a tooltip can show the wording as it stands.
    """

    name: str
    params: int
    test_accuracy: float
    claim: str
    source: str


EXTERNAL_POINTS = (
    ExternalPoint("ext. 697", 697, 0.9903, "99.03% with 697 params",
                  "A public Keras/PyTorch repository: the best of many runs, selected on "
                  "the test set."),
    ExternalPoint("ext. 1.9k", 1_936, 0.9910, "99.10% with 1,936 params",
                  "A public repository: separable convolutions and instance "
                  "normalisation."),
    ExternalPoint("ext. 4.9k", 4_900, 0.9907, "99.07% with ~4.9k params",
                  "A public repository (parameter count as reported, rounded)."),
    ExternalPoint("ext. 7k", 7_000, 0.9940, "> 99.4% with ~7k params",
                  "A well-known course target: under 10k parameters and under 15 epochs; "
                  "plotted at 99.4%, its lower bound."),
    ExternalPoint("ext. 19.9k", 19_900, 0.9954, "99.54% with ~19.9k params",
                  "A public repository: verified only at this size."),
)


def external_rows() -> list[dict[str, Any]]:
    """The external points as chart rows, under the columns the Compare page uses.

    >>> rows = external_rows()
    >>> rows[0]["params"], rows[0]["test accuracy"], rows[0]["kind"]
    (697, 0.9903, 'external, not trained here')
    >>> all(r["source"].startswith(r["claim"]) for r in rows)
    True
    """
    return [{"run": f"{p.claim} ({EXTERNAL})", "name": p.name, "params": p.params,
             "test accuracy": p.test_accuracy, "kind": EXTERNAL, "claim": p.claim,
             "source": f"{p.claim}. {p.source}"} for p in EXTERNAL_POINTS]


def _label_box(row: dict[str, Any], side: str, char_decades: float,
               height: float) -> tuple[float, float, float, float]:
    """The box a point's name covers, ``(x0, x1, y0, y1)`` in decades of x and in y."""
    x = math.log10(max(row["params"], 1))
    width = char_decades * len(str(row["name"]))
    x0, x1 = (x - width, x) if row.get("align") == "right" else (x, x + width)
    y = row["test accuracy"]
    return (x0, x1, y, y + height) if side == "above" else (x0, x1, y - height, y)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def label_sides(rows: list[dict[str, Any]], char_decades: float = 0.05,
                line_share: float = 0.08) -> list[str]:
    """Where each point's name goes on the accuracy-versus-size chart, ``"above"`` or
    ``"below"`` its point, so that the names of nearby points do not print over each
    other (``fast_cnn`` and ``keras_example`` differ by 2% in size and 0.02 points).

    Greedy: rows with a ``"side"`` keep it and are placed first; then each other row, in
    the order given, goes above unless its name would overlap one placed before, then
    below if that is free (else above all the same). A name starts at its point and
    runs right (``"align": "right"``: it ends there), ``char_decades`` decades of the log
    x axis a character (a 1024 px wide page); it is ``line_share`` of the y range tall.

    >>> label_sides([{"params": 34_138, "test accuracy": 0.9923, "name": "fast_cnn"},
    ...              {"params": 34_826, "test accuracy": 0.9921, "name": "keras_example"},
    ...              {"params": 111_146, "test accuracy": 0.9735, "name": "warmup_mlp"}])
    ['above', 'below', 'above']
    >>> label_sides([{"params": 1_000, "test accuracy": 0.99, "name": "a"},
    ...              {"params": 100_000, "test accuracy": 0.99, "name": "b"}])
    ['above', 'above']
    """
    accuracies = [r["test accuracy"] for r in rows] or [0.0]
    height = line_share * max(max(accuracies) - min(accuracies), 1e-6)
    sides: list[str | None] = [r.get("side") for r in rows]
    placed = [_label_box(r, s, char_decades, height) for r, s in zip(rows, sides) if s]
    for i, row in enumerate(rows):
        if sides[i] is not None:
            continue
        boxes = {s: _label_box(row, s, char_decades, height) for s in ("above", "below")}
        free = [s for s, box in boxes.items() if not any(_overlap(box, p) for p in placed)]
        sides[i] = free[0] if free else "above"
        placed.append(boxes[sides[i]])
    return [str(s) for s in sides]
