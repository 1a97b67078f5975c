"""Sweeps: many trials of a starting stack on the job backend, steered by Optuna.

A :class:`SweepDriver` is a background thread (never a page's script thread) that runs
Optuna's ask-and-tell loop: it asks for a trial, turns the trial's values into a spec
and a recipe (:mod:`core.sweep_space`), makes a job with ``backend.new_job`` (so it runs
on the local threads or on Ray alike) and submits it to :data:`core.jobs.REGISTRY`
under the trial's own key ``<workspace>/sweep/<slot>``, so trials count against the
server's run cap; a :class:`~core.jobs.QuotaError` there means "wait and try again".
Every trial is an ordinary saved run named "sweep 3 · trial 7". At most
``backend.max_parallel()`` trials train at once.

Pruning: after each epoch the trial's validation accuracy is reported (``trial.report``)
and ``trial.should_prune()`` asks a :class:`~optuna.pruners.MedianPruner` whether it is
behind most earlier trials at that epoch; a pruned trial's job is stopped. Optuna has no
reports for multi-objective studies, so a Pareto sweep prunes a trial when a trial at
most as large was ahead of it at the same epoch (:func:`core.sweep_objective.dominated_at`).

Storage: Optuna's RDB storage is the record, a SQLite file ``$LAYERLAB_HOME/sweeps.db``
unless ``LAYERLAB_SWEEP_DB`` names another SQLAlchemy URL (PostgreSQL for a class on
several machines). The sweep's configuration is kept in the study's user attributes, so
after a server restart it can be continued: trials it left RUNNING are marked failed and
asked again once, with the same values.

Rules: one sweep per workspace at a time (in this process; a sweep that another process
stamped in the last minute is not continued either). A sweep started from a page keeps
its trials alive (heartbeats their keys) while a page of its workspace is open; when
none was open for the registry's orphan time (``LAYERLAB_ORPHAN_S``, 5 minutes) it
pauses like an orphaned run: the trials in flight are stopped, to be re-run by Continue.
Sweeps started from the command line or a test have no such rule.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from core.errors import LayerLabError, SpecError, StorageError
from core.jobs import REGISTRY, JobRegistry, QuotaError, ceiling_problem
from core.recipe import Recipe
from core.runs import RunStore, workspace_key
from core.spec import ModelSpec, infer_shapes
from core.storage import ensure_dir, layerlab_home
from core.sweep_objective import Objective, TrialRecord, dominated_at
from core.sweep_space import apply, check_space, count_params, suggest

_log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
SWEEP_DB_ENV = "LAYERLAB_SWEEP_DB"
POLL_S = 0.5
STAMP_EVERY_S = 15.0          # the driver stamps its study this often ...
STALE_AFTER_S = 60.0          # ... and a "running" study not stamped for this long is dead
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
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or not 10 <= limit <= 7 * 86_400):
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
    status: str            # running | finished | stopped | time limit | paused | failed | interrupted
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
                _log.error("cannot open the sweep storage", exc_info=exc)  # the URL may hold a password
                raise StorageError("The sweep database could not be opened; ask whoever runs "
                                   f"the server to check {SWEEP_DB_ENV} or LAYERLAB_HOME.") \
                    from None
        return _storages[url]


def _prefix(workspace: str) -> str:
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
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def _load(study_name: str, config: SweepConfig, storage) -> optuna.Study:
    return optuna.load_study(study_name=study_name, storage=storage,
                             sampler=_sampler(config), pruner=_pruner(config))


# -- reading a stored sweep -------------------------------------------------------------
def _status(study_name: str, attrs: dict[str, Any], live: bool) -> str:
    """A stored sweep's status; one marked running that no driver stamps any more was
    interrupted (the server stopped)."""
    status = attrs.get("status", "interrupted")
    if status == "running" and not live and \
            time.time() - float(attrs.get("alive_at", 0)) > STALE_AFTER_S:
        return "interrupted"
    return status


def list_sweeps(workspace: str, storage=None) -> list[SweepInfo]:
    """The workspace's sweeps, newest first (damaged ones are skipped and logged)."""
    storage = storage or get_storage()
    try:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    except Exception as exc:
        _log.error("cannot list sweeps", exc_info=exc)
        raise StorageError("The sweep database could not be read; try again, or ask whoever "
                           "runs the server to check it.") from None
    out = []
    for s in summaries:
        if not s.study_name.startswith(_prefix(workspace)):
            continue
        try:
            config = SweepConfig.from_dict(s.user_attrs.get("config"))
        except LayerLabError as err:
            _log.warning("sweep %s skipped: %s", s.study_name, err)
            continue
        driver = live(workspace)
        is_live = driver is not None and driver.study_name == s.study_name
        out.append(SweepInfo(config.number, _status(s.study_name, s.user_attrs, is_live),
                             str(s.user_attrs.get("message", "")), config, s.study_name))
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
        records = trial_records(_load(info.study_name, info.config, storage))
    except Exception as exc:
        _log.error("cannot read sweep %s", info.study_name, exc_info=exc)
        raise StorageError("The sweep's trials could not be read; try again.") from None
    return SweepResult(info, records, info.config.objective.choose(records))


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards the sweep's number: finished and not asked again."""
    retried = _retried(trials)
    return sum(1 for t in trials if t.state in _FINISHED and t.number not in retried)


