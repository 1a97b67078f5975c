"""Moving trained models in and out safely.

Our own format comes first: a JSON spec (validated like the Builder's) plus the weights
as ``.npz`` arrays, read by :mod:`core.safe_npz` only as far as the spec's weights need
(names, compression, headers and shapes checked before anything is unpacked). Uploading a
``.keras`` file is off unless ``LAYERLAB_ALLOW_KERAS_UPLOAD=1`` (trusted local use); even
then it is size-capped, its archive is inspected before Keras opens it, it loads with
``safe_mode=True``, and anything that is not 28×28×1 → 10 classes is refused.
"""
from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import LayerLabError
from core.safe_npz import not_readable, read_npz, shown, sniff
from core.spec import ModelSpec, infer_shapes, layer_from_keras

LOG = logging.getLogger(__name__)

MAX_WEIGHTS_BYTES = 60 * 1024 * 1024       # 15 M params at fp32 (the server takes 5 MB)
MAX_KERAS_BYTES = 25 * 1024 * 1024
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_KERAS_ENTRIES = 64                     # Keras writes three files and an assets folder
MAX_CONFIG_BYTES = 2 * 1024 * 1024
IMPORT_BATCH = 250                         # test images per evaluation step of an import
MAX_IMPORT_BATCH = 500
_KERAS_MEMBERS = {"config.json", "metadata.json", "model.weights.h5", "assets"}
_FORBIDDEN = ("Lambda", "lambda", "__lambda__", "function_type", "TFOpLambda")


def weights_to_npz(model: Any) -> bytes:
    """Every weight as ``<layer>/<index>`` in an uncompressed ``.npz`` (no pickles)."""
    arrays = {f"{layer.name}/{i}": np.asarray(w)
              for layer in model.layers for i, w in enumerate(layer.get_weights())}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def model_from_spec_and_weights(spec_json: bytes | str, weights: bytes) -> tuple[ModelSpec, Any]:
    """Build the spec's model and fill it with the ``.npz`` weights, checked one by one.

    The spec decides which arrays may be read; :func:`core.safe_npz.read_npz` checks
    every name, compression method, header and shape before unpacking a byte.
    """
    from core.build import build_model  # noqa: PLC0415

    spec = ModelSpec.from_json(spec_json)
    infer_shapes(spec)
    if len(weights) > MAX_WEIGHTS_BYTES:
        raise LayerLabError(f"The weights file is {len(weights) / 2**20:.0f} MB; the limit is "
                            f"{MAX_WEIGHTS_BYTES // 2**20} MB.")
    reason = sniff(weights)                       # refuse junk before building the model
    if reason:
        raise not_readable(reason)
    model = build_model(spec)
    expected = {f"{layer.name}/{i}": tuple(w.shape)
                for layer in model.layers for i, w in enumerate(layer.weights)}
    arrays = read_npz(weights, expected)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([arrays[f"{layer.name}/{i}"].astype(np.float32)
                               for i in range(len(layer.weights))])
    return spec, model


def keras_upload_allowed() -> bool:
    return os.environ.get("LAYERLAB_ALLOW_KERAS_UPLOAD", "") in ("1", "true", "yes")


def inspect_keras_archive(data: bytes) -> dict[str, Any]:
    """Check a ``.keras`` zip before Keras sees it; return its parsed config."""
    if len(data) > MAX_KERAS_BYTES:
        raise LayerLabError(f"The .keras file is {len(data) / 2**20:.0f} MB; the limit is "
                            f"{MAX_KERAS_BYTES // 2**20} MB.")
    if data.count(b"PK\x01\x02") > MAX_KERAS_ENTRIES:   # bounds what zipfile parses
        raise LayerLabError(f"The archive has more than {MAX_KERAS_ENTRIES} entries; a "
                            f".keras file has a handful. It was refused.")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        raise LayerLabError("That is not a .keras file (a .keras file is a zip archive "
                            "saved by Keras 3).") from None
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
            raise LayerLabError(f"The archive contains a suspicious path "
                                f"‘{shown(name)}’; it was refused.")
        if name.split("/")[0] not in _KERAS_MEMBERS:
            raise LayerLabError(f"The archive contains an unexpected file ‘{shown(name)}’; "
                                f"only Keras' own files are accepted.")
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise LayerLabError("The archive unpacks to more than 200 MB; it was refused.")
    return _keras_config(zf)


