"""The personal set (core.personal): atomic, bounded, validated, per workspace; the
fine-tune on it (core.finetune); the My digits page and Draw's "Add to my digits"."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core.errors import LayerLabError, StorageError
from core.personal import MAX_DIGITS, PersonalError, PersonalStore, check_label
from core.workspace import new_workspace_id

ROOT = Path(__file__).resolve().parents[1]
WS = new_workspace_id()


def digit(value: int = 200, seed: int = 0) -> np.ndarray:
    """A non-blank 28×28 uint8 digit-like image."""
    img = np.zeros((28, 28), np.uint8)
    rng = np.random.default_rng(seed)
    img[6:22, 12:16] = value
    img[rng.integers(4, 24), rng.integers(4, 24)] = 255
    return img


# -- the store -----------------------------------------------------------------------------
def test_add_then_a_new_store_reads_the_same_set(tmp_path):
    store = PersonalStore(tmp_path)
    ids = [store.add(WS, digit(seed=i), label) for i, label in enumerate([3, 7, 7])]
    assert len(set(ids)) == 3
    again = PersonalStore(tmp_path).load(WS)            # a restart: a new store object
    assert again.y.tolist() == [3, 7, 7]
    assert again.ids.tolist() == ids
    assert np.array_equal(again.x[1], digit(seed=1))
    assert again.counts()[7] == 2


def test_workspaces_are_kept_apart_and_ids_validated(tmp_path):
    store = PersonalStore(tmp_path)
    store.add(WS, digit(), 1)
    assert len(store.load(new_workspace_id())) == 0
    for bad in ("../../etc", "", "A" * 32, None):
        with pytest.raises(LayerLabError):
            store.add(bad, digit(), 1)
    assert [p.name for p in tmp_path.iterdir()] != []
    assert not any("etc" in str(p) for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("label", ["7", 7.0, True, -1, 10, None, [7], "<b>7</b>",
                                   np.float32(3), 2**70])
def test_hostile_labels_are_refused_and_nothing_is_added(tmp_path, label):
    store = PersonalStore(tmp_path)
    with pytest.raises(PersonalError, match="whole number from 0 to 9"):
        store.add(WS, digit(), label)
    assert len(store.load(WS)) == 0


def test_numpy_integer_labels_are_accepted():
    assert check_label(np.int64(9)) == 9 and check_label(np.uint8(0)) == 0


@pytest.mark.parametrize("image", [np.zeros((28, 28), np.uint8), np.ones((27, 28)),
                                   np.full((28, 28), 300.0), np.full((28, 28), np.nan),
                                   "a string", np.full((28, 28), -5)])
def test_bad_images_are_refused(tmp_path, image):
    with pytest.raises(PersonalError):
        PersonalStore(tmp_path).add(WS, image, 1)


def test_a_full_set_is_refused_with_a_sentence(tmp_path):
    store = PersonalStore(tmp_path, limit=5)
    for i in range(5):
        store.add(WS, digit(seed=i), i)
    with pytest.raises(PersonalError, match="already holds 5 digits"):
        store.add(WS, digit(), 1)
    assert len(store.load(WS)) == 5
    assert MAX_DIGITS == 2_000


def test_a_huge_file_on_disk_is_refused(tmp_path):
    store = PersonalStore(tmp_path)
    n = MAX_DIGITS + 1
    path = store.path(WS)
    path.parent.mkdir(parents=True)
    np.savez(path, ids=np.arange(n, dtype=np.int64), x=np.ones((n, 28, 28), np.uint8),
             y=np.ones(n, np.uint8))
    with pytest.raises(StorageError) as err:
        store.load(WS)
    assert str(tmp_path) not in str(err.value)


def test_delete_removes_that_item_only(tmp_path):
    store = PersonalStore(tmp_path)
    ids = [store.add(WS, digit(seed=i), i) for i in range(4)]
    assert store.delete(WS, ids[1]) is True
    assert store.delete(WS, ids[1]) is False              # already gone
    left = store.load(WS)
    assert left.ids.tolist() == [ids[0], ids[2], ids[3]]
    assert left.y.tolist() == [0, 2, 3]
    assert store.add(WS, digit(), 5) not in ids           # ids are never reused


def test_export_has_mnists_layout(tmp_path):
    store = PersonalStore(tmp_path)
    store.add(WS, digit(seed=1), 4)
    store.add(WS, digit(seed=2), 8)
    with np.load(io.BytesIO(store.export(WS)), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["x", "y"]
        assert npz["x"].shape == (2, 28, 28) and npz["x"].dtype == np.uint8
        assert npz["y"].dtype == np.uint8 and npz["y"].tolist() == [4, 8]
        assert np.array_equal(npz["x"][0], digit(seed=1))


# Adds digits as fast as it can until killed (the set grows by one per write).
ADDER = textwrap.dedent("""
    import sys
    import numpy as np
    from core.personal import PersonalStore
    store, ws = PersonalStore(sys.argv[1], limit=10**9), sys.argv[2]
    img = np.full((28, 28), 200, np.uint8)
    n = 0
    while True:
        store.add(ws, img, n % 10)
        n += 1
        if n == 3:
            print("ADDING", flush=True)
