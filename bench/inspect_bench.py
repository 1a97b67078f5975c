"""Single-image inference for the Draw & inspect page: the inspector's one compiled call
(probabilities + every layer's output) against ``model.predict`` and an eager call.

    python bench/inspect_bench.py [--model bulky_cnn] [--runs 300]

Uses the pretrained model when cached_models/ has it, else builds the preset with random
weights (timing does not depend on the weights). Prints p50/p95 per path and the ratios;
goal: p50 ≤ 2 ms for the inspector and ≥ 20× faster than ``model.predict``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def timings(fn, runs: int, warmup: int = 5) -> list[float]:
    """Seconds per call, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="bulky_cnn")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()

    import tensorflow as tf

    from core import pretrained
    from core.build import build_model
    from core.data import to_float
    from core.inspector import Inspector
    from core.presets import get_preset

    if args.model in pretrained.available():
        model, source = pretrained.load_model(args.model), "pretrained weights"
    else:
        model, source = build_model(get_preset(args.model).spec, seed=0), \
            "random weights (no pretrained file)"
    rng = np.random.default_rng(0)
    digit = (rng.random((28, 28)) * 255).astype(np.uint8)
    x = to_float(digit)

    start = time.perf_counter()
    inspector = Inspector(model).warm_up()
    compile_s = time.perf_counter() - start
    n_outputs = len(inspector.feature_model.outputs)

    plain = Inspector(model, jit_compile=False)
    plain.run(digit)

    results = {
        "inspector (tf.function + XLA, all layers)": timings(lambda: inspector.run(digit),
                                                             args.runs),
        "inspector without XLA (all layers)": timings(lambda: plain.run(digit), args.runs),
        "eager model(x) (probabilities only)": timings(
            lambda: np.asarray(model(x, training=False)), max(50, args.runs // 3)),
        "model.predict (probabilities only)": timings(
            lambda: model.predict(x, verbose=0), max(30, args.runs // 10), warmup=3),
    }
    print(f"Layer Lab inspect bench · {args.model} ({source}) · {model.count_params():,} "
          f"params · {n_outputs} outputs per call")
    print(f"TensorFlow {tf.__version__} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPU threads · load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"first-use compile (feature model, saliency, probe): {compile_s:.2f} s")
    print(f"{'path':<46}{'p50 ms':>9}{'p95 ms':>9}{'calls':>7}")
    for name, values in results.items():
        print(f"{name:<46}{pct(values, 50):>9.2f}{pct(values, 95):>9.2f}{len(values):>7}")
    ours = statistics.median(results["inspector (tf.function + XLA, all layers)"])
    predict = statistics.median(results["model.predict (probabilities only)"])
    eager = statistics.median(results["eager model(x) (probabilities only)"])
    print(f"speed-up at p50: {predict / ours:.1f}× vs model.predict, {eager / ours:.1f}× vs "
          f"eager model(x)")
    goal = ours * 1000 <= 2.0 and predict / ours >= 20
    print(f"goal (p50 ≤ 2 ms and ≥ 20× faster than predict): "
          f"{'met' if goal else 'NOT met on this machine'}")


if __name__ == "__main__":
    main()
