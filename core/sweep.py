"""Sweeps: many trials of a starting stack on the job backend, steered by Optuna.

A :class:`SweepDriver` is a background thread (never a page's script thread) that runs
Optuna's ask-and-tell loop: it asks for a trial, turns the trial's values into a spec
and a recipe (:mod:`core.sweep_space`), makes a job with ``backend.new_job`` (so it runs
on the local threads or on Ray alike) and submits it to :data:`core.jobs.REGISTRY`
under the trial's own key ``<workspace>/sweep/<slot>``, so trials count against the
server's run cap; a :class:`~core.jobs.QuotaError` there means "wait and try again".
Every trial is an ordinary saved run named "sweep 3 · trial 7". At most
``backend.max_parallel()`` trials train at once. What is stored, and how a sweep is read
back, is :mod:`core.sweep_store`'s.

Pruning: after each epoch the trial's validation accuracy is reported (``trial.report``)
and ``trial.should_prune()`` asks a :class:`~optuna.pruners.MedianPruner` whether it is
behind most earlier trials at that epoch; a pruned trial's job is stopped. Optuna has no
reports for multi-objective studies, so a Pareto sweep prunes a trial when a trial at
most as large was ahead of it at the same epoch (:func:`core.sweep_objective.dominated_at`).

Rules: one sweep per workspace at a time (in this process; a sweep that another process
stamped in the last minute is not continued either). A sweep started from a page keeps
its trials alive (heartbeats their keys) while a page of its workspace is open; when
none was open for the registry's orphan time (``LAYERLAB_ORPHAN_S``, 5 minutes) it
pauses like an orphaned run: the trials in flight are stopped, to be re-run by Continue.
Sweeps started from the command line or a test have no such rule. Stop, a time limit and
a pause all stop the trials in flight; a trial stopped before its last epoch is asked
again (same values) when the sweep continues.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from core.errors import LayerLabError, StorageError
from core.jobs import REGISTRY, JobRegistry, QuotaError, ceiling_problem
from core.runs import RunStore
from core.sweep_objective import dominated_at
from core.sweep_space import apply, count_params, suggest
from core.sweep_store import (SweepConfig, SweepResult, counted, get_storage, list_sweeps,
                              load_study, new_study, open_sweep, recover)

_log = logging.getLogger(__name__)
POLL_S = 0.5
STAMP_EVERY_S = 15.0          # the driver stamps its study this often (see STALE_AFTER_S)


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
        while len(self._slots) < self._width() and self._remaining() > 0 \
                and not self._starting():
            slot = self._prepare(self.study.ask())
            if slot is not None:
                self._slots.append(slot)
                self._submit(slot)

    def _starting(self) -> bool:
        """Whether a local trial is still starting (queued, or building its model before
        its first batch). The next one waits: two training threads that built and first
        called their models at the same moment once failed inside Keras (a snapshot's
        eager call), so in one process starts are staggered. Ray jobs run elsewhere."""
        if getattr(self.backend, "name", "") != "local":
            return False
        for slot in self._slots:
            if not slot.submitted:
                return True
            p = slot.job.snapshot()
            if not p.done and not p.batches:
                return True
        return False

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
            else:                                     # never started: no run was saved
                slot.trial.set_user_attr("run_id", None)
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
        elif state != "failed" and slot.curve and (state == "finished"
                                                  or len(slot.curve) >= slot.epochs):
            # A stop that came after the last epoch (during the test evaluation) still
            # leaves a fully trained trial.
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
_drivers_lock = threading.Lock()


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
    if running is not None and running.alive:
        return (f"This workspace already has a sweep in progress (sweep "
                f"{running.config.number}): stop it or wait for it to end before "
                f"starting another.")
    return None


def page_seen(registry: JobRegistry, workspace: str) -> Callable[[], bool]:
    """Whether a page of ``workspace`` heartbeat the registry within its orphan time."""
    def seen() -> bool:
        last = registry.last_seen(workspace)
        return last is not None and registry.clock() - last <= registry.orphan_s
    return seen


def _drive(study: optuna.Study, config: SweepConfig, *, backend: Any = None,
           registry: JobRegistry | None = None, store: RunStore | None = None,
           page_open: Callable[[], bool] | None = None) -> SweepDriver:
    """Mark the study running, then register and start its driver (the caller holds the
    lock and checked the refusal). ``backend`` defaults to :func:`core.backend.current`."""
    from core import backend as backends  # noqa: PLC0415

    try:
        for key, value in (("status", "running"), ("message", ""), ("alive_at", time.time())):
            study.set_user_attr(key, value)
    except Exception as exc:
        _log.error("cannot mark sweep %s running", study.study_name, exc_info=exc)
        raise StorageError("The sweep database could not be written; try again, or ask "
                           "whoever runs the server to check it.") from None
    driver = SweepDriver(study, config, backend=backend or backends.current(),
                         registry=registry or REGISTRY, store=store or RunStore(),
                         page_open=page_open)
    _drivers[config.workspace] = driver
    return driver.start()


def start_sweep(config: SweepConfig, *, storage=None, **driver: Any) -> SweepDriver:
    """Create a new sweep of ``config.workspace`` and start it. ``driver``: ``backend``
    (default :func:`core.backend.current`), ``registry`` (default :data:`REGISTRY`),
    ``store`` (default the run store), ``page_open`` (see :func:`page_seen`; default:
    none, the sweep never pauses). Raises LayerLabError: a second sweep of the
    workspace, a bad configuration, the database."""
    config.check()
    storage = storage or get_storage()
    with _drivers_lock:
        problem = _refusal(config.workspace)
        if problem:
            raise LayerLabError(problem)
        study, config = new_study(config, storage)
        return _drive(study, config, **driver)


def continue_sweep(workspace: str, number: int, *, storage=None,
                   **driver: Any) -> SweepDriver:
    """Carry on a stored sweep (after Stop, a time limit, a pause or a server restart)
    until it has its number of trials; the keywords of :func:`start_sweep`."""
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
        try:
            study = load_study(info.study_name, info.config, storage)
            recover(study)
        except Exception as exc:
            _log.error("cannot continue sweep %s", info.study_name, exc_info=exc)
            raise StorageError("The sweep's trials could not be read; try again.") from None
        return _drive(study, info.config, **driver)


def stop_sweep(workspace: str) -> bool:
    """Ask the workspace's running sweep to stop; False when none runs."""
    driver = live(workspace)
    if driver is None:
        return False
    driver.stop()
    return True


def run_sweep(config: SweepConfig, *, storage=None, timeout: float | None = None,
              **driver: Any) -> SweepResult:
    """Start a sweep and wait for it (the command line, the bench, tests): its result.
    The keywords of :func:`start_sweep`, e.g. ``backend=RayBackend(...)``; after
    ``timeout`` seconds the sweep is stopped."""
    storage = storage or get_storage()
    running = start_sweep(config, storage=storage, **driver)
    running.join(timeout)
    if running.alive:
        running.stop()
        running.join()
    return open_sweep(config.workspace, running.config.number, storage)
