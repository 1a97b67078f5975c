"""Sweeps as Optuna keeps them: the configuration, the storage and the trials read back.

Optuna's RDB storage is the record: a SQLite file ``$LAYERLAB_HOME/sweeps.db`` unless
``LAYERLAB_SWEEP_DB`` names another SQLAlchemy URL (PostgreSQL for a class on several
machines). A sweep is one study named after a hash of its workspace (never the secret id)
and its number; its :class:`SweepConfig` (start, space, objective, workspace) lives in the
study's user attributes beside its status, last message and ``alive_at``, the time its
driver last stamped it (:mod:`core.sweep`). A study marked running that nobody stamped
for :data:`STALE_AFTER_S` was left by a server that stopped: it reads as interrupted, and
:func:`recover` marks the trials it left RUNNING failed and asks each again once, with
the same values. Each trial's user attributes hold its parameters, run, validation curve,
test accuracy and, when it did not complete, the reason.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from core.errors import LayerLabError, SpecError, StorageError
from core.recipe import Recipe
from core.runs import workspace_key
from core.spec import ModelSpec, infer_shapes
from core.storage import ensure_dir, layerlab_home
from core.sweep_objective import Objective, TrialRecord
from core.sweep_space import check_space

_log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
SWEEP_DB_ENV = "LAYERLAB_SWEEP_DB"
STALE_AFTER_S = 60.0          # a "running" study not stamped for this long is dead
MAX_TRIALS = 500
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# -- configuration ----------------------------------------------------------------------
@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs to run or be continued (kept in the study)."""

    workspace: str
    start: dict[str, Any]                  # the starting spec, ModelSpec.to_dict()
    recipe: dict[str, Any]                 # its recipe; every trial starts from it
    space: dict[str, dict[str, Any]]       # core.sweep_space: the knobs that vary
    objective: Objective = field(default_factory=Objective)
    n_trials: int = 20
    time_limit_s: float | None = None      # per start or Continue
    start_label: str = ""                  # e.g. "preset fast_cnn"
    number: int = 0                        # the workspace's sweep number, set on creation

    def start_spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.start)

    def base_recipe(self) -> Recipe:
        return Recipe.from_dict(self.recipe)

    def check(self) -> "SweepConfig":
        """Raise SpecError with a sentence for the first thing a sweep cannot run with."""
        infer_shapes(self.start_spec())
        if self.base_recipe().validation_split <= 0:
            raise SpecError("A sweep chooses models on the validation split: set the "
                            "validation split above 0.")
        check_space(self.space)
        self.objective.check()
        n = self.n_trials
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TRIALS:
            raise SpecError(f"The number of trials must be between 1 and {MAX_TRIALS}, "
                            f"got {n!r}.")
        limit = self.time_limit_s
        if limit is not None and (isinstance(limit, bool) or not isinstance(
                limit, (int, float)) or not 10 <= limit <= 7 * 86_400):
            raise SpecError("The time limit must be between 10 seconds and a week.")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["objective"] = self.objective.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "SweepConfig":
        if not isinstance(data, dict):
            raise SpecError("A sweep's configuration must be an object.")
        data = dict(data)
        data["objective"] = Objective.from_dict(data.get("objective"))
        try:
            return cls(**data).check()
        except TypeError:
            raise SpecError("The sweep's configuration is incomplete or has unknown "
                            "settings.") from None


@dataclass(frozen=True)
class SweepInfo:
    """A stored sweep as the page lists it."""

    number: int
    # running | finished | stopped | time limit | paused | failed | interrupted
    status: str
    message: str
    config: SweepConfig
    study_name: str


@dataclass(frozen=True)
class SweepResult:
    """A sweep's trials and the ones its objective chooses."""

    info: SweepInfo
    records: list[TrialRecord]
    chosen: list[TrialRecord]


# -- storage ------------------------------------------------------------------------------
_storages: dict[str, optuna.storages.RDBStorage] = {}
_storages_lock = threading.Lock()


def storage_url(environ: dict[str, str] | None = None) -> str:
    """``LAYERLAB_SWEEP_DB``, else a SQLite file under ``LAYERLAB_HOME``.

    >>> storage_url({"LAYERLAB_HOME": "/srv/ll"})
    'sqlite:////srv/ll/sweeps.db'
    >>> storage_url({"LAYERLAB_SWEEP_DB": "postgresql://db/sweeps"})
    'postgresql://db/sweeps'
    """
    env = os.environ if environ is None else environ
    return env.get(SWEEP_DB_ENV) or f"sqlite:///{layerlab_home(env) / 'sweeps.db'}"


