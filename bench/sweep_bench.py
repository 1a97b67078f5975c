"""Run a sweep from a preset with a time limit; print each trial as it ends, then the
chosen models (parameters, validation accuracy, and test accuracy, labelled as such).

The issue's acceptance run (about 30 minutes on 2 cores; run it niced):

    nice -n 10 python bench/sweep_bench.py --preset fast_cnn --objective budget \\
        --budget 25000 --minutes 30 --trials 80

Trials train through the process's job backend (``LAYERLAB_RAY_ADDRESS`` picks Ray) and
are saved as runs of a fresh workspace under ``LAYERLAB_HOME`` (a temporary folder unless
set), so the Sweep page of a server on the same home can show them (``--workspace``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import _util  # quiet TensorFlow, MNIST_NPZ; rss_mb

from core.presets import PRESETS, get_preset
from core.sweep import start_sweep
from core.sweep_store import SweepConfig, open_sweep
from core.sweep_objective import KINDS, Objective
from core.sweep_space import DEFAULT_ON, default_space
from core.workspace import new_workspace_id


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="fast_cnn", choices=list(PRESETS))
    p.add_argument("--objective", default="budget", choices=list(KINDS))
    p.add_argument("--budget", type=int, default=25_000, help="parameters (budget)")
    p.add_argument("--target", type=float, default=0.99,
                   help="validation accuracy (threshold)")
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--minutes", type=float, default=30.0, help="time limit (0: none)")
    p.add_argument("--images", type=int, default=None, help="training images (default all)")
    p.add_argument("--vary", default=",".join(DEFAULT_ON),
                   help="comma-separated knobs (default: %(default)s)")
    p.add_argument("--workspace", default=None, help="a workspace id (default: a new one)")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> SweepConfig:
    preset = get_preset(args.preset)
    recipe = preset.recipe.replace(train_subset=args.images)
    space = {k: v for k, v in default_space(preset.spec, recipe).items()
             if k in args.vary.split(",")}
    objective = Objective(args.objective, target=args.target, budget=args.budget)
    return SweepConfig(args.workspace or new_workspace_id(), preset.spec.to_dict(),
                       recipe.to_dict(), space, objective, args.trials,
                       args.minutes * 60 if args.minutes else None,
                       f"preset {args.preset}").check()


def line(r) -> str:
    val = f"{r.val_accuracy:.2%}" if r.val_accuracy is not None else "—"
    test = f"{r.test_accuracy:.2%}" if r.test_accuracy is not None else "—"
    params = f"{r.params:,}" if r.params is not None else "—"
    return (f"trial {r.number:3d}  {r.state:8s}  {params:>9s} params  val {val:>7s}  "
            f"test {test:>7s}  {r.reason[:60]}")


def follow(workspace: str, number: int, driver, every_s: float = 5.0):
    """Print each trial once it ends (with this process's memory); the final result."""
    shown: set[int] = set()
    while True:
        alive = driver.alive
        result = open_sweep(workspace, number)
        for r in result.records:
            if r.state not in ("running", "waiting") and r.number not in shown:
                shown.add(r.number)
                print(f"{line(r)}  [{_util.rss_mb():,.0f} MiB]", flush=True)
        if not alive:
            return result
        time.sleep(every_s)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("LAYERLAB_HOME", tempfile.mkdtemp(prefix="layerlab-sweep-"))
    config = config_from(args)
    print(f"sweep of {args.preset}: {config.objective.describe()}; varies "
          f"{', '.join(config.space)}; {config.n_trials} trials, time limit "
          f"{args.minutes:g} min; LAYERLAB_HOME={os.environ['LAYERLAB_HOME']}", flush=True)
    t0 = time.perf_counter()
    driver = start_sweep(config)
    try:
        result = follow(config.workspace, driver.config.number, driver)
    except KeyboardInterrupt:
        print("stopping: the trials in flight end after their current batch…", flush=True)
        driver.stop()
        driver.join()
        result = open_sweep(config.workspace, driver.config.number)
    wall = time.perf_counter() - t0
    states = [r.state for r in result.records]
    print(f"\n{result.info.status} after {wall / 60:.1f} min: {len(states)} trials "
          f"({states.count('complete')} complete, {states.count('pruned')} pruned, "
          f"{states.count('failed')} failed, {states.count('lost')} stopped). "
          f"{result.info.message}")
    print(f"chosen ({config.objective.describe()}; selection on validation only, test "
          f"accuracy reported):")
    for r in result.chosen:
        print("  " + line(r) + f"  {r.run_name}  {r.values}")
    if not result.chosen:
        print("  " + config.objective.nothing_chosen())
    ok = [r for r in result.records if r.state == "complete" and r.params <= 25_000
          and (r.test_accuracy or 0) >= 0.99]
    print(f"this process's memory at the end: {_util.rss_mb():,.0f} MiB")
    print(f"trials with ≤ 25,000 params and ≥ 99.0% test accuracy: {len(ok)}"
          + (f" (chosen among them: {any(r in ok for r in result.chosen)})" if ok else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
