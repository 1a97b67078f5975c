"""Training benchmarks, printed from one run on this machine.

(a) our trainer (live events, stop checks, schedule) vs a bare ``model.fit`` of the same
    model, data, batches and epochs — time ratio, goal ≤ 1.10;
(b) ``fast_cnn`` (5 seeds: median test accuracy ≥ 99.0% in ≤ 10 s) vs ``keras_example``
    with its own recipe: training time to 99.0% test accuracy — ratio, goal ≥ 8;
(c) RSS growth over 10 train/retrain cycles in one process — goal ≤ 100 MB;
(d) what each lead of fast_cnn's recipe is worth: the recipe with one lead changed at a
    time (mixed precision and label smoothing undone; the in-memory data and XLA, not
    kept, added; the old 3-epoch recipe), 3 seeds each, round robin, time as a ratio to
    the recipe's in the same run.

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


def one_run(name: str, recipe: Recipe, label: str = "") -> tuple[float, float, float, str]:
    """Training wall time, test accuracy, CPU seconds and device of one run.

    CPU seconds (this process, all threads, the whole job with its test evaluation) rise
    much less than wall time when other jobs share the cores: the fairer ratio on a busy
    machine.
    """
    data = prepare_data(recipe)
    c0 = time.process_time()
    job = run_job(get_preset(name).spec, recipe, data)
    cpu = time.process_time() - c0
    print(f"    {label or name} seed {recipe.seed}: {job.run.wall_time_s:.1f} s "
          f"({cpu:.1f} CPU s), test {job.run.test_accuracy:.4f}", flush=True)
    return job.run.wall_time_s, job.run.test_accuracy, cpu, job.run.device


def warm_up() -> None:
    """One small run first: TensorFlow's one-time start (thread pools, kernels, the first
    traces) is no recipe's cost, and would otherwise land on whichever run comes first."""
    recipe = get_preset(FAST).recipe.replace(train_subset=2000)
    run_job(get_preset(FAST).spec, recipe, prepare_data(recipe, test_limit=1000))


def bench_fast(target: float = 0.99) -> None:
    warm_up()
    runs = [one_run(FAST, get_preset(FAST).recipe.replace(seed=seed)) for seed in range(5)]
    med_t = statistics.median(r[0] for r in runs)
    accs = [r[1] for r in runs]
    med_acc, device = statistics.median(accs), runs[-1][3]
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


def in_memory_dataset(x, y, recipe: Recipe):
    """The lead not kept: the images as one tensor, each epoch a shuffle of their indices
    and whole batches gathered (the same batches as the engine's pipeline)."""
    import numpy as np
    import tensorflow as tf

    if recipe.label_smoothing:                     # the smoothed loss takes one-hot labels
        y = np.eye(10, dtype=np.float32)[y]
    images, labels = tf.constant(x), tf.constant(y)
    ds = tf.data.Dataset.range(len(x))
    ds = ds.shuffle(len(x), seed=recipe.seed, reshuffle_each_iteration=True)
    ds = ds.batch(recipe.batch_size)
    ds = ds.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
    return ds.prefetch(tf.data.AUTOTUNE)


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
    """Each lead of the fast recipe changed alone; ratios to the recipe in the same run."""
    from core.build import cpu_has_bfloat16

    recipe = get_preset(FAST).recipe
    warm_up()
    leads = [             # label, recipe, engine function replaced (name, replacement)
        ("the recipe", recipe, None),
        ("float32 instead of mixed precision", recipe.replace(mixed_precision=False), None),
        ("plus data as one in-memory tensor, batches gathered by shuffled index", recipe,
         ("make_dataset", in_memory_dataset)),
        ("plus an XLA-compiled train step", recipe, ("compile_model", compile_with_xla)),
        ("no label smoothing", recipe.replace(label_smoothing=0.0), None),
        ("the old recipe (3 epochs, batch 512, float32, no smoothing)",
         recipe.replace(epochs=3, batch_size=512, mixed_precision=False, label_smoothing=0.0),
         None),
    ]
    got: dict[str, list[tuple]] = {label: [] for label, _, _ in leads}
    for seed in seeds:                   # round robin: a change in load hits every lead
        for label, r, swap in leads:
            with engine_using(*swap) if swap else contextlib.nullcontext():
                got[label].append(one_run(FAST, r.replace(seed=seed), label))
    rows = [(label, statistics.median(x[0] for x in runs), [x[1] for x in runs],
             statistics.median(x[2] for x in runs)) for label, runs in got.items()]
    base_t, base_accs, base_cpu = rows[0][1], rows[0][2], rows[0][3]
    base_acc = statistics.median(base_accs)
    print(f"(d) leads of {FAST}'s recipe, one changed at a time, median of {len(seeds)} "
          f"seeds (bfloat16 instructions on this CPU: {'yes' if cpu_has_bfloat16() else 'no'}):")
    for label, t, accs, cpu in rows:
        acc = statistics.median(accs)
        print(f"    {label}: {t:.1f} s (× {t / base_t:.2f}), {cpu:.1f} CPU s "
              f"(× {cpu / base_cpu:.2f}), test {acc:.4f} ({acc - base_acc:+.4f}; seeds "
              f"{min(accs):.4f}–{max(accs):.4f})")


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
