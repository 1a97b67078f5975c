"""What watching it learn costs: the trainer's epoch time with and without the snapshot
callback (median of a few runs, and their ratio), and what one snapshot of a large model
costs (taken once per epoch, plus four around the first epoch).

    nice -n 10 python bench/snapshot_bench.py                  # fast_cnn, bulky_cnn
    python bench/snapshot_bench.py --preset keras_example --subset 10000 --repeats 3

Runs alternate (with, without, with, ...) so a change in the machine's load falls on
both. Prints seconds and ratios only; nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

from _util import percentile  # and with it: paths, quiet TensorFlow, MNIST_NPZ

from core.data import to_float
from core.presets import get_preset
from core.training import TrainingJob, prepare_data


def median(values: list[float]) -> float:
    return percentile(values, 50)


@contextmanager
def snapshots_off():
    """The trainer without its snapshot callback: ``for_job`` hands back a callback that
    does nothing (the trainer imports ``for_job`` when a run starts, so this reaches it)."""
    import keras

    from core import snapshot_callback

    original = snapshot_callback.for_job
    snapshot_callback.for_job = lambda job, data, steps: keras.callbacks.Callback()
    try:
        yield
    finally:
        snapshot_callback.for_job = original


def epoch_seconds(name: str, data, snapshots: bool) -> float:
    """One epoch of preset ``name`` through the trainer; its training time (epochs only)."""
    preset = get_preset(name)
    job = TrainingJob(preset.spec, preset.recipe.replace(epochs=1), name=name, data=data)
    if snapshots:
        job.start().join()
    else:
        with snapshots_off():
            job.start().join()
    if job.run.status != "finished":
        raise SystemExit(f"{name} did not finish: {job.run.message}")
    return float(job.run.wall_time_s)


def overhead(name: str, subset: int | None, repeats: int) -> None:
    data = prepare_data(get_preset(name).recipe.replace(train_subset=subset), test_limit=1000)
    epoch_seconds(name, data, True)                    # warm-up: TensorFlow's first run
    on, off = [], []
    for _ in range(repeats):
        on.append(epoch_seconds(name, data, True))
        off.append(epoch_seconds(name, data, False))
    m_on, m_off = median(on), median(off)
    print(f"{name}, 1 epoch of {len(data.x_train):,} images: with snapshots "
          f"{m_on:.1f} s, without {m_off:.1f} s (medians of {repeats}); "
          f"ratio {m_on / m_off:.3f}")
    print(f"  runs with: {', '.join(f'{s:.1f}' for s in on)}; "
          f"without: {', '.join(f'{s:.1f}' for s in off)}")


def snapshot_cost(name: str, repeats: int) -> None:
    """Seconds to take one snapshot of a freshly built ``name`` and to compress the set."""
    from core.build import build_model
    from core.recipe import Recipe
    from core.runs import snapshots_bytes
    from core.snapshot_callback import Snapshots
    from core.snapshots import CONFUSION_IMAGES, GRAD_BATCH
    from core.training import compile_model

    data = prepare_data(Recipe(train_subset=2000, validation_split=0.5, seed=0),
                        test_limit=10)
    preset = get_preset(name)
    model = build_model(preset.spec, seed=0)
    compile_model(model, preset.recipe)
    cb = Snapshots((data.x_test[0], int(data.y_test[0])),
                   (data.x_val[:CONFUSION_IMAGES], data.y_val[:CONFUSION_IMAGES]),
                   (to_float(data.x_train[:GRAD_BATCH]), data.y_train[:GRAD_BATCH]),
                   steps_per_epoch=469)
    cb.set_model(model)
    cb.on_train_begin()                                # the first, with its tracing
    takes, saves = [], []
    for epoch in range(repeats):
        t0 = time.perf_counter()
        cb.on_epoch_end(epoch)
        takes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        size = len(snapshots_bytes(cb.arrays()))
        saves.append(time.perf_counter() - t0)
    print(f"{name}: one snapshot {median(takes):.2f} s, compressing the set "
          f"{median(saves) * 1000:.0f} ms ({size / 1e3:.0f} kB for "
          f"{len(cb.snaps)} snapshots; medians of {repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast_cnn", help="trained with and without")
    parser.add_argument("--subset", type=int, default=None,
                        help="training images (default: the preset's, all 60,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--costly", default="bulky_cnn", help="one snapshot's cost of")
    args = parser.parse_args()
    overhead(args.preset, args.subset, args.repeats)
    snapshot_cost(args.costly, args.repeats)


if __name__ == "__main__":
    main()
