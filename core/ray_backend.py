"""The Ray job backend: each training job is a Ray actor that runs our own training code.

Selected by ``LAYERLAB_RAY_ADDRESS`` (see :mod:`core.backend`): ``local`` starts a small
Ray instance on this machine; ``auto``, ``host:port`` (a head's GCS port) or
``ray://host:10001`` (Ray Client) join a cluster. Ray is imported lazily and the cluster
is joined once per process, on first use (a sidebar view or a Start).

How one run travels (no shared filesystem is needed):

- the server keeps a :class:`RayJob` with the surface of :class:`core.training.TrainingJob`,
  so :data:`core.jobs.REGISTRY` and the pages use it unchanged;
- its actor (:class:`core.ray_worker.TrainingActor`, ``max_restarts=0``) runs a
  ``TrainingJob`` in the worker with a scratch run store that hands every save back on
  the next poll, as consistent checkpoints (see :mod:`core.ray_worker`);
- a server thread polls the actor every :data:`POLL_S` (events, saves, the newest
  snapshot) and writes the saves into the server's :class:`core.runs.RunStore` atomically;
- MNIST goes to the workers through Ray's object store, once per process; a resume sends
  the server's last weights and snapshots with the job.

Each job asks Ray for ``LAYERLAB_RAY_CPUS_PER_JOB`` CPUs (default 1) and, when the
cluster has GPUs, one GPU; ``LAYERLAB_RAY_GPU_FRACTION`` asks for that share of a GPU
instead and requires one. A job no node could ever hold is refused before it is
submitted. A worker that dies marks its run interrupted (resumable from the last
checkpoint that reached the server); a cluster that cannot be reached is a sentence and,
with ``LAYERLAB_RAY_FALLBACK=local``, the server switches to the local backend. Every
wait on Ray has a timeout, so no page ever hangs on the cluster.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from core.backend import BackendInfo, LocalBackend, set_current
from core.errors import LayerLabError
from core.ray_worker import TrainingActor
from core.recipe import Recipe
from core.remote_job import POLL_S, RemoteJob
from core.spec import ModelSpec
from core.training import Progress
from core.wording import plural

_log = logging.getLogger(__name__)
NAMESPACE = "layerlab"
CALL_TIMEOUT_S = 10.0         # any single answer from the cluster
CONNECT_TIMEOUT_S = 5.0       # joining a cluster (a TCP check first, then ray.init)
VIEW_TTL_S = 5.0              # the sidebar's cluster view is refreshed at most this often
SILENT_AFTER_S = 15.0         # a refresh this late says the cluster is not answering
LOCAL_OBJECT_STORE = 200 * 2**20
WORKER_DIED = "The machine training this run stopped (its Ray worker ended)."
CLUSTER_SILENT = "The Ray cluster stopped answering about this run."
UNREACHABLE = ("The Ray cluster this server is set to use could not be reached, so runs "
               "cannot train there now: try again in a minute, or ask whoever runs Layer "
               "Lab to check LAYERLAB_RAY_ADDRESS.")
NO_RAY = ("This server is set to train on Ray, but Ray is not installed: ask whoever runs "
          "Layer Lab to install requirements-ray.txt or to unset LAYERLAB_RAY_ADDRESS.")
STARTING = ("The Ray cluster is still starting or is slow to answer; press Start again in "
            "a minute.")
FELL_BACK = ("The Ray cluster could not be reached, so runs train on this machine "
             "instead.")


# -- pure helpers ---------------------------------------------------------------------------
def host_port(address: str) -> tuple[str, int] | None:
    """The host and port to check before joining ``address`` (None: nothing to check).

    >>> host_port("ray://10.0.0.5:10001"), host_port("head:6379"), host_port("ray://h")
    (('10.0.0.5', 10001), ('head', 6379), ('h', 10001))
    >>> host_port("auto") is None and host_port("local") is None
    True
    """
    rest = address.removeprefix("ray://")
    if ":" not in rest:
        return (rest, 10001) if address.startswith("ray://") else None
    host, _, port = rest.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


@dataclass(frozen=True)
class Request:
    """What one job asks Ray for."""

    cpus: float
    gpus: float = 0.0

    def words(self) -> str:
        """The request in words.

        >>> Request(1).words(), Request(2, 0.5).words()
        ('1 CPU', '2 CPUs and 0.5 GPU')
        """
        cpus = f"{self.cpus:g} CPU" + ("s" if self.cpus != 1 else "")
        return cpus + (f" and {self.gpus:g} GPU" + ("s" if self.gpus > 1 else "")
                       if self.gpus else "")


def slots(request: Request, node: dict[str, float]) -> int:
    """How many jobs of ``request`` one node (its total resources) holds at once.

    >>> slots(Request(1), {"CPU": 4.0}), slots(Request(1, 0.5), {"CPU": 8.0, "GPU": 1.0})
    (4, 2)
    >>> slots(Request(1, 1), {"CPU": 8.0}), slots(Request(3), {"CPU": 2.0})
    (0, 0)
    """
    n = math.floor(node.get("CPU", 0.0) / request.cpus + 1e-9) if request.cpus else 10**6
    if request.gpus:
        n = min(n, math.floor(node.get("GPU", 0.0) / request.gpus + 1e-9))
    return max(0, n)


def placement_problem(request: Request, nodes: list[dict[str, float]]) -> str | None:
    """The sentence refusing a job that no node of the cluster can hold, else None.

    >>> placement_problem(Request(1), [{"CPU": 2.0}]) is None
    True
    >>> print(placement_problem(Request(1, 1), [{"CPU": 2.0}]))
    Each run asks the Ray cluster for 1 CPU and 1 GPU, but no machine of the cluster has a GPU: ask whoever runs Layer Lab to add a GPU machine or to unset LAYERLAB_RAY_GPU_FRACTION.
    >>> print(placement_problem(Request(8), [{"CPU": 2.0}, {"CPU": 4.0}]))
    Each run asks the Ray cluster for 8 CPUs, but its largest machine has 4: ask whoever runs Layer Lab to lower LAYERLAB_RAY_CPUS_PER_JOB.
    """
    if any(slots(request, node) for node in nodes):
        return None
    asks = f"Each run asks the Ray cluster for {request.words()}, but "
    if request.gpus and not any(node.get("GPU", 0.0) >= request.gpus for node in nodes):
        most = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
        has = "no machine of the cluster has a GPU" if not most else \
            f"its machines have at most {most:g} GPU"
        return (f"{asks}{has}: ask whoever runs Layer Lab to add a GPU machine or to unset "
                f"LAYERLAB_RAY_GPU_FRACTION.")
    most = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    return (f"{asks}its largest machine has {most:g}: ask whoever runs Layer Lab to lower "
            f"LAYERLAB_RAY_CPUS_PER_JOB.")


def _env_float(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        _log.warning("%s is not a number; using %s", name, default)
        return default


def reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether the cluster's port answers at all (ray.init itself may wait a minute)."""
    target = host_port(address)
    if target is None:
        return True
    try:
        socket.create_connection(target, timeout=timeout_s).close()
        return True
    except (OSError, ValueError):
        return False


