"""The run store: atomic records, damaged entries, the workspace index, leftovers of
killed saves, and errors as sentences without server paths."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import LayerLabError, StorageError
from core.runs import INDEX_DIR, Run, RunStore, read_run, workspace_key
from core.storage import atomic_save, temp_name


def make_run(i: int, workspace: str, **kw) -> Run:
    return Run(id=f"20260101-0000{i:02d}-{i:06x}", name=f"run{i}", spec={}, recipe={},
               workspace=workspace, status="finished", **kw)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_store_survives_crash_mid_write_and_damage(tmp_path):
    store = RunStore(tmp_path)
    good = Run(id="20260101-000000-aaaaaa", name="good", spec={}, recipe={}, status="finished")
    store.save_run(good)
    # a crash mid-write leaves only a temp file: it must not count as a run
    crashed = tmp_path / "20260101-000001-bbbbbb"
    crashed.mkdir()
    (crashed / ".run.json.x1y2.tmp").write_text('{"id": "20260101-000001-bbbbbb", "na')
    # a damaged entry is skipped with a warning
    damaged = tmp_path / "20260101-000002-cccccc"
    damaged.mkdir()
    (damaged / "run.json").write_text("{not json")
    # a run that was training when the process died is shown as interrupted
    running = Run(id="20260101-000003-dddddd", name="r", spec={}, recipe={}, status="running")
    store.save_run(running)
    runs = store.list_runs()
    assert [r.id for r in runs] == [running.id, good.id]
    assert runs[0].status == "interrupted"
    assert len(store.warnings) == 1 and "damaged" in store.warnings[0]
    assert json.loads((tmp_path / good.id / "run.json").read_text())["name"] == "good"
    assert not list(tmp_path.glob(f"{good.id}/.*.tmp"))


def test_store_refuses_unwritable_folder_with_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = RunStore(blocker / "runs")     # a path below a file can never be created
    run = Run(id="20260101-000000-eeeeee", name="n", spec={}, recipe={})
    with pytest.raises(LayerLabError, match="Could not save run 'n'"):
        store.save_run(run)


def test_save_error_names_no_server_path_but_logs_it(tmp_path, caplog):
    blocker = tmp_path / "secret-home"
    blocker.write_text("x")
    store = RunStore(blocker / "runs")
    with caplog.at_level(logging.WARNING), pytest.raises(StorageError) as err:
        store.save_run(make_run(1, "w"))
    assert "secret-home" not in str(err.value) and str(tmp_path) not in str(err.value)
    assert "Not a directory" in str(err.value) and "LAYERLAB_HOME" in str(err.value)
    assert "secret-home" in caplog.text                  # the operator still sees where


def test_listing_one_workspace_reads_only_its_own_files(tmp_path):
    store = RunStore(tmp_path)
    mine = [make_run(i, "alice") for i in range(3)]
    others = [make_run(10 + i, f"ws{i}") for i in range(5)]
    for run in mine + others:
        store.save_run(run)
    for run in others:          # damage every other workspace's record: reading one warns
        (tmp_path / run.id / "run.json").write_text("{not json")
    listed = store.list_runs("alice")
    assert [r.id for r in listed] == sorted((r.id for r in mine), reverse=True)
    assert store.warnings == []
    assert len(store.list_runs()) == 3 and len(store.warnings) == 5   # they would warn
    assert store.list_runs("nobody") == [] and store.warnings == []


def test_index_keeps_workspace_ids_off_disk_and_skips_an_unfinished_save(tmp_path):
    store = RunStore(tmp_path)
    store.save_run(make_run(1, "class-7 secret"))
    names = {p.name for p in (tmp_path / INDEX_DIR).iterdir()}
    assert workspace_key("class-7 secret") in names and "class-7 secret" not in names
    # a crash after the marker but before run.json: not a run, no warning
    (tmp_path / INDEX_DIR / workspace_key("class-7 secret") / "20260101-000099-000099").touch()
    assert [r.name for r in store.list_runs("class-7 secret")] == ["run1"]
    assert store.warnings == []


def test_a_store_written_before_the_index_is_indexed_on_first_listing(tmp_path):
    store = RunStore(tmp_path)
    for i, ws in enumerate(["a", "b", "a", "c"]):
        store.save_run(make_run(i, ws))
    for marker in (tmp_path / INDEX_DIR).rglob("*"):      # as an older version left it
        if marker.is_file():
            marker.unlink()
    assert [r.id for r in RunStore(tmp_path).list_runs("a")] == [make_run(2, "").id,
                                                                 make_run(0, "").id]
    assert (tmp_path / INDEX_DIR / ".complete").is_file()
    assert len(list((tmp_path / INDEX_DIR / workspace_key("b")).iterdir())) == 1


def test_store_start_removes_leftovers_of_killed_saves_only(tmp_path):
    run_dir = tmp_path / "20260101-000000-aaaaaa"
    run_dir.mkdir(parents=True)
    killed = run_dir / temp_name("checkpoint.keras", dead_pid(), "0a1b2c3d")
    killed.write_bytes(b"half a zip")
    foreign = run_dir / temp_name("run.json", os.getppid(), "0a1b2c3d")  # a live process
    foreign.write_bytes(b"{")
    mine = run_dir / "checkpoint.keras"
    mine.write_bytes(b"a complete file")
    RunStore(tmp_path)
    assert not killed.exists()
    assert foreign.exists() and mine.read_bytes() == b"a complete file"


def test_store_start_keeps_the_temp_file_of_a_save_in_another_thread(tmp_path):
    target = tmp_path / "20260101-000000-aaaaaa" / "model.keras"
    writing, finish = threading.Event(), threading.Event()

    def slow(tmp: Path) -> None:
        tmp.write_bytes(b"first half ")
        writing.set()
        finish.wait(10)
        with open(tmp, "ab") as fh:
            fh.write(b"second half")

    saver = threading.Thread(target=atomic_save, args=(target, slow))
    saver.start()
    assert writing.wait(10)
    RunStore(tmp_path)                    # the store opens while the save is mid-way
    finish.set()
    saver.join(10)
    assert target.read_bytes() == b"first half second half"
    assert [p.name for p in target.parent.iterdir()] == ["model.keras"]


def test_run_records_are_refused_with_sentences(tmp_path):
    with pytest.raises(StorageError, match="id '../x' is not valid"):
        Run.from_dict({"id": "../x", "name": "n", "spec": {}, "recipe": {}})
    with pytest.raises(StorageError, match="lacks a required field"):
        Run.from_dict({"id": "ok"})
    with pytest.raises(StorageError, match="must be a JSON object"):
        Run.from_dict(["not", "a", "run"])
    bad = tmp_path / "run.json"
    bad.write_text("{not json")
    with pytest.raises(StorageError, match="not valid JSON") as err:
        read_run(bad)
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(StorageError, match="could not be read"):
        read_run(tmp_path / "missing.json")
