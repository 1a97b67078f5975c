"""core.recipe: bad training settings are explained in one sentence each, and the next
ordinary request still works."""
from __future__ import annotations

import pytest

from core.errors import SpecError
from core.recipe import Recipe

BAD_RECIPES = [
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"learning_rate": -0.1}, "learning rate"),
    ({"learning_rate": "0.1"}, "learning rate"),
    ({"learning_rate": 1e9}, "learning rate"),
    ({"batch_size": 0}, "batch_size is 0"),
    ({"batch_size": 10**7}, "batch_size is 10,000,000"),
    ({"batch_size": 32.5}, "whole number"),
    ({"epochs": 0}, "epochs is 0"),
    ({"epochs": 10_000}, "epochs is 10,000"),
    ({"validation_split": 0.9}, "validation split"),
    ({"validation_split": float("inf")}, "validation split"),
    ({"train_subset": 5}, "train_subset is 5"),
    ({"optimizer": "adamw"}, "Unknown optimizer"),
    ({"schedule": "cosine"}, "Unknown learning-rate schedule"),
    ({"augment": "yes"}, "augment must be true or false"),
    ({"seed": -1}, "seed is -1"),
    ({"label_smoothing": 0.9}, "label smoothing must be between 0 and 0.5"),
    ({"label_smoothing": True}, "label smoothing"),
    ({"label_smoothing": "0.1"}, "label smoothing"),
    ({"epochz": 3}, "unknown setting"),
    ({"split_seed": -2}, "split_seed is -2"),
    ({"split_seed": "0"}, "split_seed must be a whole number"),
    ({"teacher": "gpt"}, "teacher must be one of the presets"),
    ({"teacher": ["bulky_cnn"]}, "teacher must be one of the presets"),
    ({"teacher": "bulky_cnn", "distill_weight": 0}, "distill weight must be a number above 0"),
    ({"teacher": "bulky_cnn", "distill_weight": 1.5}, "distill weight"),
    ({"distill_temperature": 0.5}, "distill temperature must be a number from 1"),
    ({"distill_temperature": float("nan")}, "distill temperature"),
    ("not a dict", "must be an object"),
]


@pytest.mark.parametrize("data,needle", BAD_RECIPES, ids=[str(i) for i in range(len(BAD_RECIPES))])
def test_bad_recipes_explained(data, needle):
    with pytest.raises(SpecError, match=needle) as err:
        Recipe.from_dict(data)
    assert str(err.value).endswith(".")
    assert Recipe.from_dict({"epochs": 2}).epochs == 2        # the next request works


def test_a_recipe_round_trips_and_an_older_record_loads():
    recipe = Recipe(epochs=2, label_smoothing=0.1, mixed_precision=True)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    older = recipe.to_dict()
    del older["label_smoothing"]                  # written before the setting existed
    assert Recipe.from_dict(older).label_smoothing == 0.0


def test_settings_added_later_load_from_older_records_as_before():
    """A record written before the split seed and the teacher existed trains as it did:
    its split is its seed's and it learns from the labels alone."""
    older = {k: v for k, v in Recipe(seed=3).to_dict().items()
             if k not in ("split_seed", "teacher", "distill_weight", "distill_temperature")}
    recipe = Recipe.from_dict(older)
    assert recipe.split_seed is None and recipe.data_seed == 3 and recipe.teacher is None
    fixed = Recipe(seed=3, split_seed=0, teacher="frontier_10k", distill_weight=0.3)
    assert Recipe.from_dict(fixed.to_dict()) == fixed and fixed.data_seed == 0
