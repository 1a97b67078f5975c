"""Classroom: a whole class presses Start at once. Prints, for the local backend and for
Ray on this machine side by side: the makespan, Start-to-result p50/p95, how often the
server said it was full, and page latency meanwhile; then, on paper, what N worker
machines would give from the per-run cost measured here.

What each simulated student does: the Train page's own defaults — the ``fast_cnn``
preset with its recipe (3 epochs, batch 512, one-cycle at 0.02, 5% validation) — on a
smaller training subset, as the page offers for a quick classroom run (there is no
named "quick" recipe; ``--subset`` picks the page's subset, 5,000 by default, the
smallest the page does not warn about). The run goes through ``core.backend.current()``
and ``core.jobs.REGISTRY`` exactly as the Train page's Start button does; a student told
"the server is full" presses Start again ``--retry-s`` later; the student's page keeps
the run alive (registry heartbeats) while it trains.

Page latency: one extra session visits Home, Models, Builder and Train in a loop through
Streamlit's AppTest, in a thread of this process — the process that hosts the runs, as
the server does (websocket visits of a separate server would miss that, locally, runs
train inside the server). Measured idle first, then during each backend's class.

Ray on this machine: ``LAYERLAB_RAY_ADDRESS=local``'s path (this process starts a small
Ray of this machine's cores, 1 CPU per run). Results go to a temporary LAYERLAB_HOME.

Usage: python bench/classroom_bench.py [--students 30] [--subset 5000] [--epochs 3]
       [--backends local,ray] [--retry-s 15] [--machines 2,4,8,15]
Smoke: python bench/classroom_bench.py --students 3 --subset 1000 --epochs 1
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field

import _util

os.environ.setdefault("LAYERLAB_HOME", tempfile.mkdtemp(prefix="layerlab-class-"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")      # no token file in ~/.ray
VISITED = ("models", "builder", "train", "home")


@dataclass
class Student:
    """One student's run, as seen from their page."""

    pressed: float = 0.0              # first press of Start
    refusals: int = 0                 # "the server is full"
    left_queue: float | None = None   # the run took a place
    done: float | None = None
    status: str = ""
    accuracy: float | None = None
    thread_cpu: float = 0.0           # CPU seconds of the run's own thread in the server


@dataclass
class Phase:
    """One backend's class."""

    name: str
    width: int = 0
    students: list[Student] = field(default_factory=list)
    makespan: float = 0.0
    pages: list[float] = field(default_factory=list)
    setup_s: float = 0.0              # joining or starting the backend, before the class


# -- page latency ---------------------------------------------------------------------------
class Visitor(threading.Thread):
    """A session visiting pages in a loop (AppTest); page times while ``recording``."""

    def __init__(self) -> None:
        super().__init__(name="page-visitor", daemon=True)
        self.recording: list[float] | None = None
        self.errors = 0
        self.halt, self.warm = threading.Event(), threading.Event()

    def run(self) -> None:
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(str(_util.ROOT / "app.py"), default_timeout=300)
        at.run()
        while not self.halt.is_set():
            for page in VISITED:
                at.switch_page(f"pages/{page}.py")
                t0 = time.perf_counter()
                at.run()
                took = time.perf_counter() - t0
                self.errors += len(at.exception)
                if self.recording is not None:
                    self.recording.append(took)
            self.warm.set()                      # every page has been drawn once

    def measure(self, seconds: float) -> list[float]:
        """Page times over ``seconds`` once warm (the idle baseline)."""
        self.warm.wait()
        times = self.record()
        time.sleep(seconds)
        self.recording = None
        return times

    def record(self) -> list[float]:
        self.recording = []
        return self.recording


# -- one student ----------------------------------------------------------------------------
def thread_cpu_s(job) -> float | None:
    """User + system CPU seconds so far of a job's own thread in this process (Linux);
    None once it ended. A local run trains mostly in TensorFlow's own threads, so this
    is only a Ray run's whole share on the server (Ray's I/O threads aside)."""
    tid = getattr(getattr(job, "_thread", None), "native_id", None)
    try:
        with open(f"/proc/self/task/{tid}/stat", encoding="utf-8") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def press_start(spec, recipe, ws: str, name: str, retry_s: float, student: Student):
    """Start as the Train page does; pressed again after "the server is full"."""
    from core import backend
    from core.jobs import REGISTRY, QuotaError
    from core.runs import RunStore

    while True:
        job = backend.current().new_job(spec, recipe, name=name, workspace=ws,
                                        store=RunStore())
        try:
            return REGISTRY.submit(ws, job)
        except QuotaError as err:
            if "server is full" not in str(err):
                raise
            student.refusals += 1
            time.sleep(retry_s)


