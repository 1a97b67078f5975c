"""Builder (AppTest), run diffs, and the leaderboard under concurrency."""
from __future__ import annotations

import threading

import pytest
from streamlit.testing.v1 import AppTest

from core.compare import diff_recipes, diff_specs
from core.errors import LayerLabError
from core.leaderboard import Leaderboard, sanitize_name
from core.presets import PRESETS
from core.spec import ModelSpec, default_layer



@pytest.fixture
def builder(open_page):
    """``builder()``: the Builder page, opened cleanly."""
    def _open() -> AppTest:
        at = open_page("builder", timeout=60)
        assert not at.exception
        return at
    return _open


def params(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == "Parameters")


def layer_buttons(at: AppTest, suffix: str) -> list:
    return [b for b in at.button if b.key and b.key.endswith(suffix)]


def test_builder_add_remove_reorder_changes_exact_params(builder):
    at = builder()
    assert params(at) == "34,826"            # keras_example is the starting stack
    # add Dense 64 before the output: Dropout(1600) -> Dense 64 -> Dense 10
    at.selectbox(key="builder_new_type").set_value("Dense").run()
    at.button(key="builder_add").click().run()
    assert not at.exception
    assert params(at) == f"{320 + 18_496 + 1600 * 64 + 64 + 64 * 10 + 10:,}"   # 122,570
    # remove it again (it sits at position 7)
    layer_buttons(at, "_del")[6].click().run()
    assert params(at) == "34,826"
    # move the Dropout (layer 6) above the Flatten (layer 5): same parameters, still valid
    layer_buttons(at, "_up")[5].click().run()
    types = [m.value for m in at.markdown if m.value.startswith("**")][:7]
    assert types[4] == "**5. Dropout**" and types[5] == "**6. Flatten**"
    assert params(at) == "34,826"
    # duplicate the first conv: 32 -> 32 adds 9,248 conv params and shrinks the flatten
    layer_buttons(at, "_dup")[0].click().run()
    assert not at.exception
    # conv(32)->conv(32): 24x24 -> pool 12 -> conv64 10 -> pool 5 -> 1600 flat
    assert params(at) == f"{320 + 9_248 + 18_496 + 16_010:,}"


def test_builder_slider_changes_params(builder):
    at = builder()
    slider = next(s for s in at.slider if s.key.endswith("_filters"))
    slider.set_value(16).run()
    # conv1 16 filters: 160; conv2 16->64: 9,280; dense 16,010
    assert params(at) == f"{160 + 9_280 + 16_010:,}"


def test_builder_invalid_stack_inline_message_and_disabled_train(builder):
    at = builder()
    # move the Flatten (layer 5) to the top: conv after a flat vector
    for _ in range(4):
        ups = layer_buttons(at, "_up")
        idx = [m.value for m in at.markdown if m.value.startswith("**")].index(
            next(m.value for m in at.markdown if "Flatten" in m.value))
        ups[idx].click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("Layer 2 (Conv2D) needs a 2-D feature map but gets a flat vector from "
               "layer 1 (Flatten)" in e for e in errors), errors
    assert at.button(key="builder_train").disabled
    assert not any(m.label == "Parameters" for m in at.metric)


def test_builder_train_button_enabled_when_valid(builder):
    at = builder()
    assert not at.button(key="builder_train").disabled


def test_spec_json_round_trip_via_default_layers():
    spec = ModelSpec("mine", [default_layer("Conv2D"), default_layer("BatchNormalization"),
                              default_layer("MaxPooling2D"), default_layer("Flatten"),
                              default_layer("Dropout"), {"type": "Dense", "units": 10,
                                                         "activation": "softmax"}])
    again = ModelSpec.from_json(spec.to_json())
    assert again.layers == spec.layers and again.name == "mine"


