"""Makers of hostile files for the tests: hand-built zips whose directory says whatever
the attacker likes, ``.npy`` headers that lie, compression bombs, broken pictures, and a
runner that opens a file in a fresh, memory-limited Python and reports its peak RSS.

Not a test module: tests/test_hostile.py and tests/test_safe_npz.py import it.
"""
from __future__ import annotations

import bz2
import io
import json
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
_ZIP64 = 0xFFFFFFFF


@dataclass(frozen=True)
class Entry:
    """One zip entry as written: ``payload`` is already compressed with ``method``;
    ``size`` and ``crc`` are what the directory declares (true values by default)."""

    name: str
    payload: bytes
    method: int = STORED
    size: int = -1
    crc: int = -1
    flags: int = 0


def entry(name: str, raw: bytes, method: int = STORED, **lies) -> Entry:
    """An entry holding ``raw`` compressed with ``method``, honest unless told to lie."""
    if method == DEFLATED:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(raw) + c.flush()
    elif method == BZIP2:
        payload = bz2.compress(raw)
    elif method == LZMA:
        c = zipfile.LZMACompressor()          # zipfile's own framing of raw LZMA1
        payload = c.compress(raw) + c.flush()
    else:
        payload = raw
    lies.setdefault("size", len(raw))
    lies.setdefault("crc", zlib.crc32(raw))
    return Entry(name, payload, method, **lies)


def raw_zip(*entries: Entry) -> bytes:
    """A zip archive written byte by byte, so its directory can say anything."""
    out, directory = io.BytesIO(), []
    for e in entries:
        name = e.name.encode()
        big = e.size >= _ZIP64 or len(e.payload) >= _ZIP64
        sizes = (_ZIP64, _ZIP64) if big else (len(e.payload), e.size)
        extra = struct.pack("<HHQQ", 1, 16, e.size, len(e.payload)) if big else b""
        version = 63 if e.method == LZMA else 46 if e.method == BZIP2 else 45 if big else 20
        common = (version, e.flags, e.method, 0, 0x21, e.crc & 0xFFFFFFFF, *sizes,
                  len(name), len(extra))
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *common))
        out.write(name + extra + e.payload)
        directory.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x0314, *common,
                                     0, 0, 0, 0o644 << 16, offset) + name + extra)
    start = out.tell()
    cd = b"".join(directory)
    out.write(cd)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                          len(cd), start, 0))
    return out.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4", version: int = 1,
               text: str | None = None) -> bytes:
    """A ``.npy`` magic and header declaring ``shape`` (or saying ``text``), no data."""
    text = text if text is not None else \
        repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    body = text.encode("latin1")
    body += b" " * (-(len(body) + 12) % 64) + b"\n"
    length = struct.pack("<H" if version == 1 else "<I", len(body))
    return b"\x93NUMPY" + bytes([version, 0]) + length + body


def npy(arr: np.ndarray) -> bytes:
    """An array saved as ``.npy`` bytes (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def deflate_zeros(head: bytes, gib: float) -> tuple[bytes, int, int]:
    """(raw deflate stream, size, crc) of ``head`` followed by ``gib`` GiB of zeros,
    built in milliseconds: after a full flush each mebibyte compresses to the same
    1 kB, so the block is simply repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    mib = bytes(1 << 20)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    n = int(gib * 1024)
    crc = zlib.crc32(head)
    for _ in range(n):
        crc = zlib.crc32(mib, crc)
    return first + block * n + c.flush(), len(head) + n * (1 << 20), crc


def deflate_bomb(name: str, head: bytes, gib: float, *others: Entry) -> bytes:
    """A zip whose deflate entry ``name`` unpacks to ``gib`` GiB, declared honestly."""
    payload, size, crc = deflate_zeros(head, gib)
    return raw_zip(Entry(name, payload, DEFLATED, size, crc), *others)


