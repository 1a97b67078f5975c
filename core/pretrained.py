"""The shipped pretrained presets in ``cached_models/``: load them, or regenerate them.

Each preset NAME has ``NAME.keras`` (weights only, no optimizer state) and ``NAME.json``
(the run record: recipe, history, test metrics, confusion matrix, wall time, device).
The app only reads this folder; ``python -m core pretrain NAME`` writes it.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from core import priority
from core.errors import LayerLabError, StorageError
from core.runs import Run, read_run
from core.storage import atomic_save, atomic_write_bytes

_log = logging.getLogger(__name__)

CACHED_DIR = Path(__file__).resolve().parents[1] / "cached_models"


def available(folder: Path = CACHED_DIR) -> list[str]:
    """Preset names that have both files, in the presets' order."""
    from core.presets import PRESETS  # noqa: PLC0415

    return [n for n in PRESETS if (folder / f"{n}.keras").is_file()
            and (folder / f"{n}.json").is_file()]


def load_record(name: str, folder: Path = CACHED_DIR) -> Run:
    """The run record of a pretrained preset."""
    try:
        return read_run(folder / f"{name}.json")
    except StorageError as err:
        raise StorageError(f"The pretrained record {name}.json is damaged. {err} Regenerate "
                           f"it with `python -m core pretrain {name}`.") from None


def load_model(name: str, folder: Path = CACHED_DIR) -> Any:
    """The pretrained Keras model for a preset (safe_mode on, no compile)."""
    priority.ensure_tensorflow()      # its pools below the pages' priority (core/priority)
    import keras  # noqa: PLC0415

    from core.build import register_layers  # noqa: PLC0415

    register_layers()
    path = folder / f"{name}.keras"
    if not path.is_file():
        raise LayerLabError(f"No pretrained weights for {name!r}. Train it on the Train page "
                            f"or run `python -m core pretrain {name}`.")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # a damaged or foreign file: Keras raises many kinds
        _log.warning("cannot load pretrained %s: %r", path, exc)
        raise StorageError(f"The pretrained weights {name}.keras could not be loaded "
                           f"because they are damaged. Regenerate them with "
                           f"`python -m core pretrain {name}`.") from None


def model_file_bytes(name: str, folder: Path = CACHED_DIR) -> bytes:
    """The shipped ``NAME.keras`` as it is on disk, for download (e.g. the teacher file a
    distilling run's notebook loads)."""
    from core.presets import get_preset  # noqa: PLC0415

    get_preset(name)                       # a preset's name, never a path
    try:
        return (folder / f"{name}.keras").read_bytes()
    except OSError:
        _log.warning("cannot read the pretrained %s.keras", name, exc_info=True)
        raise LayerLabError(f"The pretrained {name} could not be read. Regenerate it with "
                            f"`python -m core pretrain {name}`.") from None


def shared_model(name: str) -> Any:
    """The pretrained model of ``name`` from :data:`CACHED_DIR`, loaded once per server
    process and shared by every page and session (they only read it) and by the pages'
    warm-up (core/page_warm_up.py), which loads the first pages' models before anyone asks:
    a load takes about a second of the interpreter's lock, and its compiled calls
    (core/model_cache.py) belong to the model object. A preset shipped again while the
    server runs is loaded afresh."""
    folder = CACHED_DIR
    path = folder / f"{name}.keras"
    try:
        stat = path.stat()
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except OSError:
        stamp = None                            # load_model says what is missing
    with _shared_lock:
        lock = _shared_locks.setdefault(name, threading.Lock())
    with lock:                                  # a second caller waits for this load
        held = _shared.get(name)
        if held is None or held[0] != stamp:
            _shared[name] = (stamp, load_model(name, folder))
        return _shared[name][1]


_shared: dict[str, tuple[Any, Any]] = {}        # name -> (file stamp, model)
_shared_locks: dict[str, threading.Lock] = {}
_shared_lock = threading.Lock()


def pretrain(name: str, out_dir: Path = CACHED_DIR,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train preset ``name`` on full MNIST with its recipe; write NAME.keras and NAME.json."""
    from core.presets import get_preset  # noqa: PLC0415
    from core.training import TrainingJob  # noqa: PLC0415

    preset = get_preset(name)
    job = TrainingJob(preset.spec, preset.recipe, name=name).start()
    ended = False
    while not ended:
        ended = not job.alive                    # then this drain takes the last events
        job.join(timeout=1.0)
        for event in job.drain():
            if event["kind"] == "epoch":
                log(f"{name} epoch {event['epoch']}: loss {event['loss']:.4f} acc "
                    f"{event['accuracy']:.4f} val_acc {event.get('val_accuracy', 0):.4f} "
                    f"({event['seconds']:.1f} s)")
    return ship(name, job.model, job.run, out_dir)


def ship(name: str, model: Any, run: Run, out_dir: Path = CACHED_DIR) -> dict[str, Any]:
    """Write a finished run of preset ``name`` as its shipped NAME.keras and NAME.json.

    The weights go into a freshly built float32 model (no optimizer state); the record
    keeps the run's recipe, history and test figures under the preset's name.
    """
    from core.build import build_model  # noqa: PLC0415
    from core.presets import get_preset  # noqa: PLC0415

    if run.status != "finished":
        raise LayerLabError(f"Pretraining {name} did not finish: {run.message}")
    run.source = "pretrained"
    run.id = name
    clean = build_model(get_preset(name).spec)   # same weights, no optimizer state
    clean.set_weights(model.get_weights())
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save(out_dir / f"{name}.keras", lambda tmp: clean.save(tmp))
    atomic_write_bytes(out_dir / f"{name}.json", json.dumps(run.to_dict(), indent=1).encode())
    return {"test_accuracy": run.test_accuracy, "wall_time_s": run.wall_time_s,
            "device": run.device}
