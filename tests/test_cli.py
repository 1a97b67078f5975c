"""The core package from outside: ``python -m core`` and its boundary with Streamlit."""
from __future__ import annotations

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