def get_storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """The process's storage for ``url`` (default :func:`storage_url`), opened once."""
    url = url or storage_url()
    with _storages_lock:
        if url not in _storages:
            kwargs: dict[str, Any] = {}
            if url.startswith("sqlite:///"):
                ensure_dir(Path(url[len("sqlite:///"):]).parent)
                kwargs = {"connect_args": {"timeout": 30}}    # the page reads while we write
            try:
                _storages[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except Exception as exc:  # a bad URL, an unreachable server, a read-only disk
                # Logged without the URL, which may hold a password.
                _log.error("cannot open the sweep storage", exc_info=exc)
                raise StorageError("The sweep database could not be opened; ask whoever runs "
                                   f"the server to check {SWEEP_DB_ENV} or LAYERLAB_HOME.") \
                    from None
        return _storages[url]


def study_prefix(workspace: str) -> str:
    """Study names of a workspace: its hash, never the secret id itself."""
    return f"ws-{workspace_key(workspace)}-sweep-"


def _sampler(config: SweepConfig) -> optuna.samplers.BaseSampler:
    # Random for the first quarter of the trials (at least 4, at most 10), then TPE; the
    # constant liar keeps parallel trials from asking for the same values.
    startup = min(10, max(4, config.n_trials // 4))
    return optuna.samplers.TPESampler(n_startup_trials=startup, constant_liar=True)


def _pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    if config.objective.multi:
        return optuna.pruners.NopPruner()              # see dominated_at
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def load_study(study_name: str, config: SweepConfig, storage) -> optuna.Study:
    """A stored sweep's study, with the sampler and pruner its configuration asks for."""
    return optuna.load_study(study_name=study_name, storage=storage,
                             sampler=_sampler(config), pruner=_pruner(config))


# -- reading a stored sweep -------------------------------------------------------------
def _status(attrs: dict[str, Any]) -> str:
    """A stored sweep's status; one marked running that no driver stamps any more was
    interrupted (the server stopped).

    >>> _status({"status": "running", "alive_at": time.time()})
    'running'
    >>> _status({"status": "running", "alive_at": time.time() - 3600}), _status({})
    ('interrupted', 'interrupted')
    """
    status = attrs.get("status", "interrupted")
    if status == "running" and time.time() - float(attrs.get("alive_at", 0)) > STALE_AFTER_S:
        return "interrupted"
    return status


def _stored(workspace: str, storage) -> list[tuple[str, dict[str, Any]]]:
    """(study name, user attributes) of the workspace's studies; only theirs are read."""
    names = [n for n in optuna.study.get_all_study_names(storage)
             if n.startswith(study_prefix(workspace))]
    return [(n, storage.get_study_user_attrs(storage.get_study_id_from_name(n)))
            for n in names]


def list_sweeps(workspace: str, storage=None) -> list[SweepInfo]:
    """The workspace's sweeps, newest first (damaged ones are skipped and logged)."""
    storage = storage or get_storage()
    try:
        stored = _stored(workspace, storage)
    except Exception as exc:
        _log.error("cannot list sweeps", exc_info=exc)
        raise StorageError("The sweep database could not be read; try again, or ask whoever "
                           "runs the server to check it.") from None
    out = []
    for name, attrs in stored:
        try:
            config = SweepConfig.from_dict(attrs.get("config"))
        except LayerLabError as err:
            _log.warning("sweep %s skipped: %s", name, err)
            continue
        out.append(SweepInfo(config.number, _status(attrs),
                             str(attrs.get("message", "")), config, name))
    return sorted(out, key=lambda i: i.number, reverse=True)


def _retried(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of trials that were lost (the server or the sweep stopped them) and asked
    again: each re-asked trial names the one it repeats."""
    return {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}


def _record(t: optuna.trial.FrozenTrial, retried: set[int]) -> TrialRecord:
    state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
             TrialState.FAIL: "failed", TrialState.RUNNING: "running",
             TrialState.WAITING: "waiting"}.get(t.state, "failed")
    a = t.user_attrs
    reason = str(a.get("reason", ""))
    if t.state == TrialState.FAIL and t.number in retried:
        state = "lost"
        reason = reason or "The server stopped while it trained; it is asked again."
    elif t.state == TrialState.FAIL and not reason:
        reason = "The server stopped while it trained."
    curve = [float(v) for v in a.get("curve", [])]
    return TrialRecord(t.number + 1, state, a.get("params"),
                       curve[-1] if curve else None, a.get("test_accuracy"),
                       a.get("run_id"), str(a.get("run_name", "")), reason,
                       dict(t.params), curve)


def trial_records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of a study as a record, in order."""
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    return [_record(t, retried) for t in trials]


def open_sweep(workspace: str, number: int, storage=None) -> SweepResult:
    """One stored sweep of the workspace with its trials and chosen models."""
    storage = storage or get_storage()
    info = next((i for i in list_sweeps(workspace, storage) if i.number == number), None)
    if info is None:
        raise LayerLabError(f"This workspace has no sweep {number}.")
    try:
        records = trial_records(load_study(info.study_name, info.config, storage))
    except Exception as exc:
        _log.error("cannot read sweep %s", info.study_name, exc_info=exc)
        raise StorageError("The sweep's trials could not be read; try again.") from None
    return SweepResult(info, records, info.config.objective.choose(records))


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards the sweep's number: finished and not asked again."""
    retried = _retried(trials)
    return sum(1 for t in trials if t.state in _FINISHED and t.number not in retried)


def new_study(config: SweepConfig, storage) -> tuple[optuna.Study, SweepConfig]:
    """Create the next sweep of ``config.workspace`` in ``storage``: its study, with the
    configuration (numbered) in its user attributes. Raises StorageError."""
    try:
        prefix = study_prefix(config.workspace)
        taken = [n[len(prefix):] for n in optuna.study.get_all_study_names(storage)
                 if n.startswith(prefix)]
        config = replace(config, number=max((int(t) for t in taken if t.isdigit()),
                                            default=0) + 1)
        study = optuna.create_study(
            storage=storage, study_name=study_prefix(config.workspace) + str(config.number),
            directions=config.objective.directions, sampler=_sampler(config),
            pruner=_pruner(config))
        study.set_user_attr("config", config.to_dict())
    except LayerLabError:
        raise
    except Exception as exc:
        _log.error("cannot create a sweep", exc_info=exc)
        raise StorageError("The sweep could not be saved in the sweep database; try again, "
                           "or ask whoever runs the server to check it.") from None
    return study, config


def recover(study: optuna.Study) -> int:
    """Trials a dead server left RUNNING: marked failed and asked again once (same values).
    Returns how many."""
    lost = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in lost:
        study.tell(t.number, state=TrialState.FAIL)
        if "retry_of" not in t.user_attrs:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return len(lost)
