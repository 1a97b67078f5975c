"""The leaderboard under concurrency, its rules, and the Challenge page that submits to it."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import LayerLabError
from core.leaderboard import Leaderboard, sanitize_name

APP = str(Path(__file__).resolve().parents[1] / "app.py")


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


def test_challenge_page_submit_and_rank(tmp_path, monkeypatch):
    from core.runs import Run, RunStore

    at = AppTest.from_file(APP, default_timeout=60).run()
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