# -- one trial in flight ------------------------------------------------------------------
@dataclass
class _Slot:
    key: str                  # the registry key it trains under
    trial: optuna.Trial
    job: Any                  # core.backend.Job
    params: int
    epochs: int
    submitted: bool = False
    curve: list[float] = field(default_factory=list)
    pruned: str = ""          # why the sweep pruned it
    lost: str = ""            # why the sweep stopped it (asked again later)


class SweepDriver:
    """One sweep's ask-and-tell loop in a background thread. :meth:`start`, :meth:`stop`."""

    def __init__(self, study: optuna.Study, config: SweepConfig, *, backend: Any,
                 registry: JobRegistry, store: RunStore,
                 page_open: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.study, self.config = study, config
        self.study_name = study.study_name
        self.backend, self.registry, self.store = backend, registry, store
        self.page_open, self.clock = page_open, clock
        self.status, self.message = "running", ""
        self._spec, self._recipe = config.start_spec(), config.base_recipe()
        self._slots: list[_Slot] = []
        self._ending: tuple[str, str] | None = None
        self._stop_asked = threading.Event()
        self._thread: threading.Thread | None = None
        self._stamped = -STAMP_EVERY_S

    # -- control ----------------------------------------------------------------------
    def start(self) -> "SweepDriver":
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name=f"sweep-{self.config.number}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop launching, stop the trials in flight (re-run by Continue), then end."""
        self._stop_asked.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop ---------------------------------------------------------------------
    def _work(self) -> None:
        t0 = self.clock()
        try:
            self._set_attrs(status="running", message="", alive_at=time.time())
            while True:
                self._collect()
                if self._ending is None:
                    self._ending = self._end_reason(t0)
                if self._ending is not None:
                    self._halt_slots(self._ending[1])
                    if not self._slots:
                        break
                else:
                    self._launch()
                self._keep_alive()
                time.sleep(POLL_S)
            self.status, self.message = self._ending
        except Exception as exc:  # the storage or the backend failed: a sentence, a log
            _log.error("sweep %s failed", self.study_name, exc_info=exc)
            for slot in self._slots:
                slot.job.stop()
            self.status = "failed"
            self.message = (f"The sweep stopped because of an error on the server (sweep "
                            f"{self.config.number}). Press Continue to carry on; if it "
                            f"happens again, tell whoever runs Layer Lab.")
        finally:
            self._finish_attrs()
            _forget(self)

    def _set_attrs(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.study.set_user_attr(key, value)

    def _finish_attrs(self) -> None:
        try:
            self._set_attrs(status=self.status, message=self.message, alive_at=time.time())
        except Exception as exc:  # the storage went away; Continue will sort it out
            _log.error("cannot record the end of sweep %s", self.study_name, exc_info=exc)

    def _end_reason(self, t0: float) -> tuple[str, str] | None:
        cfg = self.config
        if self._stop_asked.is_set():
            return "stopped", ("Stopped by you; trials in flight were stopped and will be "
                               "re-run when you press Continue.")
        if not self._slots and self._remaining() <= 0:
            return "finished", f"Finished: {cfg.n_trials} trials."
        if cfg.time_limit_s is not None and self.clock() - t0 >= cfg.time_limit_s:
            return "time limit", (f"The time limit ({cfg.time_limit_s / 60:g} min) was "
                                  f"reached; press Continue to run the remaining trials.")
        if self.page_open is not None and not self.page_open():
            minutes = max(1, round(self.registry.orphan_s / 60))
            return "paused", (f"Paused because no page of this workspace was open for "
                              f"{minutes} minute(s); press Continue to carry on.")
        return None

    def _remaining(self) -> int:
        return self.config.n_trials - counted(self.study.get_trials(deepcopy=False)) \
            - len(self._slots)

    def _keep_alive(self) -> None:
        for slot in self._slots:
            self.registry.heartbeat(slot.key)        # not an orphan: the sweep watches it
        if self.clock() - self._stamped >= STAMP_EVERY_S:
            self._stamped = self.clock()
            self.study.set_user_attr("alive_at", time.time())

    # -- launching --------------------------------------------------------------------
    def _width(self) -> int:
        return max(1, min(int(self.backend.max_parallel()), self.config.n_trials))

    def _launch(self) -> None:
        while len(self._slots) < self._width() and self._remaining() > 0:
            slot = self._prepare(self.study.ask())
            if slot is not None:
                self._slots.append(slot)
                self._submit(slot)

    def _free_key(self) -> str:
        used = {slot.key for slot in self._slots}
        n = next(i for i in range(len(used) + 1)
                 if f"{self.config.workspace}/sweep/{i}" not in used)
        return f"{self.config.workspace}/sweep/{n}"

    def _prepare(self, trial: optuna.Trial) -> _Slot | None:
        """The trial's job, or None when it was told failed or pruned before training."""
        cfg = self.config
        name = f"sweep {cfg.number} · trial {trial.number + 1}"
        try:
            spec, recipe = apply(self._spec, self._recipe, suggest(trial, cfg.space),
                                 name=f"{self._spec.name}_s{cfg.number}t{trial.number + 1}")
            params = count_params(spec)
            trial.set_user_attr("params", params)
            over = cfg.objective.refusal(params)
            if over:
                trial.set_user_attr("reason", over)
                self.study.tell(trial, state=TrialState.PRUNED)
                return None
            ceiling = ceiling_problem(recipe, self.registry.max_run_images)
            if ceiling:
                raise LayerLabError(ceiling)
            job = self.backend.new_job(spec, recipe, name=name, workspace=cfg.workspace,
                                       store=self.store)
        except LayerLabError as err:                 # an invalid stack, a refused recipe
            trial.set_user_attr("reason", str(err))
            self.study.tell(trial, state=TrialState.FAIL)
            return None
        trial.set_user_attr("run_id", job.run.id)
        trial.set_user_attr("run_name", name)
        return _Slot(self._free_key(), trial, job, params, recipe.epochs)

    def _submit(self, slot: _Slot) -> None:
        try:
            self.registry.submit(slot.key, slot.job)
            slot.submitted = True
        except QuotaError:
            pass                                      # the server is full: next round

    # -- following the trials in flight ----------------------------------------------
    def _collect(self) -> None:
        for slot in list(self._slots):
            if not slot.submitted:
                if not slot.lost:
                    self._submit(slot)
                continue
            p = slot.job.snapshot()
            for event in p.epochs[len(slot.curve):]:
                self._on_epoch(slot, event)
            if p.done:
                self._slots.remove(slot)
                self._conclude(slot, p.state)

    def _on_epoch(self, slot: _Slot, event: dict[str, Any]) -> None:
        acc = float(event.get("val_accuracy", float("nan")))
        slot.curve.append(acc)
        slot.trial.set_user_attr("curve", slot.curve)
        step = len(slot.curve)
        if slot.pruned or slot.lost or step >= slot.epochs:
            return                                    # the last epoch: let it finish
        why = self._prune_reason(slot, step, acc)
        if why:
            slot.pruned = why
            slot.job.stop()

    def _prune_reason(self, slot: _Slot, step: int, acc: float) -> str:
        objective = self.config.objective
        if not objective.multi:
            slot.trial.report(objective.values(slot.params, acc)[0], step)
            if slot.trial.should_prune():
                return (f"Pruned after epoch {step}: at {acc:.2%} validation accuracy it was "
                        f"behind most earlier trials at that epoch.")
            return ""
        others = [(s.params, s.curve) for s in self._slots if s is not slot] + [
            (t.user_attrs["params"], t.user_attrs["curve"])
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "params" in t.user_attrs and "curve" in t.user_attrs]
        ahead = dominated_at(slot.params, acc, step, others)
        if ahead is None:
            return ""
        return (f"Pruned after epoch {step}: a trial at most as large had {ahead:.2%} "
                f"validation accuracy at that epoch, against its {acc:.2%}.")

    def _halt_slots(self, why: str) -> None:
        """The sweep is ending: stop every trial in flight, to be asked again later."""
        for slot in list(self._slots):
            if slot.lost:
                continue
            slot.lost = why
            if slot.submitted:
                slot.job.stop()
            else:
                self._slots.remove(slot)
                self._conclude(slot, "stopped")

    def _conclude(self, slot: _Slot, state: str) -> None:
        """Tell Optuna how a trial ended; the run keeps its own record."""
        trial, run = slot.trial, slot.job.run
        trial.set_user_attr("test_accuracy", run.test_accuracy)
        if slot.pruned:
            trial.set_user_attr("reason", slot.pruned)
            self.study.tell(trial, state=TrialState.PRUNED)
            self._note_on_run(run, slot.pruned)
        elif state == "finished" and slot.curve:
            self.study.tell(trial, self.config.objective.values(slot.params, slot.curve[-1]))
        elif state == "failed" or "retry_of" in trial.user_attrs:
            trial.set_user_attr("reason", run.message or "The trial failed.")
            self.study.tell(trial, state=TrialState.FAIL)
        else:                        # stopped by the sweep or by the server: ask again
            trial.set_user_attr("reason", slot.lost or run.message)
            self.study.tell(trial, state=TrialState.FAIL)
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

    def _note_on_run(self, run: Any, why: str) -> None:
        """A pruned trial's run says so (its job's own message says "stopped by you")."""
        run.message = f"Sweep {self.config.number}: {why}"
        try:
            self.store.save_run(run)
        except LayerLabError as err:
            _log.warning("cannot note the pruning on run %s: %s", run.id, err)


# -- one sweep per workspace ------------------------------------------------------------
_drivers: dict[str, SweepDriver] = {}
_drivers_lock = threading.RLock()        # list_sweeps reads it under start_sweep


def live(workspace: str) -> SweepDriver | None:
    """The workspace's running sweep in this process, or None."""
    with _drivers_lock:
        driver = _drivers.get(workspace)
    return driver if driver is not None and driver.alive else None


def _forget(driver: SweepDriver) -> None:
    with _drivers_lock:
        if _drivers.get(driver.config.workspace) is driver:
            del _drivers[driver.config.workspace]


def _refusal(workspace: str) -> str | None:
    """Checked under the lock: a second sweep of a workspace is refused."""
    running = _drivers.get(workspace)
    if running is not None and (running.alive or running._thread is None):
        return (f"This workspace already has a sweep in progress (sweep "
                f"{running.config.number}): stop it or wait for it to end before "
                f"starting another.")
    return None


def page_seen(registry: JobRegistry, workspace: str) -> Callable[[], bool]:
    """Whether a page of ``workspace`` heartbeat the registry within its orphan time."""
    def seen() -> bool:
        # core.jobs keeps each workspace's last page heartbeat; it has no public reader.
        with registry._lock:
            last = registry._seen.get(workspace)
        return last is not None and registry.clock() - last <= registry.orphan_s
    return seen


def _drive(study: optuna.Study, config: SweepConfig, **kwargs: Any) -> SweepDriver:
    """Register and start a driver (the caller holds the lock and checked the refusal)."""
    from core import backend as backends  # noqa: PLC0415

    driver = SweepDriver(study, config, backend=kwargs.get("backend") or backends.current(),
                         registry=kwargs.get("registry") or REGISTRY,
                         store=kwargs.get("store") or RunStore(),
                         page_open=kwargs.get("page_open"))
    _drivers[config.workspace] = driver
    return driver.start()


def new_study(config: SweepConfig, storage) -> tuple[optuna.Study, SweepConfig]:
    """Create the next sweep of ``config.workspace`` in ``storage``: its study, with the
    configuration (numbered) in its user attributes. Raises StorageError."""
    try:
        numbers = [i.number for i in list_sweeps(config.workspace, storage)]
        config = replace(config, number=max(numbers, default=0) + 1)
        study = optuna.create_study(
            storage=storage, study_name=_prefix(config.workspace) + str(config.number),
            directions=config.objective.directions, sampler=_sampler(config),
            pruner=_pruner(config))
        study.set_user_attr("config", config.to_dict())
        study.set_user_attr("workspace", config.workspace)
    except LayerLabError:
        raise
    except Exception as exc:
        _log.error("cannot create a sweep", exc_info=exc)
        raise StorageError("The sweep could not be saved in the sweep database; try again, "
                           "or ask whoever runs the server to check it.") from None
    return study, config


def start_sweep(config: SweepConfig, *, storage=None, **kwargs: Any) -> SweepDriver:
    """Create a new sweep of ``config.workspace`` and start it. ``kwargs``: ``backend``
    (default :func:`core.backend.current`), ``registry``, ``store``, ``page_open``.
    Raises LayerLabError (a second sweep, a bad configuration, the database)."""
    config.check()
    storage = storage or get_storage()
    with _drivers_lock:
        problem = _refusal(config.workspace)
        if problem:
            raise LayerLabError(problem)
        study, config = new_study(config, storage)
        return _drive(study, config, **kwargs)


def recover(study: optuna.Study) -> int:
    """Trials a dead server left RUNNING: marked failed and asked again once (same values).
    Returns how many."""
    lost = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in lost:
        study.tell(t.number, state=TrialState.FAIL)
        if "retry_of" not in t.user_attrs:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return len(lost)


def continue_sweep(workspace: str, number: int, *, storage=None, **kwargs: Any) -> SweepDriver:
    """Carry on a stored sweep (after Stop, a time limit, a pause or a server restart)
    until it has its number of trials; same keywords as :func:`start_sweep`."""
    storage = storage or get_storage()
    with _drivers_lock:
        problem = _refusal(workspace)
        if problem:
            raise LayerLabError(problem)
        info = next((i for i in list_sweeps(workspace, storage) if i.number == number), None)
        if info is None:
            raise LayerLabError(f"This workspace has no sweep {number}.")
        if info.status == "running":
            raise LayerLabError("This sweep was still running a moment ago, perhaps in "
                                "another server process; try Continue again in a minute.")
        study = _load(info.study_name, info.config, storage)
        recover(study)
        return _drive(study, info.config, **kwargs)


def stop_sweep(workspace: str) -> bool:
    """Ask the workspace's running sweep to stop; False when none runs."""
    driver = live(workspace)
    if driver is None:
        return False
    driver.stop()
    return True


def run_sweep(config: SweepConfig, *, storage=None, timeout: float | None = None,
              **kwargs: Any) -> SweepResult:
    """Start a sweep and wait for it (the command line, the bench, tests): its result.
    ``kwargs`` as for :func:`start_sweep`, e.g. ``backend=RayBackend(...)``."""
    storage = storage or get_storage()
    driver = start_sweep(config, storage=storage, **kwargs)
    driver.join(timeout)
    if driver.alive:
        driver.stop()
        driver.join()
    return open_sweep(config.workspace, driver.config.number, storage)
