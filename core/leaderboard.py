"""The classroom challenge: a parameter budget and a shared leaderboard in SQLite.

One small database under ``$LAYERLAB_HOME`` (default ``~/.layerlab``) is shared by every
browser session on the server. SQLite's own locking (WAL mode, a busy timeout, one
connection per call) makes concurrent submissions safe: none is lost. A submission's
checks and its insert share one ``BEGIN IMMEDIATE`` transaction, so two sessions cannot
both pass "is this name free?" and then both write.

Honesty rules: an entry belongs to a workspace (stored, never shown); a name belongs to
the first workspace that uses it; a run goes on the board once; only runs trained on
this server with their recipe stored count (:func:`check_submittable`). Every
submission is kept (:meth:`Leaderboard.entries`); the board shows each name's best
(:meth:`Leaderboard.best_per_name`), so a better result replaces a worse one there.

Resetting the board or changing the budget needs the token from
``LAYERLAB_RESET_TOKEN``; wrong tokens are counted per workspace (:class:`AttemptLimiter`)
and logged without the token. Database errors (a full or read-only disk) become a
sentence for the page; the details go to the server log.
"""
from __future__ import annotations

import hmac
import logging
import math
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from core.errors import LayerLabError, SpecError, StorageError
from core.recipe import Recipe
from core.runs import Run
from core.storage import layerlab_home
from core.workspace import label

log = logging.getLogger(__name__)
DEFAULT_BUDGET = 10_000
MAX_NAME = 24
NAME_RULE = "letters, digits, spaces, '-', '_' or '.'"
_NAME_BAD = re.compile(r"[^A-Za-z0-9 _.\-]")
SUBMITTABLE_STATUS = ("finished", "stopped")
_TABLES = (
    "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "test_accuracy REAL NOT NULL, params INTEGER NOT NULL, train_time_s REAL NOT NULL, "
    "run_id TEXT NOT NULL, created TEXT NOT NULL, workspace TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)",
)
_INDEXES = ("CREATE INDEX IF NOT EXISTS entries_run ON entries (run_id)",
            "CREATE INDEX IF NOT EXISTS entries_name ON entries (name COLLATE NOCASE)")


@dataclass(frozen=True)
class Entry:
    name: str
    test_accuracy: float
    params: int
    train_time_s: float
    run_id: str
    created: str
    workspace: str = ""        # who submitted it; never shown on the page


def default_path() -> Path:
    """``$LAYERLAB_HOME/leaderboard.sqlite``."""
    return layerlab_home() / "leaderboard.sqlite"


def sanitize_name(name: str) -> str:
    """The name with its spaces tidied, at most 24 characters; anything other than
    letters, digits, spaces and ``_.-`` is refused with the rule, never stripped.

    >>> sanitize_name("  Ada   Lovelace ")
    'Ada Lovelace'
    >>> sanitize_name("<b>Bobby</b>")
    Traceback (most recent call last):
    ...
    core.errors.LayerLabError: Enter a name for the leaderboard with only letters, digits, spaces, '-', '_' or '.': '/', '<' and '>' are not allowed.
    """
    text = " ".join(str(name).split())
    bad = sorted(set(_NAME_BAD.findall(text)))
    if bad:
        shown = [repr(c) for c in bad[:5]]
        listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        raise LayerLabError(f"Enter a name for the leaderboard with only {NAME_RULE}: "
                            f"{listed} {'is' if len(bad) == 1 else 'are'} not allowed.")
    cleaned = text[:MAX_NAME].strip()
    if not cleaned:
        raise LayerLabError(f"Enter a name for the leaderboard ({NAME_RULE}).")
    return cleaned


def check_submittable(run: Run, workspace: str) -> None:
    """Refuse, with the reason, a run the board must not take: another workspace's, one
    not trained on this server (imported, pretrained), one without its recipe stored, or
    one not finished.

    >>> ok = Run(id="r1", name="mine", spec={}, recipe={"epochs": 3}, workspace="w",
    ...          status="finished", test_accuracy=0.98, params=900)
    >>> check_submittable(ok, "w")
    >>> check_submittable(Run(id="r2", name="x", spec={}, recipe={}, workspace="w",
    ...                       status="finished", source="imported"), "w")
    Traceback (most recent call last):
    ...
    core.errors.LayerLabError: Only networks trained on this server can go on the board; an imported or pretrained model cannot. Train it on the Train page first.
    """
    if run.workspace != workspace:
        raise LayerLabError("That run belongs to another workspace; submit one of your own.")
    if run.source != "session":
        raise LayerLabError("Only networks trained on this server can go on the board; an "
                            "imported or pretrained model cannot. Train it on the Train "
                            "page first.")
    try:
        if not run.recipe:
            raise SpecError("no recipe")
        Recipe.from_dict(run.recipe)
    except (SpecError, TypeError):
        raise LayerLabError("This run has no valid training recipe stored, so its result "
                            "cannot be checked; train it again on the Train page.") from None
    if run.status not in SUBMITTABLE_STATUS:
        raise LayerLabError("Only a finished or stopped run can be submitted; this one is "
                            f"{run.status}.")