def keras_bytes(model) -> bytes:
    """A Keras model saved as ``.keras`` bytes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.keras"
        model.save(path)
        return path.read_bytes()


def still_serves(model) -> None:
    """The next ordinary request works: a round trip of our own format (keras_example)."""
    from core.modelio import model_from_spec_and_weights, weights_to_npz
    from core.presets import get_preset

    spec = get_preset("keras_example").spec
    _, again = model_from_spec_and_weights(spec.to_json(), weights_to_npz(model))
    assert again.count_params() == 34_826


_CHILD = textwrap.dedent("""
    import json, os, resource, sys
    limit = 2 << 30                       # 2 GiB of address space: a bomb fails, not the box
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path.insert(0, os.getcwd())
    from core.safe_npz import read_npz
    data = open(sys.argv[1], "rb").read()
    expected = {k: tuple(v) for k, v in json.loads(sys.argv[2]).items()}
    try:
        arrays = read_npz(data, expected)
        message = f"accepted {len(arrays)} arrays"
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
    # VmHWM is this program's own peak: ru_maxrss would also count the parent's memory,
    # which the kernel carries into it at exec.
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    print(json.dumps({"message": message, "rss_mib": peak / 1024}))
""")


def read_in_child(data: bytes, expected: dict[str, tuple[int, ...]],
                  folder: Path) -> tuple[str, float]:
    """Read ``data`` with :func:`core.safe_npz.read_npz` in a fresh Python limited to
    2 GiB of address space: (the outcome, that process's peak RSS in MiB; Linux)."""
    path = folder / "upload.npz"
    path.write_bytes(data)
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(expected)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["message"], result["rss_mib"]


# -- weights: bombs and lies aimed at one weight, the others honest ----------------------
def honest(expected: dict[str, tuple[int, ...]], skip: str = "") -> list[Entry]:
    """An honest zero-filled entry for every expected weight but ``skip``."""
    return [entry(f"{k}.npy", npy(np.zeros(shape, np.float32)))
            for k, shape in expected.items() if k != skip]


def npz_bombs(expected: dict[str, tuple[int, ...]]) -> dict[str, tuple[object, str]]:
    """name: (maker of the bytes, fragment of the refusal) for the first weight's bombs."""
    key = next(iter(expected))
    shape, rest = tuple(expected[key]), honest(expected, key)
    name = f"{key}.npy"
    eight_gib = npy_header((2**31,))                             # 8 GiB of float32
    huge_header = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{" * (1 << 20)

    def lying_deflate() -> bytes:                 # 1 GiB declaring what the spec needs
        head = npy_header(shape)
        payload, _, crc = deflate_zeros(head, 1.0)
        need = len(head) + 4 * int(np.prod(shape))
        return raw_zip(Entry(name, payload, DEFLATED, need, crc), *rest)

    return {
        "bzip2 entry declaring 8 GiB": (lambda: raw_zip(
            entry(name, eight_gib + bytes(64 << 20), BZIP2, size=8 << 30), *rest),
            "compressed with bzip2"),
        "lzma entry": (lambda: raw_zip(entry(name, eight_gib + bytes(64 << 20), LZMA),
                                       *rest), "compressed with lzma"),
        "deflate 1 MB -> 1 GiB": (lambda: deflate_bomb(name, eight_gib, 1.0, *rest),
                                  "says it unpacks to 1.0 GiB"),
        "deflate 1 GiB declaring the right size": (lying_deflate, "is damaged"),
        "header declaring 3.6 TiB": (lambda: raw_zip(
            entry(name, npy_header((1_000_000, 1_000_000))), *rest),
            rf"has shape \(1000000, 1000000\) but the spec needs \({', '.join(map(str, shape))}"),
        "header declaring a 4 GiB header": (lambda: raw_zip(
            entry(name, huge_header, DEFLATED, size=4104,    # just past the header cap
                  crc=zlib.crc32(huge_header[:4104])), *rest),
            "header longer than 4,096 bytes"),
        "50,000 entries": (lambda: raw_zip(*[entry(f"w{i}.npy", b"") for i in range(50_000)]),
                           "up to 50,000 entries"),
        "npy uploaded as npz": (lambda: npy(np.zeros(shape, np.float32)),
                                "a single .npy array"),
        "random bytes as npz": (lambda: np.random.default_rng(0).bytes(100_000),
                                "not a zip archive of .npy arrays"),
    }


# -- images ------------------------------------------------------------------------------
def png_chunks(width: int, height: int, idat: bytes | None = None, depth: int = 8) -> bytes:
    """A PNG made of hand-written chunks whose header says ``width``×``height``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) \
        + chunk(b"IEND", b"")


def picture(fmt: str, side: int = 280, **kw) -> bytes:
    """A white bar (a digit one) on black, saved in ``fmt`` by Pillow."""
    from PIL import Image

    img = np.zeros((side, side), np.uint8)
    img[side // 5:side * 4 // 5, side * 3 // 7:side * 4 // 7] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    return buf.getvalue()
