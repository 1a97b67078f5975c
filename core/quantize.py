"""What a model really costs on a device: float32, float16 and int8 ``.tflite`` files,
measured on the full test set.

A Keras model is converted with TensorFlow's ``TFLiteConverter`` (the LiteRT converter
that ships with TensorFlow) three ways: float32, float16 weights, and full-integer int8
(weights and activations, int8 input and output) calibrated on
:data:`CALIBRATION_IMAGES` training images. Each file is then run with LiteRT's
interpreter (``ai_edge_litert``; ``tf.lite`` only when that package is missing) on the
10,000 test images in batches, and timed on single images with one thread. Accuracy,
file size, the p50 latency and the images whose prediction differs from float32 are kept
in a :class:`CostReport`.

Converting and measuring takes seconds, so reports and files are cached on disk by the
model's content (:func:`core.analysis.content_key`) and the test set's fingerprint, and
the work runs on a background thread (:func:`submit`): one thread for the server, one
job per workspace at a time.

Concurrency: ``_jobs_lock`` guards the job table only; it is never held while converting.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import LayerLabError
from core.evaluation import array_fingerprint, cache_root
from core.storage import atomic_write_bytes

log = logging.getLogger(__name__)

FORMATS = ("fp32", "fp16", "int8")
CALIBRATION_IMAGES = 300     # a few hundred training images pin the int8 ranges
LATENCY_RUNS = 200           # single-image invocations timed for the p50
EVAL_BATCH = 1000
CACHE_VERSION = "v1"         # bump when what a report holds or how it is measured changes
# Every layer type of core/layers.py; tests/test_quantize.py converts a stack of them all.
CHECKED_TYPES = frozenset({
    "InputLayer", "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "MaxPooling2D",
    "AveragePooling2D", "BatchNormalization", "Dropout", "Flatten", "Dense",
    "Activation", "GlobalAveragePooling2D", "Deskew"})


class ConversionBusy(LayerLabError):
    """This workspace already has a conversion running."""


@dataclass(frozen=True)
class Variant:
    """One converted file, measured. ``problem`` is a sentence when it could not be made."""

    fmt: str
    size_bytes: int = 0
    accuracy: float | None = None
    p50_ms: float | None = None
    differ: list[int] = field(default_factory=list)      # test indices unlike fp32
    differ_pred: list[int] = field(default_factory=list)  # this file's class there
    problem: str | None = None


@dataclass(frozen=True)
class CostReport:
    """fp32, fp16 and int8 side by side; ``folder`` holds the ``.tflite`` files."""

    key: str
    variants: dict[str, Variant]
    folder: str

    def tflite(self, fmt: str) -> bytes | None:
        """The bytes of one converted file (for a download), or None if it is missing."""
        try:
            return (Path(self.folder) / f"{fmt}.tflite").read_bytes()
        except OSError:
            return None


def quantize_input(images: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float images to an int8 input tensor: ``round(x / scale) + zero_point``, clipped.

    >>> quantize_input(np.array([0.0, 128 / 255, 1.0]), 1 / 255, -128).tolist()
    [-128, 0, 127]
    """
    q = np.round(np.asarray(images, np.float32) / scale) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def differing(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Indices where two prediction vectors disagree.

    >>> differing(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 5])).tolist()
    [1, 3]
    """
    return np.flatnonzero(np.asarray(reference) != np.asarray(other))


def p50(samples_s: list[float]) -> float:
    """The median of timings in seconds, in milliseconds.

    >>> p50([0.001, 0.003, 0.002])
    2.0
    """
    return float(np.median(samples_s) * 1000)


def unchecked_layers(model: Any) -> list[str]:
    """Sentences for the layers whose type Layer Lab has not checked converts.

    >>> class Odd: pass
    >>> class M: layers = [Odd()]
    >>> unchecked_layers(M())[0].split(" (")[0]
    "Layer 'Odd'"
    """
    return [f"Layer '{getattr(layer, 'name', type(layer).__name__)}' "
            f"({type(layer).__name__}) is not a type Layer Lab has checked converts; "
            f"if a format fails below, that layer is the likely reason."
            for layer in model.layers if type(layer).__name__ not in CHECKED_TYPES]


# -- converting and running (TensorFlow and LiteRT imported lazily) ----------------------

def convert(model: Any, fmt: str, calibration: np.ndarray | None = None) -> bytes:
    """A Keras model as ``.tflite`` bytes: ``fp32``, ``fp16`` (weights) or ``int8`` (full
    integer, int8 in and out; ``calibration`` are float images for the ranges)."""
    import tensorflow as tf  # noqa: PLC0415

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if fmt == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i:i + 1]]
                                                    for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif fmt != "fp32":
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return converter.convert()


def interpreter(content: bytes, batch: int = 1):
    """A one-thread interpreter for ``content`` with its input resized to ``batch``."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
    except ImportError:                                     # LiteRT missing: TF's own
        import tensorflow as tf  # noqa: PLC0415
        Interpreter = tf.lite.Interpreter  # noqa: N806
    interp = Interpreter(model_content=content, num_threads=1)
    index = interp.get_input_details()[0]["index"]
    interp.resize_tensor_input(index, [batch, 28, 28, 1])
    interp.allocate_tensors()
    return interp


