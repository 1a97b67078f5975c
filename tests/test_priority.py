"""Page work before training work: while a run trains in the server process, the threads
doing its compute run below the page threads' priority (core/priority.py).

Each check runs in a fresh Python process: TensorFlow's pools are created once per
process, and this test process may have started TensorFlow long before."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="per-thread nice values are Linux's")

# The server's first page view, a page's model load and prediction, then a run started
# as a page starts one (from the main thread); once it trains, the script
# measures every thread's CPU over 1.5 s: which threads do the training's compute, and
# at what nice value.
SCRIPT = textwrap.dedent("""
    import dataclasses, json, os, threading, time
    import bench._util  # noqa: F401  (MNIST_NPZ, quiet TensorFlow)
    from core.presets import get_preset
    from core.training import TrainingJob

    def threads():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(tid)] = (int(f[11]) + int(f[12]), int(f[16]))   # CPU ticks, nice
        return out

    nice_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    import numpy as np
    from pages.common import _start_warm_ups
    _start_warm_ups()                              # as at the server's first page view
    from core import pretrained
    model = pretrained.load_model("fast_cnn")      # a page's own TensorFlow work, at once
    model(np.zeros((1, 28, 28, 1), "float32"), training=False)

    preset = get_preset("fast_cnn")
    recipe = dataclasses.replace(preset.recipe, epochs=50, train_subset=3000,
                                 augment=False)
    job = TrainingJob(preset.spec, recipe, test_limit=200).start()
    deadline = time.time() + 300
    while job.snapshot().step < 3 and not job.done and time.time() < deadline:
        time.sleep(0.05)
    before = threads()
    time.sleep(1.5)
    after = threads()
    job.stop(); job.join()
    print("RESULT " + json.dumps({
        "page_tid": threading.get_native_id(),
        "page_nice_before": nice_before,
        "page_nice": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
        "train_tid": job._thread.native_id,
        "python_tids": [t.native_id for t in threading.enumerate()],
        "cpu": {tid: [after[tid][0] - before.get(tid, (0, 0))[0], after[tid][1]]
                for tid in after}}))
""")


def _measure(train_nice: str) -> dict:
    env = dict(os.environ, LAYERLAB_TRAIN_NICE=train_nice, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out.stderr[-2000:]
    return json.loads(line[len("RESULT "):])


def _busy(result: dict) -> dict[int, int]:
    """tid -> nice of the threads that did the training's compute (besides the page's):
    each took at least a tenth of the busiest one's CPU."""
    cpu = {int(tid): v for tid, v in result["cpu"].items() if int(tid) != result["page_tid"]}
    top = max(ticks for ticks, _ in cpu.values())
    assert top >= 5, "nothing trained while measured"
    return {tid: nice for tid, (ticks, nice) in cpu.items() if ticks >= max(2, top / 10)}


def test_training_compute_runs_below_the_page_thread():
    result = _measure("10")
    busy = _busy(result)
    base = result["page_nice"]
    assert base == result["page_nice_before"]          # the page's thread: untouched
    want = min(19, base + 10)
    assert all(nice >= want for nice in busy.values()), (base, busy)
    # TensorFlow's own pool threads (not Python's) do most of it, and are among them.
    assert set(busy) - set(result["python_tids"]), busy
    assert result["cpu"][str(result["train_tid"])][1] >= want


def test_switched_off_the_compute_keeps_the_page_priority():
    result = _measure("0")
    busy = _busy(result)
    assert set(busy.values()) == {result["page_nice"]}, busy
