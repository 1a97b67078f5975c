"""Where Layer Lab keeps its files, and how it writes them so a crash never half-writes one.

Everything lives under :func:`layerlab_home`. A file is written to a temporary name in
its own folder, flushed and fsynced, renamed over the real name, and then the folder is
fsynced so the rename itself survives a power cut. A reader therefore sees the old file
or the new one, never a mix.

Temporary names are ``.<name>.<pid>-<8 hex>.tmp<suffix>`` (the suffix is kept because
Keras picks the format from it). A save killed mid-write leaves such a file behind;
:func:`clean_temp_files` removes them, but never one that a save in this process is
still writing (they are registered while in flight) and never a young one of another
live process.

These functions raise ``OSError``; the caller turns it into a sentence with
:func:`save_error`, which logs the path and the exception for the server's operator and
keeps both out of what a viewer sees.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

from core.errors import StorageError

log = logging.getLogger(__name__)

# A temp file this old is a leftover even if its pid belongs to a live process (pids are
# reused); saves take seconds, so minutes leave a wide margin.
STALE_AFTER_S = 15 * 60
_TEMP_RE = re.compile(r"^\.(?P<base>.+)\.(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp(?:\.[A-Za-z0-9]+)?$")
_live: set[str] = set()              # temp paths this process is writing right now
_live_lock = threading.Lock()


def layerlab_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$LAYERLAB_HOME``, default ``~/.layerlab``: runs, caches and the leaderboard.

    >>> str(layerlab_home({"LAYERLAB_HOME": "/srv/layerlab"}))
    '/srv/layerlab'
    >>> layerlab_home({}).name
    '.layerlab'
    """
    env = os.environ if environ is None else environ
    home = env.get("LAYERLAB_HOME") or os.path.join(Path.home(), ".layerlab")
    return Path(home).expanduser()


def temp_name(name: str, pid: int, token: str) -> str:
    """The temporary name a save of ``name`` writes first (same folder, hidden).

    >>> temp_name("checkpoint.keras", 4242, "0a1b2c3d")
    '.checkpoint.keras.4242-0a1b2c3d.tmp.keras'
    >>> temp_name("run.json", 7, "ffffffff")
    '.run.json.7-ffffffff.tmp.json'
    """
    suffix = os.path.splitext(name)[1]
    return f".{name}.{pid}-{token}.tmp{suffix}"


def temp_owner(name: str) -> int | None:
    """The pid in a temp name; 0 for the older pid-less temp names; None if not a temp.

    >>> temp_owner(".run.json.4242-0a1b2c3d.tmp.json")
    4242
    >>> temp_owner(".run.json.k2x_9q1z.tmp")          # written by an older version
    0
    >>> temp_owner("run.json") is None and temp_owner(".hidden") is None
    True
    """
    match = _TEMP_RE.match(name)
    if match is None:
        return None
    return int(match["pid"]) if match["pid"] else 0


def is_leftover(name: str, age_s: float, *, live: bool, owner_alive: bool) -> bool:
    """Whether a file may be deleted as the leftover of a killed save.

    Only the store's own temp names; never one a save in this process is writing; one
    of another live process only once it is :data:`STALE_AFTER_S` old.

    >>> is_leftover(".run.json.9-0a1b2c3d.tmp.json", 1.0, live=False, owner_alive=False)
    True
    >>> is_leftover(".run.json.9-0a1b2c3d.tmp.json", 1.0, live=True, owner_alive=True)
    False
    >>> is_leftover(".run.json.9-0a1b2c3d.tmp.json", 60.0, live=False, owner_alive=True)
    False
    >>> is_leftover("run.json", 1e9, live=False, owner_alive=False)
    False
    """
    if live or temp_owner(name) is None:
        return False
    return not owner_alive or age_s > STALE_AFTER_S


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False            # our own saves in flight are in _live; others are leftovers
    if pid <= 0:
        return True             # an old pid-less name: judged by its age alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temp_files(folder: Path, depth: int = 1) -> list[Path]:
    """Delete leftovers of killed saves in ``folder`` and ``depth`` levels below it."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if depth > 0:
                removed += clean_temp_files(Path(entry.path), depth - 1)
            continue
        owner = temp_owner(entry.name)
        if owner is None:
            continue
        with _live_lock:        # held while deciding: a save cannot start on this name
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
                if is_leftover(entry.name, age, live=entry.path in _live,
                               owner_alive=_pid_alive(owner)):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                continue        # gone already, or not ours to delete
    if removed:
        log.info("removed %d leftover temp file(s) under %s", len(removed), folder)
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in ``folder`` durable (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        if os.name != "posix":
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def ensure_dir(folder: Path) -> None:
    """Create ``folder`` (and parents) durably: the parent is fsynced when it is new."""
    if folder.is_dir():
        return
    ensure_dir(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return
    fsync_dir(folder.parent)


@contextmanager
def _temp_for(path: Path) -> Iterator[Path]:
    """A registered temp path beside ``path``; removed again if the block fails."""
    ensure_dir(path.parent)
    tmp = path.with_name(temp_name(path.name, os.getpid(), uuid.uuid4().hex[:8]))
    with _live_lock:
        _live.add(str(tmp))
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        with _live_lock:
            _live.discard(str(tmp))


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp, fsync, rename, fsync dir)."""
    path = Path(path)
    with _temp_for(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
        _commit(tmp, path)


def atomic_save(path: Path, save: Callable[[Path], None]) -> None:
    """Call ``save(tmp_path)`` (a temp name with ``path``'s suffix), then commit it."""
    path = Path(path)
    with _temp_for(path) as tmp:
        save(tmp)
        _commit(tmp, path)


def save_error(what: str, exc: OSError, path: Path) -> StorageError:
    """A viewer-safe sentence for a failed save; the path and exception go to the log.

    >>> err = save_error("save run 'demo'", OSError(28, "No space left on device"),
    ...                  Path("/srv/secret/runs"))
    >>> str(err)  # doctest: +NORMALIZE_WHITESPACE
    "Could not save run 'demo' (No space left on device). Free some disk space, or ask
    whoever runs the server to set LAYERLAB_HOME to a writable folder."
    >>> "/srv" in str(err)
    False
    """
    log.warning("could not %s at %s: %r", what, path, exc)
    reason = exc.strerror or "the disk refused it"
    return StorageError(f"Could not {what} ({reason}). Free some disk space, or ask whoever "
                        f"runs the server to set LAYERLAB_HOME to a writable folder.")
