"""Small helpers shared by the bench scripts (not a test module)."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_SHARED = ROOT.parent / "shared" / "data" / "mnist.npz"
if "MNIST_NPZ" not in os.environ and _SHARED.is_file():
    os.environ["MNIST_NPZ"] = str(_SHARED)


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux)."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env_extra: dict | None = None, port: int | None = None,
              log_path: Path | None = None, root: Path | None = None):
    """``streamlit run app.py`` on a free loopback port; returns (process, base URL).

    Used by the bench scripts and by the real-browser test. Output goes to ``log_path``
    (or nowhere); ``LAYERLAB_HOME`` defaults to a fresh temporary folder; ``root`` is the
    checkout to run (default: this one).
    """
    import subprocess
    import tempfile

    port = port or free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    env.setdefault("LAYERLAB_HOME", tempfile.mkdtemp(prefix="layerlab-"))
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str((root or ROOT) / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"],
        cwd=root or ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if log_path:
        out.close()                       # the child keeps its own handle
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(url: str, timeout: float = 60.0, proc=None) -> float:
    """Seconds until ``/_stcore/health`` answers ok; fails early if ``proc`` exits."""
    import time
    import urllib.request

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return time.perf_counter() - t0
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}") from None
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not become healthy in {timeout:.0f} s")


def stop_app(proc) -> None:
    """Terminate a server started by :func:`start_app` (kill it if it hangs)."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(playwright):
    """Debian's chromium through Playwright (its own browser download does not work here)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise RuntimeError("chromium is not installed: apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)


@contextmanager
def app_in_chromium(viewport: dict, env_extra: dict | None = None):
    """``streamlit run app.py`` (fresh LAYERLAB_HOME) and a chromium tab of ``viewport``
    size: yields ``(page, url)``; stops both afterwards."""
    import tempfile

    from playwright.sync_api import sync_playwright

    env = {"LAYERLAB_HOME": tempfile.mkdtemp(prefix="layerlab-"), "TF_CPP_MIN_LOG_LEVEL": "3",
           **(env_extra or {})}
    proc, url = start_app(env)
    try:
        wait_healthy(url, timeout=90, proc=proc)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                yield browser.new_page(viewport=viewport), url
            finally:
                browser.close()
    finally:
        stop_app(proc)


def proc_field_mb(pid: int, name: str, field: str) -> float:
    """A ``field: N kB`` line of ``/proc/PID/NAME`` in MiB (NaN when absent)."""
    with open(f"/proc/{pid}/{name}", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def proc_rss_mb(pid: int) -> float:
    """A process's resident set size (MiB)."""
    return proc_field_mb(pid, "status", "VmRSS")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by a process (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