# -- joining the cluster --------------------------------------------------------------------
def _ray() -> Any:
    """The ray module (an optional extra), imported on first use. Ray's own auto-start
    is turned off: a call after the cluster went away must fail, not quietly start a
    second Ray on the server."""
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        _log.warning("LAYERLAB_RAY_ADDRESS is set but Ray is not installed")
        raise LayerLabError(NO_RAY) from None
    return ray


_connect_lock = threading.Lock()
_joined: str | None = None            # the address this process joined


def connect(address: str) -> None:
    """Join (or, for ``local``, start) the cluster once per process; LayerLabError if not.

    A cluster that does not answer on its port is refused at once, before ``ray.init``
    (which could wait a minute for it)."""
    global _joined
    ray = _ray()
    if address != "local" and not reachable(address):
        raise LayerLabError(UNREACHABLE)
    with _connect_lock:
        if ray.is_initialized():
            if _joined not in (None, address):
                _log.warning("Ray already joined %s; not joining %s", _joined, address)
                raise LayerLabError("This server already trains on another Ray cluster; "
                                    "one server uses one cluster.")
            return
        failure = _init_in_keeper(address)
        if failure is not None:  # ConnectionError, a bad address, a version mismatch …
            _log.warning("cannot join the Ray cluster at %s: %r", address, failure)
            raise LayerLabError(UNREACHABLE)
        _joined = address


