"""The project's error types: plain sentences, the offending layer, one base class."""
from __future__ import annotations

import pytest

from core.errors import DataError, LayerLabError, SpecError, StorageError


def test_spec_error_joins_every_problem_into_one_message_of_sentences():
    err = SpecError(["Layer 1 needs filters.", "Layer 3 has an unknown type."],
                    layers=[1, 3])
    assert str(err) == "Layer 1 needs filters. Layer 3 has an unknown type."
    assert err.problems == ["Layer 1 needs filters.", "Layer 3 has an unknown type."]
    assert err.layers == [1, 3] and err.layer == 1


def test_spec_error_carries_the_layer_for_every_problem():
    err = SpecError(["Too big.", "Too deep."], layer=4)
    assert err.layer == 4 and err.layers == [4, 4]
    one = SpecError("The stack is empty.")
    assert one.problems == ["The stack is empty."] and one.layer is None
    assert one.layers == [None]


def test_an_explicit_layer_wins_over_the_per_problem_list():
    err = SpecError(["a.", "b."], layer=5, layers=[2, 3])
    assert err.layer == 5 and err.layers == [2, 3]
    assert SpecError([], layers=[]).layer is None


@pytest.mark.parametrize("kind", [SpecError, DataError, StorageError])
def test_every_error_is_a_layerlab_error_caught_by_pages(kind):
    with pytest.raises(LayerLabError, match="^Something to fix.$"):
        raise kind("Something to fix.")
    assert not issubclass(kind, (ValueError, OSError))   # never mistaken for a bug's error