def test_diff_two_known_specs():
    rows = diff_specs(PRESETS["keras_example"].spec, PRESETS["bonus_cnn"].spec)
    status = [r[0] for r in rows]
    assert status.count("added") == 1 and status.count("changed") == 1
    assert ("changed", "Dropout(rate=0.5)", "Dense(units=64, activation=relu)") in rows
    assert rows[4] == ("added", "", "Conv2D(filters=64, kernel_size=3, strides=1, "
                                    "padding=valid, activation=relu)")
    assert diff_recipes(PRESETS["keras_example"].recipe.to_dict(),
                        PRESETS["bonus_cnn"].recipe.to_dict()) == [
        ("learning_rate", 0.001, 0.002), ("schedule", "constant", "one_cycle"),
        ("epochs", 15, 10)]


def test_leaderboard_concurrent_submissions_lose_nothing(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite")
    errors = []

    def submit(i: int) -> None:
        try:
            for j in range(5):
                board.submit(f"student {i}", 0.9 + j / 100, 5_000 + i, 12.5, f"run-{i}-{j}")
        except Exception as exc:  # pragma: no cover - would fail the test
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(board.entries()) == 100
    best = board.best_per_name()
    assert len(best) == 20 and all(e.test_accuracy == pytest.approx(0.94) for e in best)


def test_leaderboard_rules(tmp_path, monkeypatch):
    board = Leaderboard(tmp_path / "b.sqlite")
    with pytest.raises(LayerLabError, match="over the challenge budget of 10,000"):
        board.submit("x", 0.99, 10_001, 1.0, "r")
    with pytest.raises(LayerLabError, match="Only a run with a test accuracy"):
        board.submit("x", None, 100, 1.0, "r")
    assert sanitize_name("  <script>alert(1)</script> Ann  ") == "scriptalert1script Ann"
    assert len(sanitize_name("a" * 100)) == 24
    with pytest.raises(LayerLabError, match="Enter a name"):
        sanitize_name("<>")
    monkeypatch.delenv("LAYERLAB_RESET_TOKEN", raising=False)
    with pytest.raises(LayerLabError, match="No teacher token is configured"):
        board.reset("anything")
    monkeypatch.setenv("LAYERLAB_RESET_TOKEN", "s3cret")
    board.submit("Ann", 0.95, 900, 1.0, "r1")
    with pytest.raises(LayerLabError, match="not right"):
        board.reset("guess")
    assert len(board.entries()) == 1
    board.set_budget(3_000, "s3cret")
    assert board.budget() == 3_000
    board.reset("s3cret")
    assert board.entries() == []


def test_compare_page_with_pretrained_runs(open_page):
    at = open_page(timeout=60)
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["run"]) >= {"warmup_mlp (pretrained)", "bulky_cnn (pretrained)"}
    assert int(table.loc[table["run"] == "warmup_mlp (pretrained)", "params"].iloc[0]) == 111_146
    at.selectbox(key="compare_b").set_value("bulky_cnn (pretrained)").run()
    assert not at.exception
    assert any("Recipe:" in m.value for m in at.markdown)


def test_challenge_page_submit_and_rank(tmp_path, monkeypatch, open_page):
    from core.runs import Run, RunStore

    at = open_page(timeout=60)
    ws = at.session_state["workspace"]
    RunStore().save_run(Run(id="20260101-000000-abcdef", name="mine", spec={}, recipe={},
                            workspace=ws, params=2_854, status="finished",
                            test_accuracy=0.9904, epochs_done=30, wall_time_s=276.0))
    at.switch_page("pages/challenge.py").run()
    assert not at.exception
    at.text_input(key="challenge_name").input("Ada <b>").run()
    at.button(key="challenge_submit").click().run()
    assert not at.exception and not at.error
    assert "Submitted for Ada b: 99.04% with 2,854 parameters." in at.success[0].value
    board = at.dataframe[0].value
    assert list(board["name"]) == ["Ada b"] and int(board["params"].iloc[0]) == 2_854
    at.button(key="challenge_reset").click().run()
    assert "No teacher token is configured" in at.error[0].value