def _feed(interp, images: np.ndarray) -> np.ndarray:
    """Run one batch (float images) and return the output's class per image."""
    detail = interp.get_input_details()[0]
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        images = quantize_input(images, scale, zero)
    interp.set_tensor(detail["index"], images)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).argmax(axis=1)


def predict(content: bytes, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Predicted classes of float images ``(N, 28, 28, 1)``, in batches of ``batch``."""
    out, interp, size = [], None, 0
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        if len(chunk) != size:                 # the last batch may be shorter
            interp, size = interpreter(content, len(chunk)), len(chunk)
        out.append(_feed(interp, chunk))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def latency_ms(content: bytes, images: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """p50 milliseconds of one single-image invocation on one thread (after a warm-up)."""
    interp = interpreter(content, 1)
    for i in range(5):
        _feed(interp, images[i % len(images)][None])
    samples = []
    for i in range(runs):
        x = images[i % len(images)][None]
        start = time.perf_counter()
        _feed(interp, x)
        samples.append(time.perf_counter() - start)
    return p50(samples)


# -- one model measured, cached on disk --------------------------------------------------

def cost_dir() -> Path:
    """``<LAYERLAB_HOME>/cache/quantize``: one folder per (model, test set)."""
    return cache_root() / "quantize"


def report_key(model: Any, images: np.ndarray, labels: np.ndarray) -> str:
    """What a report is cached under: the model's content and the test set's."""
    from core.analysis import content_key  # noqa: PLC0415

    return f"{CACHE_VERSION}-{content_key(model)}-{array_fingerprint(images, labels)[:12]}"


def load_report(folder: Path, key: str) -> CostReport | None:
    """A cached report, or None when there is none (or it is damaged)."""
    try:
        data = json.loads((folder / "report.json").read_text())
        variants = {f: Variant(**data["variants"][f]) for f in FORMATS}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return CostReport(key, variants, str(folder))


def _measure_one(model: Any, fmt: str, calibration: np.ndarray, images: np.ndarray,
                 labels: np.ndarray, folder: Path) -> tuple[Variant, np.ndarray | None]:
    """Convert, save and measure one format; a failed conversion becomes a sentence."""
    try:
        content = convert(model, fmt, calibration)
    except Exception as exc:   # noqa: BLE001 - the converter raises many types
        log.warning("converting to %s failed: %r", fmt, exc)
        types = sorted({type(layer).__name__ for layer in model.layers})
        return Variant(fmt, problem=(
            f"The converter could not make a {fmt} file of this model (its layer types: "
            f"{', '.join(types)}); the other formats are still measured.")), None
    atomic_write_bytes(folder / f"{fmt}.tflite", content)
    preds = predict(content, images)
    return Variant(fmt, size_bytes=len(content), accuracy=float((preds == labels).mean()),
                   p50_ms=latency_ms(content, images)), preds


def measure(model: Any, data: Any, *, cache_dir: Path | None = None) -> CostReport:
    """fp32, fp16 and int8 files of ``model`` measured on ``data``'s test set (cached).

    ``data`` is a :class:`core.data.Mnist`; calibration uses its first training images.
    """
    from core.data import to_float  # noqa: PLC0415

    images, labels = to_float(data.x_test), np.asarray(data.y_test)
    key = report_key(model, data.x_test, labels)
    folder = (cache_dir or cost_dir()) / key
    cached = load_report(folder, key)
    if cached is not None:
        return cached
    calibration = to_float(data.x_train[:CALIBRATION_IMAGES])
    variants, preds = {}, {}
    for fmt in FORMATS:
        variants[fmt], preds[fmt] = _measure_one(model, fmt, calibration, images, labels,
                                                 folder)
    base = preds["fp32"]
    for fmt in FORMATS[1:]:
        if base is not None and preds[fmt] is not None:
            idx = differing(base, preds[fmt])
            variants[fmt] = Variant(**{**asdict(variants[fmt]), "differ": idx.tolist(),
                                       "differ_pred": preds[fmt][idx].tolist()})
    report = {"variants": {f: asdict(v) for f, v in variants.items()}}
    atomic_write_bytes(folder / "report.json", json.dumps(report).encode())
    return CostReport(key, variants, str(folder))


def find_report(model: Any, data: Any, *, cache_dir: Path | None = None) -> CostReport | None:
    """The cached report of ``model`` on ``data``'s test set, or None (nothing computed)."""
    key = report_key(model, data.x_test, data.y_test)
    return load_report((cache_dir or cost_dir()) / key, key)


def cost_rows(report: CostReport, weight_bytes: dict[str, int] | None) -> list[dict]:
    """One row per format for the page's table: measured file size beside the computed
    weight memory (parameters × bytes per value), accuracy, p50 latency, differences.

    >>> v = {f: Variant(f, size_bytes=s, accuracy=0.99, p50_ms=0.1)
    ...      for f, s in zip(FORMATS, (4200, 2200, 1200))}
    >>> rows = cost_rows(CostReport("k", v, "/tmp"), {"fp32": 4000, "fp16": 2000, "int8": 1000})
    >>> rows[2]["format"], rows[2]["file size"], rows[2]["computed weights"]
    ('int8', '1.2 KiB', '1,000 B')
    """
    from core.stats import human_bytes  # noqa: PLC0415

    rows = []
    for fmt, v in report.variants.items():
        rows.append({
            "format": fmt,
            "file size": human_bytes(v.size_bytes) if v.problem is None else "—",
            "computed weights": human_bytes(weight_bytes[fmt]) if weight_bytes else "—",
            "test accuracy": f"{v.accuracy:.2%}" if v.accuracy is not None else "—",
            "p50 latency": f"{v.p50_ms:.3f} ms" if v.p50_ms is not None else "—",
            "predictions unlike fp32": len(v.differ) if v.problem is None else "—"})
    return rows


def computed_weight_bytes(model: Any) -> dict[str, int] | None:
    """Parameters × 4 / 2 / 1 bytes from :mod:`core.stats`, or None for a model the layer
    table cannot describe."""
    from core.modelio import spec_from_keras  # noqa: PLC0415
    from core.spec import infer_shapes  # noqa: PLC0415
    from core.stats import totals  # noqa: PLC0415

    try:
        return totals(infer_shapes(spec_from_keras(model)), batch_size=1).weight_bytes
    except LayerLabError:
        return None


# -- the background job: one thread for the server, one job per workspace ----------------

@dataclass
class CostJob:
    """A conversion on the background thread; ``result()`` is the report or raises."""

    key: str
    future: Future

    @property
    def done(self) -> bool:
        return self.future.done()

    def result(self) -> CostReport:
        return self.future.result()


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerlab-quantize")
_jobs: dict[str, CostJob] = {}
_jobs_lock = threading.Lock()


def submit(workspace: str, model: Any, data: Any) -> CostJob:
    """Start measuring ``model`` for ``workspace`` (or return its job for that model).

    Raises :class:`ConversionBusy` while another model of the workspace is converting.
    """
    key = report_key(model, data.x_test, data.y_test)
    with _jobs_lock:
        job = _jobs.get(workspace)
        if job is not None and not job.done:
            if job.key == key:
                return job
            raise ConversionBusy("A conversion from your workspace is still running; wait "
                                 "for it to finish, then convert this model.")
        job = CostJob(key, _executor.submit(measure, model, data))
        _jobs[workspace] = job
    return job


def job_for(workspace: str) -> CostJob | None:
    """The workspace's latest job (running or finished), if any."""
    with _jobs_lock:
        return _jobs.get(workspace)