def _keras_config(zf: zipfile.ZipFile) -> dict[str, Any]:
    """The archive's ``config.json``, read within a size limit and free of Python code."""
    try:
        info = zf.getinfo("config.json")
        if info.file_size > MAX_CONFIG_BYTES:
            raise ValueError("config.json too large")
        with zf.open(info) as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)        # the declared size may lie
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError("config.json too large")
        config_text = raw.decode("utf-8")
        config = json.loads(config_text)
    except (KeyError, UnicodeDecodeError, ValueError, RecursionError, zipfile.BadZipFile,
            EOFError, OSError, NotImplementedError, RuntimeError):
        raise LayerLabError("The .keras file has no readable config.json.") from None
    for word in _FORBIDDEN:
        if f'"{word}"' in config_text:
            raise LayerLabError("The model contains a Lambda layer or Python code; such "
                                "models are never loaded here.")
    return config


def load_keras_upload(data: bytes) -> Any:
    """A user's ``.keras`` upload, only when enabled, safely; refuses non-MNIST shapes."""
    if not keras_upload_allowed():
        raise LayerLabError(".keras uploads are switched off on this server. Upload the "
                            "JSON spec and the .npz weights instead (set "
                            "LAYERLAB_ALLOW_KERAS_UPLOAD=1 for trusted local use).")
    inspect_keras_archive(data)
    import keras  # noqa: PLC0415

    from core.build import register_layers  # noqa: PLC0415

    register_layers()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.keras"
        path.write_bytes(data)
        try:
            model = keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:  # custom objects, damaged weights, unknown layers ...
            LOG.info(".keras upload refused by Keras: %r", exc)      # kept server-side
            raise LayerLabError("The .keras file could not be loaded safely: it uses a "
                                "layer or object this server does not know, or its "
                                "weights are damaged. Only models made of standard "
                                "Keras layers are accepted.") from None
    in_shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    out_shape = tuple(model.outputs[0].shape[1:]) if getattr(model, "outputs", None) else None
    if in_shape != (28, 28, 1) or out_shape != (10,):
        raise LayerLabError(f"The model maps {in_shape} to {out_shape}; Layer Lab needs "
                            f"28×28×1 images to 10 classes.")
    return model


def spec_from_keras(model: Any, name: str = "imported") -> ModelSpec:
    """Describe a plain stack of supported Keras layers as a spec (else refuse).

    Each layer's config is mapped back through the layer table
    (:func:`core.spec.layer_from_keras`), so anything the table cannot express is refused.
    """
    layers = [layer_from_keras(type(layer).__name__, layer.get_config(), layer.name)
              for layer in model.layers if type(layer).__name__ != "InputLayer"]
    spec = ModelSpec(name, layers)
    infer_shapes(spec)
    return spec


class ImportStopped(LayerLabError):
    """The import's evaluation was asked to stop; nothing was saved."""


