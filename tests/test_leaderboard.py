"""An honest leaderboard (issue 12 §4): entries belong to a workspace, a name to one
workspace, a run goes on once, imports stay off, teacher-token guesses are limited and
logged, a full or read-only disk gives a sentence, and an old board file migrates."""
from __future__ import annotations

import logging
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import LayerLabError
from core.leaderboard import AttemptLimiter, Leaderboard, check_submittable, sanitize_name
from core.recipe import Recipe
from core.runs import Run, RunStore, new_run_id
from core.workspace import new_workspace_id

ROOT = Path(__file__).resolve().parents[1]
WS_A, WS_B = new_workspace_id(), new_workspace_id()


def trained(ws: str = WS_A, **changes) -> Run:
    """A run as the Train page leaves it: trained here, recipe stored, finished."""
    fields = dict(id=new_run_id(), name="mine", spec={}, recipe=Recipe(epochs=2).to_dict(),
                  workspace=ws, params=2_854, status="finished", test_accuracy=0.97,
                  wall_time_s=12.0, epochs_done=2)
    fields.update(changes)
    return Run(**fields)


@pytest.fixture
def board(tmp_path) -> Leaderboard:
    return Leaderboard(tmp_path / "board.sqlite", limiter=AttemptLimiter())


def test_names_are_refused_not_stripped():
    with pytest.raises(LayerLabError, match=r"only letters, digits, spaces.*'/', '<' and '>' "
                                            r"are not allowed"):
        sanitize_name("<b>Bobby</b>")                 # today silently "bBobbyb"
    with pytest.raises(LayerLabError, match="'!' is not allowed"):
        sanitize_name("Bobby!")
    assert sanitize_name("  Bobby   B. ") == "Bobby B."


def test_one_entry_per_workspace_and_name_on_the_board(board):
    for acc in (0.95, 0.97, 0.96):
        board.submit_run("Ann", trained(test_accuracy=acc), workspace=WS_A)
    shown = board.best_per_name()
    assert [(e.name, e.test_accuracy) for e in shown] == [("Ann", 0.97)]
    assert len(board.entries()) == 3 and {e.workspace for e in board.entries()} == {WS_A}


def test_a_name_cannot_be_taken_over_by_another_workspace(board):
    board.submit_run("Ann", trained(WS_A, test_accuracy=0.95), workspace=WS_A)
    for name in ("Ann", "ann", " ANN "):
        with pytest.raises(LayerLabError, match="already on the board for another workspace"):
            board.submit_run(name, trained(WS_B, test_accuracy=0.999), workspace=WS_B)
    assert [e.test_accuracy for e in board.best_per_name()] == [0.95]


def test_the_same_run_cannot_be_submitted_twice(board):
    run = trained()
    board.submit_run("Ann", run, workspace=WS_A)
    for name in ("Ann", "Ann again"):
        with pytest.raises(LayerLabError, match="already on the leaderboard; each run can be "
                                                "submitted once"):
            board.submit_run(name, run, workspace=WS_A)
    assert len(board.entries()) == 1