class AttemptLimiter:
    """Wrong tries per key (a workspace): after ``max_failures`` in a row the key waits
    ``cooldown_s`` seconds, then starts afresh. A right try clears its count.

    >>> now = [0.0]
    >>> lim = AttemptLimiter(max_failures=2, cooldown_s=60, clock=lambda: now[0])
    >>> lim.failed("ws"), lim.wait_s("ws"), lim.failed("ws"), lim.wait_s("ws")
    (1, 0.0, 2, 60.0)
    >>> now[0] = 61.0
    >>> lim.wait_s("ws"), lim.failed("ws")
    (0.0, 1)
    """

    def __init__(self, max_failures: int = 5, cooldown_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.cooldown_s, self._clock = max_failures, cooldown_s, clock
        self._state: dict[str, tuple[int, float]] = {}   # key -> (failures, last failure)
        self._lock = threading.Lock()

    def _current(self, key: str) -> tuple[int, float]:
        failures, last = self._state.get(key, (0, 0.0))
        if failures >= self.max_failures and self._clock() - last >= self.cooldown_s:
            self._state.pop(key, None)          # the cool-down is over
            return 0, 0.0
        return failures, last

    def wait_s(self, key: str) -> float:
        """Seconds before ``key`` may try again (0 when it may now)."""
        with self._lock:
            failures, last = self._current(key)
            if failures < self.max_failures:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - last))

    def failed(self, key: str) -> int:
        """Count a wrong try; returns the wrong tries in a row."""
        with self._lock:
            failures = self._current(key)[0] + 1
            self._state[key] = (failures, self._clock())
            if len(self._state) > 10_000:       # bounded: forget keys that have cooled down
                now = self._clock()
                self._state = {k: v for k, v in self._state.items()
                               if now - v[1] < self.cooldown_s}
            return failures

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)


TOKEN_ATTEMPTS = AttemptLimiter()     # shared by every session of this server process


def _ensure_schema(con: sqlite3.Connection) -> None:
    """Create the tables, and add the workspace column to a board from before it
    (old entries keep everything, with an empty workspace)."""
    for sql in _TABLES:
        con.execute(sql)
    if "workspace" not in _columns(con):
        con.execute("BEGIN IMMEDIATE")       # one session migrates; the others wait
        try:
            if "workspace" not in _columns(con):
                con.execute("ALTER TABLE entries ADD COLUMN workspace TEXT NOT NULL "
                            "DEFAULT ''")
            con.execute("COMMIT")
        finally:
            if con.in_transaction:
                con.execute("ROLLBACK")
    for sql in _INDEXES:
        con.execute(sql)


def _columns(con: sqlite3.Connection) -> set[str]:
    return {row[1] for row in con.execute("PRAGMA table_info(entries)")}


