"""Atomic, durable writes under LAYERLAB_HOME, and the cleanup of killed saves' leftovers."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core.storage import (STALE_AFTER_S, atomic_save, atomic_write_bytes, clean_temp_files,
                          layerlab_home, temp_name, temp_owner)

ROOT = Path(__file__).resolve().parents[1]

# Rewrites one file with whole 1 MB payloads of one letter, as fast as it can, until killed.
REWRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from core.storage import atomic_write_bytes
    target, n = Path(sys.argv[1]), 0
    while True:
        atomic_write_bytes(target, bytes([65 + n % 26]) * 1_000_000)
        n += 1
        if n == 3:
            print("REWRITING", flush=True)
""")


def test_layerlab_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERLAB_HOME", str(tmp_path / "home"))
    assert layerlab_home() == tmp_path / "home"
    monkeypatch.delenv("LAYERLAB_HOME")
    assert layerlab_home() == Path.home() / ".layerlab"


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.13, 0.31])
def test_atomic_write_survives_sigkill_at_any_moment(tmp_path, delay_s):
    target = tmp_path / "deep" / "run.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", REWRITER, str(target)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "REWRITING"
        time.sleep(delay_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    data = target.read_bytes()                 # one whole payload, never a mix or a cut
    assert len(data) == 1_000_000 and data == data[:1] * len(data)
    others = [p for p in target.parent.iterdir() if p != target]
    assert all(temp_owner(p.name) == proc.pid for p in others)
    assert sorted(clean_temp_files(target.parent)) == sorted(others)   # a dead writer's
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError):
        atomic_save(target, broken)
    assert target.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [target]


def test_atomic_save_hands_the_writer_a_temp_name_with_the_same_suffix(tmp_path):
    seen = []
    atomic_save(tmp_path / "checkpoint.keras", lambda tmp: (seen.append(tmp),
                                                            tmp.write_bytes(b"zip")))
    assert seen[0].suffix == ".keras" and seen[0].parent == tmp_path
    assert temp_owner(seen[0].name) == os.getpid()
    assert (tmp_path / "checkpoint.keras").read_bytes() == b"zip"


def test_cleanup_judges_by_owner_age_and_name(tmp_path):
    old_style = tmp_path / ".run.json.k2x_9q1z.tmp"          # pid-less, older versions
    young_old_style = tmp_path / ".model.1a2b3c4d.tmp.keras"
    not_ours = tmp_path / ".hidden-notes.tmp"
    stale_foreign = tmp_path / temp_name("run.json", os.getppid(), "0a1b2c3d")
    for path in (old_style, young_old_style, not_ours, stale_foreign):
        path.write_bytes(b"x")
    long_ago = time.time() - STALE_AFTER_S - 60
    for path in (old_style, not_ours, stale_foreign):
        os.utime(path, (long_ago, long_ago))
    removed = clean_temp_files(tmp_path)
    assert sorted(removed) == sorted([old_style, stale_foreign])
    assert young_old_style.exists() and not_ours.exists()


def test_concurrent_saves_of_one_file_all_land_whole(tmp_path):
    target = tmp_path / "run.json"
    payloads = [bytes([65 + i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write_bytes, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
