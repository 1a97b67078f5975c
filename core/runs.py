"""Runs and the run store: every training run as JSON plus ``.keras`` weights on disk.

Layout: ``<store>/<run_id>/run.json``, ``model.keras`` (final weights and optimizer
state) and ``checkpoint.keras`` (the last completed epoch). Every file is written to a
temporary name in the same folder and renamed into place, so a crash mid-write never
leaves a half file under a real name. A damaged entry is skipped with a warning.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.errors import LayerLabError

log = logging.getLogger(__name__)
RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
CHECKPOINT_FILE = "checkpoint.keras"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def layerlab_home() -> Path:
    """``$LAYERLAB_HOME``, default ``~/.layerlab``: runs, caches and the leaderboard."""
    home = os.environ.get("LAYERLAB_HOME") or os.path.join(Path.home(), ".layerlab")
    return Path(home).expanduser()


def default_store_dir() -> Path:
    """``$LAYERLAB_HOME/runs``, default ``~/.layerlab/runs``."""
    return layerlab_home() / "runs"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class Run:
    """Everything known about one training run (JSON-serialisable)."""

    id: str
    name: str
    spec: dict[str, Any]
    recipe: dict[str, Any]
    workspace: str = ""
    device: str = ""
    params: int = 0
    status: str = "running"        # running | finished | stopped | failed | interrupted
    message: str = ""
    history: dict[str, list[float]] = field(default_factory=dict)   # per epoch
    batch_history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0
    epochs_done: int = 0
    test_accuracy: float | None = None
    test_loss: float | None = None
    confusion: list[list[int]] | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    parent: str | None = None       # run this one resumed from
    source: str = "session"         # session | pretrained

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Run":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        run = cls(**known)
        if not isinstance(run.id, str) or not _ID_RE.match(run.id):
            raise ValueError(f"bad run id {run.id!r}")
        return run


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)            # mkstemp makes 0600; runs are ordinary files
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(path: Path, save: Callable[[Path], None]) -> None:
    """Call ``save(tmp_path)`` on a temp file (same suffix), then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        save(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunStore:
    """Runs on disk under one folder."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        self.warnings: list[str] = []

    def run_dir(self, run_id: str) -> Path:
        if not _ID_RE.match(run_id):
            raise LayerLabError(f"{run_id!r} is not a valid run id.")
        return self.root / run_id

    def save_run(self, run: Run) -> None:
        """Write run.json atomically. Raises LayerLabError saying why it cannot."""
        try:
            atomic_write_bytes(self.run_dir(run.id) / RUN_FILE,
                               json.dumps(run.to_dict(), indent=1).encode())
        except OSError as exc:
            raise LayerLabError(f"Could not save run {run.name!r} to {self.root} "
                                f"({exc.strerror or exc}). Free some disk space or set "
                                f"LAYERLAB_HOME to a writable folder.") from None

    def save_model(self, run_id: str, model: Any, filename: str = MODEL_FILE) -> Path:
        """Save a keras model atomically into the run's folder."""
        path = self.run_dir(run_id) / filename
        try:
            atomic_save(path, lambda tmp: model.save(tmp))
        except OSError as exc:
            raise LayerLabError(f"Could not save the weights to {path} "
                                f"({exc.strerror or exc}). Free some disk space or set "
                                f"LAYERLAB_HOME to a writable folder.") from None
        return path

    def load_run(self, run_id: str) -> Run:
        path = self.run_dir(run_id) / RUN_FILE
        try:
            return Run.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise LayerLabError(f"Run {run_id} could not be read ({exc}); "
                                f"it is damaged and was skipped.") from None

    def list_runs(self, workspace: str | None = None) -> list[Run]:
        """Every readable run (newest first); damaged entries go to ``self.warnings``."""
        self.warnings = []
        if not self.root.is_dir():
            return []
        runs = []
        for entry in sorted(self.root.iterdir(), reverse=True):
            if not entry.is_dir() or entry.name.startswith(".") \
                    or not (entry / RUN_FILE).exists():
                continue
            try:
                run = self.load_run(entry.name)
            except LayerLabError as err:
                self.warnings.append(str(err))
                log.warning("%s", err)
                continue
            if run.status == "running":
                run.status = "interrupted"   # the process died while it trained
            if workspace is None or run.workspace == workspace:
                runs.append(run)
        return runs

    def model_path(self, run_id: str) -> Path | None:
        """The final weights, else the last epoch's checkpoint, else None."""
        for name in (MODEL_FILE, CHECKPOINT_FILE):
            path = self.run_dir(run_id) / name
            if path.is_file():
                return path
        return None

    def load_model(self, run_id: str) -> Any:
        """Load a run's weights (our own files, still with safe_mode=True)."""
        import keras  # noqa: PLC0415

        path = self.model_path(run_id)
        if path is None:
            raise LayerLabError(f"Run {run_id} has no saved weights.")
        try:
            return keras.models.load_model(path, safe_mode=True)
        except Exception as exc:  # a damaged zip, a truncated h5 ...
            raise LayerLabError(f"The weights of run {run_id} could not be loaded "
                                f"({type(exc).__name__}); they are damaged.") from None
