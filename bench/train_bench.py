"""Training benchmarks, printed from one run on this machine.

(a) our trainer (live events, stop checks, schedule) vs a bare ``model.fit`` of the same
    model, data, batches and epochs — time ratio, goal ≤ 1.10;
(b) ``fast_cnn`` vs ``keras_example`` with its own recipe: training time to 99.0% test
    accuracy — ratio, goal ≥ 4;
(c) RSS growth over 10 train/retrain cycles in one process — goal ≤ 100 MB.

Usage: python bench/train_bench.py [a] [b] [c]   (default: all three)
"""
from __future__ import annotations

import gc
import statistics
import sys
import time

import _util  # noqa: F401  (paths, MNIST_NPZ)

from core.build import build_model
from core.presets import get_preset
from core.recipe import Recipe
from core.training import TrainingJob, compile_model, make_dataset, prepare_data


def run_job(spec, recipe, data) -> TrainingJob:
    job = TrainingJob(spec, recipe, data=data).start()
    job.join()
    job.drain()
    assert job.run.status == "finished", job.run.message
    return job


def bench_overhead(repeats: int = 2) -> None:
    preset = get_preset("keras_example")
    recipe = Recipe(epochs=2, batch_size=128, validation_split=0.1, train_subset=30_000)
    data = prepare_data(recipe)
    ours, bare = [], []
    for _ in range(repeats):
        ours.append(run_job(preset.spec, recipe, data).run.wall_time_s)
        model = build_model(preset.spec, seed=recipe.seed)
        compile_model(model, recipe)
        ds = make_dataset(data.x_train, data.y_train, recipe)
        t = time.perf_counter()
        model.fit(ds, epochs=recipe.epochs, verbose=0,
                  validation_data=(data.x_val, data.y_val), validation_batch_size=1000)
        bare.append(time.perf_counter() - t)
    o, b = statistics.median(ours), statistics.median(bare)
    print(f"(a) trainer vs bare model.fit (keras_example, 27k images, 2 epochs, median of "
          f"{repeats}): ours {o:.1f} s, bare {b:.1f} s, ratio {o / b:.2f} (goal ≤ 1.10)")


def time_to_target(name: str, target: float, data) -> tuple[float | None, float, int]:
    """Train epoch by epoch with the preset's recipe; training seconds until test ≥ target."""
    preset = get_preset(name)
    recipe = preset.recipe
    if recipe.schedule == "one_cycle":       # the schedule needs its whole length
        job = run_job(preset.spec, recipe, data)
        acc = job.run.test_accuracy
        return (job.run.wall_time_s if acc >= target else None), acc, recipe.epochs
    model, job, acc = None, None, 0.0
    one = recipe.replace(epochs=1)
    for epoch in range(1, recipe.epochs + 1):
        job = TrainingJob(preset.spec, one, data=data, model=model,
                          resume=job.run if job else None).start()
        job.join()
        job.drain()
        model = job.model
        acc = job.run.test_accuracy
        if acc >= target:
            return job.run.wall_time_s, acc, epoch
    return None, acc, recipe.epochs


def bench_fast(target: float = 0.99) -> None:
    fast_recipe = get_preset("fast_cnn").recipe
    times, accs = [], []
    for seed in (0, 1, 2):
        data = prepare_data(fast_recipe.replace(seed=seed))
        job = run_job(get_preset("fast_cnn").spec, fast_recipe.replace(seed=seed), data)
        times.append(job.run.wall_time_s)
        accs.append(job.run.test_accuracy)
        print(f"    fast_cnn seed {seed}: {job.run.wall_time_s:.1f} s, test "
              f"{job.run.test_accuracy:.4f}")
    med_t, med_acc = statistics.median(times), statistics.median(accs)
    print(f"(b) fast_cnn: median test accuracy {med_acc:.4f} (goal ≥ {target}), median "
          f"training time {med_t:.1f} s (goal ≤ 20 s)")
    data = prepare_data(get_preset("keras_example").recipe)
    t_ke, acc_ke, epochs = time_to_target("keras_example", target, data)
    if t_ke is None:
        print(f"    keras_example never reached {target} in {epochs} epochs (best {acc_ke:.4f})")
        return
    print(f"    keras_example reached {acc_ke:.4f} after {epochs} epochs, {t_ke:.1f} s")
    print(f"(b) time to {target:.1%}: keras_example {t_ke:.1f} s / fast_cnn {med_t:.1f} s = "
          f"{t_ke / med_t:.1f}× (goal ≥ 4)")


def bench_memory(cycles: int = 10) -> None:
    from _util import rss_mb

    recipe = Recipe(epochs=1, batch_size=128, train_subset=2000)
    data = prepare_data(recipe, test_limit=1000)
    spec = get_preset("small_cnn").spec
    run_job(spec, recipe, data)                  # warm up TensorFlow's own caches
    gc.collect()
    start = rss_mb()
    readings = []
    for i in range(cycles):
        job = run_job(spec, recipe.replace(seed=i), data)
        del job
        gc.collect()
        readings.append(rss_mb())
    print(f"(c) RSS over {cycles} train/retrain cycles: start {start:.0f} MiB, end "
          f"{readings[-1]:.0f} MiB, growth {readings[-1] - start:+.0f} MiB (goal ≤ 100 MB); "
          f"readings {', '.join(f'{r:.0f}' for r in readings)}")


if __name__ == "__main__":
    parts = sys.argv[1:] or ["a", "b", "c"]
    if "a" in parts:
        bench_overhead()
    if "b" in parts:
        bench_fast()
    if "c" in parts:
        bench_memory()
