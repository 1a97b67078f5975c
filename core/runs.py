"""Runs and the run store: every training run as JSON plus ``.keras`` weights on disk.

Layout: ``<store>/<run_id>/run.json``, ``model.keras`` (final weights and optimizer
state) and ``checkpoint.keras`` (the last completed epoch). Every file is written through
:mod:`core.storage` (temp name, fsync, rename, fsync of the folder), so a crash mid-write
never leaves a half file under a real name; leftovers of killed saves are removed when a
store first opens its folder in a process. A damaged entry is skipped with a warning.

A page lists only its own workspace's runs, so the store keeps an index:
``<store>/.workspaces/<key>/<run_id>``, one empty marker per run, where ``key`` is a
hash of the workspace id (any id is a safe folder name, and ids are not spelled out on
disk). The marker is written, and its folder fsynced, before ``run.json``, so every
saved run is indexed. A store written before the index existed is indexed once, on its
first listing (``.workspaces/.complete`` records that).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

from core import priority
from core.errors import LayerLabError, StorageError
# Re-exported for the caches that still import them from here; new code uses core.storage.
from core.storage import (atomic_save, atomic_write_bytes, clean_temp_files,  # noqa: F401
                          ensure_dir, fsync_dir, layerlab_home, save_error)

log = logging.getLogger(__name__)
RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
CHECKPOINT_FILE = "checkpoint.keras"
SNAPSHOTS_FILE = "snapshots.npz"
MAX_SNAPSHOT_FILE = 4 << 20          # a run's snapshots stay under 1 MB; refuse far more
INDEX_DIR = ".workspaces"
INDEX_COMPLETE = ".complete"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_opened: set[str] = set()            # store folders already swept in this process
_opened_lock = threading.Lock()


def default_store_dir() -> Path:
    """``$LAYERLAB_HOME/runs``, default ``~/.layerlab/runs``."""
    return layerlab_home() / "runs"


def new_run_id() -> str:
    """A sortable, unique run id: local time, then 6 random hex digits.

    >>> rid = new_run_id()
    >>> len(rid), rid[8], rid[15], bool(_ID_RE.match(rid))
    (22, '-', '-', True)
    """
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def workspace_key(workspace: str) -> str:
    """The index folder of a workspace: a hash, so any id is a safe, unspelled name.

    >>> workspace_key("class-7") == workspace_key("class-7") != workspace_key("class-8")
    True
    >>> len(workspace_key("")), workspace_key("../x").isalnum()
    (32, True)
    """
    return hashlib.sha256(workspace.encode("utf-8", "surrogatepass")).hexdigest()[:32]


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
    def from_dict(cls, data: Any) -> "Run":
        """A run from its record; unknown keys are ignored, a bad record is refused.

        >>> Run.from_dict({"id": "r-1", "name": "mlp", "spec": {}, "recipe": {},
        ...                "extra": 1}).name
        'mlp'
        >>> Run.from_dict({"id": "../etc", "name": "x", "spec": {}, "recipe": {}})
        Traceback (most recent call last):
        ...
        core.errors.StorageError: The run record's id '../etc' is not valid: ...
        """
        if not isinstance(data, dict):
            raise StorageError("A run record must be a JSON object.")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            run = cls(**known)
        except TypeError:
            raise StorageError("The run record lacks a required field (id, name, spec "
                               "and recipe are needed).") from None
        if not isinstance(run.id, str) or not _ID_RE.match(run.id):
            raise StorageError(f"The run record's id {str(run.id)[:40]!r} is not valid: "
                               f"ids use letters, digits, '-' and '_' only.")
        return run


def read_run(path: Path) -> Run:
    """The run record in a JSON file (the one reader: stores and pretrained presets).

    Raises :class:`StorageError` with a sentence; the path goes to the log only.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read run record %s: %r", path, exc)
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise StorageError(f"The run record could not be read ({reason}).") from None
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("run record %s is not valid JSON", path)
        raise StorageError("The run record is not valid JSON.") from None
    return Run.from_dict(data)