def _init_in_keeper(address: str) -> BaseException | None:
    """``ray.init`` in a thread that then lives as long as the process; what it raised.

    Ray starts a local cluster's processes so that the kernel kills them when the
    *thread* that started them ends (PR_SET_PDEATHSIG): started from a page's thread or
    a short-lived one, the cluster would die with it and take the server along."""
    outcome: list[BaseException | None] = []
    ready = threading.Event()

    def keep() -> None:
        try:
            _init(address)
            outcome.append(None)
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)
        ready.set()
        if outcome[0] is None:
            threading.Event().wait()          # forever: the cluster lives with this thread

    threading.Thread(target=keep, name="ray-keeper", daemon=True).start()
    ready.wait()
    return outcome[0]


def _init(address: str) -> None:
    ray = _ray()
    common = dict(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    if address == "local":            # a small Ray of this machine's cores, no dashboard
        ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)),
                 include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, **common)
        return
    import core  # noqa: PLC0415  (the package is shipped to nodes that do not have it)

    ray.init(address=address, runtime_env={"py_modules": [core], "excludes": ["__pycache__"]},
             **common)


_mnist_lock = threading.Lock()
_mnist_ref: Any = None


def shipped_mnist() -> Any:
    """MNIST in Ray's object store (put once per process; workers read it from there)."""
    global _mnist_ref
    from core.data import load_mnist  # noqa: PLC0415

    ray = _ray()

    with _mnist_lock:
        if _mnist_ref is None:
            m = load_mnist()
            _mnist_ref = ray.put({"x_train": m.x_train, "y_train": m.y_train,
                                  "x_test": m.x_test, "y_test": m.y_test})
        return _mnist_ref


# -- the backend ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Cluster:
    """The alive nodes' total resources, as last seen."""

    nodes: tuple[dict[str, float], ...]
    seen: float                       # time.monotonic()

    def total(self, key: str) -> float:
        return sum(node.get(key, 0.0) for node in self.nodes)


class FallbackBackend(LocalBackend):
    """The local backend, used because the Ray cluster could not be reached."""

    def __init__(self, problem: str) -> None:
        super().__init__()
        self.problem = problem

    def describe(self) -> BackendInfo:
        info = super().describe()
        return BackendInfo(info.name, info.summary, info.nodes, info.cpus, info.gpus,
                           info.queued, [self.problem])


