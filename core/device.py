"""Which device trains: GPU name(s) or CPU with its thread count. TensorFlow is imported
only when asked, so the home page can show a cheap guess first."""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    kind: str                 # "GPU" or "CPU"
    name: str                 # e.g. "NVIDIA H100 80GB HBM3" or "Intel Xeon … (2 threads)"
    count: int                # GPUs visible (0 on CPU)

    @property
    def label(self) -> str:
        """What the sidebar shows.

        >>> DeviceInfo("GPU", "NVIDIA H100", 2).label
        'GPU: NVIDIA H100 ×2'
        >>> DeviceInfo("CPU", "Intel Xeon (2 threads)", 0).label
        'CPU: Intel Xeon (2 threads)'
        """
        if self.kind == "GPU":
            return f"GPU: {self.name}" + (f" ×{self.count}" if self.count > 1 else "")
        return f"CPU: {self.name}"


def cpu_name() -> str:
    """The processor model and usable thread count, without TensorFlow.

    >>> cpu_name().endswith(" threads)")
    True
    """
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    return f"{model} ({threads} threads)"


@functools.lru_cache(maxsize=1)
def detect() -> DeviceInfo:
    """Ask TensorFlow which accelerators it will use (cached for the process)."""
    import tensorflow as tf  # noqa: PLC0415

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return DeviceInfo("CPU", cpu_name(), 0)
    try:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    except Exception:  # details are best-effort
        name = gpus[0].name
    return DeviceInfo("GPU", name, len(gpus))


def distribution_strategy():
    """MirroredStrategy over all GPUs when there are several, else the default strategy."""
    import tensorflow as tf  # noqa: PLC0415

    if detect().count > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
