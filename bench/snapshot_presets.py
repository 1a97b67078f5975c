"""Ship the snapshots of small pretrained presets, so the Train page can replay them.

Re-trains each preset with its own recipe into a temporary run store (the shipped
``.keras`` and ``.json`` are never touched) and copies only the run's snapshots into
``cached_models/NAME.snapshots.npz``. The re-trained weights differ a little from the
shipped ones (another training of the same recipe); the replay says how it learns.

    python bench/snapshot_presets.py fast_cnn frontier_3k
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import _util  # noqa: F401  (paths, quiet TensorFlow, MNIST_NPZ)

from core.presets import get_preset
from core.pretrained import CACHED_DIR
from core.runs import SNAPSHOTS_FILE, RunStore
from core.training import TrainingJob


def snapshot_preset(name: str, out_dir: Path = CACHED_DIR) -> Path:
    """Train preset ``name`` in a temp store; copy its snapshots to ``out_dir``."""
    preset = get_preset(name)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        job = TrainingJob(preset.spec, preset.recipe, name=name, store=store).start()
        while job.alive:
            job.join(timeout=1.0)
            for event in job.drain():
                if event["kind"] == "epoch":
                    print(f"{name} epoch {event['epoch']}: val_acc "
                          f"{event.get('val_accuracy', 0):.4f}", flush=True)
        job.join()
        if job.run.status != "finished":
            raise SystemExit(f"{name} did not finish: {job.run.message}")
        source = store.run_dir(job.run.id) / SNAPSHOTS_FILE
        target = out_dir / f"{name}.snapshots.npz"
        shutil.copyfile(source, target)
        return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="preset names, e.g. fast_cnn")
    args = parser.parse_args()
    for name in args.names:
        t0 = time.perf_counter()
        path = snapshot_preset(name)
        print(f"{name}: {path.name}, {path.stat().st_size / 1e3:.0f} kB, "
              f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