def attend(spec, recipe, ws: str, name: str, retry_s: float, go: threading.Barrier,
           student: Student) -> None:
    """Press Start with the class, then watch the run to its result (heartbeats)."""
    from core.jobs import REGISTRY

    from core.errors import LayerLabError

    go.wait()
    student.pressed = time.perf_counter()
    try:
        job = press_start(spec, recipe, ws, name, retry_s, student)
    except LayerLabError as err:         # e.g. the cluster could not be reached
        student.left_queue = student.done = time.perf_counter()
        student.status = f"refused: {err}"
        return
    while not job.done:
        REGISTRY.heartbeat(ws)                 # the student's page is open
        if student.left_queue is None and job.snapshot().state != "queued":
            student.left_queue = time.perf_counter()
        student.thread_cpu = thread_cpu_s(job) or student.thread_cpu
        job.join(0.25)
    student.done = time.perf_counter()
    student.thread_cpu = thread_cpu_s(job) or student.thread_cpu    # (closing the actor)
    student.left_queue = student.left_queue or student.done
    student.status, student.accuracy = job.run.status, job.run.test_accuracy


def run_class(phase: Phase, spec, recipe, n: int, retry_s: float, visitor: Visitor) -> None:
    """``n`` students press Start at once; fills ``phase``."""
    from core.workspace import new_workspace_id

    phase.students = [Student() for _ in range(n)]
    go = threading.Barrier(n + 1)
    threads = [threading.Thread(target=attend, daemon=True,
                                args=(spec, recipe, new_workspace_id(), f"student {i + 1}",
                                      retry_s, go, s))
               for i, s in enumerate(phase.students)]
    for t in threads:
        t.start()
    phase.pages = visitor.record()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    phase.makespan = time.perf_counter() - t0
    visitor.recording = None


# -- the backends ---------------------------------------------------------------------------
def use_backend(name: str) -> tuple[int, float]:
    """Make ``name`` the process's backend; its width and the seconds it took to set up."""
    from core import backend
    from core.backend import LocalBackend

    t0 = time.perf_counter()
    if name == "local":
        importlib.import_module("tensorflow")   # a server has it after its first run

        chosen = LocalBackend()
    else:
        from core.ray_backend import RayBackend

        chosen = RayBackend("local")
        chosen.cluster(wait_s=300)             # starts Ray here and reads its nodes
    backend.set_current(chosen)
    return chosen.max_parallel(), time.perf_counter() - t0


# -- the report -----------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return _util.percentile(values, q) if values else float("nan")


def slot_s(phase: Phase) -> float:
    """Seconds one run holds a place, all overheads in: the class's makespan times the
    places, shared among its runs."""
    return phase.makespan * phase.width / len(phase.students)


def server_cpu(phase: Phase) -> float:
    """Median CPU seconds of a run's own thread in the server (see thread_cpu_s)."""
    return statistics.median(s.thread_cpu for s in phase.students)


LABELS = ("", "set-up before the class", "runs at once (backend width)", "finished / other",
          "told 'server is full' (presses)", "makespan", "Start → result p50 / p95",
          "one run, 'started' → result (median)", "place held per run (makespan×width÷runs)",
          "server CPU per run", "test accuracy (mean)", "page p50 / p95",
          "page p95 ÷ idle p95", "page renders measured")


def column(p: Phase, idle95: float) -> list[str]:
    """One backend's cells, in the order of :data:`LABELS`."""
    waits = [s.done - s.pressed for s in p.students]
    started = [s.done - s.left_queue for s in p.students]
    finished = sum(s.status == "finished" for s in p.students)
    cpu = "all its training" if p.name == "local" else \
        f"{server_cpu(p):.2f} s (its relay thread)"
    return [p.name, f"{p.setup_s:.1f} s", str(p.width),
            f"{finished} / {len(p.students) - finished}",
            str(sum(s.refusals for s in p.students)), f"{p.makespan:.0f} s",
            f"{pct(waits, 50):.0f} / {pct(waits, 95):.0f} s",
            f"{statistics.median(started):.1f} s", f"{slot_s(p):.1f} s", cpu,
            f"{statistics.mean([s.accuracy or 0.0 for s in p.students]):.2%}",
            f"{pct(p.pages, 50):.2f} / {pct(p.pages, 95):.2f} s",
            f"×{pct(p.pages, 95) / idle95:.1f}", str(len(p.pages))]


