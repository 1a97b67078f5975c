"""The sweep's search space: sampled values stay in range and make valid stacks."""
from __future__ import annotations

import optuna
import pytest

from core.errors import SpecError
from core.presets import PRESETS, conv, dense, dropout, get_preset, pool, FLAT, OUT
from core.recipe import Recipe
from core.spec import ModelSpec, check_spec
from core.sweep_space import (KNOBS, apply, check_space, count_params, default_space,
                              split_stack, suggest, with_blocks)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(space: dict, n: int, seed: int = 0) -> list[dict]:
    """``n`` value sets from a real (in-memory) Optuna study with a random sampler."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest(trial, space))
        study.tell(trial, 0.0)
    return out


def in_range(name: str, value, rng: dict) -> bool:
    if "choices" in rng:
        return value in rng["choices"]
    return rng["low"] <= value <= rng["high"] and (KNOBS[name].kind != "int"
                                                   or isinstance(value, int))


def test_fast_cnn_samples_are_valid_and_in_range():
    p = get_preset("fast_cnn")
    space = default_space(p.spec, p.recipe)
    start_blocks = len(split_stack(p.spec.layers)[1])
    for values in sample(space, 60):
        assert all(in_range(k, v, space[k]) for k, v in values.items()), values
        spec, recipe = apply(p.spec, p.recipe, values)
        assert check_spec(spec) is None
        assert len(split_stack(spec.layers)[1]) == values["blocks"]
        assert recipe.epochs == values["epochs"]
        assert recipe.batch_size == values["batch_size"]
        assert recipe.learning_rate == values["learning_rate"]
        assert 0 < count_params(spec) < 10 * count_params(p.spec)
    assert space["blocks"] == {"low": start_blocks - 1, "high": start_blocks + 1}


@pytest.mark.parametrize("name", [n for n in PRESETS])
def test_every_preset_samples_in_range_and_invalid_stacks_say_why(name):
    p = get_preset(name)
    space = check_space(default_space(p.spec, p.recipe))
    valid = 0
    for values in sample(space, 15, seed=1):
        assert all(in_range(k, v, space[k]) for k, v in values.items())
        try:
            spec, _ = apply(p.spec, p.recipe, values)
        except SpecError as err:            # e.g. 5×5 kernels shrink bonus_cnn's map away
            assert str(err).endswith(".")
            continue
        valid += 1
        assert check_spec(spec) is None
    assert valid >= 5


def test_width_and_dense_scale_filters_and_hidden_units_only():
    spec = ModelSpec("s", [conv(16), pool(), FLAT, dense(64), dropout(0.5), OUT])
    out, _ = apply(spec, Recipe(), {"width": 0.5, "dense": 2.0})
    assert out.layers[0]["filters"] == 8
    assert out.layers[3]["units"] == 128
    assert out.layers[-1]["units"] == 10                     # the output stays 10-way


def test_extra_blocks_keep_the_map_and_fewer_blocks_drop_the_last():
    layers = [conv(8, strides=2), pool(), conv(16), pool(), FLAT, OUT]
    more = with_blocks(layers, 4)
    assert [l["type"] for l in more].count("MaxPooling2D") == 2      # pools not repeated
    assert more[4] == {"type": "Conv2D", "filters": 16, "kernel_size": 3, "padding": "same",
                       "strides": 1}
    assert check_spec(ModelSpec("m", more)) is None
    assert with_blocks(layers, 1) == [conv(8, strides=2), pool(), FLAT, OUT]


def test_batch_norm_off_removes_it_and_gives_the_bias_back_on_adds_it():
    p = get_preset("fast_cnn")
    off, _ = apply(p.spec, p.recipe, {"batch_norm": False})
    assert not [l for l in off.layers if l["type"] == "BatchNormalization"]
    assert all(l.get("use_bias", True) for l in off.layers)
    on, _ = apply(ModelSpec("s", [conv(8), pool(), conv(8), FLAT, OUT]), Recipe(),
                  {"batch_norm": True})
    assert [l["type"] for l in on.layers][:3] == ["Conv2D", "BatchNormalization",
                                                  "MaxPooling2D"]


def test_dropout_is_set_everywhere_or_added_before_the_output():
    small = get_preset("small_cnn")
    out, _ = apply(small.spec, small.recipe, {"dropout": 0.1})
    assert {l["rate"] for l in out.layers if l["type"] == "Dropout"} == {0.1}
    fast = get_preset("fast_cnn")
    out, _ = apply(fast.spec, fast.recipe, {"dropout": 0.2})
    assert out.layers[-2] == {"type": "Dropout", "rate": 0.2}
    out, _ = apply(fast.spec, fast.recipe, {"dropout": 0.0})
    assert out.layers == fast.spec.layers


@pytest.mark.parametrize("space, words", [
    ({"depth": {"low": 1, "high": 2}}, "Unknown knob"),
    ({"blocks": {"low": 1.5, "high": 2}}, "two numbers"),
    ({"epochs": {"low": 1, "high": 99}}, "within"),
    ({"kernel": {"choices": [3, 13]}}, "not an allowed value"),
    ({"batch_norm": {"choices": []}}, "between 1 and 16"),
])
def test_bad_spaces_are_refused_with_a_sentence(space, words):
    with pytest.raises(SpecError, match=words):
        check_space(space)
