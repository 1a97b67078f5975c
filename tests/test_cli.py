"""``python -m core train``: a quick preset run learns, and the last line is the result."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def core_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def test_train_one_epoch_on_10000_images_learns_and_ends_with_the_accuracy():
    # fast_cnn makes 19 steps here; before batch-norm recalibration it tested at 76.8%.
    out = core_cli("train", "fast_cnn", "--images", "10000", "--epochs", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"test_accuracy=0\.\d{4}", lines[-1]), lines[-1]
    assert float(lines[-1].split("=")[1]) >= 0.90
    assert lines[0] == "training fast_cnn: 10,000 images, 1 epoch(s), batch 512, seed 0"
    assert sum(line.startswith("epoch 1: ") for line in lines) == 1


def test_train_refuses_bad_options_with_a_sentence():
    out = core_cli("train", "fast_cnn", "--images", "50", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "train_subset is 50; choose between 100 and 60,000" in out.stderr
    out = core_cli("train", "no_such_preset", timeout=120)
    assert out.returncode == 2 and "invalid choice" in out.stderr
