"""Which device trains: on this CPU-only machine, the CPU with its thread count and
TensorFlow's default (single-device) strategy."""
from __future__ import annotations

import os
import re

import pytest

from core.device import DeviceInfo, cpu_name, detect, distribution_strategy


def test_cpu_name_counts_the_threads_this_process_may_use():
    name = cpu_name()
    threads = int(re.fullmatch(r".+ \((\d+) threads\)", name).group(1))
    assert threads == len(os.sched_getaffinity(0)) >= 1


def _gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def test_detect_on_a_cpu_only_machine_reports_the_cpu():
    if _gpus():
        pytest.skip("this machine has a GPU")
    info = detect()
    assert (info.kind, info.count) == ("CPU", 0)
    assert info.name == cpu_name() and info.label == f"CPU: {cpu_name()}"
    assert detect() is info                               # asked once per process


def test_distribution_strategy_is_the_default_one_without_several_gpus():
    import tensorflow as tf

    if _gpus() > 1:
        pytest.skip("several GPUs: the mirrored strategy is expected")
    strategy = distribution_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 1


def test_gpu_label_names_the_card_and_counts_only_several():
    assert DeviceInfo("GPU", "NVIDIA H200", 1).label == "GPU: NVIDIA H200"
    assert DeviceInfo("GPU", "NVIDIA H200", 4).label == "GPU: NVIDIA H200 ×4"