def rows(phases: list[Phase], idle: list[float]) -> list[tuple[str, ...]]:
    """The side-by-side table: a label, then one cell per backend."""
    columns = [column(p, pct(idle, 95)) for p in phases]
    return [(label, *(c[k] for c in columns)) for k, label in enumerate(LABELS)]


def print_table(table: list[tuple[str, ...]]) -> None:
    wide = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, wide)).rstrip())


def on_paper(phase: Phase, machines: list[int]) -> None:
    """What N worker machines like this one would give: an estimate, not a measurement."""
    n, cores = len(phase.students), os.cpu_count() or 1
    run_s = slot_s(phase)
    relay_s = server_cpu(phase)
    print(f"\nESTIMATE, on paper (not measured): N Ray worker machines like this one "
          f"({cores} cores, {phase.width} runs at once each), every run holding its place "
          f"for the {run_s:.1f} s measured here (makespan × width ÷ runs: its Ray worker "
          f"starting and importing TensorFlow included), so runs end in waves of "
          f"{phase.width} × N; "
          f"the server's share, {relay_s:.2f} CPU s per run (measured: the run's relay "
          f"thread), would limit it only beyond about {cores / max(relay_s, 1e-3):.0f} "
          f"runs a second. Students told the "
          f"server is full (its width + {_queued()} waiting) would add their retry time.")
    print("  N machines   makespan   Start → result p50 / p95")
    for m in machines:
        slots = phase.width * m
        ends = [(k // slots + 1) * run_s for k in range(n)]
        print(f"  {m:>10}   {ends[-1]:>6.0f} s   {pct(ends, 50):.0f} / {pct(ends, 95):.0f} s")


def _queued() -> int:
    from core.jobs import REGISTRY

    return REGISTRY.max_queued


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--subset", type=int, default=5000, help="training images per run")
    ap.add_argument("--epochs", type=int, default=3, help="the preset's own: 3")
    ap.add_argument("--backends", default="local,ray")
    ap.add_argument("--retry-s", type=float, default=15.0,
                    help="a refused student presses Start again after this long")
    ap.add_argument("--idle-s", type=float, default=30.0, help="idle page-latency baseline")
    ap.add_argument("--machines", default="2,4,8,15")
    args = ap.parse_args()

    from core.jobs import REGISTRY
    from core.presets import PRESETS

    preset = PRESETS["fast_cnn"]
    recipe = preset.recipe.replace(epochs=args.epochs, train_subset=args.subset)
    print(f"classroom bench: {args.students} students press Start at once; fast_cnn with "
          f"its recipe, {args.epochs} epoch(s) on {args.subset:,} training images (full "
          f"test set); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at "
          f"start; the server's queue allows {REGISTRY.max_queued} waiting beyond its "
          f"width; refused students retry after {args.retry_s:g} s")
    visitor = Visitor()
    visitor.start()
    idle = visitor.measure(args.idle_s)
    print(f"idle page latency: p50 {pct(idle, 50):.2f} s, p95 {pct(idle, 95):.2f} s over "
          f"{len(idle)} renders (AppTest in a thread of the server process)")
    phases = []
    for name in args.backends.split(","):
        phase = Phase("ray (this machine)" if name == "ray" else "local")
        phase.width, phase.setup_s = use_backend(name)
        run_class(phase, preset.spec, recipe, args.students, args.retry_s, visitor)
        phases.append(phase)
        print(f"{phase.name}: done in {phase.makespan:.0f} s (load average "
              f"{os.getloadavg()[0]:.1f})", flush=True)
    visitor.halt.set()
    print()
    print_table(rows(phases, idle))
    print(f"page errors: {visitor.errors}")
    ray_phase = next((p for p in phases if p.name.startswith("ray")), None)
    if ray_phase is not None:
        on_paper(ray_phase, [int(m) for m in args.machines.split(",")])
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()