def read_snapshots(path: Path) -> dict[str, Any] | None:
    """The snapshot arrays in ``path`` (see :mod:`core.snapshots`), read-only, or None when
    the file is missing, too large or damaged (logged; a run without snapshots is no error).

    A file is decompressed once per version (its inode, size and modification time, all
    new after an atomic save): Compare and the replays read the same files at every view.
    A new version replaces the file's old one in the cache.
    """
    import numpy as np  # noqa: PLC0415

    key = str(path)
    try:
        info = path.stat()
        if not S_ISREG(info.st_mode) or info.st_size > MAX_SNAPSHOT_FILE:
            return None
        version = (info.st_ino, info.st_size, info.st_mtime_ns)
        with _SNAPSHOT_LOCK:
            held = _SNAPSHOT_CACHE.pop(key, None)
            if held is not None and held[0] == version:
                _SNAPSHOT_CACHE[key] = held                          # most recent last
                return dict(held[1])
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("cannot read snapshots %s: %r", path, exc)
        return None
    for value in arrays.values():
        value.flags.writeable = False         # shared by every reader of this version
    with _SNAPSHOT_LOCK:
        _SNAPSHOT_CACHE[key] = (version, arrays)
        while len(_SNAPSHOT_CACHE) > SNAPSHOT_CACHE_FILES:
            _SNAPSHOT_CACHE.pop(next(iter(_SNAPSHOT_CACHE)))
    return dict(arrays)


SNAPSHOT_CACHE_FILES = 16       # the eight presets' files and a class's recent runs
_SNAPSHOT_CACHE: dict[str, tuple[tuple, dict[str, Any]]] = {}   # path -> (version, arrays)
_SNAPSHOT_LOCK = threading.Lock()


def snapshots_bytes(arrays: dict[str, Any]) -> bytes:
    """The snapshot arrays as a compressed ``.npz`` file's bytes."""
    import io  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


