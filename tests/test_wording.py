"""core.wording: counts with thousands separators and the right plural."""
from __future__ import annotations

from core.presets import PRESETS
from core.wording import plural, span


def test_one_is_singular_every_other_count_plural():
    assert plural(1, "test image") == "1 test image"
    assert plural(1, "epoch") == "1 epoch"
    assert plural(2, "epoch") == "2 epochs"
    assert plural(0, "model") == "0 models"
    assert plural(10_000, "test image") == "10,000 test images"
    assert plural(1, "class", "classes") == "1 class"
    assert plural(3, "class", "classes") == "3 classes"


def test_span_of_the_presets_is_their_smallest_and_largest():
    assert span([p.expected_params for p in PRESETS.values()], "parameters") == \
        "997 to 331,754 parameters"