""")


@pytest.mark.parametrize("delay_s", [0.0, 0.07, 0.21])
def test_a_kill_mid_write_leaves_a_whole_set(tmp_path, delay_s):
    import time

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", ADDER, str(tmp_path), WS], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ADDING"
        time.sleep(delay_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    store = PersonalStore(tmp_path, limit=10**9)
    before = store.load(WS)                                # whole, never cut
    assert len(before) >= 3
    assert before.y.tolist() == [i % 10 for i in range(len(before))]
    store.add(WS, digit(), 9)                              # and writable again
    assert len(store.load(WS)) == len(before) + 1
    assert [p.name for p in store.path(WS).parent.iterdir()] == ["digits.npz"]


# -- fine-tuning ---------------------------------------------------------------------------
def restyled(x: np.ndarray) -> np.ndarray:
    """Digits in another hand: strokes thickened by a 3×3 maximum, moved 2 px right/down."""
    from core.finetune import shift_digits

    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    thick = np.max([pad[:, dy:dy + 28, dx:dx + 28] for dy in range(3) for dx in range(3)],
                   axis=0)
    return shift_digits(thick, np.full((len(x), 2), 2))


@pytest.mark.parametrize("preset", ["fast_cnn", "frontier_10k"])   # frontier: batch norm
def test_finetune_keeps_test_accuracy_and_learns_the_personal_set(mnist, tmp_path, preset):
    from core import pretrained
    from core.finetune import FineTuneJob, before_after
    from core.runs import RunStore

    pick = np.random.default_rng(1).choice(len(mnist.y_test), 50, replace=False)
    store = PersonalStore(tmp_path / "personal")
    for img, label in zip(restyled(mnist.x_test[pick]), mnist.y_test[pick]):
        store.add(WS, img, label)
    personal = store.load(WS)
    source = pretrained.load_model(preset)
    runs = RunStore(tmp_path / "runs")
    job = FineTuneJob(source, pretrained.load_record(preset), f"pretrained:{preset}",
                      personal, mnist, workspace=WS, store=runs).start()
    job.join(600)
    assert job.snapshot().state == "finished", job.snapshot().message
    result = before_after(source, job.model, personal, mnist)
    assert result.test_after >= result.test_before - 0.003        # at most 0.3 points
    assert result.personal_after >= result.personal_before, result
    assert abs(job.run.test_accuracy - result.test_after) < 1e-6
    saved = runs.list_runs(WS)                                      # a normal run
    assert [r.id for r in saved] == [job.run.id]
    assert saved[0].parent == f"pretrained:{preset}" and saved[0].source == "session"
    assert runs.load_model(job.run.id).count_params() == source.count_params()


def test_finetune_needs_a_few_digits(mnist):
    from core import pretrained
    from core.finetune import FineTuneJob

    store = PersonalStore()
    store.add(WS, digit(), 1)
    with pytest.raises(LayerLabError, match="at least 5 digits"):
        FineTuneJob(None, pretrained.load_record("fast_cnn"), "pretrained:fast_cnn",
                    store.load(WS), mnist, workspace=WS)


# -- the pages (AppTest) -------------------------------------------------------------------
def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def test_draw_adds_the_digit_with_a_corrected_label(open_page, mnist):
    ws = new_workspace_id()
    at = open_page("draw", state={"workspace": ws, "draw_image": mnist.x_test[0]})
    assert not at.exception, [e.value for e in at.exception]
    predicted = int({m.label: m.value for m in at.metric}["Digit"])
    picker = at.selectbox(key="draw_personal_label")
    assert picker.value == predicted                       # starts at the prediction
    corrected = (predicted + 1) % 10
    picker.set_value(corrected).run()
    at.button(key="draw_personal_add").click().run()
    assert not at.exception
    assert f"Added as a {corrected}; your set holds 1 digit." in texts(at.success)
    saved = PersonalStore().load(ws)
    assert saved.y.tolist() == [corrected]
    assert np.array_equal(saved.x[0], at.session_state["drawn_digit"])


def test_my_digits_without_digits_says_how_to_add_them(open_page):
    at = open_page("my_digits", state={"workspace": new_workspace_id()})
    assert not at.exception
    assert "Add to my digits" in texts(at.info)


def test_my_digits_shows_accuracy_misreads_and_deletes(open_page, mnist):
    ws, store = new_workspace_id(), PersonalStore()
    for i in range(12):
        store.add(ws, mnist.x_test[i], int(mnist.y_test[i]))
    wrong = store.add(ws, mnist.x_test[0], (int(mnist.y_test[0]) + 5) % 10)  # mislabelled
    at = open_page("my_digits", state={"workspace": ws})
    assert not at.exception, [e.value for e in at.exception]
    assert "Your set · 13 digits" in texts(at.subheader)
    accuracy = {m.label: m.value for m in at.metric}["Accuracy on your digits"]
    assert accuracy == "92.3%"                             # 12 of 13: the mislabelled one
    assert "Misread: 1 digit" in texts(at.caption)
    at.selectbox(key="my_digits_manage_class").set_value((int(mnist.y_test[0]) + 5) % 10)
    at.run()
    at.button(key=f"my_digits_delete_{wrong}").click().run()
    assert not at.exception
    assert wrong not in PersonalStore().load(ws).ids.tolist()
    assert len(PersonalStore().load(ws)) == 12
    assert {m.label: m.value for m in at.metric}["Accuracy on your digits"] == "100.0%"


def test_my_digits_fine_tune_shows_before_and_after(open_page, mnist):
    from core.jobs import REGISTRY

    ws, store = new_workspace_id(), PersonalStore()
    for img, label in zip(restyled(mnist.x_test[:20]), mnist.y_test[:20]):
        store.add(ws, img, label)
    at = open_page("my_digits", state={"workspace": ws, "my_digits_model":
                                       "pretrained:fast_cnn"})
    at.button(key="my_digits_finetune_start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    job = REGISTRY.get(ws)
    job.join(600)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.table[0].value
    assert list(table["set"]) == ["your digits", "MNIST test set"]
    assert "fast_cnn + my digits" in texts(at.success)
    assert job.run.parent == "pretrained:fast_cnn"
    at.switch_page("pages/draw.py")                        # a normal run: offered on Draw
    at.run()
    assert not at.exception
    assert any(o.startswith(f"fast_cnn + my digits · run {job.run.id[-6:]}")
               for o in at.selectbox(key="draw_model").options)