class RayBackend:
    """Jobs as Ray actors on the cluster at ``address`` (joined lazily, once)."""

    name = "ray"

    def __init__(self, address: str, *, cpus_per_job: float | None = None,
                 gpus_per_job: float | None = None) -> None:
        self.address = address
        self.cpus_per_job = cpus_per_job if cpus_per_job is not None else \
            max(0.5, _env_float("LAYERLAB_RAY_CPUS_PER_JOB", 1.0) or 1.0)
        self.gpus_per_job = gpus_per_job if gpus_per_job is not None else \
            _env_float("LAYERLAB_RAY_GPU_FRACTION", None)     # None: one GPU when there are
        self._lock = threading.Lock()
        self._view: Cluster | None = None
        self._problem: str | None = None
        self._refresh: threading.Thread | None = None
        self._refresh_since = 0.0
        self._waiting: list[RayJob] = []                     # submitted, not yet placed
        self._actor_class: Any = None

    # -- the cluster, seen from a background thread ------------------------------------------
    def _refresh_view(self) -> None:
        try:
            connect(self.address)
            ray = _ray()
            nodes = tuple({k: float(v) for k, v in n.get("Resources", {}).items()}
                          for n in ray.nodes() if n.get("Alive"))
            view, problem = Cluster(nodes, time.monotonic()), None
        except LayerLabError as err:
            view, problem = None, str(err)
        except Exception as exc:  # the cluster went away under us
            _log.warning("the Ray cluster did not answer: %r", exc)
            view, problem = None, UNREACHABLE
        with self._lock:
            self._view = view or self._view
            self._problem = problem
            self._refresh = None
        if problem:
            self.fall_back(problem)

    def _kick(self) -> threading.Thread | None:
        """Start a refresh when the view is missing or old; the running one, if any."""
        with self._lock:
            fresh = self._view is not None and time.monotonic() - self._view.seen < VIEW_TTL_S
            if self._refresh is None and not fresh:
                self._refresh = threading.Thread(target=self._refresh_view, daemon=True,
                                                 name="ray-cluster-view")
                self._refresh_since = time.monotonic()
                self._refresh.start()
            return self._refresh

    def cluster(self, wait_s: float = CONNECT_TIMEOUT_S + CALL_TIMEOUT_S) -> Cluster:
        """A view at most :data:`VIEW_TTL_S` old, waiting up to ``wait_s`` for it."""
        refresh = self._kick()
        if refresh is not None:
            refresh.join(wait_s)
        with self._lock:
            if self._problem:
                raise LayerLabError(self._problem)
            if self._view is None or (refresh is not None and refresh.is_alive()):
                raise LayerLabError(STARTING)
            return self._view

    def fall_back(self, problem: str) -> FallbackBackend | None:
        """With ``LAYERLAB_RAY_FALLBACK=local``, the local backend (made the server's when
        this one was); else None."""
        if os.environ.get("LAYERLAB_RAY_FALLBACK", "").strip().lower() != "local":
            return None
        from core import backend  # noqa: PLC0415

        local = FallbackBackend(FELL_BACK)
        if backend.current() is self:
            _log.warning("Ray cluster unreachable (%s); training falls back to this machine",
                         problem)
            set_current(local)
        return local

    # -- the Backend interface ---------------------------------------------------------------
    def request(self, cluster: Cluster) -> Request:
        """One GPU per job on a cluster with GPUs (or the set share), else CPUs only."""
        gpus = self.gpus_per_job
        if gpus is None:
            gpus = 1.0 if cluster.total("GPU") else 0.0
        return Request(self.cpus_per_job, gpus)

    def new_job(self, spec: ModelSpec, recipe: Recipe, **kwargs: Any) -> Any:
        """A :class:`RayJob` (TrainingJob's keyword arguments); refused with a sentence
        when the cluster cannot be reached or could never place it."""
        kwargs.pop("scheduler", None)              # Ray's scheduler places the job
        try:
            cluster = self.cluster()
        except LayerLabError as err:
            local = self.fall_back(str(err))
            if local is None:
                raise
            return local.new_job(spec, recipe, **kwargs)
        request = self.request(cluster)
        problem = placement_problem(request, list(cluster.nodes))
        if problem:
            raise LayerLabError(problem)
        return RayJob(self, spec, recipe, request=request, **kwargs)

    def max_parallel(self) -> int:
        """How many jobs the cluster runs at once (1 until it has been seen)."""
        self._kick()
        with self._lock:
            view = self._view
        if view is None:
            return 1
        request = self.request(view)
        return max(1, sum(slots(request, node) for node in view.nodes))

    def describe(self) -> BackendInfo:
        """Nodes, CPUs, GPUs and our queued jobs; never waits for the cluster."""
        self._kick()
        with self._lock:
            view, problem = self._view, self._problem
            late = self._refresh is not None and \
                time.monotonic() - self._refresh_since > SILENT_AFTER_S
            queued = len(self._waiting)
        problems = [problem] if problem else []
        if late and not problem:
            problems.append("The Ray cluster is not answering right now.")
        if view is None:
            return BackendInfo("ray", "Ray cluster (connecting…)" if not problems else
                               "Ray cluster (unreachable)", nodes=0, queued=queued,
                               problems=problems)
        cpus, gpus = view.total("CPU"), view.total("GPU")
        summary = (f"Ray cluster, {plural(len(view.nodes), 'node')}, {cpus:g} CPUs, "
                   f"{gpus:g} GPUs, {queued} queued")
        return BackendInfo("ray", summary, len(view.nodes), cpus, gpus, queued, problems)

    # -- used by RayJob ------------------------------------------------------------------------
    def actor(self, request: Request) -> Any:
        """A new training actor asking for ``request``."""
        ray = _ray()
        with self._lock:
            if self._actor_class is None:
                self._actor_class = ray.remote(TrainingActor)
            cls = self._actor_class
        return cls.options(num_cpus=request.cpus, num_gpus=request.gpus, max_restarts=0,
                           max_task_retries=0, max_concurrency=4).remote()

    def enqueue(self, job: "RayJob") -> None:
        with self._lock:
            self._waiting.append(job)

    def dequeue(self, job: "RayJob") -> None:
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)

    def position(self, job: "RayJob") -> int | None:
        """1.. while the job waits for a place on the cluster, else None."""
        with self._lock:
            return self._waiting.index(job) + 1 if job in self._waiting else None


