"""AppTest: the Challenge page refuses bad names with the rule, marks runs that cannot be
submitted before Submit, takes a run once, limits teacher-token guesses, and formats
numbers with thousands separators."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.leaderboard import Leaderboard
from core.recipe import Recipe
from core.runs import Run, RunStore, new_run_id

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def challenge(*runs: dict) -> AppTest:
    """The Challenge page of a fresh workspace holding ``runs`` (Run fields)."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    for fields in runs:
        base = dict(id=new_run_id(), name="mine", spec={}, recipe=Recipe().to_dict(),
                    workspace=at.session_state["workspace"], params=2_854,
                    status="finished", test_accuracy=0.9904, wall_time_s=1_276.0)
        RunStore().save_run(Run(**{**base, **fields}))
    at.switch_page("pages/challenge.py").run()
    assert not at.exception
    return at


def submit(at: AppTest, name: str) -> AppTest:
    at.text_input(key="challenge_name").input(name).run()
    return at.button(key="challenge_submit").click().run()


def test_a_name_with_markup_is_refused_with_the_rule():
    at = submit(challenge({}), "<b>Bobby</b>")
    assert not at.exception and not at.success
    assert ("only letters, digits, spaces, '-', '_' or '.': '/', '<' and '>' are not "
            "allowed") in at.error[0].value
    assert Leaderboard().entries() == []


def test_a_run_is_taken_once_and_the_board_has_thousands_separators():
    at = submit(challenge({}), "Bobby")
    assert "Submitted for Bobby: 99.04% with 2,854 parameters." in at.success[0].value
    at = submit(at, "Bobby")
    assert "already on the leaderboard" in at.error[0].value
    assert len(Leaderboard().entries()) == 1
    formats = {name: column.get("type_config", {}).get("format")
               for name, column in json.loads(at.dataframe[0].proto.columns).items()}
    assert formats["params"] == "%,d" and formats["training time (s)"] == "%,.1f"


@pytest.mark.parametrize("fields, label_mark, warning", [
    ({"params": 12_345}, "12,345 params · 99.04% · over the budget",
     "over the budget of 10,000: it cannot be submitted"),
    ({"source": "imported", "recipe": {}}, "not trained here: not eligible",
     "an imported or pretrained model cannot"),
])
def test_runs_that_cannot_be_submitted_are_marked_before_submit(fields, label_mark, warning):
    at = challenge(fields)
    assert at.selectbox(key="challenge_run").value.endswith(label_mark)
    assert warning in at.warning[0].value
    assert at.button(key="challenge_submit").disabled


def test_teacher_token_guesses_are_limited(monkeypatch):
    monkeypatch.setenv("LAYERLAB_RESET_TOKEN", "s3cret-token")
    at = challenge()
    for _ in range(5):
        at.text_input(key="challenge_token").input("guess").run()
        at.button(key="challenge_reset").click().run()
    assert "After 5 wrong tries" in at.error[0].value
    at.text_input(key="challenge_token").input("s3cret-token").run()
    at.button(key="challenge_reset").click().run()
    assert "Too many wrong teacher tokens from this workspace" in at.error[0].value
    assert not at.success


def test_challenge_page_submit_and_rank(tmp_path, monkeypatch):
    from core.recipe import Recipe
    from core.runs import Run, RunStore

    at = AppTest.from_file(APP, default_timeout=60).run()
    ws = at.session_state["workspace"]
    # a run trained here: the board takes only those, with their recipe stored
    RunStore().save_run(Run(id="20260101-000000-abcdef", name="mine", spec={},
                            recipe=Recipe(epochs=30).to_dict(),
                            workspace=ws, params=2_854, status="finished",
                            test_accuracy=0.9904, epochs_done=30, wall_time_s=276.0))
    at.switch_page("pages/challenge.py").run()
    assert not at.exception
    at.text_input(key="challenge_name").input("Ada b").run()   # "<b>" is refused now
    at.button(key="challenge_submit").click().run()
    assert not at.exception and not at.error
    assert "Submitted for Ada b: 99.04% with 2,854 parameters." in at.success[0].value
    board = at.dataframe[0].value
    assert list(board["name"]) == ["Ada b"] and int(board["params"].iloc[0]) == 2_854
    at.button(key="challenge_reset").click().run()
    assert "No teacher token is configured" in at.error[0].value