class Leaderboard:
    """The shared board. Every method opens its own short-lived connection."""

    def __init__(self, path: str | os.PathLike | None = None,
                 limiter: AttemptLimiter | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.limiter = limiter if limiter is not None else TOKEN_ATTEMPTS

    @contextmanager
    def _db(self, failed: str) -> Iterator[sqlite3.Connection]:
        """A connection; a database or disk error becomes ``failed`` + why (logged in full).

        ``failed`` completes "The leaderboard could not …", e.g. "save your entry".
        """
        con = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA journal_mode = WAL")
            _ensure_schema(con)
            yield con
        except (OSError, sqlite3.Error) as exc:
            log.error("Leaderboard %s: could not %s: %s: %s", self.path, failed,
                      type(exc).__name__, exc)
            raise StorageError(f"The leaderboard could not {failed}: the server's disk is "
                                "full or read-only, or the board is damaged. Tell your "
                                "teacher (the server log has the details).") from None
        finally:
            if con is not None:
                con.close()

    def budget(self) -> int:
        with self._db("be read") as con:
            row = con.execute("SELECT value FROM settings WHERE key='budget'").fetchone()
        return int(row[0]) if row else DEFAULT_BUDGET

    def set_budget(self, budget: int, token: str, *, who: str = "") -> None:
        """Change the budget; ``who`` (a workspace) is the key for counting wrong tokens."""
        self._check_token(token, who, "change the budget")
        if not 100 <= int(budget) <= 50_000_000:
            raise LayerLabError("The budget must be between 100 and 50,000,000 parameters.")
        with self._db("change the budget") as con:
            con.execute("INSERT OR REPLACE INTO settings VALUES ('budget', ?)", (str(int(budget)),))

    def submit_run(self, name: str, run: Run, *, workspace: str) -> Entry:
        """Put ``run`` of ``workspace`` on the board after :func:`check_submittable`."""
        check_submittable(run, workspace)
        return self.submit(name, run.test_accuracy, run.params, run.wall_time_s, run.id,
                           workspace=workspace)

    def submit(self, name: str, test_accuracy: float | None, params: int,
               train_time_s: float, run_id: str, *, workspace: str = "") -> Entry:
        """Add a result; refused if over budget, not evaluated, the run is already on the
        board, or the name belongs to another workspace. Pages use :meth:`submit_run`."""
        name = sanitize_name(name)
        if test_accuracy is None:
            raise LayerLabError("Only a run with a test accuracy can be submitted: let it "
                                "finish (or stop it after at least one epoch) first.")
        budget = self.budget()
        if params > budget:
            raise LayerLabError(f"This network has {params:,} parameters, over the "
                                f"challenge budget of {budget:,}. Make it smaller.")
        entry = Entry(name, float(test_accuracy), int(params), float(train_time_s), run_id,
                      time.strftime("%Y-%m-%d %H:%M:%S"), workspace)
        with self._db("save your entry") as con:
            con.execute("BEGIN IMMEDIATE")   # the checks and the insert as one step
            try:
                _check_claims(con, entry)
                con.execute("INSERT INTO entries (name, test_accuracy, params, train_time_s,"
                            " run_id, created, workspace) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (entry.name, entry.test_accuracy, entry.params,
                             entry.train_time_s, entry.run_id, entry.created, workspace))
                con.execute("COMMIT")
            finally:
                if con.in_transaction:
                    con.execute("ROLLBACK")
        return entry

    def entries(self) -> list[Entry]:
        """Every submission ever accepted, oldest first."""
        with self._db("be read") as con:
            rows = con.execute("SELECT name, test_accuracy, params, train_time_s, run_id, "
                               "created, workspace FROM entries ORDER BY id").fetchall()
        return [Entry(*r) for r in rows]

    def best_per_name(self) -> list[Entry]:
        """The board: each name's best entry (ties: fewer parameters), best first."""
        best: dict[str, Entry] = {}
        for e in self.entries():
            cur = best.get(e.name)
            if cur is None or (e.test_accuracy, -e.params) > (cur.test_accuracy, -cur.params):
                best[e.name] = e
        return sorted(best.values(), key=lambda e: (-e.test_accuracy, e.params))

    def reset(self, token: str, *, who: str = "") -> None:
        self._check_token(token, who, "reset the board")
        with self._db("be reset") as con:
            con.execute("DELETE FROM entries")

    def _check_token(self, token: str, who: str, action: str) -> None:
        """The teacher token, compared in constant time, at most ``max_failures`` wrong
        tries per workspace before a cool-down; every wrong try is logged (not the token)."""
        expected = os.environ.get("LAYERLAB_RESET_TOKEN", "")
        if not expected:
            raise LayerLabError("No teacher token is configured: start the app with "
                                "LAYERLAB_RESET_TOKEN=… to allow resets and budget changes.")
        wait = self.limiter.wait_s(who)
        if wait > 0:
            log.warning("Teacher token: %s refused for workspace %s (cooling down).",
                        action, label(who))
            raise LayerLabError(f"Too many wrong teacher tokens from this workspace: wait "
                                f"{math.ceil(wait)} s, then try again.")
        if not hmac.compare_digest(str(token).encode(), expected.encode()):
            tries = self.limiter.failed(who)
            log.warning("Teacher token: wrong token to %s from workspace %s (%d in a row).",
                        action, label(who), tries)
            if tries >= self.limiter.max_failures:
                raise LayerLabError(f"That teacher token is not right. After {tries} wrong "
                                    f"tries, wait {math.ceil(self.limiter.cooldown_s)} s "
                                    "before the next one.")
            raise LayerLabError("That teacher token is not right.")
        self.limiter.succeeded(who)
        log.info("Teacher token: %s by workspace %s.", action, label(who))


def _check_claims(con: sqlite3.Connection, entry: Entry) -> None:
    """Refuse a run already on the board, or a name that another workspace uses."""
    if con.execute("SELECT 1 FROM entries WHERE run_id = ? LIMIT 1",
                   (entry.run_id,)).fetchone():
        raise LayerLabError("This run is already on the leaderboard; each run can be "
                            "submitted once. Train a new run to improve your entry.")
    if con.execute("SELECT 1 FROM entries WHERE name = ? COLLATE NOCASE AND workspace != ? "
                   "LIMIT 1", (entry.name, entry.workspace)).fetchone():
        raise LayerLabError(f"The name '{entry.name}' is already on the board for another "
                            "workspace; choose a different name.")