def evaluate_in_batches(model: Any, images: np.ndarray, labels: np.ndarray, *,
                        batch_size: int = IMPORT_BATCH,
                        should_stop: Callable[[], bool] | None = None,
                        progress: Callable[[float], None] | None = None) -> Any:
    """:func:`core.evaluation.evaluate` in steps of at most 500 uint8 images.

    Memory stays at one step's activations whatever the model; ``should_stop`` is asked
    before every step (a scheduler's cancel flag) and :class:`ImportStopped` is raised
    when it answers true.
    """
    from core.data import to_float  # noqa: PLC0415
    from core.evaluation import (NUM_CLASSES, batched_probabilities,  # noqa: PLC0415
                                 evaluation_from_probabilities)

    if not 1 <= batch_size <= MAX_IMPORT_BATCH:
        raise ValueError(f"batch_size must be 1 to {MAX_IMPORT_BATCH}, got {batch_size}")
    probs = np.empty((len(images), NUM_CLASSES), np.float32)
    for start in range(0, len(images), batch_size):
        if should_stop is not None and should_stop():
            raise ImportStopped("The import was stopped before its test-set evaluation "
                                "finished; nothing was saved.")
        chunk = to_float(images[start:start + batch_size])
        probs[start:start + len(chunk)] = batched_probabilities(model, chunk, batch_size)
        if progress is not None:
            progress((start + len(chunk)) / len(images))
    return evaluation_from_probabilities(probs, labels)


def import_run(model: Any, spec: ModelSpec, name: str, workspace: str, store, *,
               should_stop: Callable[[], bool] | None = None,
               progress: Callable[[float], None] | None = None) -> Any:
    """Evaluate an imported model on the test set (in small, stoppable steps) and keep it
    as a run of the workspace."""
    from core.build import build_model  # noqa: PLC0415
    from core.data import load_mnist  # noqa: PLC0415
    from core.runs import Run, new_run_id  # noqa: PLC0415

    clean = build_model(spec)
    if model is not clean:
        clean.set_weights(model.get_weights())
    mnist = load_mnist()
    ev = evaluate_in_batches(clean, mnist.x_test, mnist.y_test, should_stop=should_stop,
                             progress=progress)
    run = Run(id=new_run_id(), name=name[:48] or spec.name, spec=spec.to_dict(), recipe={},
              workspace=workspace, params=int(clean.count_params()), status="finished",
              message="Imported.", test_accuracy=ev.accuracy, test_loss=ev.loss,
              confusion=ev.confusion.tolist(), source="imported",
              device="imported")
    store.save_model(run.id, clean)
    store.save_run(run)
    return run, clean


class ImportJob:
    """:func:`import_run` on a background thread, under the server's training scheduler
    (it counts against ``LAYERLAB_MAX_RUNS`` and queues behind runs), so a heavy import
    never runs in a page's thread nor beside more runs than the server allows.

    A page starts it, then polls ``position`` (queue place, 0 once evaluating),
    ``fraction`` and ``done``; ``result()`` gives ``(run, model)`` or raises the error.
    """

    def __init__(self, model: Any, spec: ModelSpec, name: str, workspace: str, store,
                 scheduler: Any = None) -> None:
        import uuid  # noqa: PLC0415

        if scheduler is None:
            from core.training import SCHEDULER as scheduler  # noqa: PLC0415,N811
        self.id = f"import-{uuid.uuid4().hex[:12]}"
        self.fraction = 0.0
        self._args = (model, spec, name, workspace, store)
        self._scheduler = scheduler
        self._stop = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=self.id, daemon=True)

    def start(self) -> "ImportJob":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Give up: leaves the queue, or stops before the next evaluation step."""
        self._stop.set()

    @property
    def position(self) -> int | None:
        return self._scheduler.position(self.id)

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def result(self, timeout: float | None = None) -> Any:
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self._result

    def _report(self, fraction: float) -> None:
        self.fraction = fraction

    def _work(self) -> None:
        try:
            if not self._scheduler.acquire(self.id, self._stop):
                raise ImportStopped("The import was stopped while it waited for its turn; "
                                    "nothing was saved.")
            try:
                self._result = import_run(*self._args, should_stop=self._stop.is_set,
                                          progress=self._report)
            finally:
                self._scheduler.release(self.id)
        except BaseException as exc:  # noqa: BLE001 - handed to the page's result()
            self._error = exc
