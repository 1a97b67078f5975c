"""The classroom challenge: a parameter budget and a shared leaderboard in SQLite.

One small database under ``$LAYERLAB_HOME`` (default ``~/.layerlab``) is shared by every
browser session on the server. SQLite's own locking (WAL mode, a busy timeout, one
connection per call) makes concurrent submissions safe: none is lost. Resetting the board
or changing the budget needs the token from ``LAYERLAB_RESET_TOKEN``.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from core.errors import LayerLabError, StorageError
from core.storage import layerlab_home

_log = logging.getLogger(__name__)
DEFAULT_BUDGET = 10_000
MAX_NAME = 24
_NAME_OK = re.compile(r"[^A-Za-z0-9 _.\-]")


@dataclass(frozen=True)
class Entry:
    name: str
    test_accuracy: float
    params: int
    train_time_s: float
    run_id: str
    created: str


def default_path() -> Path:
    """``$LAYERLAB_HOME/leaderboard.sqlite``."""
    return layerlab_home() / "leaderboard.sqlite"


def sanitize_name(name: str) -> str:
    """Letters, digits, spaces and ``_.-`` only, at most 24 characters."""
    cleaned = " ".join(_NAME_OK.sub("", str(name)).split())[:MAX_NAME].strip()
    if not cleaned:
        raise LayerLabError("Enter a name for the leaderboard (letters, digits, spaces, "
                            "'-', '_' or '.').")
    return cleaned


class Leaderboard:
    """The shared board. Every method opens its own short-lived connection."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            _log.warning("cannot open the leaderboard at %s: %r", self.path, exc)
            raise StorageError("The leaderboard cannot be opened. Ask whoever runs the server "
                               "to set LAYERLAB_HOME to a writable folder.") from None
        con.execute("PRAGMA busy_timeout = 30000")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, test_accuracy REAL NOT NULL, params INTEGER NOT NULL,"
                    " train_time_s REAL NOT NULL, run_id TEXT NOT NULL, created TEXT NOT NULL)")
        con.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)")
        return con

    def budget(self) -> int:
        with closing(self._connect()) as con:
            row = con.execute("SELECT value FROM settings WHERE key='budget'").fetchone()
        return int(row[0]) if row else DEFAULT_BUDGET

    def set_budget(self, budget: int, token: str) -> None:
        self._check_token(token)
        if not 100 <= int(budget) <= 50_000_000:
            raise LayerLabError("The budget must be between 100 and 50,000,000 parameters.")
        with closing(self._connect()) as con:
            con.execute("INSERT OR REPLACE INTO settings VALUES ('budget', ?)", (str(int(budget)),))

    def submit(self, name: str, test_accuracy: float | None, params: int,
               train_time_s: float, run_id: str) -> Entry:
        """Add a finished run's result; refused if over budget or not evaluated."""
        name = sanitize_name(name)
        if test_accuracy is None:
            raise LayerLabError("Only a run with a test accuracy can be submitted: let it "
                                "finish (or stop it after at least one epoch) first.")
        budget = self.budget()
        if params > budget:
            raise LayerLabError(f"This network has {params:,} parameters, over the "
                                f"challenge budget of {budget:,}. Make it smaller.")
        entry = Entry(name, float(test_accuracy), int(params), float(train_time_s), run_id,
                      time.strftime("%Y-%m-%d %H:%M:%S"))
        with closing(self._connect()) as con:
            con.execute("INSERT INTO entries (name, test_accuracy, params, train_time_s, "
                        "run_id, created) VALUES (?, ?, ?, ?, ?, ?)",
                        (entry.name, entry.test_accuracy, entry.params, entry.train_time_s,
                         entry.run_id, entry.created))
        return entry

    def entries(self) -> list[Entry]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT name, test_accuracy, params, train_time_s, run_id, "
                               "created FROM entries ORDER BY id").fetchall()
        return [Entry(*r) for r in rows]

    def best_per_name(self) -> list[Entry]:
        """Each name's best entry (ties: fewer parameters), best first."""
        best: dict[str, Entry] = {}
        for e in self.entries():
            cur = best.get(e.name)
            if cur is None or (e.test_accuracy, -e.params) > (cur.test_accuracy, -cur.params):
                best[e.name] = e
        return sorted(best.values(), key=lambda e: (-e.test_accuracy, e.params))

    def reset(self, token: str) -> None:
        self._check_token(token)
        with closing(self._connect()) as con:
            con.execute("DELETE FROM entries")

    @staticmethod
    def _check_token(token: str) -> None:
        expected = os.environ.get("LAYERLAB_RESET_TOKEN", "")
        if not expected:
            raise LayerLabError("No teacher token is configured: start the app with "
                                "LAYERLAB_RESET_TOKEN=… to allow resets and budget changes.")
        if not hmac.compare_digest(str(token).encode(), expected.encode()):
            raise LayerLabError("That teacher token is not right.")