def test_claims_hold_under_concurrency(board):
    """20 workspaces race for one name, 10 sessions submit one run: one of each wins."""
    run = trained()
    won, refused, other = [], [], []

    def attempt(fn) -> None:
        try:
            won.append(fn())
        except LayerLabError as err:
            refused.append(str(err))
        except Exception as exc:  # pragma: no cover - would fail the test
            other.append(exc)

    jobs = [lambda ws=new_workspace_id(): board.submit_run("Zed", trained(ws), workspace=ws)
            for _ in range(20)]
    jobs += [lambda: board.submit_run("Once", run, workspace=WS_A) for _ in range(10)]
    threads = [threading.Thread(target=attempt, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not other and len(won) == 2 and len(refused) == 28
    assert sorted(e.name for e in board.entries()) == ["Once", "Zed"]


@pytest.mark.parametrize("change, reason", [
    ({"source": "imported", "recipe": {}}, "Only networks trained on this server"),
    ({"source": "pretrained"}, "Only networks trained on this server"),
    ({"recipe": {}}, "no valid training recipe stored"),
    ({"recipe": {"epochs": "many"}}, "no valid training recipe stored"),
    ({"recipe": {"secret_sauce": 1}}, "no valid training recipe stored"),
    ({"status": "interrupted"}, "Only a finished or stopped run"),
    ({"workspace": WS_B}, "belongs to another workspace"),
])
def test_only_runs_trained_here_with_their_recipe_can_go_on(board, change, reason):
    with pytest.raises(LayerLabError, match=reason):
        board.submit_run("Ann", trained(**change), workspace=WS_A)
    assert board.entries() == []
    check_submittable(trained(status="stopped"), WS_A)          # a stopped run is fine


def test_a_model_imported_from_a_file_stays_off_the_board(board, mnist):
    """The real import path (a file's weights evaluated here) makes a run the board refuses."""
    import keras

    from core.modelio import import_run, spec_from_keras

    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    run, _ = import_run(model, spec_from_keras(model), "tuned on test", WS_A, RunStore())
    assert run.test_accuracy is not None and run.params <= board.budget()
    with pytest.raises(LayerLabError, match="an imported or pretrained model cannot"):
        board.submit_run("Ann", RunStore().load_run(run.id), workspace=WS_A)


def test_teacher_token_guesses_are_limited_per_workspace_and_logged(tmp_path, monkeypatch,
                                                                    caplog):
    now = [0.0]
    board = Leaderboard(tmp_path / "b.sqlite",
                        limiter=AttemptLimiter(max_failures=5, cooldown_s=60,
                                               clock=lambda: now[0]))
    monkeypatch.setenv("LAYERLAB_RESET_TOKEN", "s3cret-token")
    caplog.set_level(logging.INFO, logger="core.leaderboard")
    for i in range(4):
        with pytest.raises(LayerLabError, match=r"^That teacher token is not right\.$"):
            board.reset(f"guess-{i}", who=WS_A)
    with pytest.raises(LayerLabError, match="After 5 wrong tries, wait 60 s"):
        board.set_budget(5_000, "guess-4", who=WS_A)
    with pytest.raises(LayerLabError, match="Too many wrong teacher tokens from this "
                                            "workspace: wait 60 s"):
        board.reset("s3cret-token", who=WS_A)        # even the right one, while cooling down
    board.set_budget(5_000, "s3cret-token", who=WS_B)  # another workspace is not blocked
    now[0] = 61.0
    board.reset("s3cret-token", who=WS_A)
    wrong = [r for r in caplog.records if "wrong token" in r.getMessage()]
    assert len(wrong) == 5 and all(r.levelno == logging.WARNING for r in wrong)
    assert any("cooling down" in r.getMessage() for r in caplog.records)
    assert not any("s3cret" in r.getMessage() or "guess-" in r.getMessage()
                   for r in caplog.records)
    assert not any(WS_A in r.getMessage() for r in caplog.records)   # only its label


def _seed(path: Path) -> None:
    Leaderboard(path).submit_run("Ann", trained(), workspace=WS_A)


SUBMIT = """
import sys
from core.errors import LayerLabError
from core.leaderboard import Leaderboard
try:
    Leaderboard(sys.argv[1]).submit("Bo", 0.9, 900, 1.0, "run-2", workspace="w")
except LayerLabError as err:
    print("SENTENCE:", err)
"""


def _submit_in_child(board: Path, prefix: list[str] | None = None,
                     preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, "-c", SUBMIT, str(board)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec)


def _assert_sentence(result: subprocess.CompletedProcess, board: Path) -> None:
    assert result.returncode == 0, result.stderr[-2000:]          # no raw traceback
    out = result.stdout
    assert out.startswith("SENTENCE: The leaderboard could not "), out + result.stderr
    assert "disk is full or read-only" in out
    assert "OperationalError" not in out and str(board.parent) not in out


def test_a_read_only_disk_on_submit_gives_a_sentence(tmp_path):
    """The board's folder mounted read-only (EROFS) in a private mount namespace; as a
    non-root user a read-only folder does the same."""
    folder = tmp_path / "ro"
    folder.mkdir()
    board = folder / "board.sqlite"
    _seed(board)
    if shutil.which("unshare") and subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode == 0:
        mount = (f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && "
                 'exec "$@"')
        result = _submit_in_child(board, ["unshare", "-rm", "sh", "-c", mount, "sh"])
    elif hasattr(sys, "getuid") and sys.getuid() != 0:   # pragma: no cover - CI as a user
        folder.chmod(0o555)
        board.chmod(0o444)
        try:
            result = _submit_in_child(board)
        finally:
            folder.chmod(0o755)
    else:  # pragma: no cover - root without user namespaces
        pytest.skip("cannot make a read-only folder here (root, and unshare is refused)")
    _assert_sentence(result, board)
    assert [e.name for e in Leaderboard(board).entries()] == ["Ann"]


def test_a_full_disk_on_submit_gives_a_sentence(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes every write past it fail as on a full disk."""
    board = tmp_path / "board.sqlite"
    _seed(board)

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    _assert_sentence(_submit_in_child(board, preexec=full_disk), board)
    assert [e.name for e in Leaderboard(board).entries()] == ["Ann"]


OLD_SCHEMA = ("CREATE TABLE entries (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
              "test_accuracy REAL NOT NULL, params INTEGER NOT NULL, train_time_s REAL NOT "
              "NULL, run_id TEXT NOT NULL, created TEXT NOT NULL)")


def test_a_board_from_before_workspaces_migrates_without_losing_entries(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.execute(OLD_SCHEMA)
        con.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO settings VALUES ('budget', '20000')")
        con.executemany("INSERT INTO entries (name, test_accuracy, params, train_time_s, "
                        "run_id, created) VALUES (?, ?, ?, ?, ?, ?)",
                        [("Ann", 0.95, 900, 1.0, "r1", "2026-01-01 10:00:00"),
                         ("Ann", 0.96, 900, 1.0, "r1", "2026-01-01 10:01:00"),  # a double
                         ("Bo", 0.97, 19_000, 2.0, "r2", "2026-01-01 10:02:00")])
    con.close()
    errors = []

    def open_board() -> None:                      # several sessions meet the old file
        try:
            Leaderboard(path).entries()
        except Exception as exc:  # pragma: no cover - would fail the test
            errors.append(exc)

    threads = [threading.Thread(target=open_board) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    board = Leaderboard(path)
    assert not errors and board.budget() == 20_000
    assert [(e.name, e.run_id, e.workspace) for e in board.entries()] == [
        ("Ann", "r1", ""), ("Ann", "r1", ""), ("Bo", "r2", "")]
    with pytest.raises(LayerLabError, match="another workspace"):
        board.submit_run("Ann", trained(), workspace=WS_A)   # old names stay their owners'
    board.submit_run("Cy", trained(test_accuracy=0.965), workspace=WS_A)
    assert [e.name for e in board.best_per_name()] == ["Bo", "Cy", "Ann"]


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
    with pytest.raises(LayerLabError, match="'<' and '>' are not allowed"):
        sanitize_name("  <script>alert(1)</script> Ann  ")   # refused, never stripped
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