# -- the server side of one job -------------------------------------------------------------
class RayJob(RemoteJob):
    """One run trained by a Ray actor (the shared half is :class:`core.remote_job.RemoteJob`)."""

    thread_prefix = "ray"
    silent = CLUSTER_SILENT

    def __init__(self, backend: RayBackend, spec: ModelSpec, recipe: Recipe, *,
                 request: Request, **kwargs: Any) -> None:
        self.backend, self.request = backend, request
        self._actor: Any = None
        super().__init__(spec, recipe, **kwargs)

    def _announce(self) -> None:
        self.backend.enqueue(self)
        self._record({"kind": "queued", "position": self.backend.position(self) or 1})

    def _position_now(self, progress: Progress) -> int | None:
        return self.backend.position(self) or 0

    def _send_stop_now(self) -> None:
        try:                              # at once, not at the next poll (handles are
            self._actor.stop.remote(self._interrupt)    # thread-safe)
        except Exception as exc:          # gone: the poll thread will say so
            _log.info("run %s: stop not sent: %r", self.run.id, exc)

    def _send_stop(self) -> None:
        self._actor.stop.remote(self._interrupt)

    def _device_words(self, device: str) -> str:
        return f"{device} (Ray worker on {self.node})"

    def _ending(self, exc: Exception) -> tuple[str, str] | None:
        ray = _ray()
        if isinstance(exc, ray.exceptions.RuntimeEnvSetupError):
            _log.error("run %s: no worker could be set up", self.run.id, exc_info=exc)
            return "failed", ("The Ray cluster could not set up a worker for this run; ask "
                              "whoever runs Layer Lab to check the cluster (the details are "
                              "in the server's log).")
        if isinstance(exc, ray.exceptions.RayActorError):   # the worker process or node died
            _log.warning("run %s: its Ray worker died: %r", self.run.id, exc)
            return self._lost(WORKER_DIED)
        if isinstance(exc, ray.exceptions.RayTaskError):    # str() would hold a traceback
            _log.error("run %s failed in its Ray worker", self.run.id, exc_info=exc)
            cause = exc.cause if isinstance(exc.cause, LayerLabError) else None
            return "failed", str(cause) if cause else self._failure()
        return None

    def _release(self) -> None:
        self.backend.dequeue(self)

    def _place(self) -> None:
        """Create the actor and wait, stoppable, until Ray has placed it and it started."""
        ray = _ray()
        data = ray.put(self.data) if self.data is not None else shipped_mnist()
        self._actor = self.backend.actor(self.request)
        started = self._actor.start.remote(self._order(), data)
        position = self.backend.position(self)       # start() announced this one
        while not ray.wait([started], timeout=POLL_S)[0]:
            if self._stop.is_set():
                raise self._stopped_early()
            now = self.backend.position(self)
            if now is not None and now != position:
                position = now
                self._record({"kind": "queued", "position": now})
        info = ray.get(started, timeout=CALL_TIMEOUT_S)
        self._placed = True
        self.worker_pid, self.node = info["pid"], info["node"]
        self.backend.dequeue(self)

    def _poll(self, taken: int | None) -> dict[str, Any] | None:
        ray = _ray()
        transient = (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError,
                     ConnectionError)
        try:
            return ray.get(self._actor.poll.remote(taken), timeout=CALL_TIMEOUT_S)
        except transient as exc:
            _log.info("run %s: no answer yet (%r)", self.run.id, exc)
            return None

    def _close(self) -> None:
        """Let the worker clean up, then end the actor (Ray frees its resources)."""
        if self._actor is None:
            return
        ray = _ray()
        if not ray.is_initialized():          # the server is shutting Ray down
            return
        try:
            if self._placed:                  # (an actor still waiting would answer late)
                ray.get(self._actor.close.remote(), timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # already dead, or the cluster is gone
            _log.info("run %s: actor not closed cleanly: %r", self.run.id, exc)
        try:
            ray.kill(self._actor, no_restart=True)
        except Exception as exc:
            _log.info("run %s: actor not killed: %r", self.run.id, exc)
