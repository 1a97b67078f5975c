"""core.safe_npz: what numpy writes still loads, exactly as saved, and a reading process
stays small. Every hostile file (bombs, lying directories and headers, odd dtypes) is a
row of the corpus in tests/test_hostile.py."""
from __future__ import annotations

import io

import numpy as np
import pytest

from core.safe_npz import WeightsRefused, member_limit, read_npz
from tests.hostile_files import npy, read_in_child

EXPECTED = {"conv1/0": (3, 3, 1, 32), "conv1/1": (32,), "dense/0": (1600, 10),
            "dense/1": (10,)}
MAX_RSS_MIB = 200            # a fresh Python with NumPy is about 30 MiB


def arrays(dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(shape).astype(dtype) for k, shape in EXPECTED.items()}


def savez(compressed: bool = False, **arrs) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrs)
    return buf.getvalue()


def refusal(data: bytes) -> str:
    with pytest.raises(WeightsRefused) as err:
        read_npz(data, EXPECTED)
    return str(err.value)


# -- what must still load ----------------------------------------------------------------
@pytest.mark.parametrize("compressed", [False, True])
def test_savez_and_savez_compressed_round_trip(compressed):
    want = arrays()
    got = read_npz(savez(compressed, **want), EXPECTED)
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == np.float32 and np.array_equal(got[key], want[key])


def test_float64_int_big_endian_and_fortran_order_are_read_as_numbers():
    want = arrays(np.float64)
    want["conv1/1"] = np.arange(32, dtype=">i4")
    want["dense/0"] = np.asfortranarray(want["dense/0"])
    got = read_npz(savez(**want), EXPECTED)
    for key in want:
        assert np.array_equal(got[key], want[key])


def test_member_limit_covers_a_real_float64_member():
    data = npy(np.zeros((1600, 10), np.float64))
    assert len(data) <= member_limit((1600, 10))


def test_refusals_name_what_is_wrong_and_show_no_markup():
    good = arrays()
    extra = dict(good, **{"[x](https://www.evil.example)": np.zeros(1)})
    assert "unexpected ?x??https?//www?evil?example?" in refusal(savez(**extra))
    del good["dense/1"]
    assert "missing dense/1" in refusal(savez(**good))


# -- memory, measured in a fresh Python (the bombs themselves: tests/test_hostile.py) ----
def test_a_real_file_read_in_a_child_for_the_baseline(tmp_path):
    message, rss = read_in_child(savez(**arrays()), EXPECTED, tmp_path)
    assert message == "accepted 4 arrays"
    assert rss < MAX_RSS_MIB