class RunStore:
    """Runs on disk under one folder."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        self.warnings: list[str] = []
        self._open_once()

    def _open_once(self) -> None:
        """Remove leftovers of saves killed in an earlier process (once per folder)."""
        key = str(self.root.resolve())
        with _opened_lock:
            if key in _opened:
                return
            _opened.add(key)
        clean_temp_files(self.root, depth=1)

    def run_dir(self, run_id: str) -> Path:
        if not _ID_RE.match(run_id):
            raise LayerLabError(f"{run_id[:40]!r} is not a valid run id.")
        return self.root / run_id

    def save_run(self, run: Run) -> None:
        """Index the run, then write run.json atomically. Raises StorageError saying why."""
        try:
            self._index(run, durable=True)
            atomic_write_bytes(self.run_dir(run.id) / RUN_FILE,
                               json.dumps(run.to_dict(), indent=1).encode())
        except OSError as exc:
            raise save_error(f"save run {run.name[:48]!r}", exc, self.root) from None

    def save_model(self, run_id: str, model: Any, filename: str = MODEL_FILE) -> Path:
        """Save a keras model atomically into the run's folder."""
        path = self.run_dir(run_id) / filename
        try:
            atomic_save(path, lambda tmp: model.save(tmp))
        except OSError as exc:
            raise save_error(f"save the weights of run {run_id}", exc, path) from None
        return path

    def save_snapshots(self, run_id: str, arrays: dict[str, Any]) -> None:
        """Write the run's snapshots atomically. Raises StorageError saying why."""
        path = self.run_dir(run_id) / SNAPSHOTS_FILE
        try:
            atomic_write_bytes(path, snapshots_bytes(arrays))
        except OSError as exc:
            raise save_error(f"save the snapshots of run {run_id}", exc, path) from None

    def load_snapshots(self, run_id: str) -> dict[str, Any] | None:
        """The run's snapshot arrays, or None when it has none (or they are damaged)."""
        return read_snapshots(self.run_dir(run_id) / SNAPSHOTS_FILE)

    def load_run(self, run_id: str) -> Run:
        try:
            return read_run(self.run_dir(run_id) / RUN_FILE)
        except StorageError as err:
            raise StorageError(f"Run {run_id} is damaged and was skipped. {err}") from None

    def list_runs(self, workspace: str | None = None) -> list[Run]:
        """Readable runs (newest first), all or one workspace's; damaged entries go to
        ``self.warnings``. A workspace's listing reads only that workspace's files."""
        self.warnings = []
        if not self.root.is_dir():
            return []
        if workspace is None:
            ids = [e.name for e in os.scandir(self.root) if e.is_dir() and _ID_RE.match(e.name)]
        else:
            self._ensure_index()
            ids = self._indexed(workspace)
        runs = []
        for run_id in sorted(ids, reverse=True):
            if not (self.root / run_id / RUN_FILE).exists():
                continue                    # a crash before run.json: not a run (yet)
            try:
                run = self.load_run(run_id)
            except LayerLabError as err:
                self.warnings.append(str(err))
                log.warning("%s", err)
                continue
            if run.status == "running":
                run.status = "interrupted"   # the process died while it trained
            if workspace is None or run.workspace == workspace:
                runs.append(run)
        return runs

    # -- the workspace index ------------------------------------------------------------
    def _index_dir(self, workspace: str) -> Path:
        return self.root / INDEX_DIR / workspace_key(workspace)

    def _index(self, run: Run, durable: bool) -> None:
        """Create the run's marker in its workspace's index (fsynced when ``durable``)."""
        folder = self._index_dir(run.workspace)
        marker = folder / run.id
        if marker.exists():
            return
        ensure_dir(folder)
        with open(marker, "ab"):
            pass
        if durable:
            fsync_dir(folder)

    def _indexed(self, workspace: str) -> list[str]:
        try:
            return [n for n in os.listdir(self._index_dir(workspace)) if _ID_RE.match(n)]
        except FileNotFoundError:
            return []

    def _ensure_index(self) -> None:
        """Index a store written before the index existed (reads every run once)."""
        done = self.root / INDEX_DIR / INDEX_COMPLETE
        if done.exists():
            return
        folders: set[Path] = set()
        for entry in os.scandir(self.root):
            if not entry.is_dir() or not _ID_RE.match(entry.name) \
                    or not os.path.exists(os.path.join(entry.path, RUN_FILE)):
                continue
            try:
                run = self.load_run(entry.name)
                self._index(run, durable=False)
            except (LayerLabError, OSError) as err:
                log.warning("not indexed: %s", err)   # damaged, or a read-only store
                continue
            folders.add(self._index_dir(run.workspace))
        try:
            for folder in folders:
                fsync_dir(folder)
            atomic_write_bytes(done, b"1\n")
        except OSError as exc:                       # read-only: index again next time
            log.warning("the run index of %s cannot be written: %r", self.root, exc)

    def model_path(self, run_id: str) -> Path | None:
        """The final weights, else the last epoch's checkpoint, else None."""
        for name in (MODEL_FILE, CHECKPOINT_FILE):
            path = self.run_dir(run_id) / name
            if path.is_file():
                return path
        return None

    def load_model(self, run_id: str) -> Any:
        """Load a run's weights (our own files, still with safe_mode=True)."""
        priority.ensure_tensorflow()  # its pools below the pages' priority (core/priority)
        import keras  # noqa: PLC0415

        from core.build import register_layers  # noqa: PLC0415

        register_layers()
        path = self.model_path(run_id)
        if path is None:
            raise LayerLabError(f"Run {run_id} has no saved weights.")
        try:
            return keras.models.load_model(path, safe_mode=True)
        except Exception as exc:  # a damaged zip, a truncated h5 ...
            log.warning("cannot load %s: %r", path, exc)
            raise StorageError(f"The weights of run {run_id} could not be loaded; they "
                               f"are damaged.") from None
