"""Training benchmarks, printed from one run on this machine.

(a) our trainer (live events, stop checks, schedule) vs a bare ``model.fit`` of the same
    model, data, batches and epochs — time ratio, goal ≤ 1.10;
(b) ``fast_cnn`` (5 seeds: median test accuracy ≥ 99.0% in ≤ 10 s) vs ``keras_example``
    with its own recipe: training time to 99.0% test accuracy — ratio, goal ≥ 8;
(c) RSS growth over 10 train/retrain cycles in one process — goal ≤ 100 MB;
(d) what each lead of fast_cnn's recipe is worth: the recipe with one lead undone at a
    time (mixed precision, the in-memory data, XLA, label smoothing, the old 3-epoch
    recipe), 3 seeds each, time as a ratio to the recipe's in the same run.

Times are the app's own training wall time (``TrainingJob``: the fit with its callbacks,
batch-norm refits and validation included; data loading and the test set not).

Usage: python bench/train_bench.py [a] [b] [c] [d]   (default: all four)
"""
from __future__ import annotations

import contextlib
import gc
import statistics
import sys
import time

import _util  # first: paths, MNIST_NPZ

from core.build import build_model
from core.presets import get_preset
from core.recipe import Recipe
import core.training
from core.training import TrainingJob, compile_model, make_dataset, prepare_data

FAST = "fast_cnn"


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


def seeds_run(name: str, recipe: Recipe, seeds: tuple[int, ...], label: str = "",
              ) -> tuple[float, float, list[float], str]:
    """Median training time and test accuracy of ``recipe`` over ``seeds`` (and the
    accuracies, and the device the runs reported)."""
    times, accs, device = [], [], ""
    for seed in seeds:
        r = recipe.replace(seed=seed)
        job = run_job(get_preset(name).spec, r, prepare_data(r))
        times.append(job.run.wall_time_s)
        accs.append(job.run.test_accuracy)
        device = job.run.device
        print(f"    {label or name} seed {seed}: {job.run.wall_time_s:.1f} s, test "
              f"{job.run.test_accuracy:.4f}", flush=True)
    return statistics.median(times), statistics.median(accs), accs, device


def bench_fast(target: float = 0.99) -> None:
    med_t, med_acc, accs, device = seeds_run(FAST, get_preset(FAST).recipe, (0, 1, 2, 3, 4))
    print(f"(b) {FAST} on {device}: median test accuracy {med_acc:.4f} (seeds "
          f"{min(accs):.4f}–{max(accs):.4f}; goal ≥ {target}), median training time "
          f"{med_t:.1f} s (goal ≤ 10 s)")
    data = prepare_data(get_preset("keras_example").recipe)
    t_ke, acc_ke, epochs = time_to_target("keras_example", target, data)
    if t_ke is None:
        print(f"    keras_example never reached {target} in {epochs} epochs (best {acc_ke:.4f})")
        return
    print(f"    keras_example reached {acc_ke:.4f} after {epochs} epochs, {t_ke:.1f} s")
    print(f"(b) time to {target:.1%}: keras_example {t_ke:.1f} s / {FAST} {med_t:.1f} s = "
          f"{t_ke / med_t:.1f}× (goal ≥ 8)")


def per_image_shuffle_dataset(x, y, recipe: Recipe):
    """The data pipeline before the in-memory tensor: 57,000 images shuffled one by one
    through a buffer every epoch (kept here only to measure what the change gave)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=recipe.seed, reshuffle_each_iteration=True)
    return ds.batch(recipe.batch_size).prefetch(tf.data.AUTOTUNE)


def compile_with_xla(model, recipe: Recipe, optimizer=None) -> None:
    """compile_model with the train step compiled by XLA."""
    model.compile(optimizer=optimizer or core.training.make_optimizer(recipe),
                  loss=core.training.make_loss(recipe), metrics=["accuracy"],
                  jit_compile=True)


@contextlib.contextmanager
def engine_using(name: str, replacement):
    """The training engine with one of its functions replaced, for one measurement."""
    original = getattr(core.training, name)
    setattr(core.training, name, replacement)
    try:
        yield
    finally:
        setattr(core.training, name, original)


def bench_leads(seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """Each lead of the fast recipe undone alone; ratios to the recipe in the same run."""
    from core.build import cpu_has_bfloat16

    recipe = get_preset(FAST).recipe
    leads = [
        ("the recipe", recipe, contextlib.nullcontext()),
        ("float32 instead of mixed precision", recipe.replace(mixed_precision=False),
         contextlib.nullcontext()),
        ("per-image shuffle instead of the in-memory tensor", recipe,
         engine_using("make_dataset", per_image_shuffle_dataset)),
        ("plus an XLA-compiled train step", recipe,
         engine_using("compile_model", compile_with_xla)),
        ("no label smoothing", recipe.replace(label_smoothing=0.0), contextlib.nullcontext()),
        ("the old recipe (3 epochs, batch 512, float32, per-image shuffle, no smoothing)",
         recipe.replace(epochs=3, batch_size=512, mixed_precision=False, label_smoothing=0.0),
         engine_using("make_dataset", per_image_shuffle_dataset)),
    ]
    rows = []
    for label, r, context in leads:
        with context:
            rows.append((label, *seeds_run(FAST, r, seeds, label)[:3]))
    base_t, base_acc = rows[0][1], rows[0][2]
    print(f"(d) leads of {FAST}'s recipe, one undone at a time, median of {len(seeds)} "
          f"seeds (bfloat16 instructions on this CPU: {'yes' if cpu_has_bfloat16() else 'no'}):")
    for label, t, acc, accs in rows:
        print(f"    {label}: {t:.1f} s (× {t / base_t:.2f}), test {acc:.4f} "
              f"({acc - base_acc:+.4f}; seeds {min(accs):.4f}–{max(accs):.4f})")


def bench_memory(cycles: int = 10) -> None:
    rss_mb = _util.rss_mb
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
    parts = sys.argv[1:] or ["a", "b", "c", "d"]
    if "a" in parts:
        bench_overhead()
    if "b" in parts:
        bench_fast()
    if "c" in parts:
        bench_memory()
    if "d" in parts:
        bench_leads()
