"""Moving trained models in and out safely.

Our own format comes first: a JSON spec (validated like the Builder's) plus the weights
as ``.npz`` arrays read with ``allow_pickle=False`` and checked shape by shape. Uploading a
``.keras`` file is off unless ``LAYERLAB_ALLOW_KERAS_UPLOAD=1`` (trusted local use); even
then it is size-capped, its archive is inspected before Keras opens it, it loads with
``safe_mode=True``, and anything that is not 28×28×1 → 10 classes is refused.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import LayerLabError
from core.spec import ModelSpec, infer_shapes, layer_from_keras

MAX_WEIGHTS_BYTES = 60 * 1024 * 1024       # 50 M params at fp32 plus headroom
MAX_KERAS_BYTES = 25 * 1024 * 1024
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
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
    """Build the spec's model and fill it with the ``.npz`` weights, checked one by one."""
    from core.build import build_model  # noqa: PLC0415

    spec = ModelSpec.from_json(spec_json)
    infer_shapes(spec)
    if len(weights) > MAX_WEIGHTS_BYTES:
        raise LayerLabError(f"The weights file is {len(weights) / 2**20:.0f} MB; the limit is "
                            f"{MAX_WEIGHTS_BYTES // 2**20} MB.")
    try:
        npz = np.load(io.BytesIO(weights), allow_pickle=False)
        arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise LayerLabError(f"The weights file is not a readable .npz ({exc}). Export the "
                            f"weights from Layer Lab to see the format.") from None
    model = build_model(spec)
    expected: dict[str, tuple[int, ...]] = {
        f"{layer.name}/{i}": tuple(w.shape)
        for layer in model.layers for i, w in enumerate(layer.weights)}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise LayerLabError("The weights do not fit this spec: "
                            + (f"missing {', '.join(missing[:4])}" if missing else "")
                            + ("; " if missing and extra else "")
                            + (f"unexpected {', '.join(extra[:4])}" if extra else "")
                            + ". Use the spec the weights were exported with.")
    for key, shape in expected.items():
        arr = arrays[key]
        if tuple(arr.shape) != shape:
            raise LayerLabError(f"Weight {key} has shape {tuple(arr.shape)} but the spec needs "
                                f"{shape}. Use the spec the weights were exported with.")
        if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
            raise LayerLabError(f"Weight {key} must hold finite numbers.")
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
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError):
        raise LayerLabError("That is not a .keras file (a .keras file is a zip archive "
                            "saved by Keras 3).") from None
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
            raise LayerLabError(f"The archive contains a suspicious path {name!r}; it was "
                                f"refused.")
        if name.split("/")[0] not in _KERAS_MEMBERS:
            raise LayerLabError(f"The archive contains an unexpected file {name!r}; only "
                                f"Keras' own files are accepted.")
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise LayerLabError("The archive unpacks to more than 200 MB; it was refused.")
    try:
        config_text = zf.read("config.json").decode("utf-8")
        config = json.loads(config_text)
    except (KeyError, UnicodeDecodeError, ValueError):
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

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.keras"
        path.write_bytes(data)
        try:
            model = keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:  # custom objects, damaged weights, unknown layers ...
            raise LayerLabError(f"The .keras file could not be loaded safely "
                                f"({type(exc).__name__}: {str(exc)[:160]}). Only models "
                                f"made of standard Keras layers are accepted.") from None
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


def import_run(model: Any, spec: ModelSpec, name: str, workspace: str, store) -> Any:
    """Evaluate an imported model on the test set and keep it as a run of the workspace."""
    from core.build import build_model  # noqa: PLC0415
    from core.data import load_mnist, to_float  # noqa: PLC0415
    from core.evaluation import evaluate  # noqa: PLC0415
    from core.runs import Run, new_run_id  # noqa: PLC0415

    clean = build_model(spec)
    if model is not clean:
        clean.set_weights(model.get_weights())
    mnist = load_mnist()
    ev = evaluate(clean, to_float(mnist.x_test), mnist.y_test)
    run = Run(id=new_run_id(), name=name[:48] or spec.name, spec=spec.to_dict(), recipe={},
              workspace=workspace, params=int(clean.count_params()), status="finished",
              message="Imported.", test_accuracy=ev.accuracy, test_loss=ev.loss,
              confusion=ev.confusion.tolist(), source="imported",
              device="imported")
    store.save_model(run.id, clean)
    store.save_run(run)
    return run, clean
