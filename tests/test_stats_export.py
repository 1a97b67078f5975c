"""Stats against hand computation, the Keras-script export, and the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.export import to_keras_script
from core.presets import get_preset
from core.stats import compare, human_bytes, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_warmup_mlp_memory_matches_seed():
    rows, t = summarize(get_preset("warmup_mlp").spec, batch_size=32)
    assert t.params == 111_146
    assert t.weight_bytes == {"fp32": 444_584, "fp16": 222_292, "int8": 111_146}
    assert human_bytes(444_584) == "0.42 MiB"
    # Adam: weights + gradients + two moments, all trainable
    assert t.adam_training_bytes == 4 * 111_146 * 4
    # MACs: 784·128 + 128·64 + 64·32 + 32·10
    assert t.macs == 784 * 128 + 128 * 64 + 64 * 32 + 32 * 10
    assert [r.params for r in rows] == [0, 100_480, 8_256, 2_080, 330]
    # activations: outputs 784+128+64+32+10, plus the 784 input, × batch × 4 B
    assert t.activations == 784 + 128 + 64 + 32 + 10
    assert t.activation_bytes_inference == 32 * (1018 + 784) * 4
    assert t.activation_bytes_training == 2 * t.activation_bytes_inference


def test_conv_macs_and_bn_split_by_hand():
    rows, t = summarize(get_preset("bulky_cnn").spec)
    conv1, bn1, conv2 = rows[0], rows[1], rows[2]
    assert conv1.macs == 26 * 26 * 32 * 3 * 3 * 1
    assert conv2.macs == 24 * 24 * 32 * 3 * 3 * 32
    assert (bn1.trainable, bn1.non_trainable) == (64, 64)
    assert bn1.macs == 26 * 26 * 32
    assert t.non_trainable == 896
    assert rows[-1].macs == 256 * 10
    assert conv1.output_shape == (26, 26, 32)
    assert t.adam_training_bytes == (4 * 330_858 + 896) * 4


def test_compare_reports_change():
    _, a = summarize(get_preset("keras_example").spec)
    _, b = summarize(get_preset("small_cnn").spec)
    text = compare(a, b)
    assert text.startswith("+73,792 params")
    assert "MACs" in text and "−" in text


def test_generated_script_rebuilds_same_model(tmp_path):
    spec = get_preset("bulky_cnn").spec
    script = tmp_path / "bulky.py"
    script.write_text(to_keras_script(spec) + "\n"
                      "m = build_model()\n"
                      "print('PARAMS', m.count_params())\n"
                      "for l in m.layers[1:]:\n"
                      "    print('SHAPE', l.name, tuple(l.output.shape[1:]))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "PARAMS 331754" in out
    rows, _ = summarize(spec)
    for r in rows:
        assert f"SHAPE {r.name} {r.output_shape}" in out


def test_script_is_readable():
    text = to_keras_script(get_preset("keras_example").spec)
    assert "layers.Conv2D(32, kernel_size=3, activation='relu', name='conv1')" in text
    assert "layers.Dropout(0.5, name='dropout1')" in text
    assert "keras.Input(shape=(28, 28, 1)" in text
    assert "Lambda" not in text


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
