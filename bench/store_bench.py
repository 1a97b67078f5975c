"""Run-store listing: one workspace's runs vs every run, at classroom scale.

The store is written in the pre-index layout (plain ``run.json`` files), so the first
listing also shows the one-off cost of indexing an old store. Prints times and the ratio
of listing one workspace to parsing every record (what each page view paid before the
index). Usage: python bench/store_bench.py [runs] [workspaces]   (default 5000 200)
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _util  # noqa: F401  (paths)

from core.runs import RUN_FILE, Run, RunStore


def write_legacy_store(root: Path, n_runs: int, n_workspaces: int) -> None:
    history = {"loss": [0.5] * 10, "accuracy": [0.9] * 10, "val_accuracy": [0.9] * 10}
    for i in range(n_runs):
        run = Run(id=f"20260101-{i:06d}-{i:06x}", name=f"run {i}", spec={"layers": []},
                  recipe={"epochs": 10}, workspace=f"ws{i % n_workspaces}",
                  status="finished", history=history, test_accuracy=0.98)
        (root / run.id).mkdir(parents=True)
        (root / run.id / RUN_FILE).write_text(json.dumps(run.to_dict(), indent=1))


def timed(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(n_runs: int = 5000, n_workspaces: int = 200) -> None:
    root = Path(tempfile.mkdtemp(prefix="layerlab-store-")) / "runs"
    write_legacy_store(root, n_runs, n_workspaces)
    store = RunStore(root)
    t = time.perf_counter()
    first = store.list_runs("ws7")
    t_index = time.perf_counter() - t
    t_all = timed(lambda: store.list_runs())
    t_one = timed(lambda: store.list_runs("ws7"))
    print(f"store of {n_runs} runs in {n_workspaces} workspaces ({len(first)} in ws7): "
          f"first listing incl. indexing {t_index * 1000:.0f} ms (once per store); "
          f"all runs {t_all * 1000:.0f} ms; one workspace {t_one * 1000:.1f} ms; "
          f"ratio one/all {t_one / t_all:.3f} (goal ≤ 2 × {n_runs // n_workspaces}/{n_runs} "
          f"= {2 / n_workspaces:.3f})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
