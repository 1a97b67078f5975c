"""The core package from outside: ``python -m core`` (presets, summary, a quick
``train`` that learns and ends with its result) and its boundary with Streamlit."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from core.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]


def test_cli_presets_prints_exact_counts():
    out = subprocess.run([sys.executable, "-m", "core", "presets"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    for name, numbers in {"warmup_mlp": ("111,146", "111,146", "0"),
                          "bulky_cnn": ("331,754", "330,858", "896"),
                          "small_cnn": ("108,618",), "bonus_cnn": ("93,322",),
                          "keras_example": ("34,826",)}.items():
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        for n in numbers:
            assert n in line.split(), (n, line)


def test_cli_summary_of_json_file_and_bad_name(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(get_preset("small_cnn").spec.to_json())
    out = subprocess.run([sys.executable, "-m", "core", "summary", str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "total params 108,618" in out and "5×5×32" in out
    bad = subprocess.run([sys.executable, "-m", "core", "summary", "nope"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "neither a preset" in bad.stderr and "Traceback" not in bad.stderr


def test_core_never_imports_streamlit():
    for path in (ROOT / "core").rglob("*.py"):
        text = path.read_text()
        assert "import streamlit" not in text and "from streamlit" not in text, path


def core_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def test_train_one_epoch_on_10000_images_learns_and_ends_with_the_accuracy():
    # fast_cnn makes 75 steps here (batches of 128).
    out = core_cli("train", "fast_cnn", "--images", "10000", "--epochs", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"test_accuracy=0\.\d{4}", lines[-1]), lines[-1]
    assert float(lines[-1].split("=")[1]) >= 0.90
    assert lines[0] == "training fast_cnn: 10,000 images, 1 epoch(s), batch 128, seed 0"
    assert sum(line.startswith("epoch 1: ") for line in lines) == 1


def test_train_refuses_bad_options_with_a_sentence():
    out = core_cli("train", "fast_cnn", "--images", "50", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "train_subset is 50; choose between 100 and 60,000" in out.stderr
    out = core_cli("train", "no_such_preset", timeout=120)
    assert out.returncode == 2 and "invalid choice" in out.stderr
